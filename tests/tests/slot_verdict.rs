//! The daemon alone is safe: when no health gate is enabled, the real
//! `update-agent` marks the booted slot good after
//! `schedule.mark_good_delay_secs` (Flatcar's behaviour), so a new slot is
//! not lost at the second reboot; when the gate's unit is enabled, the
//! daemon leaves that verdict to the gate. `systemctl` is a stand-in script
//! that answers `is-enabled` as configured.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cgpt::Slot;
use e2e::dbus_bus::{Killed, agent_bin};
use e2e::fixture::Node;

/// A node booted into USR-A that no one has marked good yet (P2 T0 S0,
/// as after GRUB spent the one try), with `systemctl is-enabled` exiting
/// `enabled_exit`.
fn tried_node(enabled_exit: i32, verdict: &str) -> Node {
    let node = Node::new("http://127.0.0.1:9/v1/update/");
    let out = Command::new("cgpt")
        .args(["add", "-i", "3", "-P", "2", "-T", "0", "-S", "0"])
        .arg(&node.disk)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(node.cgpt_pts(Slot::A), (2, 0, 0));
    let script = node.path("/systemctl");
    std::fs::write(
        &script,
        format!("#!/bin/sh\n[ \"$1\" = is-enabled ] && exit {enabled_exit}\nexit 1\n"),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    node.add_config(&format!(
        "[schedule]\nenabled = false\nmark_good_delay_secs = 0\n\
         [health]\nsystemctl = [{script:?}]\nslot_verdict = {verdict:?}\n"
    ));
    node
}

fn spawn(node: &Node, log: &Path) -> Killed {
    Killed(
        Command::new(agent_bin())
            .args(["--no-dbus", "--root"])
            .arg(node.root())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("spawn update-agent"),
    )
}

/// Waits until `done` holds (the daemon acted) or fails with its log.
fn wait(log: &Path, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn without_an_enabled_gate_the_daemon_marks_the_booted_slot_good() {
    for (exit, verdict) in [(1, "auto"), (0, "daemon")] {
        let node = tried_node(exit, verdict);
        let log = node.dir.path().join("agent.log");
        let _agent = spawn(&node, &log);
        // Good: successful, no tries left, still above USR-B.
        wait(&log, "the booted slot was never marked good", || {
            let (p, t, s) = node.cgpt_pts(Slot::A);
            p > 0 && t == 0 && s == 1
        });
        assert_eq!(node.cgpt_pts(Slot::B), (0, 0, 0), "{verdict}");
    }
}

#[test]
fn with_an_enabled_gate_the_daemon_leaves_the_verdict_to_it() {
    for (exit, verdict) in [(0, "auto"), (1, "gate")] {
        let node = tried_node(exit, verdict);
        let log = node.dir.path().join("agent.log");
        let _agent = spawn(&node, &log);
        wait(&log, "the daemon never decided", || {
            std::fs::read_to_string(&log)
                .is_ok_and(|l| l.contains("decides whether this slot is good"))
        });
        assert_eq!(node.cgpt_pts(Slot::A), (2, 0, 0), "{verdict}");
    }
}
