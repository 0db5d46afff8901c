//! The shipped systemd files: `systemd-analyze verify` on the unit (with
//! ExecStart pointed at a built binary, since /usr/sbin/update-agent does
//! not exist here), the tmpfiles config applied to a temp root, and the
//! unit keeps Flatcar's essentials.

use std::process::Command;

use e2e::dbus_bus::{client_bin, output, stderr, stdout, workspace};

#[test]
fn the_unit_verifies_and_keeps_flatcars_essentials() {
    let unit = std::fs::read_to_string(workspace().join("systemd/update-engine.service")).unwrap();
    for line in [
        "Type=dbus",
        "BusName=com.coreos.update1",
        "Restart=always",
        "ConditionPathExists=!/usr/.noupdate",
        "ConditionVirtualization=!container",
        "WantedBy=multi-user.target",
        "ReadWritePaths=-/boot/flatcar -/boot/coreos -/efi/flatcar -/efi/coreos /etc/flatcar",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing {line}");
    }
    assert!(
        !unit.contains("PrivateDevices=yes"),
        "the engine writes block devices"
    );
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("update-engine.service");
    let exec = format!("ExecStart={}", client_bin().display());
    let patched: String = unit
        .lines()
        .map(|l| {
            if l.starts_with("ExecStart=") {
                exec.as_str()
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(patched, unit);
    std::fs::write(&copy, patched + "\n").unwrap();
    let o = output(Command::new("systemd-analyze").arg("verify").arg(&copy));
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        !stderr(&o).contains("update-engine.service:"),
        "warnings about the unit: {}",
        stderr(&o)
    );
}

#[test]
fn tmpfiles_creates_the_state_directories() {
    let dir = tempfile::tempdir().unwrap();
    let conf = workspace().join("systemd/tmpfiles.d/update-engine.conf");
    let o = output(
        Command::new("systemd-tmpfiles")
            .arg("--create")
            .arg("--remove")
            .arg(format!("--root={}", dir.path().display()))
            .arg(&conf),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for d in [
        "var/lib/update_engine/prefs",
        "run/update-engine",
        "etc/flatcar",
    ] {
        assert!(dir.path().join(d).is_dir(), "{d}");
    }
    // Unprivileged scrapers reach the metrics sockets.
    use std::os::unix::fs::PermissionsExt;
    for d in ["run/update-agent", "run/update-agent/public"] {
        let meta = std::fs::metadata(dir.path().join(d)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o755, "{d}");
    }
}
