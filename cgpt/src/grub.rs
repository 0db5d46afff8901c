//! Flatcar GRUB's GPT reader (`grub-core/lib/gpt.c` of flatcar/grub), so that
//! `cgpt next` predicts exactly the boot GRUB's `gptprio.next` makes, and
//! refuses exactly where GRUB stops with an error.
//!
//! GRUB's rules differ from vboot's ([`crate::Gpt`]): the header CRC always
//! covers 92 bytes; the reserved field is not checked; entries may be any
//! 128·2^n bytes and any count of at least 16 KiB; the backup is looked for at
//! the primary's alternate LBA (not at the disk's end) and is refused when a
//! valid primary header disagrees with it, even if the primary's entries are
//! bad; entries are not checked for overlaps. Only its decisions are modelled,
//! nothing here writes.

use crate::disk::Disk;
use crate::header::{Geometry, Header};
use crate::table::probe_sector_size;

/// GRUB's minimum entry array size.
const MIN_ENTRIES_BYTES: u64 = 16384;

/// Why GRUB refuses a table, in GRUB's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("GRUB would not read this GPT: {0}")]
pub struct GrubRefusal(pub &'static str);

/// The table as GRUB's `gptprio.next` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrubView {
    /// The whole entry array GRUB uses.
    pub entries: Vec<u8>,
    /// Bytes per entry (128·2^n).
    pub entry_size: usize,
    /// Whether the primary copy (header and entries) was valid.
    pub primary_valid: bool,
    /// Whether the backup copy was valid and in sync.
    pub backup_valid: bool,
}

impl GrubView {
    /// The used entries, with their 1-based index, as `gptprio.next` walks them.
    pub fn used_entries(&self) -> Vec<crate::Entry> {
        self.entries
            .chunks_exact(self.entry_size)
            .zip(1..)
            .map(|(b, i)| crate::Entry::parse(i, &b[..crate::header::ENTRY_SIZE as usize]))
            .filter(crate::Entry::is_used)
            .collect()
    }
}

type R<T> = Result<T, GrubRefusal>;

fn refuse<T>(why: &'static str) -> R<T> {
    Err(GrubRefusal(why))
}

fn entries_bytes(h: &Header) -> u64 {
    u64::from(h.num_entries()) * u64::from(h.entry_size())
}

fn entries_sectors(h: &Header, ss: u64) -> u64 {
    entries_bytes(h).div_ceil(ss)
}

/// `grub_gpt_header_check`.
fn header_check(h: &Header, ss: u64) -> R<()> {
    if h.signature() != b"EFI PART" {
        return refuse("invalid GPT signature");
    }
    if h.revision() != crate::header::REVISION {
        return refuse("unknown GPT version");
    }
    if h.crc_of_92() != h.header_crc() {
        return refuse("invalid GPT header crc32");
    }
    if h.header_size() < 92 || u64::from(h.header_size()) > ss {
        return refuse("invalid GPT header size");
    }
    let es = h.entry_size();
    if es < 128 || !es.is_multiple_of(128) || !(es / 128).is_power_of_two() {
        return refuse("invalid GPT entry size");
    }
    if entries_bytes(h) < MIN_ENTRIES_BYTES {
        return refuse("invalid GPT entry table size");
    }
    if h.first_usable_lba() > h.last_usable_lba() {
        return refuse("invalid usable sectors");
    }
    Ok(())
}

/// `grub_gpt_check_primary` (C's u64 arithmetic wraps, so ours does too).
fn check_primary(h: &Header, ss: u64) -> R<()> {
    header_check(h, ss)?;
    if h.my_lba() != 1 {
        return refuse("invalid primary GPT LBA");
    }
    let e = h.entries_lba();
    if e <= 1 || e.wrapping_add(entries_sectors(h, ss)) > h.first_usable_lba() {
        return refuse("invalid entries location");
    }
    if h.alternate_lba() <= h.last_usable_lba() {
        return refuse("invalid backup GPT LBA");
    }
    Ok(())
}

/// `grub_gpt_headers_equal`.
fn headers_equal(p: &Header, b: &Header) -> bool {
    p.header_size() == b.header_size()
        && p.my_lba() == b.alternate_lba()
        && p.alternate_lba() == b.my_lba()
        && p.first_usable_lba() == b.first_usable_lba()
        && p.last_usable_lba() == b.last_usable_lba()
        && p.num_entries() == b.num_entries()
        && p.entry_size() == b.entry_size()
        && p.entries_crc() == b.entries_crc()
        && p.disk_guid() == b.disk_guid()
}

/// `grub_gpt_check_backup`; `primary` is the primary header if it was valid.
fn check_backup(b: &Header, primary: Option<&Header>, ss: u64) -> R<()> {
    header_check(b, ss)?;
    if b.alternate_lba() != 1 {
        return refuse("invalid primary GPT LBA");
    }
    let e = b.entries_lba();
    if e <= b.last_usable_lba() || e.wrapping_add(entries_sectors(b, ss)) > b.my_lba() {
        return refuse("invalid entries location");
    }
    if b.my_lba() <= b.last_usable_lba() {
        return refuse("invalid backup GPT LBA");
    }
    if primary.is_some_and(|p| !headers_equal(p, b)) {
        return refuse("backup GPT out of sync");
    }
    Ok(())
}

/// `grub_gpt_read_entries`: the array with a matching CRC. Sizes beyond the
/// disk fail as GRUB's read does, before anything is allocated.
fn read_entries<D: Disk>(disk: &mut D, h: &Header, geom: &Geometry) -> R<Vec<u8>> {
    let len = u64::from(h.num_entries())
        .checked_mul(u64::from(h.entry_size()))
        .filter(|&l| l <= u64::from(u32::MAX))
        .ok_or(GrubRefusal("out of memory"))?;
    let start = h.entries_lba();
    let fits = start
        .checked_mul(geom.sector_size)
        .and_then(|o| o.checked_add(len))
        .is_some_and(|end| end <= geom.sectors * geom.sector_size);
    if !fits {
        return refuse("attempt to read or write outside of disk");
    }
    let mut buf = vec![0u8; len as usize];
    if disk.read_at(start * geom.sector_size, &mut buf).is_err() {
        return refuse("failure reading sector");
    }
    if crc32fast::hash(&buf) != h.entries_crc() {
        return refuse("invalid GPT entry crc32");
    }
    Ok(buf)
}

fn read_header<D: Disk>(disk: &mut D, lba: u64, geom: &Geometry) -> R<Header> {
    let mut buf = vec![0u8; geom.sector_size as usize];
    let off = lba
        .checked_mul(geom.sector_size)
        .ok_or(GrubRefusal("attempt to read or write outside of disk"))?;
    disk.read_at(off, &mut buf)
        .map_err(|_| GrubRefusal("attempt to read or write outside of disk"))?;
    Ok(Header::from_sector(buf))
}

/// `grub_gpt_read_backup`: the backup header and entries, checked against the
/// primary's verdicts.
fn read_backup<D: Disk>(
    disk: &mut D,
    geom: &Geometry,
    primary: Option<&Header>,
    primary_entries: Option<&[u8]>,
) -> R<(Header, Vec<u8>)> {
    let lba = match primary {
        Some(p) if p.alternate_lba() >= geom.sectors => {
            return refuse("backup GPT located beyond last disk sector");
        }
        Some(p) => p.alternate_lba(),
        None => geom.last_lba(),
    };
    let b = read_header(disk, lba, geom)?;
    check_backup(&b, primary, geom.sector_size)?;
    if b.my_lba() != lba {
        return refuse("invalid backup GPT LBA");
    }
    let entries = read_entries(disk, &b, geom)?;
    if primary_entries.is_some_and(|pe| pe != entries.as_slice()) {
        return refuse("backup GPT out of sync");
    }
    Ok((b, entries))
}

/// `grub_gpt_repair` then `grub_gpt_update`, as far as they can fail: the copy
/// GRUB regenerates in memory must itself pass GRUB's checks.
fn check_repair(p: Option<&Header>, b: Option<&Header>, geom: &Geometry) -> R<()> {
    let ss = geom.sector_size;
    match (p, b) {
        (Some(_), Some(_)) => Ok(()),
        (Some(p), None) => {
            let bh = p.alternate_lba().max(geom.last_lba());
            if bh - entries_sectors(p, ss) <= p.last_usable_lba() {
                return refuse("Generated invalid GPT backup header");
            }
            Ok(())
        }
        (None, Some(b)) => {
            // The new primary: the backup's fields, header at its alternate
            // LBA (1), entries at LBA 2.
            if 2 + entries_sectors(b, ss) > b.first_usable_lba()
                || b.my_lba() <= b.last_usable_lba()
            {
                return refuse("Generated invalid GPT primary header");
            }
            Ok(())
        }
        (None, None) => refuse("No valid GPT"),
    }
}

/// Reads a disk as GRUB's `grub_gpt_read` + `grub_gpt_repair` do, with the
/// sector size GRUB would see (a block device's, else probed like [`crate::Gpt`]).
pub fn read<D: Disk>(disk: &mut D) -> Result<GrubView, GrubRefusal> {
    let len = disk
        .size_bytes()
        .map_err(|_| GrubRefusal("unknown disk size"))?;
    let ss = probe_sector_size(disk, len).map_err(|_| GrubRefusal("unknown sector size"))?;
    let geom = Geometry {
        sector_size: ss,
        sectors: len / ss,
    };
    if geom.sectors < 3 {
        return refuse("attempt to read or write outside of disk");
    }
    let p = read_header(disk, 1, &geom)?;
    let p_hdr = check_primary(&p, ss).map(|()| &p);
    let p_ents = match &p_hdr {
        Ok(h) => read_entries(disk, h, &geom),
        Err(e) => Err(e.clone()),
    };
    let backup = read_backup(
        disk,
        &geom,
        p_hdr.ok(),
        p_ents.as_ref().ok().map(Vec::as_slice),
    );
    let view = match (p_ents, backup) {
        (Ok(entries), b) => {
            let backup_valid = b.is_ok();
            check_repair(Some(&p), b.ok().as_ref().map(|(h, _)| h), &geom)?;
            GrubView {
                entry_size: p.entry_size() as usize,
                entries,
                primary_valid: true,
                backup_valid,
            }
        }
        (Err(_), Ok((b, entries))) => {
            check_repair(None, Some(&b), &geom)?;
            GrubView {
                entry_size: b.entry_size() as usize,
                entries,
                primary_valid: false,
                backup_valid: true,
            }
        }
        // Both failed: GRUB reports the primary's error.
        (Err(e), Err(_)) => return Err(e),
    };
    Ok(view)
}
