//! One 128-byte GPT partition entry.

use uuid::Uuid;

use crate::attrs::Attributes;
use crate::guid;

/// A decoded partition entry, with its 1-based index in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based partition number (what `-i` and `/dev/sdaN` use).
    pub index: u32,
    /// Partition type GUID; nil means the slot is unused.
    pub type_guid: Uuid,
    /// Unique partition GUID (PARTUUID).
    pub unique_guid: Uuid,
    /// First LBA, inclusive.
    pub first_lba: u64,
    /// Last LBA, inclusive.
    pub last_lba: u64,
    /// The attribute field.
    pub attrs: Attributes,
    /// The label (PARTLABEL), decoded from UTF-16LE up to the first NUL.
    pub label: String,
}

/// Byte offset of the attribute field inside an entry.
pub const ATTRS_OFFSET: usize = 48;

impl Entry {
    /// Decodes entry `index` (1-based) from its 128 bytes.
    pub fn parse(index: u32, b: &[u8]) -> Entry {
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let units: Vec<u16> = b[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        Entry {
            index,
            type_guid: guid::from_disk(&b[0..16]),
            unique_guid: guid::from_disk(&b[16..32]),
            first_lba: u64_at(32),
            last_lba: u64_at(40),
            attrs: Attributes(u64_at(ATTRS_OFFSET)),
            label: String::from_utf16_lossy(&units),
        }
    }

    /// Whether the slot holds a partition (a non-nil type).
    pub fn is_used(&self) -> bool {
        !self.type_guid.is_nil()
    }

    /// Size in sectors; 0 for an unused entry (as cgpt prints it) or an inverted
    /// range (which validation rejects).
    pub fn sectors(&self) -> u64 {
        if !self.is_used() {
            return 0;
        }
        (self.last_lba + 1).saturating_sub(self.first_lba)
    }

    /// Whether this is a Flatcar USR partition (the type GRUB's gptprio considers).
    pub fn is_usr(&self) -> bool {
        self.type_guid == guid::USR_TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_label_and_fields() {
        let mut b = [0u8; 128];
        b[0..16].copy_from_slice(&guid::to_disk(&guid::USR_TYPE));
        b[16..32].copy_from_slice(&guid::to_disk(&guid::USR_A_UUID));
        b[32..40].copy_from_slice(&20480u64.to_le_bytes());
        b[40..48].copy_from_slice(&53247u64.to_le_bytes());
        b[48..56].copy_from_slice(&0x0101_0000_0000_0000u64.to_le_bytes());
        for (i, u) in "USR-A".encode_utf16().enumerate() {
            b[56 + 2 * i..58 + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
        let e = Entry::parse(3, &b);
        assert!(e.is_used() && e.is_usr());
        assert_eq!(e.label, "USR-A");
        assert_eq!(e.sectors(), 32768);
        assert_eq!(e.attrs.to_string(), "priority=1 tries=0 successful=1");
        assert_eq!(e.unique_guid, guid::USR_A_UUID);
    }
}
