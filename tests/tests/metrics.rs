//! The real daemon's Prometheus metrics, scraped from its unix socket the
//! way an operator does (`curl --unix-socket … http://localhost/metrics`,
//! as an unprivileged user) and read with a Prometheus text-format parser:
//! after a check with no update, a failed check, and a full update.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use e2e::dbus_bus::{Policy, PrivateBus, as_nobody, client, output, spawn_agent, stderr, stdout};
use e2e::fixture::{self, BOARD, Node, PAYLOAD_NAME, USR_MIB};
use e2e::{OmahaServer, Reply, UpdateSpec};
use prometheus_parse::{Scrape, Value};

/// `name{k="v",…}` → value, for every sample of a scrape.
type Samples = BTreeMap<String, f64>;

/// One scrape as the unprivileged user, through curl; `None` while the
/// socket does not answer.
fn scrape(socket: &Path) -> Option<Samples> {
    let o = output(as_nobody("curl").args([
        "-sf",
        "--unix-socket",
        socket.to_str().unwrap(),
        "http://localhost/metrics",
    ]));
    if !o.status.success() {
        return None;
    }
    let text = stdout(&o);
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = Scrape::parse(lines).expect("the exposition parses");
    let mut samples = Samples::new();
    for s in scrape.samples {
        let mut labels: Vec<String> = s
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        labels.sort();
        let value = match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            Value::Histogram(_) | Value::Summary(_) => continue,
        };
        samples.insert(format!("{}{{{}}}", s.metric, labels.join(",")), value);
    }
    Some(samples)
}

/// Scrapes until `ready` holds (the daemon acts asynchronously).
fn scrape_until(socket: &Path, what: &str, ready: impl Fn(&Samples) -> bool) -> Samples {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let last = scrape(socket);
        if let Some(s) = last.as_ref().filter(|s| ready(s)) {
            return s.clone();
        }
        assert!(Instant::now() < deadline, "{what}: last scrape {last:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn get(s: &Samples, series: &str) -> f64 {
    *s.get(series)
        .unwrap_or_else(|| panic!("no {series} in {s:#?}"))
}

/// Sum of a family's samples whose series starts with `prefix`.
fn sum(s: &Samples, prefix: &str) -> f64 {
    s.iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .sum()
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_a_no_update_check_a_failed_check_and_an_update() {
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    node.add_config("[schedule]\nenabled = false\n");
    // The scraper runs as nobody: the way to the socket must be open.
    std::fs::set_permissions(node.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket: PathBuf = node.root().join("run/update-agent/public/metrics.sock");
    let busdir = tempfile::tempdir().unwrap();
    let bus = PrivateBus::start(busdir.path(), Policy::Shipped);
    let _daemon = spawn_agent(node.root(), &bus.address);
    let start = scrape_until(&socket, "the socket answers", |_| true);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o666);
    assert_eq!(mode(socket.parent().unwrap()), 0o755);
    assert_eq!(
        get(
            &start,
            "update_agent_status{operation=\"UPDATE_STATUS_IDLE\"}"
        ),
        1.0
    );
    assert_eq!(get(&start, "update_agent_deny_list_entries{}"), 0.0);
    assert!(
        !start
            .keys()
            .any(|k| k.starts_with("update_agent_checks_total"))
    );

    // 1. No update.
    server.push(Reply::NoUpdate);
    let t0 = now().floor();
    let o = output(&mut client(&bus.address, &["-check_for_update"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let s = scrape_until(&socket, "the no-update check", |s| {
        s.contains_key("update_agent_checks_total{outcome=\"no_update\"}")
    });
    assert_eq!(
        get(&s, "update_agent_checks_total{outcome=\"no_update\"}"),
        1.0
    );
    assert_eq!(sum(&s, "update_agent_checks_total"), 1.0);
    let last_ok = get(&s, "update_agent_last_successful_check_timestamp_seconds{}");
    assert!(last_ok >= t0 && last_ok <= now(), "{last_ok}");
    assert_eq!(
        get(&s, "update_agent_last_check_timestamp_seconds{}"),
        last_ok
    );
    let info = s
        .keys()
        .find(|k| k.starts_with("update_agent_build_info{"))
        .expect("build info");
    for part in [
        "board=\"amd64-usr\"",
        "channel=\"stable\"",
        "os_version=\"3510.2.0\"",
    ] {
        assert!(info.contains(part), "{info}");
    }

    // 2. The server fails the check.
    server.push(Reply::Status(500));
    let o = output(&mut client(&bus.address, &["-check_for_update"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let s = scrape_until(&socket, "the failed check", |s| {
        s.contains_key("update_agent_checks_total{outcome=\"error\"}")
            && s.get("update_agent_status{operation=\"UPDATE_STATUS_IDLE\"}") == Some(&1.0)
    });
    assert_eq!(get(&s, "update_agent_checks_total{outcome=\"error\"}"), 1.0);
    assert_eq!(sum(&s, "update_agent_errors_total"), 1.0);
    let kinds: Vec<&String> = s
        .keys()
        .filter(|k| k.starts_with("update_agent_errors_total"))
        .collect();
    assert!(
        !kinds[0].contains("unknown"),
        "a stable error kind: {kinds:?}"
    );
    // The failed check moved the last attempt, not the last success.
    assert_eq!(
        get(&s, "update_agent_last_successful_check_timestamp_seconds{}"),
        last_ok
    );
    assert!(get(&s, "update_agent_last_check_timestamp_seconds{}") >= last_ok);

    // 3. A full update.
    let usr = fixture::image_bytes(9, (USR_MIB << 20) as usize);
    let payload = node.payload("3600.0.0", BOARD, &usr, b"kernel of 3600.0.0\n");
    server.serve_file(PAYLOAD_NAME, payload.clone());
    server.push(Reply::Update(UpdateSpec::for_payload(
        "3600.0.0",
        &server.files_url(),
        PAYLOAD_NAME,
        &payload,
    )));
    let o = output(&mut client(&bus.address, &["-update"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let s = scrape_until(&socket, "the update", |s| {
        s.get("update_agent_status{operation=\"UPDATE_STATUS_UPDATED_NEED_REBOOT\"}") == Some(&1.0)
    });
    assert_eq!(
        get(&s, "update_agent_checks_total{outcome=\"update\"}"),
        1.0
    );
    assert_eq!(sum(&s, "update_agent_checks_total"), 3.0);
    assert_eq!(
        get(
            &s,
            "update_agent_downloaded_bytes_total{image=\"os\",payload=\"full\"}"
        ),
        payload.len() as f64
    );
    assert_eq!(
        sum(&s, "update_agent_downloaded_bytes_total"),
        payload.len() as f64
    );
    assert_eq!(
        get(&s, "update_agent_staged_version_info{version=\"3600.0.0\"}"),
        1.0
    );
    assert_eq!(
        get(
            &s,
            "update_agent_install_duration_seconds_count{result=\"staged\"}"
        ),
        1.0
    );
    assert!(
        get(
            &s,
            "update_agent_install_duration_seconds_sum{result=\"staged\"}"
        ) > 0.0
    );
    assert_eq!(sum(&s, "update_agent_errors_total"), 1.0, "no new error");
    assert_eq!(
        get(&s, "update_agent_status{operation=\"UPDATE_STATUS_IDLE\"}"),
        0.0
    );
}
