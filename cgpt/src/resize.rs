//! `cgpt resize` as Flatcar's cgpt has it: after the disk grew, move the backup
//! GPT to the new end and grow a partition into the free space after it.

use tracing::info;

use crate::disk::Disk;
use crate::error::Error;
use crate::header::{ENTRY_SIZE, Header, Which};
use crate::pmbr::Pmbr;
use crate::table::{Gpt, Region, check_layout, read_sectors, write_groups};

/// Flatcar's default: grow only by at least 2 MiB.
pub const DEFAULT_MIN_BYTES: u64 = 2 << 20;

/// A partition that grew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grown {
    /// 1-based partition number.
    pub index: u32,
    /// First LBA (unchanged).
    pub first_lba: u64,
    /// Last LBA before.
    pub old_last_lba: u64,
    /// Last LBA after.
    pub new_last_lba: u64,
    /// Sector size, to turn the LBAs into the bytes the kernel wants.
    pub sector_size: u64,
}

/// Both headers rebuilt for the disk's current size, from the copy in use
/// (seismograph's `GptRecomputeSize` then `GptRepair`).
fn headers_for_size(gpt: &Gpt) -> (Header, Header) {
    let geom = gpt.geometry();
    let last_usable = geom.last_lba() - geom.entries_sectors() - 1;
    let mut p = if gpt.health().primary_header.is_none() {
        gpt.raw_header(Which::Primary).clone()
    } else {
        gpt.header().for_copy(Which::Primary, &geom)
    };
    p.set_alternate_lba(geom.last_lba());
    p.set_last_usable_lba(last_usable);
    let s = p.for_copy(Which::Secondary, &geom);
    (p, s)
}

/// The last LBA partition `index` can grow to: the new end of the usable space
/// or the sector before the next partition behind it.
fn last_free_lba(gpt: &Gpt, index: u32, last_usable: u64) -> Result<u64, Error> {
    let me = gpt.used_entry(index)?;
    Ok(gpt
        .entries()
        .iter()
        .filter(|o| o.first_lba > me.last_lba)
        .map(|o| o.first_lba - 1)
        .fold(last_usable, u64::min))
}

/// Grows partition `index` into the free space after it when that is at least
/// `min_bytes`, moving the backup GPT to the end of a grown disk on the way.
/// Returns `None`, writing nothing, when there is too little to gain (as
/// Flatcar's cgpt does, even if the backup is not at the end).
///
/// `notify` runs before anything is written (Flatcar's cgpt tells the kernel
/// first, so a refusal leaves the disk untouched). Write order: backup entries
/// and header at the new end, barrier, primary header, barrier, primary
/// entries, barrier, then the protective MBR. Until the primary header lands,
/// every reader keeps the old table (the new backup is not at the primary's
/// alternate LBA, or disagrees with the valid primary); after it, the new
/// backup it points to matches it, so cgpt and GRUB read the new table even
/// with the old primary entries.
pub fn grow<D: Disk>(
    disk: &mut D,
    index: u32,
    min_bytes: u64,
    notify: impl FnOnce(&Grown) -> std::io::Result<()>,
) -> Result<Option<Grown>, Error> {
    let gpt = Gpt::read(disk)?;
    let geom = gpt.geometry();
    let (mut p_hdr, mut s_hdr) = headers_for_size(&gpt);
    let me = gpt.used_entry(index)?;
    let last_free = last_free_lba(&gpt, index, p_hdr.last_usable_lba())?;
    if me.last_lba >= last_free || (last_free - me.last_lba) * geom.sector_size < min_bytes {
        return Ok(None);
    }
    let mut entries = gpt.original.clone();
    let at = (index as usize - 1) * ENTRY_SIZE as usize + 40;
    entries[at..at + 8].copy_from_slice(&last_free.to_le_bytes());
    check_layout(&entries, &p_hdr).map_err(Error::BadChange)?;
    let crc = crc32fast::hash(&entries);
    p_hdr.set_entries_crc(crc);
    s_hdr.set_entries_crc(crc);
    let grown = Grown {
        index,
        first_lba: me.first_lba,
        old_last_lba: me.last_lba,
        new_last_lba: last_free,
        sector_size: geom.sector_size,
    };
    notify(&grown).map_err(Error::io(
        "notifying the kernel of the new partition size; leaving the table as it was",
    ))?;
    write_groups(
        disk,
        geom.sector_size,
        &[
            &[
                Region::new(s_hdr.entries_lba(), &entries, "the secondary entries"),
                Region::new(geom.last_lba(), s_hdr.as_bytes(), "the secondary header"),
            ],
            &[Region::new(1, p_hdr.as_bytes(), "the primary header")],
            &[Region::new(
                p_hdr.entries_lba(),
                &entries,
                "the primary entries",
            )],
        ],
    )?;
    let mut mbr = Pmbr::from_bytes(&read_sectors(disk, &geom, 0, 512, "the protective MBR")?);
    if mbr.grow_protective(geom.sectors) {
        write_groups(
            disk,
            geom.sector_size,
            &[&[Region::new(0, mbr.as_bytes(), "the protective MBR")]],
        )?;
    }
    let mut check = gpt.clone();
    check.working = entries;
    check.verify_written(disk)?;
    info!(?grown, "partition grown");
    Ok(Some(grown))
}
