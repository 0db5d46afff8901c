//! `cgpt create` and `cgpt legacy`: writing whole tables and signatures, in
//! vboot's bytes and this crate's crash-safe order.

use uuid::Uuid;

use crate::disk::Disk;
use crate::error::Error;
use crate::header::{CHROMEOS_SIGNATURE, ENTRIES_BYTES, Geometry, Header, SIGNATURE, Which};
use crate::table::{Gpt, Region, probe_sector_size, read_sectors, write_groups};

/// The signature `cgpt legacy -p` puts on a primary header readers must skip.
pub const IGNORED_SIGNATURE: &[u8; 8] = b"IGNOREME";

fn geometry<D: Disk>(disk: &mut D) -> Result<Geometry, Error> {
    let len = disk
        .size_bytes()
        .map_err(Error::io("reading the disk size"))?;
    let sector_size = probe_sector_size(disk, len)?;
    let geom = Geometry {
        sector_size,
        sectors: len / sector_size,
    };
    if geom.sectors < 4 + 2 * geom.entries_sectors() {
        return Err(Error::TooSmall(len));
    }
    Ok(geom)
}

/// `cgpt create [-p padding]`: an empty table with a new disk GUID, the primary
/// entries `padding` sectors after LBA 2. The protective MBR is not touched
/// (vboot leaves it to `cgpt boot -p`). Written like every table change:
/// primary entries, barrier, primary header, barrier, secondary.
pub fn create<D: Disk>(disk: &mut D, disk_guid: &Uuid, padding: u64) -> Result<(), Error> {
    let geom = geometry(disk)?;
    let es = geom.entries_sectors();
    if 2 + padding + 2 * es + 1 >= geom.sectors {
        return Err(Error::TooSmall(geom.sectors * geom.sector_size));
    }
    let entries = vec![0u8; ENTRIES_BYTES];
    let mut p = Header::new_primary(&geom, disk_guid, padding);
    p.set_entries_crc(crc32fast::hash(&entries));
    let s = p.for_copy(Which::Secondary, &geom);
    write_groups(
        disk,
        geom.sector_size,
        &[
            &[Region::new(
                p.entries_lba(),
                &entries,
                "the primary entries",
            )],
            &[Region::new(1, p.as_bytes(), "the primary header")],
            &[
                Region::new(s.entries_lba(), &entries, "the secondary entries"),
                Region::new(geom.last_lba(), s.as_bytes(), "the secondary header"),
            ],
        ],
    )
}

/// `cgpt create -z`: zeroes both header sectors (the entries stay, as in vboot).
pub fn zap<D: Disk>(disk: &mut D) -> Result<(), Error> {
    let geom = geometry(disk)?;
    let zero = vec![0u8; geom.sector_size as usize];
    write_groups(
        disk,
        geom.sector_size,
        &[
            &[Region::new(1, &zero, "the primary header")],
            &[Region::new(geom.last_lba(), &zero, "the secondary header")],
        ],
    )
}

/// What `cgpt legacy` switches to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegacyMode {
    /// Default: both signatures "CHROMEOS", the first primary entries sector
    /// zeroed (vboot hides the table from UEFI this way; readers use the backup).
    ChromeOs,
    /// `-e`: back to "EFI PART", primary entries restored from the backup.
    EfiPart,
    /// `-p`: the primary header becomes "IGNOREME" (needs a valid backup).
    IgnorePrimary,
}

/// `cgpt legacy`. Each mode writes so that every prefix of its writes leaves
/// a table cgpt reads with the same entries.
pub fn legacy<D: Disk>(disk: &mut D, mode: LegacyMode) -> Result<(), Error> {
    let gpt = Gpt::read(disk)?;
    let geom = gpt.geometry();
    let ss = geom.sector_size;
    let mut p = gpt.raw_header(Which::Primary).clone();
    let mut s = gpt.raw_header(Which::Secondary).clone();
    // An invalid header's fields point anywhere (an IGNOREME header's entries
    // LBA is 0, the PMBR): only rewrite signatures of headers that passed.
    let h = gpt.health();
    if mode != LegacyMode::IgnorePrimary
        && (h.primary_header.is_some() || h.secondary_header.is_some())
    {
        return Err(Error::NeedsRepair(h.clone()));
    }
    match mode {
        LegacyMode::ChromeOs => {
            p.set_signature(CHROMEOS_SIGNATURE);
            s.set_signature(CHROMEOS_SIGNATURE);
            let mut p_ent = read_sectors(disk, &geom, p.entries_lba(), ENTRIES_BYTES, "entries")?;
            p_ent[..ss as usize].fill(0);
            // The backup header first: a lone new one disagrees with the valid
            // primary and is ignored; the zeroed primary entries go last.
            write_groups(
                disk,
                ss,
                &[
                    &[Region::new(
                        geom.last_lba(),
                        s.as_bytes(),
                        "the secondary header",
                    )],
                    &[Region::new(1, p.as_bytes(), "the primary header")],
                    &[Region::new(p.entries_lba(), &p_ent, "the primary entries")],
                ],
            )
        }
        LegacyMode::EfiPart => {
            let s_lba = geom.default_entries_lba(Which::Secondary);
            let s_ent = read_sectors(disk, &geom, s_lba, ENTRIES_BYTES, "entries")?;
            p.set_signature(SIGNATURE);
            s.set_signature(SIGNATURE);
            p.set_entries_crc(crc32fast::hash(&s_ent));
            write_groups(
                disk,
                ss,
                &[
                    &[Region::new(p.entries_lba(), &s_ent, "the primary entries")],
                    &[Region::new(1, p.as_bytes(), "the primary header")],
                    &[Region::new(
                        geom.last_lba(),
                        s.as_bytes(),
                        "the secondary header",
                    )],
                ],
            )
        }
        LegacyMode::IgnorePrimary => {
            if gpt.health().copy_bad(Which::Secondary) {
                return Err(Error::NeedsRepair(gpt.health().clone()));
            }
            let mut raw = p.as_bytes().to_vec();
            raw[..92].fill(0);
            let mut ignored = Header::from_sector(raw);
            ignored.set_signature(IGNORED_SIGNATURE);
            write_groups(
                disk,
                ss,
                &[&[Region::new(1, ignored.as_bytes(), "the primary header")]],
            )
        }
    }
}
