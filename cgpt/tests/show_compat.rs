//! `cgpt show` against Debian's real cgpt, output compared in the test, on clean,
//! damaged, grown and vboot-modified tables and with every display flag. The
//! one intended difference (Flatcar's `Attr:` line on USR entries) is taken out.

mod common;
use common::*;

/// Our output without Flatcar's USR attribute lines (vboot prints them only
/// for ChromeOS kernels, and then with a trailing space).
fn strip_flatcar_attr(text: &str) -> String {
    text.lines()
        .filter(|l| {
            let t = l.trim_start();
            !t.starts_with("Attr: priority=") || t.ends_with(' ')
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

type Damage = (&'static str, fn(&mut Vec<u8>));

fn flip(img: &mut [u8], at: usize) {
    img[at] ^= 0x5a;
}

const DAMAGE: &[Damage] = &[
    ("clean", |_| {}),
    ("primary header crc", |i| flip(i, 512 + 16)),
    ("primary header zeroed", |i| i[512..1024].fill(0)),
    ("primary entries", |i| flip(i, 1024 + 2 * 128 + 60)),
    ("secondary header crc", |i| {
        let n = i.len();
        flip(i, n - 512 + 16)
    }),
    ("secondary entries", |i| {
        let n = i.len();
        flip(i, n - 512 - 16384 + 60)
    }),
    ("disk grew", |i| i.resize(i.len() + (8 << 20), 0)),
    ("stale backup", |i| {
        // A valid backup whose entries differ from the primary's.
        let n = i.len();
        let mut ents = i[n - 512 - 16384..n - 512].to_vec();
        ents[2 * 128 + 54] = 0x22;
        let crc = crc32fast::hash(&ents);
        i[n - 512 - 16384..n - 512].copy_from_slice(&ents);
        i[n - 512 + 88..n - 512 + 92].copy_from_slice(&crc.to_le_bytes());
        i[n - 512 + 16..n - 512 + 20].fill(0);
        let hcrc = crc32fast::hash(&i[n - 512..n - 512 + 92]);
        i[n - 512 + 16..n - 512 + 20].copy_from_slice(&hcrc.to_le_bytes());
    }),
];

#[test]
fn show_matches_real_cgpt_on_damaged_tables() {
    let dir = tempfile::tempdir().unwrap();
    let base = reference_image(dir.path(), "base.img");
    ok(real(&["add", "-i", "3", "-P", "1", "-S", "1", s(&base)]));
    ok(real(&["boot", "-i", "4", s(&base)]));
    let good = std::fs::read(&base).unwrap();
    let img = dir.path().join("d.img");
    let flags: &[&[&str]] = &[
        &[],
        &["-v"],
        &["-d"],
        &["-n"],
        &["-n", "-v"],
        &["-n", "-d"],
        &["-q"],
        &["-i", "3"],
        &["-i", "5"],
        &["-i", "5", "-s"],
        &["-i", "4", "-n"],
        &["-i", "9", "-q"],
    ];
    let mut compared = 0;
    for (name, damage) in DAMAGE {
        let mut bytes = good.clone();
        damage(&mut bytes);
        std::fs::write(&img, &bytes).unwrap();
        for f in flags {
            let args = [&["show"], *f, &[s(&img)]].concat();
            let theirs = real(&args);
            let mine = ours(&args);
            assert_eq!(mine.rc, theirs.rc, "{name} {f:?}: {mine:?} vs {theirs:?}");
            assert_eq!(
                strip_flatcar_attr(&mine.stdout),
                theirs.stdout,
                "{name} {f:?}: stdout differs"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, DAMAGE.len() * flags.len());
}

#[test]
fn show_after_vboot_legacy_matches_real_cgpt() {
    let dir = tempfile::tempdir().unwrap();
    let img = reference_image(dir.path(), "l.img");
    ok(real(&["legacy", s(&img)]));
    for f in [&[][..], &["-v"][..], &["-d"][..]] {
        let args = [&["show"], f, &[s(&img)]].concat();
        assert_eq!(
            strip_flatcar_attr(&ours(&args).stdout),
            ok(real(&args)),
            "{f:?}"
        );
    }
}

#[test]
fn flatcar_type_aliases_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let img = reference_image(dir.path(), "a.img");
    // Flatcar's cgpt aliases (seismograph cgpt_common.c supported_types).
    for (alias, guid) in [
        ("linux-data", "0FC63DAF-8483-4772-8E79-3D69D8477DE4"),
        ("linux-swap", "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"),
        ("linux-boot", "BC13C2FF-59E6-4262-A352-B275FD6F7172"),
        ("linux-home", "933AC7E1-2EB4-4F13-B844-0E14E2AEF915"),
        ("linux-lvm", "E6D6D379-F507-44C2-A23C-238F2A3DF928"),
        ("linux-raid", "A19D880F-05FC-4D3B-A006-743F0F84911E"),
        ("linux-reserved", "8DA63339-0007-60C0-C436-083AC8230908"),
        ("mswin-data", "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"),
        ("chromeos-data", "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"),
    ] {
        ok(ours(&["add", "-i", "7", "-t", alias, s(&img)]));
        assert_eq!(
            ok(real(&["show", "-i", "7", "-t", s(&img)])).trim(),
            guid,
            "{alias}"
        );
        assert_eq!(
            ok(ours(&["find", "-n", "-t", alias, s(&img)])).trim(),
            if alias == "linux-data" { "6\n7" } else { "7" },
            "{alias}"
        );
    }
}

#[test]
fn a_field_without_a_partition_fails_like_real_cgpt() {
    let dir = tempfile::tempdir().unwrap();
    let img = reference_image(dir.path(), "f.img");
    let (a, b) = (
        ours(&["show", "-t", s(&img)]),
        real(&["show", "-t", s(&img)]),
    );
    // Same message and exit code (our usage text is our own).
    assert_eq!((a.rc, &a.stderr), (b.rc, &b.stderr));
    assert_eq!(a.rc, 1);
}
