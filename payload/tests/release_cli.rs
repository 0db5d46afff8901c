//! `payload release`: the full payload and a delta from an earlier release
//! in one command, and `<package>` lines whose sizes and hashes are the
//! files' (checked here against the files, and the delta applied).

mod common;

use std::process::Command;

use payload::storage::SharedBuffer;
use payload::{Slot, Slots};
use sha2::{Digest, Sha256};

#[test]
fn writes_full_and_delta_and_prints_their_package_lines() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (old, new) = (common::old_image(), common::new_image());
    std::fs::write(p("old.img"), &old).unwrap();
    std::fs::write(p("new.img"), &new).unwrap();
    std::fs::write(p("old.kernel"), b"kernel 1\n".repeat(100)).unwrap();
    std::fs::write(p("new.kernel"), b"kernel 2\n".repeat(100)).unwrap();
    let key = common::ed_key();
    std::fs::write(p("k.key"), key.to_pem().unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_payload"))
        .arg("release")
        .args(["--target", p("new.img").to_str().unwrap()])
        .args(["--kernel", p("new.kernel").to_str().unwrap()])
        .arg("--from")
        .arg(format!(
            "3510.2.0={},{}",
            p("old.img").display(),
            p("old.kernel").display()
        ))
        .args(["--out", p("out").to_str().unwrap()])
        .args(["--version", "3600.0.0", "--board", "amd64-usr"])
        .args(["--key", p("k.key").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let full = std::fs::read(p("out/flatcar_production_update.gz")).unwrap();
    let delta = std::fs::read(p("out/delta-3510.2.0.gz")).unwrap();
    assert!(
        delta.len() < full.len() / 2,
        "{} vs {}",
        delta.len(),
        full.len()
    );
    use base64::Engine as _;
    for (name, data, required) in [
        ("flatcar_production_update.gz", &full, true),
        ("delta-3510.2.0.gz", &delta, false),
    ] {
        let sha = Sha256::digest(data);
        for hash in [
            hex::encode(sha),
            base64::engine::general_purpose::STANDARD.encode(sha),
        ] {
            let line = format!(
                r#"<package name="{name}" size="{}" hash_sha256="{hash}" required="{required}"/>"#,
                data.len()
            );
            assert!(stdout.contains(&line), "{line}\nnot in\n{stdout}");
        }
    }
    // The delta rebuilds the new image from the old one.
    let usr = SharedBuffer::new(Vec::new());
    let mut slots = Slots::new();
    slots.insert("usr", Slot::new(usr.clone()).with_source(old));
    let mut k = Slot::new(Vec::<u8>::new()).with_source(b"kernel 1\n".repeat(100));
    k.truncate = true;
    slots.insert("kernel", k);
    payload::apply(&delta[..], &mut slots, &common::ring(&[&key])).unwrap();
    assert!(
        usr.contents() == new,
        "the delta did not rebuild the new image"
    );
    assert!(!std::fs::exists(p("out/.delta-3510.2.0.gz.tmp")).unwrap());
    // A bad --from is refused before anything is written.
    let bad = Command::new(env!("CARGO_BIN_EXE_payload"))
        .args(["release", "--target", "x", "--from", "../x=y", "--out"])
        .arg(p("out2"))
        .args(["--version", "1", "--key", "k"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(!p("out2").exists());
}
