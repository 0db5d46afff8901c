//! The protective MBR in LBA 0, in vboot's layout: boot code, a boot GUID
//! (`cgpt boot -i`), the legacy partition table and the 0x55AA signature.

use uuid::Uuid;

use crate::guid;

/// Bytes of boot code before the boot GUID (vboot's `struct pmbr`).
pub const BOOTCODE_LEN: usize = 424;
const BOOT_GUID_AT: usize = 424;
const MAGIC_AT: usize = 444;
const PARTS_AT: usize = 446;
const PART_LEN: usize = 16;
const SIG_AT: usize = 510;
/// The MBR partition type of a GPT protective partition.
pub const PROTECTIVE_TYPE: u8 = 0xee;

/// One 512-byte protective MBR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pmbr {
    raw: [u8; 512],
}

impl Pmbr {
    /// Wraps the first 512 bytes of LBA 0.
    pub fn from_bytes(bytes: &[u8]) -> Pmbr {
        let mut raw = [0u8; 512];
        let n = bytes.len().min(512);
        raw[..n].copy_from_slice(&bytes[..n]);
        Pmbr { raw }
    }

    /// The bytes as they would be written.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// Whether the sector ends in the 0x55AA boot signature.
    pub fn has_signature(&self) -> bool {
        self.raw[SIG_AT..] == [0x55, 0xaa]
    }

    /// The partition (unique) GUID legacy boot code should boot.
    pub fn boot_guid(&self) -> Uuid {
        guid::from_disk(&self.raw[BOOT_GUID_AT..BOOT_GUID_AT + 16])
    }

    /// Stores the GUID of the partition to boot (`cgpt boot -i`).
    pub fn set_boot_guid(&mut self, g: &Uuid) {
        self.raw[BOOT_GUID_AT..BOOT_GUID_AT + 16].copy_from_slice(&guid::to_disk(g));
    }

    /// Replaces the boot code with up to 424 bytes of `code` (`cgpt boot -b`);
    /// like vboot, bytes beyond the code read are left as they were.
    pub fn set_bootcode(&mut self, code: &[u8]) {
        let n = code.len().min(BOOTCODE_LEN);
        self.raw[..n].copy_from_slice(&code[..n]);
    }

    /// vboot's `cgpt boot -p`: one protective partition covering the disk
    /// (or 2^32-1 sectors), the magic vboot stamps next to it, and the signature.
    pub fn make_protective(&mut self, sectors: u64) {
        self.raw[MAGIC_AT..MAGIC_AT + 2].copy_from_slice(&[0x1d, 0x9a]);
        self.raw[SIG_AT..].copy_from_slice(&[0x55, 0xaa]);
        self.raw[PARTS_AT..SIG_AT].fill(0);
        let p = &mut self.raw[PARTS_AT..PARTS_AT + PART_LEN];
        // status, first CHS (0/0/2), type, last CHS (all ones), first LBA, size.
        p[..8].copy_from_slice(&[0x00, 0x00, 0x02, 0x00, PROTECTIVE_TYPE, 0xff, 0xff, 0xff]);
        p[8..12].copy_from_slice(&1u32.to_le_bytes());
        p[12..16].copy_from_slice(&protective_size(sectors).to_le_bytes());
    }

    /// After the disk grew: widens a standard protective partition (type 0xEE from
    /// LBA 1) to the new size. Returns whether anything changed; hybrid or foreign
    /// MBRs are left alone, since their other partitions mean something to someone.
    pub fn grow_protective(&mut self, sectors: u64) -> bool {
        let parts: Vec<&[u8]> = self.raw[PARTS_AT..SIG_AT].chunks(PART_LEN).collect();
        let used: Vec<usize> = (0..4).filter(|&i| parts[i][4] != 0).collect();
        if !self.has_signature() || used != [0] || parts[0][4] != PROTECTIVE_TYPE {
            return false;
        }
        let first = u32::from_le_bytes(parts[0][8..12].try_into().expect("4 bytes"));
        let size = u32::from_le_bytes(parts[0][12..16].try_into().expect("4 bytes"));
        let want = protective_size(sectors);
        if first != 1 || size == want {
            return false;
        }
        self.raw[PARTS_AT + 12..PARTS_AT + 16].copy_from_slice(&want.to_le_bytes());
        // The old end CHS no longer describes the end; vboot and Flatcar's cgpt
        // write "beyond CHS" (all ones) for a protective partition.
        self.raw[PARTS_AT + 5..PARTS_AT + 8].fill(0xff);
        true
    }

    /// How vboot's `show` names the PMBR row.
    pub fn describe(&self) -> String {
        let g = self.boot_guid();
        if g.is_nil() {
            "PMBR".into()
        } else {
            format!("PMBR (Boot GUID: {})", guid::upper(&g))
        }
    }
}

fn protective_size(sectors: u64) -> u32 {
    u32::try_from(sectors.saturating_sub(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protective_partition_grows_only_when_standard() {
        let mut m = Pmbr::from_bytes(&[0u8; 512]);
        assert!(!m.grow_protective(1000), "no signature: not ours to touch");
        m.make_protective(100);
        assert!(m.grow_protective(1000));
        assert_eq!(
            &m.as_bytes()[PARTS_AT + 12..PARTS_AT + 16],
            &999u32.to_le_bytes()
        );
        assert!(!m.grow_protective(1000), "already right");
        assert!(m.grow_protective(1 << 40));
        assert_eq!(&m.as_bytes()[PARTS_AT + 12..PARTS_AT + 16], &[0xff; 4]);
        // A hybrid MBR (a second partition) is left alone.
        m.raw[PARTS_AT + PART_LEN + 4] = 0x0c;
        assert!(!m.grow_protective(5000));
    }

    #[test]
    fn boot_guid_round_trip() {
        let mut m = Pmbr::from_bytes(&[0u8; 512]);
        assert_eq!(m.describe(), "PMBR");
        m.make_protective(10);
        m.set_boot_guid(&guid::USR_A_UUID);
        assert_eq!(m.boot_guid(), guid::USR_A_UUID);
        assert!(m.describe().starts_with("PMBR (Boot GUID: 7130C94A"));
    }
}
