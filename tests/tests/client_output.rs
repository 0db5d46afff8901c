//! `update_engine_client` against the service on a private bus: Flatcar's
//! output byte for byte in every mode, and the exit codes.

#[path = "dbus_common.rs"]
mod common;

use std::time::Duration;

use common::{Fixture, Setup, failing_script, noupdate_script};
use e2e::dbus_bus::{
    LineReader, Policy, PrivateBus, client, gdbus_call, output, stderr, stdout, wait_for_match_rule,
};
use omaha::{ErrorCode, ErrorFlags, EventErrorCode};
use update_agent::fsm::Operation;

const IDLE_BLOCK: &str = "LAST_CHECKED_TIME=0\nPROGRESS=0.000000\nCURRENT_OP=UPDATE_STATUS_IDLE\nNEW_VERSION=0.0.0\nNEW_SIZE=0\n";

/// Splits stdout into 5-line status blocks, checking each line's shape.
fn blocks(out: &str) -> Vec<Vec<String>> {
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len() % 5, 0, "{out}");
    lines
        .chunks(5)
        .map(|c| {
            let keys = [
                "LAST_CHECKED_TIME=",
                "PROGRESS=",
                "CURRENT_OP=",
                "NEW_VERSION=",
                "NEW_SIZE=",
            ];
            for (l, k) in c.iter().zip(keys) {
                assert!(l.starts_with(k), "{l:?} in\n{out}");
            }
            let p = c[1].trim_start_matches("PROGRESS=");
            assert!(p.len() == 8 && p.as_bytes()[1] == b'.', "%f format: {p}");
            c.iter().map(|s| s.to_string()).collect()
        })
        .collect()
}

#[test]
fn status_and_json_are_exact() {
    let f = Fixture::start(Setup::default());
    for flag in ["-status", "--status", "-status=true"] {
        let o = output(&mut client(f.address(), &[flag]));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stdout(&o), IDLE_BLOCK, "{flag}");
    }
    let o = output(&mut client(f.address(), &["-json"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "{\"booted_slot\":\"\",\"channel\":\"stable\",\"current_operation\":\"UPDATE_STATUS_IDLE\",\"current_version\":\"3510.2.0\",\"deny_list\":[],\"last_checked_time\":0,\"last_error\":null,\"new_size\":0,\"new_version\":\"0.0.0\",\"next_check_time\":null,\"progress\":0.0,\"schema_version\":1,\"slots\":[],\"staged_version\":null}\n"
    );
    // No action: update_engine_client logs "Done." and exits 0.
    let o = output(&mut client(f.address(), &[]));
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).ends_with("] Done.\n"), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
}

#[test]
fn update_success_prints_blocks_and_exits_0() {
    let f = Fixture::start(Setup::default());
    let o = output(&mut client(f.address(), &["-update"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let b = blocks(&stdout(&o));
    let last = b.last().unwrap();
    assert_eq!(last[1], "PROGRESS=1.000000");
    assert_eq!(last[2], "CURRENT_OP=UPDATE_STATUS_UPDATED_NEED_REBOOT");
    assert_eq!(last[3], "NEW_VERSION=3815.2.1");
    assert_eq!(last[4], "NEW_SIZE=458234665");
    assert_ne!(last[0], "LAST_CHECKED_TIME=0");
    assert!(
        stderr(&o).contains("] Update succeeded -- reboot needed.\n"),
        "{}",
        stderr(&o)
    );
    // -status now shows the same block.
    let o = output(&mut client(f.address(), &["-status"]));
    assert_eq!(stdout(&o), last.join("\n") + "\n");
}

#[test]
fn update_without_update_exits_0() {
    let f = Fixture::start(Setup {
        script: noupdate_script(),
        ..Setup::default()
    });
    let o = output(&mut client(f.address(), &["--update"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let b = blocks(&stdout(&o));
    assert_eq!(b.last().unwrap()[2], "CURRENT_OP=UPDATE_STATUS_IDLE");
    assert!(
        stderr(&o).contains("] No update available\n"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_failed_update_exits_1_with_the_error() {
    let code = EventErrorCode::new(ErrorCode::DownloadWriteError, ErrorFlags::NONE);
    let f = Fixture::start(Setup {
        script: failing_script(code),
        ..Setup::default()
    });
    let o = output(&mut client(f.address(), &["-update"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let b = blocks(&stdout(&o));
    assert_eq!(b.last().unwrap()[2], "CURRENT_OP=UPDATE_STATUS_IDLE");
    assert!(
        stderr(&o).contains("update_engine_client: the update failed: update failed with error code 14 (update_failed, error 14 DownloadWriteError)"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("No update available"));
    // -json names the code and its flags.
    let json = stdout(&output(&mut client(f.address(), &["-json"])));
    assert!(
        json.contains("\"code_name\":\"14 DownloadWriteError\""),
        "{json}"
    );
}

#[test]
fn update_on_a_terminal_shows_a_progress_bar() {
    let f = Fixture::start(Setup::default());
    let bin = e2e::dbus_bus::client_bin();
    // `script` gives the client a pseudo-terminal as stdout.
    let o = output(
        std::process::Command::new("script")
            .args(["-qec", &format!("{} -update", bin.display()), "/dev/null"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", f.address()),
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    // indicatif's bar: the operation and version, bytes of the release
    // done and in all, the rate and the time left.
    assert!(out.contains("DOWNLOADING 3815.2.1 ["), "{out:?}");
    assert!(out.contains(" MiB/437.01 MiB "), "{out:?}");
    assert!(out.contains("B/s ETA "), "{out:?}");
    assert!(
        out.contains("UPDATED_NEED_REBOOT 3815.2.1 [") && out.contains("437.01 MiB/437.01 MiB"),
        "{out:?}"
    );
    // Then the final status block on its own lines.
    assert!(
        out.contains("\nLAST_CHECKED_TIME=")
            && out.contains("CURRENT_OP=UPDATE_STATUS_UPDATED_NEED_REBOOT\r\n"),
        "{out:?}"
    );
}

#[test]
fn watch_for_updates_logs_each_signal() {
    let f = Fixture::start(Setup {
        script: noupdate_script(),
        ..Setup::default()
    });
    let mut w = LineReader::spawn(&mut client(f.address(), &["-watch_for_updates"]));
    wait_for_match_rule(
        f.address(),
        "member='StatusUpdate'",
        Duration::from_secs(20),
    );
    let o = output(&mut client(f.address(), &["-check_for_update"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let done = w.wait_for(Duration::from_secs(10), |l| {
        l.ends_with("]   current_operation: UPDATE_STATUS_IDLE")
    });
    assert!(done.is_some(), "{:#?}", w.lines);
    let msgs: Vec<&str> = w
        .lines
        .iter()
        .map(|l| {
            let l = l.strip_prefix("stderr: ").expect("glog goes to stderr");
            assert!(
                l.starts_with('I') && l.contains(" update_engine_client.rs:"),
                "glog prefix: {l}"
            );
            l.split_once("] ").unwrap().1
        })
        .collect();
    let first = msgs
        .iter()
        .position(|m| *m == "Got status update:")
        .unwrap();
    assert_eq!(
        &msgs[first..first + 6],
        [
            "Got status update:",
            "  last_checked_time: 0",
            "  progress: 0",
            "  current_operation: UPDATE_STATUS_CHECKING_FOR_UPDATE",
            "  new_version: 0.0.0",
            "  new_size: 0",
        ]
    );
}

#[test]
fn deny_list_cancel_and_flags() {
    let f = Fixture::start(Setup::default());
    let o = output(&mut gdbus_call(
        f.address(),
        "org.ab_update_engine.Agent1.Deny",
        &["3815.2.1", "health check failed"],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = output(&mut client(f.address(), &["-deny_list"]));
    assert_eq!(o.status.code(), Some(0));
    let line = stdout(&o);
    let fields: Vec<&str> = line.trim_end().split('\t').collect();
    assert_eq!(
        (fields[0], fields[2]),
        ("3815.2.1", "health check failed"),
        "{line}"
    );
    assert!(fields[1].parse::<u64>().unwrap() > 1_700_000_000);
    let o = output(&mut client(f.address(), &["-deny_list", "-json"]));
    assert!(
        stdout(&o).starts_with("[{\"reason\":\"health check failed\",\"since\":"),
        "{}",
        stdout(&o)
    );
    let o = output(&mut client(f.address(), &["-clear_deny_list"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = output(&mut client(f.address(), &["-deny_list"]));
    assert_eq!(stdout(&o), "");

    let o = output(&mut client(f.address(), &["-cancel"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("Cancel failed: nothing to cancel in UPDATE_STATUS_IDLE"),
        "{}",
        stderr(&o)
    );
    let o = output(&mut client(f.address(), &["-rollback"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("the boot disk is unknown on this node"),
        "{}",
        stderr(&o)
    );
    let o = output(&mut client(f.address(), &["-bogus"]));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "ERROR: unknown command line flag 'bogus'\n");
    assert_eq!(f.engine.state().operation(), Operation::Idle);
}

#[test]
fn errors_name_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    // A bus without the service.
    let bus = PrivateBus::start(dir.path(), Policy::Shipped);
    for args in [
        &["-status"][..],
        &["-update"][..],
        &["-check_for_update"][..],
    ] {
        let o = output(&mut client(&bus.address, args));
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let not_running = "update_engine_client: the update engine is not running (com.coreos.update1 has no owner on the system bus)";
        // Three retries (Flatcar's client tries 4 times), then the error.
        let want = format!("{not_running}; retrying in 20ms\n").repeat(3) + not_running + "\n";
        assert_eq!(stderr(&o), want, "{args:?}");
        assert_eq!(stdout(&o), "");
    }
    // No bus at all.
    let missing = format!("unix:path={}/nothing", dir.path().display());
    let o = output(&mut client(&missing, &["-status"]));
    assert_eq!(o.status.code(), Some(1));
    let last = stderr(&o).lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with(&format!(
            "update_engine_client: cannot connect to the system bus ({missing})"
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(stderr(&o).matches("retrying in 20ms").count(), 3);
}

/// A client started before the engine owns its name (right after boot)
/// waits for it, as Flatcar's client does, instead of failing.
#[test]
fn the_client_waits_for_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let bus = PrivateBus::start(dir.path(), Policy::Shipped);
    let node = e2e::fixture::Node::new("http://127.0.0.1:9/v1/update/");
    node.add_config("[schedule]\nenabled = false\n");
    // Built before the client starts waiting, so only the daemon's start
    // counts against the client's 3 × 3 s of retries.
    let agent_bin = e2e::dbus_bus::agent_bin();
    let mut waiting = client(&bus.address, &["-status"]);
    waiting.env("UPDATE_ENGINE_CLIENT_RETRY_MS", "3000");
    let waiting = waiting
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut agent = std::process::Command::new(agent_bin)
        .arg("--root")
        .arg(node.root())
        .args(["--bus-address", &bus.address])
        .spawn()
        .unwrap();
    let o = waiting.wait_with_output().unwrap();
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("retrying in 3s"), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("CURRENT_OP=UPDATE_STATUS_IDLE"),
        "{}",
        stdout(&o)
    );
}
