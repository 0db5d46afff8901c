//! The GPT header codec and vboot's header validity rules.
//!
//! Written by hand rather than taken from the `gpt` crate: we must keep every byte of
//! the sector we did not mean to change, say precisely why a copy is invalid, and
//! apply exactly vboot's rules so our verdict matches the real `cgpt`.

use std::fmt;
use uuid::Uuid;

use crate::guid;

/// The only header revision in use (1.0).
pub const REVISION: u32 = 0x0001_0000;
/// The size of the header fields; the rest of the sector is reserved.
pub const HEADER_SIZE: u32 = 92;
/// vboot accepts only 128 entries...
pub const NUM_ENTRIES: u32 = 128;
/// ...of 128 bytes each.
pub const ENTRY_SIZE: u32 = 128;
/// Bytes of one entry array.
pub const ENTRIES_BYTES: usize = (NUM_ENTRIES * ENTRY_SIZE) as usize;

/// The standard header signature.
pub const SIGNATURE: &[u8; 8] = b"EFI PART";
/// vboot's alternative signature (`cgpt legacy`), which hides the GPT from UEFI.
pub const CHROMEOS_SIGNATURE: &[u8; 8] = b"CHROMEOS";

/// Which of the two GPT copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Header at LBA 1, entries normally from LBA 2.
    Primary,
    /// Header at the last LBA, entries right before it.
    Secondary,
}

impl fmt::Display for Which {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Which::Primary => "primary",
            Which::Secondary => "secondary",
        })
    }
}

/// Sector size and disk length, the frame every LBA is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Logical sector size in bytes (512 or 4096).
    pub sector_size: u64,
    /// Number of sectors on the disk.
    pub sectors: u64,
}

impl Geometry {
    /// Sectors one 128x128-byte entry array occupies.
    pub fn entries_sectors(&self) -> u64 {
        (ENTRIES_BYTES as u64).div_ceil(self.sector_size)
    }

    /// The last LBA, where the secondary header lives.
    pub fn last_lba(&self) -> u64 {
        self.sectors - 1
    }

    /// Where a copy's header normally sits.
    pub fn header_lba(&self, copy: Which) -> u64 {
        match copy {
            Which::Primary => 1,
            Which::Secondary => self.last_lba(),
        }
    }

    /// Where a copy's entry array normally sits.
    pub fn default_entries_lba(&self, copy: Which) -> u64 {
        match copy {
            Which::Primary => 2,
            Which::Secondary => self.last_lba() - self.entries_sectors(),
        }
    }
}

/// Why a header copy is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderProblem {
    #[error("bad signature {0:?}")]
    Signature(String),
    #[error("unsupported revision {0:#010x}")]
    Revision(u32),
    #[error("header size {0} out of range 92..=512")]
    Size(u32),
    #[error("header CRC {stored:#010x} does not match computed {computed:#010x}")]
    Crc { stored: u32, computed: u32 },
    #[error("reserved field is {0:#x}, not 0")]
    Reserved(u32),
    #[error("entry size {0} is not 128")]
    EntrySize(u32),
    #[error("number of entries {0} is not 128")]
    EntryCount(u32),
    #[error("my LBA {found} is not {expected}")]
    MyLba { found: u64, expected: u64 },
    #[error("entries LBA {0} is misplaced")]
    EntriesLba(u64),
    #[error("usable range {first}..={last} overlaps the GPT structures")]
    UsableRange { first: u64, last: u64 },
    #[error("does not match the primary header")]
    Mismatch,
    #[error("its entries CRC matches neither entry array")]
    EntriesCrcMismatch,
}

/// A decoded GPT header, keeping its whole sector so unknown bytes survive a rewrite.
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    raw: Vec<u8>,
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Header")
            .field("my_lba", &self.my_lba())
            .field("entries_lba", &self.entries_lba())
            .field("entries_crc", &self.entries_crc())
            .finish()
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

impl Header {
    /// Wraps one header sector (at least 512 bytes).
    pub fn from_sector(sector: Vec<u8>) -> Self {
        debug_assert!(sector.len() >= 512);
        Header { raw: sector }
    }

    /// The sector bytes as they would be written.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    pub fn signature(&self) -> &[u8] {
        &self.raw[0..8]
    }
    pub fn revision(&self) -> u32 {
        le32(&self.raw, 8)
    }
    pub fn header_size(&self) -> u32 {
        le32(&self.raw, 12)
    }
    pub fn header_crc(&self) -> u32 {
        le32(&self.raw, 16)
    }
    pub fn reserved(&self) -> u32 {
        le32(&self.raw, 20)
    }
    pub fn my_lba(&self) -> u64 {
        le64(&self.raw, 24)
    }
    pub fn alternate_lba(&self) -> u64 {
        le64(&self.raw, 32)
    }
    pub fn first_usable_lba(&self) -> u64 {
        le64(&self.raw, 40)
    }
    pub fn last_usable_lba(&self) -> u64 {
        le64(&self.raw, 48)
    }
    pub fn disk_guid(&self) -> Uuid {
        guid::from_disk(&self.raw[56..72])
    }
    pub fn entries_lba(&self) -> u64 {
        le64(&self.raw, 72)
    }
    pub fn num_entries(&self) -> u32 {
        le32(&self.raw, 80)
    }
    pub fn entry_size(&self) -> u32 {
        le32(&self.raw, 84)
    }
    pub fn entries_crc(&self) -> u32 {
        le32(&self.raw, 88)
    }

    /// CRC32 over `header_size` bytes with the CRC field zeroed (clamped to the sector).
    pub fn computed_crc(&self) -> u32 {
        let size = (self.header_size() as usize).clamp(HEADER_SIZE as usize, self.raw.len());
        let mut h = crc32fast::Hasher::new();
        h.update(&self.raw[..16]);
        h.update(&[0; 4]);
        h.update(&self.raw[20..size]);
        h.finalize()
    }

    /// CRC32 over exactly the 92 bytes of the header fields, CRC field zeroed:
    /// what GRUB checks whatever the header size says.
    pub fn crc_of_92(&self) -> u32 {
        let mut h = crc32fast::Hasher::new();
        h.update(&self.raw[..16]);
        h.update(&[0; 4]);
        h.update(&self.raw[20..HEADER_SIZE as usize]);
        h.finalize()
    }

    /// Sets the entries CRC and recomputes the header CRC.
    pub fn set_entries_crc(&mut self, crc: u32) {
        self.raw[88..92].copy_from_slice(&crc.to_le_bytes());
        self.reseal();
    }

    /// Rebuilds this header for the other copy: the shared fields stay, the location
    /// fields point where `copy`'s structures belong (what `cgpt repair` does).
    pub fn for_copy(&self, copy: Which, geom: &Geometry) -> Header {
        let mut raw = vec![0u8; self.raw.len()];
        let size = (self.header_size() as usize).clamp(HEADER_SIZE as usize, raw.len());
        raw[..size].copy_from_slice(&self.raw[..size]);
        let (my, alt) = match copy {
            Which::Primary => (1, geom.last_lba()),
            Which::Secondary => (geom.last_lba(), 1),
        };
        raw[24..32].copy_from_slice(&my.to_le_bytes());
        raw[32..40].copy_from_slice(&alt.to_le_bytes());
        raw[72..80].copy_from_slice(&geom.default_entries_lba(copy).to_le_bytes());
        let mut h = Header { raw };
        h.reseal();
        h
    }

    /// Sets the alternate (other copy's header) LBA and reseals the CRC.
    pub fn set_alternate_lba(&mut self, lba: u64) {
        self.raw[32..40].copy_from_slice(&lba.to_le_bytes());
        self.reseal();
    }

    /// Sets the last usable LBA and reseals the CRC (a disk that grew).
    pub fn set_last_usable_lba(&mut self, lba: u64) {
        self.raw[48..56].copy_from_slice(&lba.to_le_bytes());
        self.reseal();
    }

    /// Sets the 8-byte signature and reseals the CRC (`cgpt legacy`).
    pub fn set_signature(&mut self, sig: &[u8; 8]) {
        self.raw[0..8].copy_from_slice(sig);
        self.reseal();
    }

    /// A fresh primary header as `cgpt create` makes it: 128 entries of 128 bytes
    /// from LBA `2 + padding`, usable space up to the secondary array.
    pub fn new_primary(geom: &Geometry, disk_guid: &Uuid, padding: u64) -> Header {
        let mut raw = vec![0u8; geom.sector_size as usize];
        let es = geom.entries_sectors();
        let entries_lba = 2 + padding;
        raw[0..8].copy_from_slice(SIGNATURE);
        raw[8..12].copy_from_slice(&REVISION.to_le_bytes());
        raw[12..16].copy_from_slice(&HEADER_SIZE.to_le_bytes());
        raw[24..32].copy_from_slice(&1u64.to_le_bytes());
        raw[32..40].copy_from_slice(&geom.last_lba().to_le_bytes());
        raw[40..48].copy_from_slice(&(entries_lba + es).to_le_bytes());
        raw[48..56].copy_from_slice(&(geom.last_lba() - es - 1).to_le_bytes());
        raw[56..72].copy_from_slice(&guid::to_disk(disk_guid));
        raw[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        raw[80..84].copy_from_slice(&NUM_ENTRIES.to_le_bytes());
        raw[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
        let mut h = Header { raw };
        h.reseal();
        h
    }

    fn reseal(&mut self) {
        let crc = self.computed_crc();
        self.raw[16..20].copy_from_slice(&crc.to_le_bytes());
    }

    /// vboot's `CheckHeader`: is this a valid header for `copy` on a disk of `geom`?
    pub fn check(&self, copy: Which, geom: &Geometry) -> Result<(), HeaderProblem> {
        let sig = self.signature();
        if sig != SIGNATURE && sig != CHROMEOS_SIGNATURE {
            return Err(HeaderProblem::Signature(
                String::from_utf8_lossy(sig).into_owned(),
            ));
        }
        if self.revision() != REVISION {
            return Err(HeaderProblem::Revision(self.revision()));
        }
        let size = self.header_size();
        if !(HEADER_SIZE..=512).contains(&size) || u64::from(size) > geom.sector_size {
            return Err(HeaderProblem::Size(size));
        }
        let computed = self.computed_crc();
        if computed != self.header_crc() {
            return Err(HeaderProblem::Crc {
                stored: self.header_crc(),
                computed,
            });
        }
        if self.reserved() != 0 {
            return Err(HeaderProblem::Reserved(self.reserved()));
        }
        if self.entry_size() != ENTRY_SIZE {
            return Err(HeaderProblem::EntrySize(self.entry_size()));
        }
        if self.num_entries() != NUM_ENTRIES {
            return Err(HeaderProblem::EntryCount(self.num_entries()));
        }
        let expected = geom.header_lba(copy);
        if self.my_lba() != expected {
            return Err(HeaderProblem::MyLba {
                found: self.my_lba(),
                expected,
            });
        }
        let es = geom.entries_sectors();
        let entries_ok = match copy {
            // The array must lie between the header and the usable area.
            Which::Primary => {
                self.entries_lba() >= 2
                    && self
                        .entries_lba()
                        .checked_add(es)
                        .is_some_and(|end| end <= self.first_usable_lba())
            }
            Which::Secondary => self.entries_lba() == geom.default_entries_lba(Which::Secondary),
        };
        if !entries_ok {
            return Err(HeaderProblem::EntriesLba(self.entries_lba()));
        }
        let (first, last) = (self.first_usable_lba(), self.last_usable_lba());
        if first < 2 + es || last >= geom.sectors.saturating_sub(1 + es) || first > last {
            return Err(HeaderProblem::UsableRange { first, last });
        }
        Ok(())
    }

    /// vboot's `HeaderFieldsSame`: the fields both copies must agree on.
    pub fn same_shared_fields(&self, other: &Header) -> bool {
        self.signature() == other.signature()
            && self.revision() == other.revision()
            && self.header_size() == other.header_size()
            && self.reserved() == other.reserved()
            && self.first_usable_lba() == other.first_usable_lba()
            && self.last_usable_lba() == other.last_usable_lba()
            && self.disk_guid() == other.disk_guid()
            && self.num_entries() == other.num_entries()
            && self.entry_size() == other.entry_size()
            && self.entries_crc() == other.entries_crc()
    }
}
