//! Start-up: bad configuration is refused with a clear error and never reboots; `off` exits.

mod common;

use std::time::{Duration, Instant};

use common::Node;

fn run_to_exit(n: &mut Node) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = n.exited() {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not exit: {}",
            n.id,
            n.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_configuration_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "hello").unwrap();
    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let etcd = "REBOOT_STRATEGY=etcd-lock\nLOCKSMITHD_ENDPOINT=http://127.0.0.1:1\n";
    let rows: Vec<(String, &str)> = vec![
        (
            "REBOOT_STRATEGY=best-effort\n".into(),
            "REBOOT_STRATEGY=\"best-effort\" is not one of reboot, etcd-lock, fleet-lock, off",
        ),
        (
            "REBOOT_WINDOW_START=Thu 4pm\nREBOOT_WINDOW_LENGTH=1h\n".into(),
            "start \"Thu 4pm\" is not \"[Day] HH:MM\"",
        ),
        (
            "REBOOT_WINDOW_START=04:00\nREBOOT_WINDOW_LENGTH=1 hour\n".into(),
            "length \"1 hour\": not a Go duration",
        ),
        (
            "LOCKSMITHD_REBOOT_WINDOW_START=04:00\n".into(),
            "must be set both or neither",
        ),
        (
            "REBOOT_STRATEGY=etcd-lock\nLOCKSMITHD_ENDPOINT=127.0.0.1:2379\n".into(),
            "not an http:// or https:// URL",
        ),
        (
            "REBOOT_STRATEGY=fleet-lock\n".into(),
            "needs LOCKSMITHD_ENDPOINT",
        ),
        (
            format!("{etcd}LOCKSMITHD_ETCD_CAFILE=/nonexistent/ca.pem\n"),
            "LOCKSMITHD_ETCD_CAFILE=\"/nonexistent/ca.pem\": No such file",
        ),
        (
            format!("{etcd}LOCKSMITHD_ETCD_CAFILE={}\n", garbage.display()),
            "no PEM certificate in the file",
        ),
        (
            format!("{etcd}LOCKSMITHD_ETCD_CAFILE={}\n", broken.display()),
            "TLS setup",
        ),
        (
            format!("{etcd}LOCKSMITHD_ETCD_KEYFILE={}\n", garbage.display()),
            "must be set together",
        ),
    ];
    for (i, (conf, want)) in rows.iter().enumerate() {
        let mut n = Node::new(dir.path(), &format!("bad{i}"), conf);
        n.need_reboot();
        n.start();
        let status = run_to_exit(&mut n);
        let log = n.log();
        assert_eq!(status.code(), Some(1), "{conf:?}: {log}");
        assert!(log.contains(want), "{conf:?}: {log:?} lacks {want:?}");
        assert!(log.contains("starting the reboot coordinator"), "{log}");
        assert!(!n.rebooted(), "{conf:?} rebooted");
    }
}

#[test]
fn strategy_off_never_reboots() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = Node::new(dir.path(), "fluo", "REBOOT_STRATEGY=off\n");
    n.need_reboot();
    n.start();
    assert!(run_to_exit(&mut n).success(), "{}", n.log());
    assert!(!n.rebooted());
    assert_eq!(n.conf(), "NAME=locksmithd\nSTRATEGY=off\nSTATE=disabled\n");
}

#[test]
fn strategy_reboot_reboots_without_a_lock() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = Node::new(dir.path(), "plain", "");
    n.need_reboot();
    n.start();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !n.rebooted() {
        assert!(Instant::now() < deadline, "{}", n.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        n.exited().is_none(),
        "keeps running until the machine goes down"
    );
}
