//! `systemd/sysext/build.sh`: the image a Flatcar node merges into its
//! read-only /usr. Read back with systemd's own `systemd-dissect` (the
//! metadata systemd-sysext checks, files copied out of the image) and with
//! `unsquashfs` as an independent reader.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use e2e::dbus_bus::{build_bins, output, stderr, stdout, workspace};

fn build(bin_dir: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    output(
        Command::new(workspace().join("systemd/sysext/build.sh"))
            .arg("--bin-dir")
            .arg(bin_dir)
            .arg("--out")
            .arg(out)
            .args(extra),
    )
}

#[test]
fn the_sysext_image_carries_the_agent_with_flatcars_extension_release() {
    let bins = build_bins(&["-p", "update-agent", "-p", "coordinator"]);
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("update-agent.raw");
    let o = build(&bins, &img, &["--version", "9.9.9"]);
    assert!(o.status.success(), "{}", stderr(&o));

    // What systemd-sysext reads before it merges the image.
    let o = output(
        Command::new("systemd-dissect")
            .arg("--json=short")
            .arg(&img),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let meta: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let release: Vec<&str> = meta["extensionRelease"]
        .as_array()
        .expect("an extension-release file")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        release,
        [
            "ID=flatcar",
            "SYSEXT_LEVEL=1.0",
            "ARCHITECTURE=x86-64",
            "VERSION_ID=9.9.9"
        ]
    );
    assert_eq!(meta["useSystemExtension"], true);
    assert_eq!(meta["mounts"][0]["fstype"], "squashfs");

    // Files copied out by systemd-dissect are the built ones.
    for (inside, source) in [
        ("/usr/sbin/update-agent", bins.join("update-agent")),
        (
            "/usr/bin/update_engine_client",
            bins.join("update_engine_client"),
        ),
        (
            "/usr/sbin/update-coordinator",
            bins.join("update-coordinator"),
        ),
        ("/usr/bin/locksmithctl", bins.join("locksmithctl")),
        (
            "/usr/lib/systemd/system/update-engine.service",
            workspace().join("systemd/update-engine.service"),
        ),
        (
            "/usr/share/dbus-1/system.d/com.coreos.update1.conf",
            workspace().join("systemd/dbus/com.coreos.update1.conf"),
        ),
    ] {
        let copy = dir.path().join("copy");
        let o = output(
            Command::new("systemd-dissect")
                .arg("--copy-from")
                .arg(&img)
                .arg(inside)
                .arg(&copy),
        );
        assert!(o.status.success(), "{inside}: {}", stderr(&o));
        assert!(
            std::fs::read(&copy).unwrap() == std::fs::read(&source).unwrap(),
            "{inside} differs from {}",
            source.display()
        );
        std::fs::remove_file(&copy).unwrap();
    }

    // unsquashfs: everything under usr/, root-owned, binaries executable.
    let o = output(Command::new("unsquashfs").arg("-lln").arg(&img));
    assert!(o.status.success(), "{}", stderr(&o));
    let listing = stdout(&o);
    let mut paths = BTreeSet::new();
    for line in listing.lines().filter(|l| l.contains("squashfs-root")) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[1], "0/0", "not root-owned: {line}");
        let path = fields.last().unwrap().trim_start_matches("squashfs-root");
        if path.contains("/sbin/") || path.contains("/bin/") {
            assert!(fields[0].starts_with("-rwxr-xr-x"), "{line}");
        }
        paths.insert(path.to_string());
    }
    assert!(
        paths.iter().all(|p| p.is_empty() || p.starts_with("/usr")),
        "only /usr is merged by systemd-sysext: {paths:?}"
    );
    assert!(paths.contains("/usr/lib/extension-release.d/extension-release.update-agent"));
    assert!(paths.contains("/usr/lib/tmpfiles.d/update-engine.conf"));

    // Reproducible: the same inputs give the same bytes.
    let again = dir.path().join("again/update-agent.raw");
    let o = build(&bins, &again, &["--version", "9.9.9"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(&again).unwrap() == std::fs::read(&img).unwrap());
}

#[test]
fn bad_input_writes_no_image() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("update-agent.raw");
    let o = build(&dir.path().join("no-such-dir"), &out, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing"), "{}", stderr(&o));
    assert!(!out.exists());
    let bins = dir.path().join("bins");
    std::fs::create_dir(&bins).unwrap();
    let bad = dir.path().join("bad name.raw");
    let o = build(&bins, &bad, &[]);
    assert_ne!(o.status.code(), Some(0));
    assert!(!bad.exists());
}
