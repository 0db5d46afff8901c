//! The shipped monitoring files, checked with Prometheus's own `promtool`
//! (Debian's `prometheus` package): the alert rules load, their unit tests
//! (`alerts.test.yml`: a node that stops checking in, an update that fails
//! twice, a rejected slot, an unreadable deny list) pass, and every query of
//! the Grafana dashboard is valid PromQL. That each metric they name is
//! exported by the daemon is checked against a real scrape in `metrics.rs`.

use std::path::Path;
use std::process::Command;

use e2e::dbus_bus::{output, stderr, stdout, workspace};

fn promtool(args: &[&str], dir: &Path) -> std::process::Output {
    output(
        Command::new("promtool")
            .args(args)
            .current_dir(dir)
            .env("NO_COLOR", "1"),
    )
}

fn monitoring() -> std::path::PathBuf {
    workspace().join("docs/monitoring")
}

#[test]
fn alert_rules_load_and_their_unit_tests_pass() {
    let o = promtool(&["check", "rules", "alerts.yml"], &monitoring());
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("SUCCESS: 6 rules found"),
        "{}",
        stdout(&o)
    );
    let o = promtool(&["test", "rules", "alerts.test.yml"], &monitoring());
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

/// Each dashboard query as a recording rule, with Grafana's variables
/// replaced, so `promtool check rules` parses it.
fn dashboard_as_rules() -> (String, usize) {
    let text = std::fs::read_to_string(monitoring().join("grafana-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    assert_eq!(dash["uid"], "update-agent");
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    let mut n = 0;
    for panel in dash["panels"].as_array().expect("panels") {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for t in targets {
            let expr = t["expr"].as_str().expect("expr");
            let expr = expr
                .replace("$__rate_interval", "5m")
                .replace("$instance", ".*");
            assert!(!expr.contains('$'), "unknown variable in {expr}");
            rules.push_str(&format!(
                "      - record: dashboard:query{n}\n        expr: {}\n",
                serde_json::to_string(&expr).unwrap()
            ));
            n += 1;
        }
    }
    (rules, n)
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    let (rules, n) = dashboard_as_rules();
    assert!(n >= 10, "{n} queries");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dashboard.yml"), &rules).unwrap();
    let o = promtool(&["check", "rules", "dashboard.yml"], dir.path());
    assert!(o.status.success(), "{}{}{rules}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains(&format!("SUCCESS: {n} rules found")),
        "{}",
        stdout(&o)
    );

    // The same check refuses a broken query.
    let broken = rules.replacen("sum by (kind)", "sum by (kind", 1);
    assert_ne!(broken, rules);
    std::fs::write(dir.path().join("broken.yml"), broken).unwrap();
    let o = promtool(&["check", "rules", "broken.yml"], dir.path());
    assert!(!o.status.success(), "promtool accepted a broken query");
}
