//! Helpers shared by the integration tests: the reference image, tool runners.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

pub const USR: &str = "5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6";

/// Output of one command.
#[derive(Debug)]
pub struct Out {
    pub rc: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a program; panics with a clear message if it is not installed (the test
/// command installs vboot-utils, gdisk and fdisk).
pub fn run(prog: &str, args: &[&str]) -> Out {
    let o = Command::new(prog).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {prog} ({e}); install vboot-utils, gdisk and fdisk (./test.sh does)")
    });
    Out {
        rc: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Runs our cgpt.
pub fn ours(args: &[&str]) -> Out {
    run(env!("CARGO_BIN_EXE_cgpt"), args)
}

/// Runs Debian's cgpt (vboot-utils).
pub fn real(args: &[&str]) -> Out {
    run("cgpt", args)
}

pub fn ok(o: Out) -> String {
    assert_eq!(o.rc, 0, "command failed: {o:?}");
    o.stdout
}

pub fn sha(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The 64 MiB Flatcar-like test image of the reference (section 9), built with sgdisk.
pub fn reference_image(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(64 << 20).unwrap();
    let spec = [
        (
            "1:2048:+8M",
            "EFI-SYSTEM",
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            "11111111-1111-1111-1111-111111111111",
        ),
        (
            "2:0:+1M",
            "BIOS-BOOT",
            "21686148-6449-6E6F-744E-656564454649",
            "22222222-2222-2222-2222-222222222222",
        ),
        (
            "3:0:+16M",
            "USR-A",
            USR,
            "7130C94A-213A-4E5A-8E26-6CCE9662F132",
        ),
        (
            "4:0:+16M",
            "USR-B",
            USR,
            "E03DD35C-7C2D-4A47-B3FE-27F15780A57C",
        ),
        (
            "6:0:+8M",
            "OEM",
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
            "66666666-6666-6666-6666-666666666666",
        ),
        (
            "7:0:+4M",
            "OEM-CONFIG",
            "C95DC21A-DF0E-4340-8D7B-26CBFA9A03E0",
            "77777777-7777-7777-7777-777777777777",
        ),
        (
            "9:0:0",
            "ROOT",
            "3884DD41-8582-4404-B9A8-E9B84F2DF50E",
            "99999999-9999-9999-9999-999999999999",
        ),
    ];
    let mut args: Vec<String> = vec!["-U".into(), "00000000-0000-0000-0000-000000000001".into()];
    for (n, label, ty, uu) in spec {
        let i = &n[..1];
        args.extend([
            "-n".into(),
            n.into(),
            "-c".into(),
            format!("{i}:{label}"),
            "-t".into(),
            format!("{i}:{ty}"),
            "-u".into(),
            format!("{i}:{uu}"),
        ]);
    }
    args.push(s(&path).into());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(run("sgdisk", &argv));
    path
}

/// A golden file without the `[rc=N]` trailer the capture script added.
pub fn golden(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter(|l| !l.starts_with("[rc="))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// `sgdisk -i N`'s attribute flags as a u64.
pub fn sgdisk_attrs(img: &Path, index: u32) -> u64 {
    let out = ok(run("sgdisk", &["-i", &index.to_string(), s(img)]));
    let line = out
        .lines()
        .find(|l| l.starts_with("Attribute flags: "))
        .expect("attribute line");
    u64::from_str_radix(line.trim_start_matches("Attribute flags: ").trim(), 16).unwrap()
}

/// `cgpt show -i N -A` of the real cgpt (the u16 of bits 48-63).
pub fn real_attr(img: &Path, index: u32) -> Out {
    real(&["show", "-i", &index.to_string(), "-A", s(img)])
}

/// Parses `0x12` / `0` into the u16.
pub fn parse_hex16(s: &str) -> u16 {
    let t = s.trim();
    u16::from_str_radix(t.trim_start_matches("0x"), 16).unwrap()
}
