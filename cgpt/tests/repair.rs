//! `cgpt repair` restores a bad copy from the good one, byte for byte, as the real
//! cgpt does; the slot verbs repair first, like Flatcar's scripts.

mod common;
use common::*;

use cgpt::{FileDisk, Slot};

#[test]
fn every_single_region_corruption_is_repaired_byte_identically() {
    let dir = tempfile::tempdir().unwrap();
    let orig = reference_image(dir.path(), "orig.img");
    ok(ours(&["add", "-i", "3", "-P", "1", "-S", "1", s(&orig)]));
    let good = std::fs::read(&orig).unwrap();
    let len = good.len();
    let regions = [
        (
            "primary header",
            512 + 40,
            "Primary Header is updated.\nPrimary Entries is updated.\n",
        ),
        (
            "primary entries",
            1024 + 2 * 128 + 60,
            "Primary Entries is updated.\n",
        ),
        (
            "secondary entries",
            len - 512 - 16384 + 2 * 128 + 60,
            "Secondary Entries is updated.\n",
        ),
        (
            "secondary header",
            len - 512 + 40,
            "Secondary Entries is updated.\nSecondary Header is updated.\n",
        ),
    ];
    for (name, at, msg) in regions {
        let mut bad = good.clone();
        bad[at] ^= 0xff;
        let mine = dir.path().join("mine.img");
        let theirs = dir.path().join("theirs.img");
        std::fs::write(&mine, &bad).unwrap();
        std::fs::write(&theirs, &bad).unwrap();
        let o = ours(&["repair", s(&mine)]);
        assert_eq!((o.rc, o.stdout.as_str()), (0, msg), "{name}: {o:?}");
        assert_eq!(ok(real(&["repair", s(&theirs)])), msg, "{name}: real cgpt");
        assert_eq!(
            std::fs::read(&mine).unwrap(),
            good,
            "{name}: not restored to the original"
        );
        assert_eq!(
            sha(&mine),
            sha(&theirs),
            "{name}: differs from real cgpt's repair"
        );
        // A second repair has nothing to do.
        assert_eq!(ok(ours(&["repair", s(&mine)])), "");
    }
}

#[test]
fn a_stale_but_valid_backup_is_replaced_by_the_primary() {
    // State T3 of the reference: the backup holds a newer, self-consistent table.
    let dir = tempfile::tempdir().unwrap();
    let img = reference_image(dir.path(), "stale.img");
    let old = std::fs::read(&img).unwrap();
    ok(ours(&["add", "-i", "4", "-P", "2", "-T", "1", s(&img)]));
    let new = std::fs::read(&img).unwrap();
    let tail = old.len() - 33 * 512;
    let mut t3 = old.clone();
    t3[tail..].copy_from_slice(&new[tail..]);
    std::fs::write(&img, &t3).unwrap();
    let o = ours(&["show", "-i", "4", "-P", s(&img)]);
    assert_eq!(o.stdout, "0\n", "the primary wins");
    assert!(
        o.stderr
            .contains("secondary header: does not match the primary header"),
        "{}",
        o.stderr
    );
    let out = ok(ours(&["repair", s(&img)]));
    assert!(out.contains("Secondary Header is updated."), "{out}");
    assert_eq!(std::fs::read(&img).unwrap(), old);
}

#[test]
fn slot_verbs_repair_first_then_change() {
    let dir = tempfile::tempdir().unwrap();
    let img = reference_image(dir.path(), "slots.img");
    ok(ours(&["add", "-i", "3", "-P", "1", "-S", "1", s(&img)]));
    let mut b = std::fs::read(&img).unwrap();
    b[512 + 40] ^= 1; // corrupt the primary header
    std::fs::write(&img, b).unwrap();
    let mut disk = FileDisk::open_rw(&img).unwrap();
    assert!(cgpt::slot::set_next(&mut disk, Slot::B).unwrap());
    drop(disk);
    assert_eq!(
        real(&["show", s(&img)]).stderr,
        "",
        "real cgpt finds both copies valid"
    );
    assert_eq!(parse_hex16(&ok(real_attr(&img, 4))), 0x12);
    assert_eq!(parse_hex16(&ok(real_attr(&img, 3))), 0x101);
    // mark_good on an already good slot writes nothing.
    let mut disk = FileDisk::open_rw(&img).unwrap();
    cgpt::slot::mark_good(&mut disk, Slot::B).unwrap();
    let before = sha(&img);
    assert!(
        !cgpt::slot::mark_good(&mut disk, Slot::B).unwrap(),
        "no write for a good slot"
    );
    assert_eq!(sha(&img), before);
}

#[test]
fn a_4096_byte_sector_image_with_a_broken_primary_is_found_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("4k.img");
    let layout = cgpt::image::Layout::flatcar(16);
    cgpt::image::create(&img, layout.disk_bytes(16), 4096, &layout).unwrap();
    let good = std::fs::read(&img).unwrap();
    let mut bad = good.clone();
    bad[4096..4104].fill(0); // wipe the primary signature: the probe must use the backup
    std::fs::write(&img, &bad).unwrap();
    let mut disk = FileDisk::open_rw(&img).unwrap();
    let gpt = cgpt::Gpt::read(&mut disk).unwrap();
    assert_eq!(gpt.geometry().sector_size, 4096);
    assert!(gpt.health().primary_header.is_some() && gpt.health().secondary_header.is_none());
    assert_eq!(
        gpt.repair(&mut disk).unwrap(),
        vec!["Primary Header is updated.", "Primary Entries is updated."]
    );
    drop(disk);
    assert_eq!(std::fs::read(&img).unwrap(), good);
}
