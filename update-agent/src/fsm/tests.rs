use super::*;
use omaha::{ErrorCode, ErrorFlags};

fn t() -> Target {
    Target {
        version: "3600.0.0".into(),
        size: 1000,
    }
}

fn code() -> EventErrorCode {
    EventErrorCode::new(
        ErrorCode::PayloadHashMismatchError,
        ErrorFlags {
            test_omaha_url: true,
            ..ErrorFlags::NONE
        },
    )
}

/// One representative state per status.
fn states() -> Vec<State> {
    vec![
        State::Idle,
        State::CheckingForUpdate { interactive: true },
        State::UpdateAvailable { target: t() },
        State::Downloading {
            target: t(),
            bytes: 500,
        },
        State::Verifying { target: t() },
        State::Finalizing { target: t() },
        State::UpdatedNeedReboot { target: t() },
        State::ReportingErrorEvent { code: code() },
    ]
}

fn events() -> Vec<Event> {
    vec![
        Event::CheckRequested { interactive: false },
        Event::NoUpdate,
        Event::UpdateFound { target: t() },
        Event::DownloadProgress { bytes: 750 },
        Event::DownloadSize { bytes: 4000 },
        Event::DeltaFailed {
            code: code(),
            full_size: 9000,
        },
        Event::DownloadComplete,
        Event::Verified,
        Event::InstallComplete,
        Event::Failed { code: code() },
        Event::ErrorEventSent,
        Event::ResetStatus,
    ]
}

use Effect as F;
use Operation as O;

/// Every valid (status, event) pair with the expected next state and
/// effects; every pair not listed must be rejected.
fn table() -> Vec<(Operation, &'static str, State, Vec<Effect>)> {
    vec![
        (
            O::Idle,
            "CheckRequested",
            State::CheckingForUpdate { interactive: false },
            vec![F::NotifyStatus, F::PostUpdateCheck { interactive: false }],
        ),
        (O::Idle, "ResetStatus", State::Idle, vec![]),
        (
            O::CheckingForUpdate,
            "NoUpdate",
            State::Idle,
            vec![F::NotifyStatus, F::ScheduleCheck],
        ),
        (
            O::CheckingForUpdate,
            "UpdateFound",
            State::UpdateAvailable { target: t() },
            vec![
                F::NotifyStatus,
                F::PostEvent(omaha::Event::download_started()),
                F::StartInstall,
            ],
        ),
        (
            O::CheckingForUpdate,
            "Failed",
            State::ReportingErrorEvent { code: code() },
            vec![F::NotifyStatus, F::PostEvent(failure_event(code()))],
        ),
        (
            O::UpdateAvailable,
            "DownloadProgress",
            State::Downloading {
                target: t(),
                bytes: 750,
            },
            vec![F::NotifyStatus],
        ),
        (
            O::UpdateAvailable,
            "DownloadSize",
            State::Downloading {
                target: Target { size: 4000, ..t() },
                bytes: 0,
            },
            vec![F::NotifyStatus],
        ),
        (
            O::UpdateAvailable,
            "DeltaFailed",
            State::Downloading {
                target: Target { size: 9000, ..t() },
                bytes: 0,
            },
            vec![F::PostEvent(failure_event(code())), F::NotifyStatus],
        ),
        (
            O::UpdateAvailable,
            "DownloadComplete",
            State::Verifying { target: t() },
            vec![
                F::NotifyStatus,
                F::PostEvent(omaha::Event::download_finished()),
            ],
        ),
        (
            O::UpdateAvailable,
            "Failed",
            State::ReportingErrorEvent { code: code() },
            vec![F::NotifyStatus, F::PostEvent(failure_event(code()))],
        ),
        (
            O::Downloading,
            "DownloadProgress",
            State::Downloading {
                target: t(),
                bytes: 750,
            },
            vec![F::NotifyStatus],
        ),
        (
            O::Downloading,
            "DownloadSize",
            State::Downloading {
                target: Target { size: 4000, ..t() },
                bytes: 500,
            },
            vec![F::NotifyStatus],
        ),
        (
            O::Downloading,
            "DeltaFailed",
            State::Downloading {
                target: Target { size: 9000, ..t() },
                bytes: 0,
            },
            vec![F::PostEvent(failure_event(code())), F::NotifyStatus],
        ),
        (
            O::Downloading,
            "DownloadComplete",
            State::Verifying { target: t() },
            vec![
                F::NotifyStatus,
                F::PostEvent(omaha::Event::download_finished()),
            ],
        ),
        (
            O::Downloading,
            "Failed",
            State::ReportingErrorEvent { code: code() },
            vec![F::NotifyStatus, F::PostEvent(failure_event(code()))],
        ),
        (
            O::Verifying,
            "Verified",
            State::Finalizing { target: t() },
            vec![F::NotifyStatus],
        ),
        (
            O::Verifying,
            "Failed",
            State::ReportingErrorEvent { code: code() },
            vec![F::NotifyStatus, F::PostEvent(failure_event(code()))],
        ),
        (
            O::Finalizing,
            "InstallComplete",
            State::UpdatedNeedReboot { target: t() },
            vec![
                F::PostEvent(omaha::Event::update_complete()),
                F::WriteRebootMarker,
                F::NotifyStatus,
                F::ScheduleCheck,
            ],
        ),
        (
            O::Finalizing,
            "Failed",
            State::ReportingErrorEvent { code: code() },
            vec![F::NotifyStatus, F::PostEvent(failure_event(code()))],
        ),
        (
            O::UpdatedNeedReboot,
            "CheckRequested",
            State::UpdatedNeedReboot { target: t() },
            vec![F::PostPing, F::ScheduleCheck],
        ),
        (
            O::UpdatedNeedReboot,
            "ResetStatus",
            State::Idle,
            vec![
                F::RevertSlotSwitch,
                F::RemoveRebootMarker,
                F::NotifyStatus,
                F::ScheduleCheck,
            ],
        ),
        (
            O::ReportingErrorEvent,
            "ErrorEventSent",
            State::Idle,
            vec![F::NotifyStatus, F::ScheduleCheck],
        ),
    ]
}

#[test]
fn every_transition() {
    let table = table();
    let mut valid = 0;
    for state in states() {
        for event in events() {
            let name = event.name();
            let got = step(&state, event);
            let expected = table
                .iter()
                .find(|(op, ev, _, _)| *op == state.operation() && *ev == name);
            match (expected, got) {
                (Some((_, _, next, effects)), Ok((got_next, got_effects))) => {
                    assert_eq!(&got_next, next, "{state:?} + {name}");
                    assert_eq!(&got_effects, effects, "{state:?} + {name}");
                    valid += 1;
                }
                (None, Err(e)) => {
                    assert_eq!(e.from, state.operation());
                    assert_eq!(e.event, name);
                    assert_eq!(
                        e.to_string(),
                        format!("event {name} is not valid in state {}", state.operation())
                    );
                }
                (expected, got) => panic!("{state:?} + {name}: expected {expected:?}, got {got:?}"),
            }
        }
    }
    assert_eq!(valid, table.len(), "every table row was exercised");
}

#[test]
fn status_strings_and_codes() {
    let names: Vec<_> = Operation::ALL
        .iter()
        .map(|o| (o.code(), o.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            (0, "UPDATE_STATUS_IDLE"),
            (1, "UPDATE_STATUS_CHECKING_FOR_UPDATE"),
            (2, "UPDATE_STATUS_UPDATE_AVAILABLE"),
            (3, "UPDATE_STATUS_DOWNLOADING"),
            (4, "UPDATE_STATUS_VERIFYING"),
            (5, "UPDATE_STATUS_FINALIZING"),
            (6, "UPDATE_STATUS_UPDATED_NEED_REBOOT"),
            (7, "UPDATE_STATUS_REPORTING_ERROR_EVENT"),
        ]
    );
    for op in Operation::ALL {
        assert_eq!(op.as_str().parse::<Operation>().unwrap(), op);
    }
    assert!("UPDATE_STATUS_BOGUS".parse::<Operation>().is_err());
}

#[test]
fn happy_path_progress_is_monotonic() {
    let target = Target {
        version: "3600.0.0".into(),
        size: 200,
    };
    let events = [
        Event::CheckRequested { interactive: true },
        Event::UpdateFound {
            target: target.clone(),
        },
        Event::DownloadProgress { bytes: 1 },
        Event::DownloadProgress { bytes: 100 },
        Event::DownloadProgress { bytes: 50 }, // a resume must not go back
        Event::DownloadProgress { bytes: 200 },
        Event::DownloadComplete,
        Event::Verified,
        Event::InstallComplete,
    ];
    let mut state = State::initial(false);
    let mut last = 0.0;
    let mut ops = vec![state.operation()];
    for event in events {
        state = step(&state, event).unwrap().0;
        let status = state.status();
        assert!(status.progress >= last, "{status:?} after {last}");
        last = status.progress;
        if ops.last() != Some(&status.operation) {
            ops.push(status.operation);
        }
    }
    assert_eq!(
        ops,
        [
            O::Idle,
            O::CheckingForUpdate,
            O::UpdateAvailable,
            O::Downloading,
            O::Verifying,
            O::Finalizing,
            O::UpdatedNeedReboot
        ]
    );
    let status = state.status();
    assert_eq!(status.progress, 1.0);
    assert_eq!(status.new_version, "3600.0.0");
    assert_eq!(status.new_size, 200);
    assert_eq!(State::Finalizing { target }.progress(), 1.0);
}

#[test]
fn give_up_path_reports_and_returns_to_idle() {
    let mut state = State::Idle;
    let code = EventErrorCode::omaha_http_status(503, ErrorFlags::NONE);
    state = step(&state, Event::CheckRequested { interactive: false })
        .unwrap()
        .0;
    let (next, effects) = step(&state, Event::Failed { code }).unwrap();
    assert_eq!(next.operation(), O::ReportingErrorEvent);
    let F::PostEvent(ev) = &effects[1] else {
        panic!("{effects:?}")
    };
    assert_eq!(ev.error_code.to_u32(), 2503);
    assert_eq!(ev.result, omaha::EventResult::Error);
    let (next, _) = step(&next, Event::ErrorEventSent).unwrap();
    assert_eq!(next, State::Idle);
    assert_eq!(next.status().new_version, "0.0.0");
}

#[test]
fn deferral_is_reported_with_result_9() {
    let code = EventErrorCode::new(ErrorCode::OmahaUpdateDeferredForBackoff, ErrorFlags::NONE);
    let ev = failure_event(code);
    assert_eq!(ev.result, omaha::EventResult::UpdateDeferred);
    assert_eq!(ev.error_code, code);
}

#[test]
fn progress_notifications_are_throttled_to_whole_percents() {
    let target = Target {
        version: "1".into(),
        size: 10_000,
    };
    let mut state = State::Downloading { target, bytes: 0 };
    let mut notified = 0;
    for bytes in (0..=10_000).step_by(10) {
        let (next, effects) = step(&state, Event::DownloadProgress { bytes }).unwrap();
        notified += effects.len();
        state = next;
    }
    assert_eq!(notified, 100);
}

#[test]
fn initial_state_from_marker() {
    assert_eq!(State::initial(false), State::Idle);
    let s = State::initial(true);
    assert_eq!(s.operation(), O::UpdatedNeedReboot);
    assert_eq!(s.status().new_version, "0.0.0");
    assert_eq!(s.progress(), 1.0);
}

#[test]
fn zero_size_target_does_not_divide_by_zero() {
    let s = State::Downloading {
        target: Target {
            version: "1".into(),
            size: 0,
        },
        bytes: 5,
    };
    assert_eq!(s.progress(), 0.0);
}

/// The admission table agrees with the transition function: a command is
/// accepted exactly where its event is a valid transition that changes
/// something, ignored where update_engine ignores it, and refused
/// otherwise.
#[test]
fn admission_agrees_with_step() {
    for state in states() {
        let op = state.operation();
        let check = step(&state, Event::CheckRequested { interactive: true }).is_ok();
        for cmd in [Command::AttemptUpdate, Command::ScheduledCheck] {
            let want = if check {
                Admission::Accept
            } else {
                Admission::Ignore
            };
            assert_eq!(admits(op, cmd), Ok(want), "{cmd:?} in {op}");
        }
        let reset = step(&state, Event::ResetStatus);
        match admits(op, Command::ResetStatus) {
            Ok(Admission::Accept) => {
                let (next, effects) = reset.unwrap();
                assert_eq!(next, State::Idle, "{op}");
                assert!(effects.contains(&Effect::RevertSlotSwitch), "{op}");
            }
            Ok(Admission::Ignore) => {
                assert_eq!(reset, Ok((state.clone(), vec![])), "{op}");
            }
            Err(e) => {
                assert!(reset.is_err(), "{op}: refused ({e}) but step accepts");
                assert!(e.to_string().contains(op.as_str()), "{e}");
            }
        }
        // Cancel ends in a failure: exactly the states where `Failed` is a
        // transition, except FINALIZING (the commit is not interruptible).
        let fails = step(&state, Event::Failed { code: code() }).is_ok();
        let cancel = admits(op, Command::Cancel) == Ok(Admission::Accept);
        assert_eq!(cancel, fails && op != Operation::Finalizing, "{op}");
        let rollback = admits(op, Command::Rollback) == Ok(Admission::Accept);
        assert_eq!(rollback, op == Operation::Idle, "{op}");
    }
}
