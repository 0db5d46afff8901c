use super::*;
use crate::fsm::Target;

fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

#[test]
fn status_and_staged_version_follow_the_state() {
    let m = Metrics::new();
    let text = m.encode();
    let idle = r#"update_agent_status{status="UPDATE_STATUS_IDLE"}"#;
    assert_eq!(sample(&text, idle), Some(1.0));
    m.set_state(&State::UpdatedNeedReboot {
        target: Target {
            version: "3600.0.0".into(),
            size: 1,
        },
    });
    let text = m.encode();
    assert_eq!(sample(&text, idle), Some(0.0));
    let staged = r#"update_agent_status{status="UPDATE_STATUS_UPDATED_NEED_REBOOT"}"#;
    assert_eq!(sample(&text, staged), Some(1.0));
    let version = r#"update_agent_staged_version_info{version="3600.0.0"}"#;
    assert_eq!(sample(&text, version), Some(1.0));
    m.set_state(&State::Idle);
    assert_eq!(sample(&m.encode(), version), None);
}

#[test]
fn error_kinds_are_bounded() {
    let m = Metrics::new();
    m.error("omaha_http_status");
    m.error("omaha_http_status");
    m.error("Free text: with spaces");
    m.error(&"x".repeat(100));
    let text = m.encode();
    let known = r#"update_agent_errors_total{kind="omaha_http_status"}"#;
    assert_eq!(sample(&text, known), Some(2.0));
    assert_eq!(
        sample(&text, r#"update_agent_errors_total{kind="other"}"#),
        Some(2.0)
    );
    assert_eq!(text.matches("update_agent_errors_total{").count(), 2);
}

#[test]
fn build_info_keeps_one_series() {
    let m = Metrics::new();
    m.set_build_info("3510.2.0", "amd64-usr", "stable");
    m.set_build_info("3510.2.0", "amd64-usr", "beta");
    let text = m.encode();
    assert_eq!(text.matches("update_agent_build_info{").count(), 1);
    assert!(text.contains(r#"channel="beta""#), "{text}");
}

#[test]
fn gate_verdicts_and_deny_list_come_from_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let files = NodeFiles {
        state_dir: dir.path().to_path_buf(),
    };
    let m = Metrics::new();
    files.refresh(&m);
    let text = m.encode();
    assert_eq!(sample(&text, "update_agent_deny_list_entries"), Some(0.0));
    assert_eq!(sample(&text, "update_agent_deny_list_readable"), Some(1.0));
    let deny = crate::denylist::DenyList::in_dir(dir.path());
    deny.add("3600.0.0", "test", 1).unwrap();
    verdicts::record(&dir.path().join(verdicts::FILE), "fell_back").unwrap();
    files.refresh(&m);
    let text = m.encode();
    assert_eq!(sample(&text, "update_agent_deny_list_entries"), Some(1.0));
    let fell_back = r#"update_agent_health_gate_verdicts_total{verdict="fell_back"}"#;
    assert_eq!(sample(&text, fell_back), Some(1.0));
    std::fs::write(dir.path().join(crate::denylist::FILE_NAME), "junk\n").unwrap();
    files.refresh(&m);
    let text = m.encode();
    assert_eq!(sample(&text, "update_agent_deny_list_readable"), Some(0.0));
}
