//! The real daemon's Prometheus metrics, scraped from its unix socket on a
//! test root and parsed with a text-format parser (`prometheus-parse`):
//! after a check with no update, a check the server fails, a full update
//! and a health-gate run, every value that moved is asserted. The
//! documented `curl --unix-socket` command works for an unprivileged user,
//! the server answers only `GET /metrics`, a stale socket of an earlier run
//! is replaced, and the alert rules only name metrics the daemon exports.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::dbus_bus::{
    Policy, PrivateBus, agent_bin, as_nobody, client, is_root, output, start_agent, stderr, stdout,
    workspace,
};
use e2e::fixture::{self, BOARD, Node, RUNNING, USR_MIB};
use e2e::{OmahaServer, Reply};
use prometheus_parse::{Sample, Scrape, Value};

const SOCKET: &str = "/run/update-agent/public/metrics.sock";

/// One HTTP/1.0 request on the socket: (status line, headers, body).
fn http(socket: &Path, request: &str) -> std::io::Result<(String, String, String)> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(request.as_bytes())?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    Ok((status.to_string(), headers.to_lowercase(), body.to_string()))
}

fn scrape(socket: &Path) -> Scrape {
    let (status, headers, body) =
        http(socket, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("scrape");
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        headers.contains("content-type: application/openmetrics-text"),
        "{headers}"
    );
    assert!(body.ends_with("# EOF\n"), "truncated exposition: {body}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("parse the exposition")
}

/// Waits for the socket to answer a scrape (the daemon binds it at start).
fn wait_for_metrics(socket: &Path) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if http(socket, "GET /metrics HTTP/1.0\r\n\r\n").is_ok() {
            return scrape(socket);
        }
        assert!(
            Instant::now() < deadline,
            "no metrics on {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn find<'a>(s: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    s.samples.iter().find(|x| {
        x.metric == name
            && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v))
            && x.labels.len() == labels.len()
    })
}

fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(s, name, labels).map(|x| &x.value) {
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        other => panic!("{name}{labels:?}: {other:?}"),
    }
}

fn checks(s: &Scrape, result: &str) -> f64 {
    value(s, "update_agent_checks_total", &[("result", result)])
}

fn status(s: &Scrape) -> String {
    let on: Vec<_> = s
        .samples
        .iter()
        .filter(|x| x.metric == "update_agent_status" && x.value == Value::Gauge(1.0))
        .filter_map(|x| x.labels.get("status").map(str::to_string))
        .collect();
    assert_eq!(on.len(), 1, "exactly one status is 1: {on:?}");
    on[0].clone()
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64
}

/// A socket file left by a killed daemon: nobody listens on it.
fn stale_socket(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(path).unwrap());
    assert!(std::fs::metadata(path).unwrap().file_type().is_socket());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_exports_what_it_did() {
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    node.add_config("[schedule]\nenabled = false\n");
    let socket = node.path(SOCKET);
    stale_socket(&socket);
    let busdir = tempfile::tempdir().unwrap();
    let bus = PrivateBus::start(busdir.path(), Policy::Shipped);
    let (_daemon, _monitor) = start_agent(node.root(), &bus.address);

    let s = wait_for_metrics(&socket);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o666);
    assert_eq!(mode(socket.parent().unwrap()), 0o755);
    assert_eq!(status(&s), "UPDATE_STATUS_IDLE");
    for result in ["no_update", "update_available", "refused", "failed"] {
        assert_eq!(checks(&s, result), 0.0, "{result}");
    }
    let build = [
        ("version", env!("CARGO_PKG_VERSION")),
        ("os_version", RUNNING),
        ("board", BOARD),
        ("channel", "stable"),
    ];
    assert_eq!(value(&s, "update_agent_build_info", &build), 1.0);
    assert_eq!(value(&s, "update_agent_deny_list_entries", &[]), 0.0);
    assert_eq!(value(&s, "update_agent_deny_list_readable", &[]), 1.0);
    assert_eq!(
        value(&s, "update_agent_next_check_timestamp_seconds", &[]),
        0.0
    );

    // 1. No update.
    let before = unix_now();
    server.push(Reply::NoUpdate);
    let o = output(&mut client(&bus.address, &["-update"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let s = scrape(&socket);
    assert_eq!(checks(&s, "no_update"), 1.0);
    assert_eq!(checks(&s, "failed"), 0.0);
    assert_eq!(status(&s), "UPDATE_STATUS_IDLE");
    let checked = value(
        &s,
        "update_agent_last_successful_check_timestamp_seconds",
        &[],
    );
    assert!(checked >= before && checked <= unix_now(), "{checked}");
    assert!(value(&s, "update_agent_last_check_timestamp_seconds", &[]) >= checked);
    assert!(
        !s.samples
            .iter()
            .any(|x| x.metric == "update_agent_errors_total")
    );

    // 2. The server fails the check.
    server.push(Reply::Status(500));
    let o = output(&mut client(&bus.address, &["-update"]));
    assert!(!o.status.success(), "{}", stdout(&o));
    let s = scrape(&socket);
    assert_eq!(checks(&s, "failed"), 1.0);
    assert_eq!(checks(&s, "no_update"), 1.0);
    let kind = [("kind", "http_status")];
    assert_eq!(value(&s, "update_agent_errors_total", &kind), 1.0);
    assert_eq!(
        value(
            &s,
            "update_agent_last_successful_check_timestamp_seconds",
            &[]
        ),
        checked,
        "a failed check is not a successful one"
    );
    assert_eq!(status(&s), "UPDATE_STATUS_IDLE");

    // 3. A full update.
    let usr = fixture::image_bytes(9, (USR_MIB << 20) as usize);
    let payload = node.payload("3600.0.0", BOARD, &usr, b"kernel of 3600.0.0\n");
    server.offer_payload("3600.0.0", &payload);
    let o = output(&mut client(&bus.address, &["-update"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let s = scrape(&socket);
    assert_eq!(status(&s), "UPDATE_STATUS_UPDATED_NEED_REBOOT");
    let staged = [("version", "3600.0.0")];
    assert_eq!(value(&s, "update_agent_staged_version_info", &staged), 1.0);
    assert_eq!(checks(&s, "update_available"), 1.0);
    assert_eq!(checks(&s, "no_update") + checks(&s, "failed"), 2.0);
    let full = [("image", "usr"), ("payload", "full")];
    assert_eq!(
        value(&s, "update_agent_download_bytes_total", &full),
        payload.len() as f64
    );
    assert!(
        find(
            &s,
            "update_agent_download_bytes_total",
            &[("image", "usr"), ("payload", "delta")]
        )
        .is_none()
    );
    let ok = [("result", "success")];
    assert_eq!(
        value(&s, "update_agent_install_duration_seconds_count", &ok),
        1.0
    );
    assert!(value(&s, "update_agent_install_duration_seconds_sum", &ok) > 0.0);
    match &find(&s, "update_agent_install_duration_seconds", &ok)
        .unwrap()
        .value
    {
        Value::Histogram(buckets) => {
            let inf = buckets.iter().find(|b| b.less_than.is_infinite()).unwrap();
            assert_eq!(inf.count, 1.0);
        }
        v => panic!("not a histogram: {v:?}"),
    }
    assert!(
        find(
            &s,
            "update_agent_install_duration_seconds_count",
            &[("result", "failure")]
        )
        .is_none()
    );
    assert_eq!(value(&s, "update_agent_errors_total", &kind), 1.0);

    // 4. The health gate (its own process) records its verdict; the daemon
    // reads it at the next scrape. Slot A is booted and good here.
    let gate = output(
        Command::new(agent_bin())
            .arg("health-gate")
            .arg("--root")
            .arg(node.root()),
    );
    assert!(gate.status.success(), "{}", stderr(&gate));
    let s = scrape(&socket);
    let verdict = |v| {
        value(
            &s,
            "update_agent_health_gate_verdicts_total",
            &[("verdict", v)],
        )
    };
    assert_eq!(verdict("already_good"), 1.0);
    assert_eq!(verdict("fell_back"), 0.0);

    // The documented command, as an unprivileged user.
    if is_root() {
        open_path_to(node.root(), node.dir.path());
        let o = output(as_nobody("curl").args([
            "-sf",
            "--unix-socket",
            socket.to_str().unwrap(),
            "http://localhost/metrics",
        ]));
        assert!(o.status.success(), "curl as nobody: {}", stderr(&o));
        let text = stdout(&o);
        let parsed = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        assert_eq!(status(&parsed), "UPDATE_STATUS_UPDATED_NEED_REBOOT");
    }

    // Only GET/HEAD /metrics.
    let (st, _, _) = http(&socket, "GET / HTTP/1.0\r\n\r\n").unwrap();
    assert!(st.contains(" 404 "), "{st}");
    let (st, headers, _) = http(&socket, "POST /metrics HTTP/1.0\r\n\r\n").unwrap();
    assert!(st.contains(" 405 "), "{st}");
    assert!(headers.contains("allow: get, head"), "{headers}");
    let (st, _, _) = http(&socket, "garbage\r\n\r\n").unwrap();
    assert!(st.contains(" 400 ") || st.is_empty(), "{st}");

    // Every metric an alert or the dashboard names is exported.
    let s = scrape(&socket);
    for file in [
        "docs/monitoring/alerts.yml",
        "docs/monitoring/grafana-dashboard.json",
    ] {
        let text = std::fs::read_to_string(workspace().join(file)).unwrap();
        let names = metric_names(&text);
        assert!(!names.is_empty(), "{file} names no metric");
        for name in names {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|sfx| name.strip_suffix(sfx))
                .unwrap_or(&name);
            let exported = s
                .samples
                .iter()
                .any(|x| x.metric == name || x.metric == base);
            assert!(
                exported,
                "{file} names {name}, which the daemon does not export"
            );
        }
    }
}

/// The metric names (`update_agent_…`) a rule or dashboard file uses.
fn metric_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .match_indices("update_agent_")
        .map(|(i, _)| {
            text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Lets other users walk from `top` down to `root` (tempdirs are 0700).
fn open_path_to(root: &Path, top: &Path) {
    let mut p = PathBuf::from(root);
    loop {
        let mut perms = std::fs::metadata(&p).unwrap().permissions();
        perms.set_mode(perms.mode() | 0o755);
        std::fs::set_permissions(&p, perms).unwrap();
        if p == top || !p.pop() {
            break;
        }
    }
}

/// `SERVER=disabled` in /etc's update.conf: scheduled checks are skipped
/// without a request or an error and counted as `disabled`, the gauge says
/// so (the not-checked-in alert leaves the node alone), an explicit check
/// fails naming the setting, and a server set again is used at once. The
/// socket is the one `metrics.socket` names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_updates_skip_scheduled_checks_quietly() {
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    let conf = node.path("/etc/flatcar/update.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::write(&conf, "SERVER=disabled\n").unwrap();
    // The socket from the settings, not the default.
    node.add_config(
        "[schedule]\nfirst_check_ms = 50\nfirst_check_fuzz_ms = 0\nperiodic_ms = 100\nperiodic_fuzz_ms = 0\n[metrics]\nsocket = \"/run/m/agent.sock\"\n",
    );
    let busdir = tempfile::tempdir().unwrap();
    let bus = PrivateBus::start(busdir.path(), Policy::Shipped);
    let (_daemon, _monitor) = start_agent(node.root(), &bus.address);
    let socket = node.path("/run/m/agent.sock");

    let mut s = wait_for_metrics(&socket);
    let deadline = Instant::now() + Duration::from_secs(30);
    while checks(&s, "disabled") < 2.0 {
        assert!(Instant::now() < deadline, "no scheduled check was skipped");
        std::thread::sleep(Duration::from_millis(50));
        s = scrape(&socket);
    }
    assert_eq!(value(&s, "update_agent_updates_disabled", &[]), 1.0);
    assert_eq!(checks(&s, "failed"), 0.0);
    assert_eq!(status(&s), "UPDATE_STATUS_IDLE");
    assert!(
        !s.samples
            .iter()
            .any(|x| x.metric == "update_agent_errors_total"),
        "a skipped check is not an error"
    );
    assert!(
        server.requests().is_empty(),
        "a disabled node sent a request"
    );

    let o = output(&mut client(&bus.address, &["-update"]));
    assert!(!o.status.success(), "{}", stdout(&o));
    let s = scrape(&socket);
    assert_eq!(checks(&s, "failed"), 1.0);
    assert_eq!(
        value(&s, "update_agent_errors_total", &[("kind", "disabled")]),
        1.0
    );
    let json = output(&mut client(&bus.address, &["-json"]));
    assert!(
        stdout(&json).contains("SERVER=disabled"),
        "the last error names the setting: {}",
        stdout(&json)
    );

    std::fs::write(&conf, format!("SERVER={}\n", server.update_url())).unwrap();
    let o = output(&mut client(&bus.address, &["-update"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let s = scrape(&socket);
    assert_eq!(value(&s, "update_agent_updates_disabled", &[]), 0.0);
    assert!(checks(&s, "no_update") >= 1.0);
}
