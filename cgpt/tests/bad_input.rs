//! Bad input gets a clear error, exit code 1, and an unchanged file.

mod common;
use common::*;

use std::path::Path;

use cgpt::header::{Geometry, Header, Which};

/// Rewrites both copies of the table of a 512-byte-sector image through `f`, which
/// gets (header sector, entries) and may change either; CRCs are then recomputed.
fn patch(img: &Path, f: impl Fn(&mut Vec<u8>, &mut [u8])) {
    let mut b = std::fs::read(img).unwrap();
    let geom = Geometry {
        sector_size: 512,
        sectors: (b.len() / 512) as u64,
    };
    for which in [Which::Primary, Which::Secondary] {
        let h_at = geom.header_lba(which) as usize * 512;
        let e_at = geom.default_entries_lba(which) as usize * 512;
        let mut hdr = b[h_at..h_at + 512].to_vec();
        let mut ents = b[e_at..e_at + 16384].to_vec();
        f(&mut hdr, &mut ents);
        let mut h = Header::from_sector(hdr);
        h.set_entries_crc(crc32fast::hash(&ents));
        b[h_at..h_at + 512].copy_from_slice(h.as_bytes());
        b[e_at..e_at + 16384].copy_from_slice(&ents);
    }
    std::fs::write(img, b).unwrap();
}

fn expect_refusal(img: &Path, args: &[&str], stderr_has: &str) {
    let before = sha(img);
    let o = ours(&[args, &[s(img)]].concat());
    assert_eq!(o.rc, 1, "{args:?}: {o:?}");
    assert!(
        o.stderr.lines().any(|l| l.starts_with("ERROR: ")),
        "{args:?}: {}",
        o.stderr
    );
    assert!(
        o.stderr.contains(stderr_has),
        "{args:?}: want {stderr_has:?} in {:?}",
        o.stderr
    );
    assert_eq!(sha(img), before, "{args:?} changed the file");
}

const ADD: &[&str] = &["add", "-i", "4", "-P", "2", "-T", "1", "-S", "0"];

#[test]
fn not_a_gpt() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("zero.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    expect_refusal(
        &img,
        ADD,
        "GPT_ERROR_INVALID_HEADERS (primary header: bad signature",
    );
    expect_refusal(&img, &["show"], "GPT_ERROR_INVALID_HEADERS");
    let tiny = dir.path().join("tiny.img");
    std::fs::write(&tiny, [0u8; 1000]).unwrap();
    expect_refusal(&tiny, &["show"], "too small to hold a GPT");
}

#[test]
fn truncated_image() {
    let dir = tempfile::tempdir().unwrap();
    let img = reference_image(dir.path(), "t.img");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    expect_refusal(&img, ADD, "GPT_ERROR_INVALID_HEADERS");
    // Real cgpt agrees that this is not a usable GPT.
    assert_eq!(real(&["show", s(&img)]).rc, 1);
}

#[test]
fn entry_size_and_count_out_of_spec() {
    let dir = tempfile::tempdir().unwrap();
    for (at, value, msg) in [
        (84, 256u32, "entry size 256 is not 128"),
        (80, 64, "number of entries 64 is not 128"),
    ] {
        let img = reference_image(dir.path(), "e.img");
        patch(&img, |h, _| {
            h[at..at + 4].copy_from_slice(&value.to_le_bytes())
        });
        expect_refusal(&img, ADD, msg);
        expect_refusal(&img, &["prioritize", "-i", "4"], msg);
        assert_eq!(real(&["show", s(&img)]).rc, 1, "real cgpt rejects it too");
    }
}

#[test]
fn overlapping_entries_and_duplicate_guids() {
    let dir = tempfile::tempdir().unwrap();
    let img = reference_image(dir.path(), "o.img");
    // Entry 4 starts inside entry 3.
    patch(&img, |_, e| {
        e[3 * 128 + 32..3 * 128 + 40].copy_from_slice(&30000u64.to_le_bytes())
    });
    expect_refusal(&img, ADD, "partitions 3 and 4 overlap");
    assert_eq!(real(&["show", s(&img)]).rc, 1);

    let img = reference_image(dir.path(), "d.img");
    patch(&img, |_, e| {
        let g: [u8; 16] = e[2 * 128 + 16..2 * 128 + 32].try_into().unwrap();
        e[3 * 128 + 16..3 * 128 + 32].copy_from_slice(&g);
    });
    expect_refusal(&img, ADD, "partitions 3 and 4 share a unique GUID");
}

#[test]
fn corrupt_copies() {
    let dir = tempfile::tempdir().unwrap();
    let img = reference_image(dir.path(), "c.img");
    let len = std::fs::metadata(&img).unwrap().len();
    let flip = |img: &Path, at: u64| {
        let mut b = std::fs::read(img).unwrap();
        b[at as usize] ^= 0x55;
        std::fs::write(img, b).unwrap();
    };
    // One copy corrupt: reading works (with a warning), changing refuses until repair.
    flip(&img, len - 512 + 16); // the secondary header's CRC
    let o = ours(&["show", "-i", "3", "-P", s(&img)]);
    assert_eq!(o.rc, 0);
    assert!(
        o.stderr
            .contains("WARNING: Secondary GPT header is invalid"),
        "{}",
        o.stderr
    );
    expect_refusal(
        &img,
        ADD,
        "please run 'cgpt repair' before adding anything.",
    );
    // Real cgpt returns 0 here and does nothing; we say it failed.
    expect_refusal(&img, &["prioritize", "-i", "4"], "please run 'cgpt repair'");
    // Both copies corrupt: nothing to trust.
    flip(&img, 512 + 16);
    expect_refusal(&img, &["show"], "GPT_ERROR_INVALID_HEADERS");
    expect_refusal(&img, &["repair"], "GPT_ERROR_INVALID_HEADERS");
    // Both entry arrays corrupt.
    let img = reference_image(dir.path(), "ce.img");
    flip(&img, 1024 + 300);
    flip(&img, len - 512 - 16384 + 300);
    expect_refusal(&img, &["show"], "GPT_ERROR_INVALID_ENTRIES");
}

#[test]
fn bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let img = reference_image(dir.path(), "a.img");
    let o = ours(&["add", "-i", "4", "-P", "16", s(&img)]);
    assert_eq!(o.stderr, "ERROR: value for -P must be between 0 and 15\n");
    assert!(
        o.stdout.contains("Usage: cgpt add [OPTIONS] DRIVE"),
        "usage goes to stdout"
    );
    expect_refusal(
        &img,
        &["add", "-i", "4", "-P", "16"],
        "value for -P must be between 0 and 15",
    );
    expect_refusal(
        &img,
        &["add", "-i", "4", "-T", "99"],
        "value for -T must be between 0 and 15",
    );
    expect_refusal(
        &img,
        &["add", "-i", "4", "-S", "2"],
        "value for -S must be between 0 and 1",
    );
    expect_refusal(
        &img,
        &["add", "-i", "4", "-P", "abc"],
        "invalid argument to -P: \"abc\"",
    );
    expect_refusal(
        &img,
        &["add", "-i", "4", "-X", "1"],
        "unrecognized option: -X",
    );
    expect_refusal(
        &img,
        &["prioritize", "-i", "4", "-P", "16"],
        "value for -P must be between 1 and 15",
    );
    expect_refusal(
        &img,
        &["add", "-i", "129", "-P", "1"],
        "invalid partition number: 129",
    );
    expect_refusal(
        &img,
        &["add", "-i", "5", "-P", "1"],
        "-t, -b, and -s options are required for new partitions",
    );
    expect_refusal(
        &img,
        &["prioritize", "-i", "6"],
        "partition 6 is not a Flatcar USR or ChromeOS kernel partition",
    );
    expect_refusal(
        &img,
        &["prioritize", "-i", "5"],
        "partition 5 does not exist",
    );
    // An attribute change that would break the table is refused before writing.
    expect_refusal(
        &img,
        &["add", "-i", "4", "-b", "20480"],
        "refusing to write an invalid table: partitions 3 and 4 overlap",
    );
    let o = ours(&["add", "-P", "1"]);
    assert_eq!(
        (o.rc, o.stderr.as_str()),
        (1, "ERROR: missing drive argument\n")
    );
    let o = ours(&["show", "/nonexistent.img"]);
    assert_eq!(
        (o.rc, o.stderr.as_str()),
        (
            1,
            "ERROR: Can't open /nonexistent.img: No such file or directory (os error 2)\n"
        )
    );
    let o = ours(&["bogus"]);
    assert_eq!(o.rc, 1);
}

#[test]
fn read_only_file() {
    let dir = tempfile::tempdir().unwrap();
    let img = reference_image(dir.path(), "ro.img");
    let before = sha(&img);
    let o = if nix::unistd::geteuid().is_root() {
        // Root ignores permission bits: drop to nobody, who may read but not write.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o644)).unwrap();
        let bin = env!("CARGO_BIN_EXE_cgpt");
        let args = [
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            bin,
            "add",
            "-i",
            "4",
            "-P",
            "2",
            s(&img),
        ];
        let shown = run(
            "setpriv",
            &[
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                bin,
                "show",
                "-i",
                "3",
                "-l",
                s(&img),
            ],
        );
        assert_eq!(ok(shown), "USR-A\n", "reading needs no write access");
        run("setpriv", &args)
    } else {
        let mut p = std::fs::metadata(&img).unwrap().permissions();
        p.set_readonly(true);
        std::fs::set_permissions(&img, p).unwrap();
        ours(&["add", "-i", "4", "-P", "2", s(&img)])
    };
    assert_eq!(o.rc, 1, "{o:?}");
    assert!(o.stderr.contains("Permission denied"), "{}", o.stderr);
    assert_eq!(sha(&img), before);
}
