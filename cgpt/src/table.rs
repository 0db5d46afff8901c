//! A GPT read from a disk: both copies, their health, a working entry array, and
//! the crash-safe write path.

use std::fmt;

use tracing::{debug, info};

use crate::attrs::Attributes;
use crate::disk::Disk;
use crate::entry::{ATTRS_OFFSET, Entry};
use crate::error::{EntriesProblem, Error};
use crate::guid;
use crate::header::{
    ENTRIES_BYTES, ENTRY_SIZE, Geometry, Header, HeaderProblem, NUM_ENTRIES, Which,
};

/// Sector sizes probed on image files, in order.
const PROBE_SECTOR_SIZES: [u64; 2] = [512, 4096];

/// What is wrong with each of the four GPT regions (`None` = fine).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    pub primary_header: Option<HeaderProblem>,
    pub primary_entries: Option<EntriesProblem>,
    pub secondary_header: Option<HeaderProblem>,
    pub secondary_entries: Option<EntriesProblem>,
}

impl Health {
    /// Both copies valid and in agreement.
    pub fn is_clean(&self) -> bool {
        *self == Health::default()
    }

    /// Whether a copy's header or entries are bad.
    pub fn copy_bad(&self, which: Which) -> bool {
        match which {
            Which::Primary => self.primary_header.is_some() || self.primary_entries.is_some(),
            Which::Secondary => self.secondary_header.is_some() || self.secondary_entries.is_some(),
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(p) = &self.primary_header {
            parts.push(format!("primary header: {p}"));
        }
        if let Some(p) = &self.primary_entries {
            parts.push(format!("primary entries: {p}"));
        }
        if let Some(p) = &self.secondary_header {
            parts.push(format!("secondary header: {p}"));
        }
        if let Some(p) = &self.secondary_entries {
            parts.push(format!("secondary entries: {p}"));
        }
        if parts.is_empty() {
            f.write_str("both copies valid")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

/// How a write treats a table whose copies disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Refuse unless both copies are valid and identical (cgpt add/prioritize).
    RequireClean,
    /// Rebuild a bad copy from the good one while writing (GRUB gptprio, cgpt repair).
    Repair,
}

/// A GPT as read from a disk, with a working copy of the entries to modify.
#[derive(Debug, Clone)]
pub struct Gpt {
    pub(crate) geom: Geometry,
    pub(crate) primary: Header,
    pub(crate) secondary: Header,
    pub(crate) health: Health,
    /// The entries as read from the valid copy.
    pub(crate) original: Vec<u8>,
    /// The entries with pending changes.
    pub(crate) working: Vec<u8>,
    /// Both arrays as read, valid or not (what `show -d` prints).
    pub(crate) raw_entries: [Vec<u8>; 2],
}

/// vboot's `CheckEntries`: the CRC, every used entry inside the usable range, no
/// overlaps, no duplicate unique GUIDs.
fn check_entries(entries: &[u8], hdr: &Header) -> Result<(), EntriesProblem> {
    let computed = crc32fast::hash(entries);
    if computed != hdr.entries_crc() {
        return Err(EntriesProblem::Crc {
            stored: hdr.entries_crc(),
            computed,
        });
    }
    check_layout(entries, hdr)
}

/// The structural half of `CheckEntries` (everything but the CRC).
pub(crate) fn check_layout(entries: &[u8], hdr: &Header) -> Result<(), EntriesProblem> {
    let used: Vec<Entry> = parse_entries(entries)
        .into_iter()
        .filter(Entry::is_used)
        .collect();
    for e in &used {
        if e.first_lba < hdr.first_usable_lba()
            || e.last_lba > hdr.last_usable_lba()
            || e.first_lba > e.last_lba
        {
            return Err(EntriesProblem::OutsideUsable {
                index: e.index,
                first: e.first_lba,
                last: e.last_lba,
            });
        }
    }
    for (i, a) in used.iter().enumerate() {
        for b in &used[i + 1..] {
            if a.first_lba <= b.last_lba && b.first_lba <= a.last_lba {
                return Err(EntriesProblem::Overlap {
                    a: a.index,
                    b: b.index,
                });
            }
            if a.unique_guid == b.unique_guid {
                return Err(EntriesProblem::DuplicateGuid {
                    a: a.index,
                    b: b.index,
                });
            }
        }
    }
    Ok(())
}

/// Decodes an entry array into its 128-byte entries, used or not, numbered from 1.
pub fn parse_entries(entries: &[u8]) -> Vec<Entry> {
    entries
        .chunks_exact(ENTRY_SIZE as usize)
        .zip(1..)
        .map(|(b, i)| Entry::parse(i, b))
        .collect()
}

pub(crate) fn read_sectors<D: Disk>(
    disk: &mut D,
    geom: &Geometry,
    lba: u64,
    len: usize,
    what: &str,
) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; len];
    let offset = lba
        .checked_mul(geom.sector_size)
        .ok_or(Error::TooSmall(0))?;
    disk.read_at(offset, &mut buf)
        .map_err(Error::io(format!("reading {what} at LBA {lba}")))?;
    Ok(buf)
}

pub(crate) fn probe_sector_size<D: Disk>(disk: &mut D, len: u64) -> Result<u64, Error> {
    if let Some(ss) = disk
        .sector_size()
        .map_err(Error::io("querying the sector size"))?
    {
        return Ok(ss);
    }
    let is_header = |disk: &mut D, at: u64| {
        let mut sig = [0u8; 8];
        disk.read_at(at, &mut sig).is_ok() && (&sig == b"EFI PART" || &sig == b"CHROMEOS")
    };
    // The primary header at LBA 1 tells first; a damaged primary leaves the backup at the end.
    for ss in PROBE_SECTOR_SIZES {
        if len >= ss * 2 && is_header(disk, ss) {
            return Ok(ss);
        }
    }
    for ss in PROBE_SECTOR_SIZES {
        if len >= ss * 2 && len.is_multiple_of(ss) && is_header(disk, len - ss) {
            return Ok(ss);
        }
    }
    Ok(PROBE_SECTOR_SIZES[0])
}

/// vboot's GptValidityCheck (R106) once the headers are judged: a copy's
/// entries count only if its own header is valid, and both arrays are judged
/// against the primary header when it is valid (so two valid copies with
/// different entries cannot both pass); if both headers are valid but neither
/// array matches, the secondary header is tried and the primary header is
/// blamed. Both valid but not the same table: the primary wins.
fn judge_entries(
    health: &mut Health,
    [primary, secondary]: [&Header; 2],
    [p_ent, s_ent]: [&[u8]; 2],
) -> Result<(), Error> {
    let (ph_ok, sh_ok) = (
        health.primary_header.is_none(),
        health.secondary_header.is_none(),
    );
    let good_hdr = if ph_ok { primary } else { secondary };
    let judge = |ok: bool, ents: &[u8]| {
        if ok {
            check_entries(ents, good_hdr).err()
        } else {
            Some(EntriesProblem::NoHeader)
        }
    };
    health.primary_entries = judge(ph_ok, p_ent);
    health.secondary_entries = judge(sh_ok, s_ent);
    if ph_ok && sh_ok && health.primary_entries.is_some() && health.secondary_entries.is_some() {
        let p = check_entries(p_ent, secondary).err();
        let s = check_entries(s_ent, secondary).err();
        if p.is_none() || s.is_none() {
            health.primary_header = Some(HeaderProblem::EntriesCrcMismatch);
            health.primary_entries = p;
            health.secondary_entries = s;
        }
    }
    if let (Some(p), Some(s)) = (&health.primary_entries, &health.secondary_entries) {
        return Err(Error::InvalidEntries {
            primary: p.clone(),
            secondary: s.clone(),
        });
    }
    if health.primary_header.is_none()
        && health.secondary_header.is_none()
        && !primary.same_shared_fields(secondary)
    {
        health.secondary_header = Some(HeaderProblem::Mismatch);
    }
    Ok(())
}

impl Gpt {
    /// Reads and checks both copies. Fails only when no usable table is left (both
    /// headers or both entry arrays invalid); a single bad copy shows in [`Gpt::health`].
    pub fn read<D: Disk>(disk: &mut D) -> Result<Gpt, Error> {
        let len = disk
            .size_bytes()
            .map_err(Error::io("reading the disk size"))?;
        let sector_size = probe_sector_size(disk, len)?;
        let geom = Geometry {
            sector_size,
            sectors: len / sector_size,
        };
        // PMBR, 2 headers, 2 arrays and at least one usable sector.
        if geom.sectors < 4 + 2 * geom.entries_sectors() {
            return Err(Error::TooSmall(len));
        }
        let ss = sector_size as usize;
        let primary = Header::from_sector(read_sectors(disk, &geom, 1, ss, "the primary header")?);
        let secondary = Header::from_sector(read_sectors(
            disk,
            &geom,
            geom.last_lba(),
            ss,
            "the secondary header",
        )?);
        let mut health = Health {
            primary_header: primary.check(Which::Primary, &geom).err(),
            secondary_header: secondary.check(Which::Secondary, &geom).err(),
            ..Health::default()
        };
        let (ph_ok, sh_ok) = (
            health.primary_header.is_none(),
            health.secondary_header.is_none(),
        );
        if !ph_ok && !sh_ok {
            return Err(Error::InvalidHeaders {
                primary: health.primary_header.unwrap(),
                secondary: health.secondary_header.unwrap(),
            });
        }
        // A valid primary header bounds its entries LBA; otherwise use the standard place.
        let p_lba = if ph_ok {
            primary.entries_lba()
        } else {
            geom.default_entries_lba(Which::Primary)
        };
        let p_ent = read_sectors(disk, &geom, p_lba, ENTRIES_BYTES, "the primary entries")?;
        let s_lba = geom.default_entries_lba(Which::Secondary);
        let s_ent = read_sectors(disk, &geom, s_lba, ENTRIES_BYTES, "the secondary entries")?;

        judge_entries(&mut health, [&primary, &secondary], [&p_ent, &s_ent])?;
        let original = if health.primary_entries.is_none() {
            p_ent.clone()
        } else {
            s_ent.clone()
        };
        debug!(%health, sector_size, "read GPT");
        Ok(Gpt {
            geom,
            primary,
            secondary,
            health,
            working: original.clone(),
            original,
            // vboot does not read the array of a copy whose header failed.
            raw_entries: [
                if ph_ok { p_ent } else { vec![0; ENTRIES_BYTES] },
                if sh_ok { s_ent } else { vec![0; ENTRIES_BYTES] },
            ],
        })
    }

    /// Sector size and disk length.
    pub fn geometry(&self) -> Geometry {
        self.geom
    }

    /// Which regions are bad and why.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The header of the copy in use (primary unless it is bad).
    pub fn header(&self) -> &Header {
        if self.health.primary_header.is_none() {
            &self.primary
        } else {
            &self.secondary
        }
    }

    /// A copy's header as read, whether valid or not.
    pub fn raw_header(&self, which: Which) -> &Header {
        match which {
            Which::Primary => &self.primary,
            Which::Secondary => &self.secondary,
        }
    }

    /// A copy's entry array as read, whether valid or not.
    pub fn raw_entries(&self, which: Which) -> &[u8] {
        match which {
            Which::Primary => &self.raw_entries[0],
            Which::Secondary => &self.raw_entries[1],
        }
    }

    /// All 128 entries (with pending changes), used or not.
    pub fn all_entries(&self) -> Vec<Entry> {
        parse_entries(&self.working)
    }

    /// The used entries, in index order.
    pub fn entries(&self) -> Vec<Entry> {
        self.all_entries()
            .into_iter()
            .filter(Entry::is_used)
            .collect()
    }

    /// Entry `index` (1-based), used or not.
    pub fn entry(&self, index: u32) -> Result<Entry, Error> {
        if !(1..=NUM_ENTRIES).contains(&index) {
            return Err(Error::InvalidPartition(index));
        }
        let at = (index as usize - 1) * ENTRY_SIZE as usize;
        Ok(Entry::parse(
            index,
            &self.working[at..at + ENTRY_SIZE as usize],
        ))
    }

    /// Entry `index`, which must hold a partition.
    pub fn used_entry(&self, index: u32) -> Result<Entry, Error> {
        let e = self.entry(index)?;
        if !e.is_used() {
            return Err(Error::UnusedPartition(index));
        }
        Ok(e)
    }

    /// Replaces the attribute field of a used entry (in memory until [`Gpt::write`]).
    pub fn set_attributes(&mut self, index: u32, attrs: Attributes) -> Result<(), Error> {
        self.used_entry(index)?;
        let at = (index as usize - 1) * ENTRY_SIZE as usize + ATTRS_OFFSET;
        self.working[at..at + 8].copy_from_slice(&attrs.0.to_le_bytes());
        Ok(())
    }

    /// Replaces every field of a used or unused entry (`cgpt add -t -u -l -b -s`).
    pub fn set_entry(&mut self, e: &Entry) -> Result<(), Error> {
        self.entry(e.index)?;
        let units: Vec<u16> = e.label.encode_utf16().collect();
        if units.len() > 36 {
            return Err(Error::LabelTooLong(e.label.clone()));
        }
        let at = (e.index as usize - 1) * ENTRY_SIZE as usize;
        let b = &mut self.working[at..at + ENTRY_SIZE as usize];
        b[0..16].copy_from_slice(&guid::to_disk(&e.type_guid));
        b[16..32].copy_from_slice(&guid::to_disk(&e.unique_guid));
        b[32..40].copy_from_slice(&e.first_lba.to_le_bytes());
        b[40..48].copy_from_slice(&e.last_lba.to_le_bytes());
        b[48..56].copy_from_slice(&e.attrs.0.to_le_bytes());
        b[56..128].fill(0);
        for (i, u) in units.iter().enumerate() {
            b[56 + 2 * i..58 + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
        Ok(())
    }

    /// Whether there are changes not yet written.
    pub fn is_modified(&self) -> bool {
        self.working != self.original
    }

    /// The header a copy gets on the next write: itself with a new entries CRC if it
    /// was valid, else rebuilt from the good header.
    fn next_header(&self, which: Which, entries_crc: u32) -> Header {
        let mut h = if self.health_header(which).is_some() {
            self.header().for_copy(which, &self.geom)
        } else {
            self.raw_header(which).clone()
        };
        h.set_entries_crc(entries_crc);
        h
    }

    fn health_header(&self, which: Which) -> &Option<HeaderProblem> {
        match which {
            Which::Primary => &self.health.primary_header,
            Which::Secondary => &self.health.secondary_header,
        }
    }

    /// Writes the table crash-safely and reads it back.
    ///
    /// Order: primary entries, barrier, primary header, barrier, secondary entries,
    /// secondary header, barrier. The primary header is the commit record: every
    /// prefix of this sequence (and either order of the last two writes) leaves a
    /// state that cgpt, sgdisk, sfdisk and GRUB all read as wholly old or wholly new.
    /// The protective MBR is never written. Nothing is written when nothing changed
    /// and both copies are sound.
    pub fn write<D: Disk>(&self, disk: &mut D, mode: WriteMode) -> Result<bool, Error> {
        if !self.health.is_clean() && mode == WriteMode::RequireClean {
            return Err(Error::NeedsRepair(self.health.clone()));
        }
        if !self.is_modified() && self.health.is_clean() {
            debug!("GPT unchanged, nothing to write");
            return Ok(false);
        }
        check_layout(&self.working, self.header()).map_err(Error::BadChange)?;
        let crc = crc32fast::hash(&self.working);
        let p_hdr = self.next_header(Which::Primary, crc);
        let s_hdr = self.next_header(Which::Secondary, crc);
        write_groups(
            disk,
            self.geom.sector_size,
            &[
                &[Region::new(
                    p_hdr.entries_lba(),
                    &self.working,
                    "the primary entries",
                )],
                &[Region::new(1, p_hdr.as_bytes(), "the primary header")],
                &[
                    Region::new(s_hdr.entries_lba(), &self.working, "the secondary entries"),
                    Region::new(
                        self.geom.last_lba(),
                        s_hdr.as_bytes(),
                        "the secondary header",
                    ),
                ],
            ],
        )?;
        self.verify_written(disk)?;
        info!(entries_crc = format_args!("{crc:#010x}"), "GPT written");
        Ok(true)
    }

    pub(crate) fn verify_written<D: Disk>(&self, disk: &mut D) -> Result<(), Error> {
        let back = Gpt::read(disk)?;
        if !back.health.is_clean() {
            return Err(Error::VerifyFailed(back.health.to_string()));
        }
        if back.working != self.working {
            return Err(Error::VerifyFailed(
                "entries that differ from what was written".into(),
            ));
        }
        Ok(())
    }

    /// `cgpt repair`: rewrites the bad regions from the good copy. Returns cgpt's
    /// message for each region restored (empty when nothing was wrong).
    pub fn repair<D: Disk>(&self, disk: &mut D) -> Result<Vec<&'static str>, Error> {
        let h = &self.health;
        let mut done = Vec::new();
        if h.primary_header.is_some() {
            done.push("Primary Header is updated.");
        }
        if h.primary_entries.is_some() {
            done.push("Primary Entries is updated.");
        }
        if h.secondary_entries.is_some() {
            done.push("Secondary Entries is updated.");
        }
        if h.secondary_header.is_some() {
            done.push("Secondary Header is updated.");
        }
        if done.is_empty() {
            return Ok(done);
        }
        // Repair writes the unchanged entries everywhere, so good regions are rewritten
        // with identical bytes while bad ones are restored, in the safe order.
        let mut fixed = self.clone();
        fixed.working = self.original.clone();
        fixed.write(disk, WriteMode::Repair)?;
        info!(?done, "GPT repaired");
        Ok(done)
    }
}

/// One region of a table write: the bytes and the LBA they go to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Region<'a> {
    lba: u64,
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Region<'a> {
    pub(crate) fn new(lba: u64, bytes: &'a [u8], what: &'static str) -> Self {
        Region { lba, bytes, what }
    }
}

/// Writes each group of regions, then a barrier: a later group never reaches the
/// disk before an earlier one, which is what every crash-safety argument relies on.
pub(crate) fn write_groups<D: Disk>(
    disk: &mut D,
    sector_size: u64,
    groups: &[&[Region<'_>]],
) -> Result<(), Error> {
    for group in groups {
        for r in *group {
            let offset = r.lba.checked_mul(sector_size).ok_or(Error::TooSmall(0))?;
            disk.write_at(offset, r.bytes)
                .map_err(Error::io(format!("writing {}", r.what)))?;
        }
        let what = group.last().map_or("nothing", |r| r.what);
        disk.sync()
            .map_err(Error::io(format!("writing {what} (sync)")))?;
    }
    Ok(())
}
