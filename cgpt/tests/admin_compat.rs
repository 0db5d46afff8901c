//! `create`, `boot` and `legacy` against Debian's real cgpt: same bytes on the
//! same image (the random disk GUID of `create` aside).

mod common;
use common::*;

fn pair(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let a = reference_image(dir, "ours.img");
    let b = dir.join("real.img");
    std::fs::copy(&a, &b).unwrap();
    (a, b)
}

/// Runs the same command with both tools; both must agree on rc and stdout.
fn both(cmd: &[&str], mine: &std::path::Path, theirs: &std::path::Path) -> String {
    let a = ours(&[cmd, &[s(mine)]].concat());
    let b = real(&[cmd, &[s(theirs)]].concat());
    assert_eq!(
        (a.rc, &a.stdout),
        (b.rc, &b.stdout),
        "{cmd:?}: {a:?} vs {b:?}"
    );
    a.stdout
}

#[test]
fn create_matches_real_cgpt_but_for_the_disk_guid() {
    for args in [&[][..], &["-p", "5"][..], &["-z"][..]] {
        let dir = tempfile::tempdir().unwrap();
        let (mine, theirs) = pair(dir.path());
        both(&[&["create"], args].concat(), &mine, &theirs);
        let (mut a, mut b) = (
            std::fs::read(&mine).unwrap(),
            std::fs::read(&theirs).unwrap(),
        );
        if args != ["-z"] {
            // Header CRC (16..20) and disk GUID (56..72) of both headers differ.
            let last = a.len() - 512;
            for base in [512, last] {
                for r in [base + 16..base + 20, base + 56..base + 72] {
                    assert_ne!(
                        a[r.clone()],
                        [0; 4][..r.len().min(4)],
                        "{args:?}: field unset"
                    );
                    a[r.clone()].fill(0);
                    b[r].fill(0);
                }
            }
        }
        assert!(a == b, "{args:?}: images differ beyond the disk GUID");
        let show = real(&["show", s(&mine)]);
        if args == ["-z"] {
            assert_eq!(show.rc, 1, "zapped headers must be gone");
        } else {
            assert_eq!(
                (show.rc, show.stderr.as_str()),
                (0, ""),
                "{args:?}: {show:?}"
            );
            assert!(ok(run("sgdisk", &["-v", s(&mine)])).contains("No problems found"));
        }
    }
}

#[test]
fn boot_matches_real_cgpt() {
    let dir = tempfile::tempdir().unwrap();
    let (mine, theirs) = pair(dir.path());
    let code = dir.path().join("code.bin");
    std::fs::write(
        &code,
        (0..600u32).map(|i| (i * 7) as u8).collect::<Vec<u8>>(),
    )
    .unwrap();
    assert_eq!(
        both(&["boot"], &mine, &theirs),
        "00000000-0000-0000-0000-000000000000\n"
    );
    for cmd in [
        &["boot", "-p"][..],
        &["boot", "-i", "3"][..],
        &["boot", "-b", s(&code)][..],
        &["boot", "-i", "5"][..],
        &["boot", "-p", "-i", "4", "-b", s(&code)][..],
    ] {
        both(cmd, &mine, &theirs);
        assert_eq!(sha(&mine), sha(&theirs), "{cmd:?}");
    }
    assert_eq!(
        both(&["boot"], &mine, &theirs),
        "E03DD35C-7C2D-4A47-B3FE-27F15780A57C\n"
    );
    let show = ok(real(&["show", s(&mine)]));
    assert!(
        show.contains("PMBR (Boot GUID: E03DD35C-7C2D-4A47-B3FE-27F15780A57C)"),
        "{show}"
    );
    let row = |t: &str| t.lines().nth(1).unwrap().to_string();
    assert_eq!(row(&ok(ours(&["show", s(&mine)]))), row(&show));
}

#[test]
fn legacy_matches_real_cgpt() {
    let dir = tempfile::tempdir().unwrap();
    let (mine, theirs) = pair(dir.path());
    let orig = sha(&mine);
    both(&["legacy"], &mine, &theirs);
    assert_eq!(sha(&mine), sha(&theirs), "legacy");
    assert_ne!(sha(&mine), orig);
    // Every reader still finds the partitions (through the backup).
    assert_eq!(ok(real(&["show", "-i", "9", "-l", s(&mine)])), "ROOT\n");
    assert_eq!(ok(ours(&["show", "-i", "9", "-l", s(&mine)])), "ROOT\n");
    both(&["legacy", "-e"], &mine, &theirs);
    assert_eq!(sha(&mine), sha(&theirs), "legacy -e");
    assert_eq!(sha(&mine), orig, "legacy -e restores the original");
    both(&["legacy", "-p"], &mine, &theirs);
    assert_eq!(sha(&mine), sha(&theirs), "legacy -p");
    assert_eq!(ok(ours(&["show", "-i", "3", "-l", s(&mine)])), "USR-A\n");
}

#[test]
fn new_verbs_refuse_bad_input_and_leave_the_disk_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (mine, theirs) = pair(dir.path());
    let tiny = dir.path().join("tiny.img");
    std::fs::write(&tiny, vec![0u8; 20 * 512]).unwrap();
    let missing = dir.path().join("nope.bin");
    let mut secondary_broken = std::fs::read(&mine).unwrap();
    let n = secondary_broken.len();
    secondary_broken[n - 512 + 16] ^= 1;
    let broken = dir.path().join("broken.img");
    std::fs::write(&broken, &secondary_broken).unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["create", s(&tiny)],
        vec!["boot", "-i", "129", s(&mine)],
        vec!["boot", "-b", s(&missing), s(&mine)],
        vec!["legacy", "-p", s(&broken)],
        vec!["create", "-p", "abc", s(&mine)],
        vec!["boot"],
    ];
    for args in &cases {
        let before = (sha(&mine), sha(&tiny), sha(&broken));
        let o = ours(args);
        assert_eq!(o.rc, 1, "{args:?}: {o:?}");
        assert!(o.stderr.starts_with("ERROR: "), "{args:?}: {}", o.stderr);
        assert_eq!(
            (sha(&mine), sha(&tiny), sha(&broken)),
            before,
            "{args:?} wrote"
        );
        // Real cgpt refuses the same commands.
        let theirs_args: Vec<&str> = args
            .iter()
            .map(|a| if *a == s(&mine) { s(&theirs) } else { a })
            .collect();
        assert_ne!(real(&theirs_args).rc, 0, "real cgpt accepts {args:?}");
    }
}
