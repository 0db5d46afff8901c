//! The shipped bus policy on a real `dbus-daemon`: an unprivileged caller is
//! refused every method (AttemptUpdate, SetChannel, ...) and the CLI names
//! the cause, but still reads the status from the broadcast signals; user
//! `core` may call exactly the three Manager methods.

#[path = "dbus_common.rs"]
mod common;

use std::process::Command;
use std::time::Duration;

use common::{Fixture, Setup};
use e2e::dbus_bus::{
    LineReader, Policy, as_nobody, client, client_as_nobody, gdbus_call, gdbus_call_as, is_root,
    output, stderr, stdout,
};
use update_agent::fsm::{Event, Operation};

const DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";

/// A command run as the unprivileged user: uid 65534 when root, else the
/// current user (the service then runs with only `allow own` for it).
fn unprivileged(program: &str) -> Command {
    if is_root() {
        as_nobody(program)
    } else {
        Command::new(program)
    }
}

#[test]
fn an_unprivileged_caller_is_refused_but_receives_status_signals() {
    let root = is_root();
    if !root {
        eprintln!(
            "not root: the current user plays the unprivileged caller (service allowed only to own the name)"
        );
    }
    let f = Fixture::start(Setup {
        policy: if root {
            Policy::Shipped
        } else {
            Policy::OwnOnly
        },
        ..Setup::default()
    });
    let addr = f.address().to_string();
    let conf = f.path("/etc/flatcar/update.conf");

    let mut monitor = LineReader::spawn(unprivileged("gdbus").args([
        "monitor",
        "--address",
        &addr,
        "--dest",
        "com.coreos.update1",
    ]));
    monitor
        .wait_for(Duration::from_secs(10), |l| l.contains("is owned by"))
        .expect("monitor ready");

    for (method, args) in [
        ("com.coreos.update1.Manager.AttemptUpdate", &[][..]),
        ("com.coreos.update1.Manager.ResetStatus", &[][..]),
        ("com.coreos.update1.Manager.GetStatus", &[][..]),
        ("org.ab_update_engine.Agent1.SetChannel", &["beta"][..]),
        ("org.ab_update_engine.Agent1.Rollback", &[][..]),
        ("org.ab_update_engine.Agent1.Cancel", &[][..]),
        ("org.ab_update_engine.Agent1.ClearDenyList", &[][..]),
        (
            "org.freedesktop.DBus.Properties.Get",
            &["org.ab_update_engine.Agent1", "Status"][..],
        ),
        ("org.freedesktop.DBus.Introspectable.Introspect", &[][..]),
    ] {
        let mut c = if root {
            gdbus_call_as("gdbus", &addr, method, args, true)
        } else {
            gdbus_call(&addr, method, args)
        };
        let o = output(&mut c);
        assert!(!o.status.success(), "{method} allowed");
        assert!(stderr(&o).contains(DENIED), "{method}: {}", stderr(&o));
    }
    assert_eq!(
        f.engine.state(),
        update_agent::fsm::State::Idle,
        "AttemptUpdate had no effect"
    );
    assert!(!conf.exists(), "SetChannel had no effect");

    // The CLI names the cause and exits 1.
    for args in [
        &["-check_for_update"][..],
        &["-channel", "beta"][..],
        &["-status"][..],
    ] {
        let mut c = if root {
            client_as_nobody(&addr, args)
        } else {
            client(&addr, args)
        };
        let o = output(&mut c);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&o).contains("permission denied: the D-Bus policy does not let uid"),
            "{args:?}: {}",
            stderr(&o)
        );
        assert!(stdout(&o).is_empty());
    }
    assert!(!conf.exists());

    // Signals still reach the unprivileged user: a status change is seen.
    // (Apart in time: the service broadcasts the latest status, so two
    // changes within microseconds may be seen as one.)
    f.engine
        .apply(Event::CheckRequested { interactive: false })
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    f.engine.apply(Event::NoUpdate).unwrap();
    let seen = monitor.wait_for(Duration::from_secs(10), |l| {
        l.contains("StatusUpdate") && l.contains("UPDATE_STATUS_CHECKING_FOR_UPDATE")
    });
    assert!(seen.is_some(), "{:#?}", monitor.lines);
    let idle = monitor.wait_for(Duration::from_secs(10), |l| {
        l.contains("StatusUpdate") && l.contains("UPDATE_STATUS_IDLE")
    });
    assert!(idle.is_some(), "{:#?}", monitor.lines);
    assert_eq!(f.engine.state().operation(), Operation::Idle);
}

#[test]
fn user_core_may_call_the_three_manager_methods_only() {
    let policy = std::fs::read_to_string(e2e::dbus_bus::shipped_policy()).unwrap();
    if !is_root() {
        // Without root there is no second uid to play core: check the rules'
        // presence, and say so.
        eprintln!("not root: checking the core rules textually only");
        for m in ["AttemptUpdate", "ResetStatus", "GetStatus"] {
            assert!(policy.contains(&format!("send_member=\"{m}\"")), "{m}");
        }
        return;
    }
    // uid 65534 plays `core` (the policy file with user="core" -> "nobody").
    let f = Fixture::start(Setup {
        policy: Policy::CoreIsNobody,
        ..Setup::default()
    });
    let addr = f.address().to_string();
    let call = |method: &str, args: &[&str]| {
        output(&mut gdbus_call_as("gdbus", &addr, method, args, true))
    };

    let o = call("com.coreos.update1.Manager.GetStatus", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "(int64 0, 0.0, 'UPDATE_STATUS_IDLE', '0.0.0', int64 0)\n"
    );
    let o = call("com.coreos.update1.Manager.ResetStatus", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    for (method, args) in [
        ("org.ab_update_engine.Agent1.SetChannel", &["beta"][..]),
        ("org.ab_update_engine.Agent1.Rollback", &[][..]),
        (
            "org.freedesktop.DBus.Properties.Get",
            &["org.ab_update_engine.Agent1", "Status"][..],
        ),
        ("org.freedesktop.DBus.Introspectable.Introspect", &[][..]),
    ] {
        let o = call(method, args);
        assert!(stderr(&o).contains(DENIED), "{method}: {}", stderr(&o));
    }
    let o = call("com.coreos.update1.Manager.AttemptUpdate", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    f.wait_for(Operation::UpdatedNeedReboot, Duration::from_secs(20));

    // The CLI as "core": -status works, -channel is refused with the reason.
    let o = output(&mut client_as_nobody(&addr, &["-status"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("CURRENT_OP=UPDATE_STATUS_UPDATED_NEED_REBOOT\n"));
    let o = output(&mut client_as_nobody(&addr, &["-channel", "beta"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("org.ab_update_engine.Agent1.SetChannel (needs root)"),
        "{}",
        stderr(&o)
    );
}
