use std::io::Read;

use omaha::{ErrorCode, ErrorFlags, EventErrorCode};

use super::*;
use crate::fsm::Target;

fn target() -> Target {
    Target {
        version: "3600.0.0".into(),
        size: 10,
    }
}

fn failed() -> State {
    State::ReportingErrorEvent {
        code: EventErrorCode::new(ErrorCode::DownloadTransferError, ErrorFlags::NONE),
    }
}

fn checking() -> State {
    State::CheckingForUpdate { interactive: false }
}

#[test]
fn check_outcomes_and_install_results_by_transition() {
    let avail = State::UpdateAvailable { target: target() };
    let dl = State::Downloading {
        target: target(),
        bytes: 3,
    };
    let staged = State::UpdatedNeedReboot { target: target() };
    let fin = State::Finalizing { target: target() };
    let cases: [(&State, &State, Option<&str>, Option<bool>); 7] = [
        (&checking(), &State::Idle, Some("no_update"), None),
        (&checking(), &avail, Some("update"), None),
        (&checking(), &failed(), Some("error"), None),
        (&dl, &failed(), None, Some(false)),
        (&fin, &staged, None, Some(true)),
        (&avail, &dl, None, None),
        (&failed(), &State::Idle, None, None),
    ];
    for (before, after, outcome, result) in cases {
        assert_eq!(
            check_outcome(before, after),
            outcome,
            "{before:?} -> {after:?}"
        );
        assert_eq!(
            install_result(before, after),
            result,
            "{before:?} -> {after:?}"
        );
    }
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn transitions_feed_the_families() {
    let m = Metrics::new();
    m.transition(&State::Idle, &checking(), None, 100);
    m.transition(&checking(), &failed(), Some("omaha_request"), 101);
    m.transition(&failed(), &State::Idle, None, 102);
    m.transition(&State::Idle, &checking(), None, 200);
    m.transition(
        &checking(),
        &State::UpdateAvailable { target: target() },
        None,
        201,
    );
    m.transition(
        &State::Finalizing { target: target() },
        &State::UpdatedNeedReboot { target: target() },
        None,
        250,
    );
    let t = m.encode();
    assert_eq!(
        sample(&t, "update_agent_checks_total{outcome=\"error\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&t, "update_agent_checks_total{outcome=\"update\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&t, "update_agent_errors_total{kind=\"omaha_request\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&t, "update_agent_last_check_timestamp_seconds"),
        Some(200.0)
    );
    assert_eq!(
        sample(&t, "update_agent_last_successful_check_timestamp_seconds"),
        Some(201.0)
    );
    assert_eq!(
        sample(
            &t,
            "update_agent_status{operation=\"UPDATE_STATUS_UPDATED_NEED_REBOOT\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&t, "update_agent_status{operation=\"UPDATE_STATUS_IDLE\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&t, "update_agent_staged_version_info{version=\"3600.0.0\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &t,
            "update_agent_install_duration_seconds_count{result=\"staged\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn counted_reads_add_to_their_image() {
    let m = Metrics::new();
    let mut r = Counted::new(&[7u8; 1000][..], m.downloaded(Image::Os { delta: true }));
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    let t = m.encode();
    assert_eq!(
        sample(
            &t,
            "update_agent_downloaded_bytes_total{image=\"os\",payload=\"delta\"}"
        ),
        Some(1000.0)
    );
}
