//! `cgpt resize` (Flatcar's verb): after the disk grew, the backup GPT moves to
//! the end and ROOT grows. sgdisk's `-e` plus a re-created partition is the
//! independent oracle; real cgpt, sgdisk, sfdisk and a model of GRUB read every
//! crash state of our write as the old or the new table.

mod common;
#[path = "common/grub_model.rs"]
mod grub_model;
use common::*;

use cgpt::disk::{LoggedOp, MemDisk, WriteLog};

const ROOT_TYPE: &str = "3884DD41-8582-4404-B9A8-E9B84F2DF50E";
const GROWN: u64 = 96 << 20;

/// The reference image, grown from 64 to 96 MiB (a VM disk enlarged).
fn grown_image(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let img = reference_image(dir, name);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(GROWN)
        .unwrap();
    img
}

#[test]
fn resize_equals_sgdisk_and_every_tool_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let ours_img = grown_image(dir.path(), "ours.img");
    let sg_img = dir.path().join("sg.img");
    std::fs::copy(&ours_img, &sg_img).unwrap();
    // Before: real cgpt calls the backup invalid (it is not at the end).
    let before = real(&["show", s(&ours_img)]);
    assert!(
        before.stderr.contains("Secondary GPT header is invalid"),
        "{before:?}"
    );

    let o = ours(&["resize", "-i", "9", s(&ours_img)]);
    assert_eq!((o.rc, o.stdout.as_str(), o.stderr.as_str()), (0, "", ""));

    // The same change made by sgdisk: backup to the end, ROOT re-created to the end.
    ok(run("sgdisk", &["-e", s(&sg_img)]));
    ok(run(
        "sgdisk",
        &[
            "-d",
            "9",
            "-n",
            "9:110592:0",
            "-t",
            &format!("9:{ROOT_TYPE}"),
            "-u",
            "9:99999999-9999-9999-9999-999999999999",
            "-c",
            "9:ROOT",
            s(&sg_img),
        ],
    ));
    let (a, b) = (
        std::fs::read(&ours_img).unwrap(),
        std::fs::read(&sg_img).unwrap(),
    );
    assert_eq!(a.len(), b.len());
    assert!(a[512..] == b[512..], "GPT regions differ from sgdisk's");
    // Both protective MBRs now cover the whole disk.
    let pmbr_size = |img: &[u8]| u32::from_le_bytes(img[458..462].try_into().unwrap());
    assert_eq!(pmbr_size(&a), (GROWN / 512 - 1) as u32);
    assert_eq!(pmbr_size(&a), pmbr_size(&b));

    let show = real(&["show", s(&ours_img)]);
    assert_eq!(
        (show.rc, show.stderr.as_str()),
        (0, ""),
        "real cgpt: {show:?}"
    );
    assert!(
        show.stdout.contains(&format!(
            "{:>12}{:>12}{:>8}  Label: \"ROOT\"",
            110592,
            GROWN / 512 - 33 - 110592,
            9
        )),
        "{}",
        show.stdout
    );
    assert!(ok(run("sgdisk", &["-v", s(&ours_img)])).contains("No problems found"));
    assert!(grub_model::grub_read(&a).is_ok());

    // Nothing left to gain: a second run writes nothing.
    let sum = sha(&ours_img);
    ok(ours(&["resize", "-i", "9", s(&ours_img)]));
    assert_eq!(sha(&ours_img), sum);
}

#[test]
fn less_than_the_minimum_is_left_alone_like_flatcar() {
    let dir = tempfile::tempdir().unwrap();
    let img = reference_image(dir.path(), "small.img");
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.set_len((64 << 20) + (1 << 20)).unwrap(); // 1 MiB more: below the 2 MiB default
    let sum = sha(&img);
    ok(ours(&["resize", "-i", "9", s(&img)]));
    assert_eq!(sha(&img), sum, "grew by less than 2 MiB");
    // -m lowers the threshold.
    ok(ours(&["resize", "-m", "4096", "-i", "9", s(&img)]));
    assert_ne!(sha(&img), sum);
    assert_eq!(
        ok(real(&["show", "-i", "9", "-s", s(&img)])).trim(),
        (20447 + 2048).to_string()
    );
    // A partition followed by another can only grow into the gap (none here).
    let sum = sha(&img);
    ok(ours(&["resize", "-m", "0", "-i", "3", s(&img)]));
    assert_eq!(sha(&img), sum);
}

#[test]
fn resize_refuses_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let img = grown_image(dir.path(), "r.img");
    for (args, msg) in [
        (vec!["resize", s(&img)], "not a partition device"),
        (vec!["resize", "-i", "5", s(&img)], "unused"),
        (vec!["resize", "-i", "9"], "missing partition argument"),
        (
            vec!["resize", "-m", "x", "-i", "9", s(&img)],
            "invalid argument to -m",
        ),
    ] {
        let o = ours(&args);
        assert_eq!(o.rc, 1, "{args:?}");
        assert!(o.stderr.contains(msg), "{args:?}: {}", o.stderr);
    }
    // Both headers gone: nothing to resize from.
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[512..1024].fill(0);
    std::fs::write(&img, &bytes).unwrap();
    let o = ours(&["resize", "-i", "9", s(&img)]);
    assert_eq!(o.rc, 1);
    assert!(
        o.stderr.contains("GPT_ERROR_INVALID_HEADERS"),
        "{}",
        o.stderr
    );
}

#[test]
fn every_crash_point_of_a_resize_reads_as_old_or_new() {
    let dir = tempfile::tempdir().unwrap();
    let img = grown_image(dir.path(), "c.img");
    let old = std::fs::read(&img).unwrap();
    let mut log = WriteLog::new(MemDisk(old.clone()));
    let grown = cgpt::resize::grow(&mut log, 9, 0, |_| Ok(()))
        .unwrap()
        .unwrap();
    let ops = log.ops().to_vec();
    let old_end = 131038u64;
    assert_eq!(
        (grown.old_last_lba, grown.new_last_lba),
        (old_end, GROWN / 512 - 34)
    );
    // Secondary first, then the primary header, then its entries, then the PMBR.
    let offsets: Vec<u64> = ops
        .iter()
        .filter_map(|o| match o {
            LoggedOp::Write { offset, .. } => Some(offset / 512),
            LoggedOp::Sync => None,
        })
        .collect();
    assert_eq!(offsets, vec![GROWN / 512 - 33, GROWN / 512 - 1, 1, 2, 0]);

    let path = dir.path().join("state.img");
    let mut n = 0;
    cgpt::disk::for_each_crash_state(&old, &ops, |label, bytes| {
        n += 1;
        std::fs::write(&path, &bytes).unwrap();
        let c = real(&["show", "-i", "9", "-s", s(&path)]);
        assert_eq!(c.rc, 0, "{label}: real cgpt fails: {c:?}");
        let size: u64 = c.stdout.trim().parse().unwrap();
        let last = 110592 + size - 1;
        assert!(
            last == old_end || last == grown.new_last_lba,
            "{label}: cgpt sees {last}"
        );
        let mut d = MemDisk(bytes.clone());
        let mine = cgpt::Gpt::read(&mut d).unwrap().entry(9).unwrap().last_lba;
        assert_eq!(mine, last, "{label}: our reader and cgpt disagree");
        let (ents, _) = grub_model::grub_read(&bytes)
            .unwrap_or_else(|e| panic!("{label}: GRUB would fail: {e}"));
        let g = u64::from_le_bytes(ents[8 * 128 + 40..8 * 128 + 48].try_into().unwrap());
        assert!(
            g == old_end || g == grown.new_last_lba,
            "{label}: GRUB sees {g}"
        );
        let dump = ok(run("sfdisk", &["--dump", s(&path)]));
        assert!(
            dump.starts_with("label: gpt"),
            "{label}: sfdisk sees no GPT"
        );
    });
    assert!(n >= 10, "{n} crash states");
}
