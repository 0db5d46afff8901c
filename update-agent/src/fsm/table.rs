//! The transition tables of [`step`]: the check, the download, its end and
//! the commit, and the way back to IDLE.

use omaha::{BaseCode, EventErrorCode};

use super::{Effect, Event, State, Target, TransitionError, percent};

/// The failure event for `code`: `3/0` (or `3/9` for deferrals) with the
/// code and its flags.
pub fn failure_event(code: EventErrorCode) -> omaha::Event {
    match code.base {
        BaseCode::Known(c) => omaha::Event::failure(c, code.flags),
        BaseCode::OmahaHttpStatus(n) => omaha::Event::omaha_http_failure(n, code.flags),
    }
}

/// A transition: the next state and the effects, in order.
type Transition = (State, Vec<Effect>);

/// The transition function: the check, the install and the way back to
/// IDLE, each in its own table below.
pub fn step(state: &State, event: Event) -> Result<Transition, TransitionError> {
    let invalid = TransitionError {
        from: state.operation(),
        event: event.name(),
    };
    match event {
        Event::DownloadProgress { .. } | Event::DownloadSize { .. } | Event::DeltaFailed { .. } => {
            download_step(state, event)
        }
        Event::DownloadComplete | Event::Verified | Event::InstallComplete => {
            finish_step(state, event)
        }
        Event::CheckRequested { .. } | Event::NoUpdate | Event::UpdateFound { .. } => {
            check_step(state, event)
        }
        Event::Failed { .. } | Event::ErrorEventSent | Event::ResetStatus => {
            return_step(state, event)
        }
    }
    .ok_or(invalid)
}

/// Asking the server.
fn check_step(state: &State, event: Event) -> Option<Transition> {
    use Effect as F;
    use Event as E;
    use State as S;
    Some(match (state, event) {
        (S::Idle, E::CheckRequested { interactive }) => (
            S::CheckingForUpdate { interactive },
            vec![F::NotifyStatus, F::PostUpdateCheck { interactive }],
        ),
        (S::UpdatedNeedReboot { .. }, E::CheckRequested { .. }) => {
            (state.clone(), vec![F::PostPing, F::ScheduleCheck])
        }
        (S::CheckingForUpdate { .. }, E::NoUpdate) => {
            (S::Idle, vec![F::NotifyStatus, F::ScheduleCheck])
        }
        (S::CheckingForUpdate { .. }, E::UpdateFound { target }) => (
            S::UpdateAvailable { target },
            vec![
                F::NotifyStatus,
                F::PostEvent(omaha::Event::download_started()),
                F::StartInstall,
            ],
        ),
        _ => return None,
    })
}

/// The download: progress, its size, a delta giving way to the full payload.
fn download_step(state: &State, event: Event) -> Option<Transition> {
    use Effect as F;
    use Event as E;
    use State as S;
    Some(match (state, event) {
        (S::UpdateAvailable { target }, E::DownloadProgress { bytes }) => (
            S::Downloading {
                target: target.clone(),
                bytes,
            },
            vec![F::NotifyStatus],
        ),
        (S::Downloading { target, bytes: old }, E::DownloadProgress { bytes }) => {
            let bytes = bytes.max(*old);
            // StatusUpdate once per whole percent, as update_engine.
            let crossed = percent(bytes, target.size) > percent(*old, target.size);
            let effects = if crossed {
                vec![F::NotifyStatus]
            } else {
                vec![]
            };
            let target = target.clone();
            (S::Downloading { target, bytes }, effects)
        }
        (S::UpdateAvailable { target }, E::DownloadSize { bytes: size }) => (
            S::Downloading {
                target: Target {
                    size,
                    ..target.clone()
                },
                bytes: 0,
            },
            vec![F::NotifyStatus],
        ),
        (S::Downloading { target, bytes }, E::DownloadSize { bytes: size }) => (
            S::Downloading {
                target: Target {
                    size,
                    ..target.clone()
                },
                bytes: *bytes,
            },
            vec![F::NotifyStatus],
        ),
        (
            S::UpdateAvailable { target } | S::Downloading { target, .. },
            E::DeltaFailed { code, full_size },
        ) => (
            S::Downloading {
                target: Target {
                    size: full_size,
                    ..target.clone()
                },
                bytes: 0,
            },
            vec![F::PostEvent(failure_event(code)), F::NotifyStatus],
        ),
        _ => return None,
    })
}

/// The last byte, verification, the commit.
fn finish_step(state: &State, event: Event) -> Option<Transition> {
    use Effect as F;
    use Event as E;
    use State as S;
    Some(match (state, event) {
        (S::UpdateAvailable { target } | S::Downloading { target, .. }, E::DownloadComplete) => (
            S::Verifying {
                target: target.clone(),
            },
            vec![
                F::NotifyStatus,
                F::PostEvent(omaha::Event::download_finished()),
            ],
        ),
        (S::Verifying { target }, E::Verified) => (
            S::Finalizing {
                target: target.clone(),
            },
            vec![F::NotifyStatus],
        ),
        (S::Finalizing { target }, E::InstallComplete) => (
            S::UpdatedNeedReboot {
                target: target.clone(),
            },
            vec![
                F::PostEvent(omaha::Event::update_complete()),
                F::WriteRebootMarker,
                F::NotifyStatus,
                F::ScheduleCheck,
            ],
        ),
        _ => return None,
    })
}

/// Failures, their report, and ResetStatus.
fn return_step(state: &State, event: Event) -> Option<Transition> {
    use Effect as F;
    use Event as E;
    use State as S;
    Some(match (state, event) {
        (
            S::CheckingForUpdate { .. }
            | S::UpdateAvailable { .. }
            | S::Downloading { .. }
            | S::Verifying { .. }
            | S::Finalizing { .. },
            E::Failed { code },
        ) => (
            S::ReportingErrorEvent { code },
            vec![F::NotifyStatus, F::PostEvent(failure_event(code))],
        ),
        (S::ReportingErrorEvent { .. }, E::ErrorEventSent) => {
            (S::Idle, vec![F::NotifyStatus, F::ScheduleCheck])
        }
        (S::Idle, E::ResetStatus) => (S::Idle, vec![]),
        (S::UpdatedNeedReboot { .. }, E::ResetStatus) => (
            S::Idle,
            vec![
                F::RevertSlotSwitch,
                F::RemoveRebootMarker,
                F::NotifyStatus,
                F::ScheduleCheck,
            ],
        ),
        _ => return None,
    })
}
