//! Byte-compatibility with the real tools: Debian's cgpt (vboot-utils), sgdisk and
//! sfdisk read what we write, and our writes equal cgpt's byte for byte.

mod common;
use common::*;

const GOLDEN_SHA: &str = "d5036f49d329b473dd40cb6e840605984a6a0de0d4ee06be62b5a0fb1177324c";

#[test]
fn add_is_byte_identical_to_real_cgpt_and_readable_by_every_tool() {
    let dir = tempfile::tempdir().unwrap();
    let ours_img = reference_image(dir.path(), "ours.img");
    let real_img = dir.path().join("real.img");
    std::fs::copy(&ours_img, &real_img).unwrap();

    for args in [
        ["-i", "3", "-P", "1", "-T", "0", "-S", "1"],
        ["-i", "4", "-P", "2", "-T", "1", "-S", "0"],
    ] {
        let o = ours(&[&["add"], &args[..], &[s(&ours_img)]].concat());
        assert_eq!(
            (o.rc, o.stdout.as_str(), o.stderr.as_str()),
            (0, "", ""),
            "add prints nothing"
        );
        ok(real(&[&["add"], &args[..], &[s(&real_img)]].concat()));
    }
    assert_eq!(
        sha(&ours_img),
        sha(&real_img),
        "our image differs from real cgpt's"
    );
    assert_eq!(
        sha(&ours_img),
        GOLDEN_SHA,
        "image differs from the reference capture"
    );

    // Real cgpt reads our values back.
    for (i, want) in [(3, ["0x101", "1", "0", "1"]), (4, ["0x12", "2", "1", "0"])] {
        for (flag, w) in ["-A", "-P", "-T", "-S"].iter().zip(want) {
            let out = ok(real(&["show", "-i", &i.to_string(), flag, s(&ours_img)]));
            assert_eq!(out.trim(), w, "real cgpt show -i {i} {flag}");
        }
    }
    // sgdisk and sfdisk as well, in their exact words.
    assert_eq!(
        ok(run("sgdisk", &["-i", "3", s(&ours_img)])).trim_start(),
        golden("09_sgdisk_i3.out")
    );
    assert_eq!(
        ok(run("sgdisk", &["-i", "4", s(&ours_img)])).trim_start(),
        golden("09_sgdisk_i4.out")
    );
    let dump = ok(run("sfdisk", &["--dump", s(&ours_img)]));
    let want = golden("10_sfdisk_dump.out").replace("g.img", s(&ours_img));
    assert_eq!(dump, want);
}

#[test]
fn show_matches_the_golden_output() {
    let dir = tempfile::tempdir().unwrap();
    let img = reference_image(dir.path(), "g.img");
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
    ok(ours(&[
        "add",
        "-i",
        "4",
        "-P",
        "2",
        "-T",
        "1",
        "-S",
        "0",
        s(&img),
    ]));
    // vboot prints no Attr line for USR entries; we print Flatcar's, and nothing else differs.
    let flatcar_attr = |text: String| {
        text.replace(
            "UUID: 7130C94A-213A-4E5A-8E26-6CCE9662F132\n",
            "UUID: 7130C94A-213A-4E5A-8E26-6CCE9662F132\n                                  Attr: priority=1 tries=0 successful=1\n",
        )
        .replace(
            "UUID: E03DD35C-7C2D-4A47-B3FE-27F15780A57C\n",
            "UUID: E03DD35C-7C2D-4A47-B3FE-27F15780A57C\n                                  Attr: priority=2 tries=1 successful=0\n",
        )
    };
    assert_eq!(
        ok(ours(&["show", s(&img)])),
        flatcar_attr(golden("03_show.out"))
    );
    assert_eq!(
        ok(ours(&["show", "-v", s(&img)])),
        flatcar_attr(golden("06_show_v.out"))
    );
    assert_eq!(ok(ours(&["show", "-n", s(&img)])), golden("04_show_n.out"));
    assert_eq!(ok(ours(&["show", "-q", s(&img)])), golden("05_show_q.out"));
    for i in [3, 4] {
        for f in ["A", "B", "P", "R", "S", "T"] {
            let out = ok(ours(&[
                "show",
                "-i",
                &i.to_string(),
                &format!("-{f}"),
                s(&img),
            ]));
            assert_eq!(
                out,
                golden(&format!("07_show_i{i}_{f}.out")),
                "show -i {i} -{f}"
            );
        }
    }
    // Our show agrees with real cgpt's on every field of every partition.
    for i in ["1", "2", "3", "4", "6", "7", "9", "5"] {
        for f in ["-b", "-s", "-t", "-u", "-l", "-A"] {
            let a = ok(ours(&["show", "-i", i, f, s(&img)]));
            let b = ok(real(&["show", "-i", i, f, s(&img)]));
            assert_eq!(a, b, "show -i {i} {f}");
        }
    }
}

/// Retypes USR-A/USR-B as ChromeOS kernels so Debian's cgpt (which prioritizes only
/// kernels) can run the same prioritize calls as ours.
fn kernel_pair(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let a = reference_image(dir, "a.img");
    for i in ["3", "4"] {
        ok(real(&["add", "-i", i, "-t", "kernel", s(&a)]));
    }
    let b = dir.join("b.img");
    std::fs::copy(&a, &b).unwrap();
    (a, b)
}

#[test]
fn prioritize_sequence_matches_real_cgpt() {
    let dir = tempfile::tempdir().unwrap();
    let (mine, theirs) = kernel_pair(dir.path());
    let steps: &[&[&str]] = &[
        &["add", "-i", "3", "-P", "5", "-S", "1"],
        &["add", "-i", "4", "-P", "3", "-T", "2"],
        &["prioritize"],
        &["prioritize", "-i", "4"],
        &["prioritize", "-i", "3", "-P", "9"],
        &["add", "-i", "4", "-P", "9"],
        &["prioritize", "-i", "3", "-f"],
        &["prioritize", "-i", "4"],
        &["add", "-i", "3", "-P", "0"],
        &["add", "-i", "4", "-P", "0"],
        &["prioritize", "-i", "4"],
        &["prioritize", "-i", "3", "-P", "15"],
    ];
    for step in steps {
        ok(ours(&[*step, &[s(&mine)]].concat()));
        ok(real(&[*step, &[s(&theirs)]].concat()));
        assert_eq!(sha(&mine), sha(&theirs), "after {step:?}");
    }
}

#[test]
fn usr_prioritize_and_next_lifecycle_read_by_real_tools() {
    // The full life cycle of the reference (section 3.3), on USR-typed slots; each
    // state is checked through real cgpt and sgdisk.
    let dir = tempfile::tempdir().unwrap();
    let img = reference_image(dir.path(), "life.img");
    let expect = |a: u16, b: u16| {
        assert_eq!(parse_hex16(&ok(real_attr(&img, 3))), a, "USR-A");
        assert_eq!(parse_hex16(&ok(real_attr(&img, 4))), b, "USR-B");
        assert_eq!(sgdisk_attrs(&img, 3), u64::from(a) << 48);
        assert_eq!(sgdisk_attrs(&img, 4), u64::from(b) << 48);
    };
    // Fresh image: A P1 T0 S1, B all zero.
    ok(ours(&["add", "-i", "3", "-P", "1", "-S", "1", s(&img)]));
    expect(0x101, 0);
    assert_eq!(
        ok(ours(&["next", s(&img)])).trim(),
        "7130c94a-213a-4e5a-8e26-6cce9662f132"
    );
    expect(0x101, 0);
    // postinst for B: add -S0 -T1, prioritize -i 4.
    ok(ours(&["add", "-i", "4", "-S", "0", "-T", "1", s(&img)]));
    ok(ours(&["prioritize", "-i", "4", s(&img)]));
    expect(0x101, 0x12);
    // GRUB boots B and spends its try.
    assert_eq!(
        ok(ours(&["next", s(&img)])).trim(),
        "e03dd35c-7c2d-4a47-b3fe-27f15780a57c"
    );
    expect(0x101, 0x2);
    // B never blessed: the next boot falls back to A, nothing written.
    let before = sha(&img);
    assert_eq!(
        ok(ours(&["next", s(&img)])).trim(),
        "7130c94a-213a-4e5a-8e26-6cce9662f132"
    );
    assert_eq!(sha(&img), before);
    // Bless B instead (setgoodroot): add -S1 -T0, prioritize -i 4.
    ok(ours(&["add", "-i", "4", "-S", "1", "-T", "0", s(&img)]));
    ok(ours(&["prioritize", "-i", "4", s(&img)]));
    expect(0x101, 0x102);
    // Nothing eligible: a clear error and exit 1.
    ok(ours(&["add", "-i", "3", "-P", "0", s(&img)]));
    ok(ours(&["add", "-i", "4", "-P", "0", s(&img)]));
    let o = ours(&["next", s(&img)]);
    assert_eq!(o.rc, 1);
    assert!(
        o.stderr.starts_with("ERROR: no such partition"),
        "{}",
        o.stderr
    );
}

#[test]
fn next_writes_what_real_cgpt_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mine = reference_image(dir.path(), "m.img");
    ok(ours(&[
        "add",
        "-i",
        "3",
        "-P",
        "2",
        "-T",
        "3",
        "-S",
        "1",
        s(&mine),
    ]));
    let theirs = dir.path().join("t.img");
    std::fs::copy(&mine, &theirs).unwrap();
    ok(ours(&["next", s(&mine)]));
    ok(real(&["add", "-i", "3", "-T", "2", s(&theirs)]));
    assert_eq!(sha(&mine), sha(&theirs));
}

#[test]
fn find_like_cgpt() {
    let dir = tempfile::tempdir().unwrap();
    let img = reference_image(dir.path(), "disk0.img");
    for args in [
        vec!["find", "-t", USR],
        vec!["find", "-l", "USR-B"],
        vec!["find", "-n", "-u", "e03dd35c-7c2d-4a47-b3fe-27f15780a57c"],
        vec!["find", "-1", "-t", USR],
        vec!["find", "-l", "nope"],
    ] {
        let a = ours(&[&args[..], &[s(&img)]].concat());
        let b = real(&[&args[..], &[s(&img)]].concat());
        assert_eq!((a.rc, &a.stdout), (b.rc, &b.stdout), "{args:?}");
    }
    assert_eq!(
        ok(ours(&["find", "-t", "coreos-usr", s(&img)])),
        format!("{0}3\n{0}4\n", s(&img))
    );
}

#[test]
fn images_we_create_are_valid_for_every_tool() {
    let dir = tempfile::tempdir().unwrap();
    for ss in [512u64, 4096] {
        let img = dir.path().join(format!("new{ss}.img"));
        let layout = cgpt::image::Layout::flatcar(16);
        cgpt::image::create(&img, layout.disk_bytes(16), ss, &layout).unwrap();
        let mut disk = cgpt::FileDisk::open_rw(&img).unwrap();
        let gpt = cgpt::Gpt::read(&mut disk).unwrap();
        assert!(gpt.health().is_clean(), "{ss}: {}", gpt.health());
        assert_eq!(gpt.geometry().sector_size, ss);
        let slots = cgpt::slot::read_slots(&mut disk).unwrap();
        assert_eq!(
            slots[0].entry.attrs.to_string(),
            "priority=1 tries=0 successful=1"
        );
        cgpt::slot::set_next(&mut disk, cgpt::Slot::B).unwrap();
        drop(disk);
        // The gpt crate, an independent reader, sees what we wrote.
        let lb = if ss == 512 {
            gpt::disk::LogicalBlockSize::Lb512
        } else {
            gpt::disk::LogicalBlockSize::Lb4096
        };
        let other = gpt::GptConfig::new()
            .logical_block_size(lb)
            .open(&img)
            .unwrap();
        let flags: Vec<u64> = [3u32, 4]
            .iter()
            .map(|i| other.partitions()[i].flags)
            .collect();
        assert_eq!(flags, vec![0x0101 << 48, 0x0012 << 48], "{ss}");
        if ss == 512 {
            let dump = ok(run("sfdisk", &["--dump", s(&img)]));
            assert!(
                dump.contains("name=\"USR-B\", attrs=\"GUID:49,52\""),
                "{dump}"
            );
            assert!(
                dump.contains("name=\"USR-A\", attrs=\"GUID:48,56\""),
                "{dump}"
            );
            // Debian's cgpt and sgdisk assume 512-byte sectors for image files.
            assert_eq!(parse_hex16(&ok(real_attr(&img, 4))), 0x12);
            let v = ok(run("sgdisk", &["-v", s(&img)]));
            assert!(v.contains("No problems found"), "{v}");
        }
    }
}
