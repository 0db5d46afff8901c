//! Power loss in the middle of our GPT write: every state a crash can leave must be
//! read by real cgpt, sgdisk, sfdisk, a model of Flatcar's GRUB, and our reader as
//! wholly the old table or wholly the new one.

mod common;
use common::*;

use cgpt::disk::{LoggedOp, MemDisk, WriteLog};
use cgpt::header::{Geometry, Header, Which};
use cgpt::{Gpt, Slot};

/// What Flatcar GRUB's `grub-core/lib/gpt.c` would use: the primary if its header
/// and entries are valid; otherwise the backup found through the primary's
/// alternate LBA, rejected when a valid primary header disagrees with it.
/// Returns the attributes of entry 4, or None if GRUB fails.
fn grub_view(img: &[u8]) -> Option<u64> {
    let ss = 512usize;
    let geom = Geometry {
        sector_size: 512,
        sectors: (img.len() / ss) as u64,
    };
    let hdr_at =
        |lba: u64| Header::from_sector(img[lba as usize * ss..(lba as usize + 1) * ss].to_vec());
    let entries_at = |lba: u64| &img[lba as usize * ss..lba as usize * ss + 16384];
    let attrs4 =
        |ents: &[u8]| u64::from_le_bytes(ents[3 * 128 + 48..3 * 128 + 56].try_into().unwrap());
    let p = hdr_at(1);
    let p_ok = p.check(Which::Primary, &geom).is_ok();
    let p_ents_ok = p_ok && crc32fast::hash(entries_at(p.entries_lba())) == p.entries_crc();
    if p_ok && p_ents_ok {
        return Some(attrs4(entries_at(p.entries_lba())));
    }
    let b_lba = if p_ok {
        p.alternate_lba()
    } else {
        geom.last_lba()
    };
    let b = hdr_at(b_lba);
    if b.check(Which::Secondary, &geom).is_err() {
        return None;
    }
    if p_ok && !p.same_shared_fields(&b) {
        return None; // "backup GPT out of sync"
    }
    let ents = entries_at(b.entries_lba());
    (crc32fast::hash(ents) == b.entries_crc()).then(|| attrs4(ents))
}

fn crash_states(old: &[u8], ops: &[LoggedOp]) -> Vec<(String, Vec<u8>)> {
    let mut states = Vec::new();
    cgpt::disk::for_each_crash_state(old, ops, |label, img| states.push((label.to_string(), img)));
    states
}

#[test]
fn every_crash_point_reads_as_old_or_new_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let img = reference_image(dir.path(), "base.img");
    ok(ours(&[
        "add",
        "-i",
        "3",
        "-P",
        "1",
        "-T",
        "0",
        "-S",
        "1",
        s(&img),
    ]));
    let old = std::fs::read(&img).unwrap();

    // The agent's real operation: make USR-B the next boot (postinst).
    let mut log = WriteLog::new(MemDisk(old.clone()));
    cgpt::slot::set_next(&mut log, Slot::B).unwrap();
    let ops = log.ops().to_vec();
    let new = log.into_inner().0;
    let (old_b, new_b) = (0u64, 0x0012u64 << 48);
    let writes = ops
        .iter()
        .filter(|o| matches!(o, LoggedOp::Write { .. }))
        .count();
    assert_eq!(
        writes, 4,
        "entries + header for each copy, and never the PMBR"
    );
    assert!(
        ops.iter()
            .all(|o| !matches!(o, LoggedOp::Write { offset: 0, .. })),
        "the protective MBR must not be written"
    );

    let states = crash_states(&old, &ops);
    assert!(states.len() >= 10, "{} crash states", states.len());
    let path = dir.path().join("crash.img");
    for (label, bytes) in &states {
        std::fs::write(&path, bytes).unwrap();
        let mut disk = MemDisk(bytes.clone());
        let gpt = Gpt::read(&mut disk).unwrap_or_else(|e| panic!("{label}: our reader fails: {e}"));
        let mine = gpt.entry(4).unwrap().attrs.0;

        let c = real_attr(&path, 4);
        assert_eq!(c.rc, 0, "{label}: real cgpt fails: {c:?}");
        let theirs = u64::from(parse_hex16(&c.stdout)) << 48;
        let sg = sgdisk_attrs(&path, 4);
        let dump = ok(run("sfdisk", &["--dump", s(&path)]));
        assert!(
            dump.starts_with("label: gpt"),
            "{label}: sfdisk sees no GPT:\n{dump}"
        );
        let sf = if dump.contains("name=\"USR-B\", attrs=\"GUID:49,52\"") {
            new_b
        } else {
            old_b
        };
        let grub =
            grub_view(bytes).unwrap_or_else(|| panic!("{label}: GRUB would fail to read the GPT"));

        assert!(
            mine == old_b || mine == new_b,
            "{label}: our reader sees {mine:#x}"
        );
        assert_eq!(
            [theirs, sg, sf, grub],
            [mine; 4],
            "{label}: cgpt, sgdisk, sfdisk, GRUB disagree with us"
        );
    }
    // Sanity: the sequence really moves from old to new, both through every reader.
    let mut d = MemDisk(new);
    assert_eq!(Gpt::read(&mut d).unwrap().entry(4).unwrap().attrs.0, new_b);
}

#[test]
fn a_naive_order_is_caught_by_the_grub_model() {
    // The model above must be able to fail: vboot cgpt's own order (primary header
    // first) leaves state T1, which GRUB rejects.
    let dir = tempfile::tempdir().unwrap();
    let img = reference_image(dir.path(), "t1.img");
    let old = std::fs::read(&img).unwrap();
    let mut log = WriteLog::new(MemDisk(old.clone()));
    cgpt::slot::set_next(&mut log, Slot::B).unwrap();
    let new = log.into_inner().0;
    let mut t1 = old.clone();
    t1[512..1024].copy_from_slice(&new[512..1024]); // only the new primary header landed
    assert_eq!(grub_view(&t1), None);
    assert_eq!(grub_view(&old), Some(0));
}
