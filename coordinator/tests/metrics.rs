//! `update-coordinator` serves its metrics on its unix socket: a node that
//! needs a reboot while another holds the only FleetLock slot shows the
//! refused attempts and its pending wait; once the slot is free, the lock
//! is taken, the wait is measured and the node reboots. Parsed with a
//! Prometheus text-format parser; the shipped alerts and dashboard name
//! only metrics it exports.

mod common;

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Node;
use common::fleetlock_server::FleetLockServer;
use prometheus_parse::{Scrape, Value};

fn scrape(socket: &Path) -> Option<Scrape> {
    let mut s = UnixStream::connect(socket).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    Some(Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap())
}

fn value(s: &Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    let sample = s
        .samples
        .iter()
        .find(|x| x.metric == name && label.is_none_or(|(k, v)| x.labels.get(k) == Some(v)))
        .unwrap_or_else(|| panic!("no {name} {label:?}"));
    match sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        ref other => panic!("{name}: {other:?}"),
    }
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn reboot_lock_waits_are_exported() {
    let server = FleetLockServer::start(1);
    server
        .state
        .lock()
        .unwrap()
        .holders
        .insert("workers".into(), vec!["someone-else".into()]);
    let dir = tempfile::tempdir().unwrap();
    let conf = format!(
        "REBOOT_STRATEGY=fleet-lock\nLOCKSMITHD_ENDPOINT={}/\nLOCKSMITHD_GROUP=workers\n",
        server.url
    );
    let mut n = Node::new(dir.path(), "waiter", &conf);
    let socket = n
        .root
        .join("run/update-agent/public/coordinator-metrics.sock");
    n.need_reboot();
    let started = Instant::now();
    n.start();
    let busy = |s: &Scrape| {
        let attempts = "update_coordinator_reboot_lock_attempts_total";
        value(s, attempts, Some(("result", "busy")))
    };
    wait_until("two refused lock attempts", || {
        scrape(&socket).is_some_and(|s| busy(&s) >= 2.0)
    })
    .await;
    let s = scrape(&socket).unwrap();
    let state = |s: &Scrape, st| value(s, "update_coordinator_state", Some(("state", st)));
    assert_eq!(state(&s, "reboot-planned"), 1.0);
    assert_eq!(state(&s, "rebooting"), 0.0);
    let since = value(
        &s,
        "update_coordinator_reboot_pending_since_timestamp_seconds",
        None,
    );
    assert!(since > 0.0);
    let acquired = ("result", "acquired");
    let attempts = "update_coordinator_reboot_lock_attempts_total";
    assert_eq!(value(&s, attempts, Some(acquired)), 0.0);
    assert_eq!(
        value(
            &s,
            "update_coordinator_reboot_lock_wait_seconds_count",
            None
        ),
        0.0
    );
    assert!(!n.rebooted());

    server.state.lock().unwrap().holders.clear();
    wait_until("the reboot", || n.rebooted()).await;
    let s = scrape(&socket).expect("still serving while the machine goes down");
    assert_eq!(value(&s, attempts, Some(acquired)), 1.0);
    assert_eq!(
        value(
            &s,
            "update_coordinator_reboot_lock_wait_seconds_count",
            None
        ),
        1.0
    );
    let waited = value(&s, "update_coordinator_reboot_lock_wait_seconds_sum", None);
    // At least two 50 ms backoffs; at most the whole test.
    assert!(
        waited > 0.05 && waited < started.elapsed().as_secs_f64(),
        "{waited}"
    );
    assert_eq!(state(&s, "rebooting"), 1.0);
    assert_eq!(
        value(
            &s,
            "update_coordinator_reboot_pending_since_timestamp_seconds",
            None
        ),
        0.0
    );
    // Every coordinator metric the shipped alerts and dashboard name exists.
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/monitoring");
    for file in ["alerts.yml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(docs.join(file)).unwrap();
        let names: Vec<String> = text
            .match_indices("update_coordinator_")
            .map(|(i, _)| {
                let tail = &text[i..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(tail.len());
                tail[..end].to_string()
            })
            .collect();
        assert!(!names.is_empty(), "{file} names no coordinator metric");
        for name in names {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|sfx| name.strip_suffix(sfx))
                .unwrap_or(&name);
            assert!(
                s.samples
                    .iter()
                    .any(|x| x.metric == name || x.metric == base),
                "{file} names {name}, which the coordinator does not export"
            );
        }
    }
    n.kill();
}
