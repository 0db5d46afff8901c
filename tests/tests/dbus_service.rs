//! The D-Bus service on a private `dbus-daemon` with the shipped policy,
//! seen by independent clients (`gdbus`, `busctl`).

#[path = "dbus_common.rs"]
mod common;

use std::time::Duration;

use common::{Fixture, NEW_SIZE, NEW_VERSION, Setup, status_updates};
use e2e::dbus_bus::{LineReader, gdbus_call, output, stderr, stdout, workspace};
use update_agent::fsm::Operation;

/// The interface elements of `gdbus introspect --xml`, whitespace-normalised.
fn interface_xml(xml: &str, name: &str) -> String {
    let start = xml
        .find(&format!("<interface name=\"{name}\">"))
        .unwrap_or_else(|| panic!("{name} missing in {xml}"));
    let end = start + xml[start..].find("</interface>").unwrap() + "</interface>".len();
    normalise(&xml[start..end])
}

fn normalise(xml: &str) -> String {
    xml.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("> <", "><")
}

#[test]
fn introspection_matches_flatcar_and_the_committed_xml() {
    let f = Fixture::start(Setup::default());
    let o = output(std::process::Command::new("gdbus").args([
        "introspect",
        "--xml",
        "--address",
        f.address(),
        "--dest",
        "com.coreos.update1",
        "--object-path",
        "/com/coreos/update1",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let live = stdout(&o);
    for (iface, file) in [
        (
            "com.coreos.update1.Manager",
            "com.coreos.update1.Manager.xml",
        ),
        (
            "org.ab_update_engine.Agent1",
            "org.ab_update_engine.Agent1.xml",
        ),
    ] {
        let committed =
            std::fs::read_to_string(workspace().join("systemd/dbus").join(file)).unwrap();
        assert_eq!(
            interface_xml(&live, iface),
            interface_xml(&committed, iface),
            "systemd/dbus/{file} is stale; live:\n{live}"
        );
    }

    // busctl's view: Flatcar's exact signatures and no properties on Manager.
    let o = output(std::process::Command::new("busctl").args([
        &format!("--address={}", f.address()),
        "introspect",
        "--no-pager",
        "com.coreos.update1",
        "/com/coreos/update1",
        "com.coreos.update1.Manager",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<Vec<String>> = stdout(&o)
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect();
    let row = |n: &str| rows.iter().find(|r| r[0] == n).cloned().unwrap_or_default();
    assert_eq!(
        row(".AttemptUpdate"),
        [".AttemptUpdate", "method", "-", "-", "-"]
    );
    assert_eq!(
        row(".ResetStatus"),
        [".ResetStatus", "method", "-", "-", "-"]
    );
    assert_eq!(
        row(".GetStatus"),
        [".GetStatus", "method", "-", "xdssx", "-"]
    );
    assert_eq!(
        row(".StatusUpdate"),
        [".StatusUpdate", "signal", "xdssx", "-", "-"]
    );
    assert_eq!(rows.len(), 4, "{rows:?}");
}

#[test]
fn get_status_is_xdssx_with_flatcar_defaults() {
    let f = Fixture::start(Setup::default());
    let o = output(&mut gdbus_call(
        f.address(),
        "com.coreos.update1.Manager.GetStatus",
        &[],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "(int64 0, 0.0, 'UPDATE_STATUS_IDLE', '0.0.0', int64 0)\n"
    );
    let o = output(std::process::Command::new("busctl").args([
        &format!("--address={}", f.address()),
        "call",
        "com.coreos.update1",
        "/com/coreos/update1",
        "com.coreos.update1.Manager",
        "GetStatus",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "xdssx 0 0 \"UPDATE_STATUS_IDLE\" \"0.0.0\" 0\n");
}

fn monitor(address: &str) -> LineReader {
    let mut m = LineReader::spawn(std::process::Command::new("gdbus").args([
        "monitor",
        "--address",
        address,
        "--dest",
        "com.coreos.update1",
    ]));
    m.wait_for(Duration::from_secs(10), |l| l.contains("is owned by"))
        .expect("gdbus monitor ready");
    m
}

#[test]
fn a_watcher_sees_a_whole_update_end_in_need_reboot() {
    let f = Fixture::start(Setup::default());
    let mut m = monitor(f.address());
    let o = output(&mut gdbus_call(
        f.address(),
        "com.coreos.update1.Manager.AttemptUpdate",
        &[],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "()\n");
    let last = m.wait_for(Duration::from_secs(20), |l| {
        l.contains("UPDATE_STATUS_UPDATED_NEED_REBOOT")
    });
    assert!(last.is_some(), "no NEED_REBOOT signal: {:#?}", m.lines);
    let updates = status_updates(&m.lines);
    let ops: Vec<&str> = updates.iter().map(|u| u.0.as_str()).collect();
    let mut distinct = ops.clone();
    distinct.dedup();
    assert_eq!(
        distinct,
        [
            "UPDATE_STATUS_CHECKING_FOR_UPDATE",
            "UPDATE_STATUS_UPDATE_AVAILABLE",
            "UPDATE_STATUS_DOWNLOADING",
            "UPDATE_STATUS_VERIFYING",
            "UPDATE_STATUS_FINALIZING",
            "UPDATE_STATUS_UPDATED_NEED_REBOOT",
        ],
        "{:#?}",
        m.lines
    );
    // Throttled: at most one signal per percent (plus entering DOWNLOADING).
    let downloading: Vec<f64> = updates
        .iter()
        .filter(|u| u.0 == "UPDATE_STATUS_DOWNLOADING")
        .map(|u| u.1)
        .collect();
    assert!(
        downloading.len() >= 5 && downloading.len() <= 102,
        "{}",
        downloading.len()
    );
    assert!(
        downloading
            .windows(2)
            .all(|w| w[1] - w[0] >= 0.01 || w[1] >= 1.0),
        "{downloading:?}"
    );
    let fin = updates.last().unwrap();
    assert_eq!((fin.2.as_str(), fin.3), (NEW_VERSION, NEW_SIZE as i64));
    assert_eq!(fin.1, 1.0);
    // GetStatus agrees, and the reboot marker was written.
    let o = output(&mut gdbus_call(
        f.address(),
        "com.coreos.update1.Manager.GetStatus",
        &[],
    ));
    let s = stdout(&o);
    assert!(
        s.contains(", 1.0, 'UPDATE_STATUS_UPDATED_NEED_REBOOT', '3815.2.1', int64 458234665)"),
        "{s}"
    );
    assert!(
        !s.starts_with("(int64 0,"),
        "last_checked_time set after a successful check: {s}"
    );
    assert!(f.path("/run/update_engine_autoupdate_completed").exists());
    // A second AttemptUpdate is ignored (update_engine semantics), not an error.
    let o = output(&mut gdbus_call(
        f.address(),
        "com.coreos.update1.Manager.AttemptUpdate",
        &[],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(f.engine.state().operation(), Operation::UpdatedNeedReboot);
}

#[test]
fn agent_properties_and_properties_changed() {
    let f = Fixture::start(Setup::default());
    let get = |p: &str| {
        let o = output(&mut gdbus_call(
            f.address(),
            "org.freedesktop.DBus.Properties.Get",
            &["org.ab_update_engine.Agent1", p],
        ));
        assert!(o.status.success(), "{p}: {}", stderr(&o));
        stdout(&o).trim().to_string()
    };
    assert_eq!(get("Status"), "(<'UPDATE_STATUS_IDLE'>,)");
    assert_eq!(get("Channel"), "(<'stable'>,)");
    assert_eq!(get("CurrentVersion"), "(<'3510.2.0'>,)");
    assert_eq!(get("NewVersion"), "(<'0.0.0'>,)");
    assert_eq!(get("DenyList"), "(<@a(sts) []>,)");
    assert_eq!(get("LastErrorKind"), "(<''>,)");

    let mut m = monitor(f.address());
    let o = output(&mut gdbus_call(
        f.address(),
        "org.ab_update_engine.Agent1.SetChannel",
        &["beta"],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let changed = m.wait_for(Duration::from_secs(10), |l| {
        l.contains("PropertiesChanged") && l.contains("'Channel': <'beta'>")
    });
    assert!(changed.is_some(), "{:#?}", m.lines);
    assert_eq!(get("Channel"), "(<'beta'>,)");

    let o = output(&mut gdbus_call(
        f.address(),
        "org.ab_update_engine.Agent1.Deny",
        &["3815.2.1", "bad kernel"],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        get("DenyList").contains("('3815.2.1', uint64 "),
        "{}",
        get("DenyList")
    );
    let o = output(&mut gdbus_call(
        f.address(),
        "org.ab_update_engine.Agent1.ClearDenyList",
        &[],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(get("DenyList"), "(<@a(sts) []>,)");

    // Bad input names the cause with the agent's error names.
    let o = output(&mut gdbus_call(
        f.address(),
        "org.ab_update_engine.Agent1.SetChannel",
        &["''"],
    ));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("org.ab_update_engine.Error.InvalidArgument"),
        "{}",
        stderr(&o)
    );
    let o = output(&mut gdbus_call(
        f.address(),
        "org.ab_update_engine.Agent1.Cancel",
        &[],
    ));
    assert!(
        stderr(&o).contains("org.ab_update_engine.Error.Busy"),
        "{}",
        stderr(&o)
    );
    let o = output(&mut gdbus_call(
        f.address(),
        "org.ab_update_engine.Agent1.Rollback",
        &[],
    ));
    assert!(
        stderr(&o).contains("org.ab_update_engine.Error.NotSupported"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn cancel_stops_a_download_and_sets_last_error() {
    let mut setup = Setup::default();
    // A slow download: 200 steps of 50 ms.
    for s in setup.script.iter_mut().skip(1).take(200) {
        s.delay = Duration::from_millis(50);
    }
    let f = Fixture::start(setup);
    let o = output(&mut gdbus_call(
        f.address(),
        "com.coreos.update1.Manager.AttemptUpdate",
        &[],
    ));
    assert!(o.status.success());
    f.wait_for(Operation::Downloading, Duration::from_secs(10));
    // ResetStatus is refused mid-download (update_engine returns an error too).
    let o = output(&mut gdbus_call(
        f.address(),
        "com.coreos.update1.Manager.ResetStatus",
        &[],
    ));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("org.ab_update_engine.Error.Busy"),
        "{}",
        stderr(&o)
    );
    let o = output(&mut gdbus_call(
        f.address(),
        "org.ab_update_engine.Agent1.Cancel",
        &[],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    f.wait_for(Operation::Idle, Duration::from_secs(5));
    let o = output(&mut gdbus_call(
        f.address(),
        "org.freedesktop.DBus.Properties.Get",
        &["org.ab_update_engine.Agent1", "LastErrorKind"],
    ));
    assert_eq!(stdout(&o), "(<'canceled'>,)\n");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        f.engine.state().operation(),
        Operation::Idle,
        "the script was stopped"
    );
}
