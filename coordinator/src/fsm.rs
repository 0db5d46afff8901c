//! The coordinator's state machine: a pure `step(state, event) -> (state, action)`.
//! The executor ([`crate::run`]) performs one action at a time and feeds back its event.
//!
//! ```text
//! Starting ─┬─ reboot needed ─────────────────────────────────────────┐
//!           ├─ lock strategy, steady ─▶ ReleasingStale ─▶ Idle        │
//!           ├─ lock strategy, not steady ─▶ AwaitingSteady ─▶ Releasing…
//!           └─ reboot strategy ─▶ Idle ─ reboot needed ─▶ Pending ◀───┘
//! Pending ─ window open ─▶ Acquiring ─ acquired ─▶ Warning ─▶ (Postponed) ─▶ Rebooting ─▶ Rebooted
//!    ▲  window closed: sleep        │ busy / error: backoff
//!    └──────────────────────────────┘
//! ```
//! The lock is given back only from `ReleasingStale`, i.e. after a boot reached steady state
//! (Flatcar#408: locksmithd could keep it forever when the boot fell outside its window).

use std::time::Duration;

use crate::config::{Backoff, Strategy};
use crate::window::WindowStatus;

/// The longest sleep while the window is closed, so marker and clock changes are seen.
pub const MAX_WINDOW_SLEEP: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Starting,
    /// A lock strategy started on a boot that has not passed the health gate yet.
    AwaitingSteady,
    /// Steady: giving back any slot this node still holds.
    ReleasingStale {
        attempt: u32,
    },
    /// Nothing to do until the engine needs a reboot.
    Idle,
    /// A reboot is needed; waiting for the window (and backing off after a refused lock).
    Pending {
        attempt: u32,
    },
    Acquiring {
        attempt: u32,
    },
    /// Lock held; warning logged-in users.
    Warning,
    /// Users were logged in: one bounded postponement.
    Postponed,
    Rebooting {
        attempt: u32,
    },
    /// The reboot was accepted; the machine is going down.
    Rebooted,
    /// `REBOOT_STRATEGY=off`.
    Disabled,
}

impl State {
    /// The `STATE=` value of coordinator.conf.
    pub fn conf_state(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::AwaitingSteady | State::ReleasingStale { .. } | State::Idle => "running",
            State::Pending { .. } | State::Acquiring { .. } => "reboot-planned",
            State::Warning | State::Postponed | State::Rebooting { .. } | State::Rebooted => {
                "rebooting"
            }
            State::Disabled => "disabled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Start,
    Observed {
        reboot_needed: bool,
        steady: bool,
        /// `None`: no window configured (always open).
        window: Option<WindowStatus>,
    },
    Woke,
    Acquired,
    Busy(String),
    LockFailed(String),
    Released,
    Warned {
        logged_in: usize,
    },
    RebootRequested,
    RebootFailed(String),
}

/// What the executor must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read the markers and the window → [`Event::Observed`].
    Observe,
    /// → [`Event::Woke`].
    Sleep(Duration),
    /// → `Acquired`, `Busy` or `LockFailed`.
    Acquire,
    /// → `Released` or `LockFailed`.
    Release,
    /// → `Warned`.
    WarnUsers,
    /// → `RebootRequested` or `RebootFailed`.
    Reboot,
    /// Terminal: wait for the machine to go down.
    Park,
    /// Terminal: strategy `off`, nothing to do.
    Exit,
}

/// The fixed inputs of the machine.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub strategy: Strategy,
    pub backoff: Backoff,
    pub poll: Duration,
    pub user_delay: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state machine: event {event:?} is not expected in state {state:?}")]
pub struct FsmError {
    pub state: State,
    pub event: Event,
}

fn pending(policy: &Policy, attempt: u32, window: Option<WindowStatus>) -> (State, Action) {
    match window {
        Some(WindowStatus::Closed { opens_in }) => (
            State::Pending { attempt },
            Action::Sleep(opens_in.min(MAX_WINDOW_SLEEP).max(Duration::from_millis(1))),
        ),
        Some(WindowStatus::Open { .. }) | None if policy.strategy.uses_lock() => {
            (State::Acquiring { attempt }, Action::Acquire)
        }
        Some(WindowStatus::Open { .. }) | None => (State::Warning, Action::WarnUsers),
    }
}

/// One transition.
pub fn step(policy: &Policy, state: State, event: Event) -> Result<(State, Action), FsmError> {
    use Event as E;
    use State as S;
    let locking = policy.strategy.uses_lock();
    Ok(match (state, event) {
        (S::Starting, E::Start) if policy.strategy == Strategy::Off => (S::Disabled, Action::Exit),
        (S::Starting, E::Start) => (S::Starting, Action::Observe),

        (
            S::Starting | S::AwaitingSteady | S::Idle,
            E::Observed {
                reboot_needed: true,
                window,
                ..
            },
        ) => pending(policy, 0, window),
        (S::Starting | S::AwaitingSteady, E::Observed { steady: true, .. }) if locking => {
            (S::ReleasingStale { attempt: 0 }, Action::Release)
        }
        (S::Starting | S::AwaitingSteady, E::Observed { steady: false, .. }) if locking => {
            (S::AwaitingSteady, Action::Sleep(policy.poll))
        }
        (S::Starting | S::Idle, E::Observed { .. }) => (S::Idle, Action::Sleep(policy.poll)),
        (S::AwaitingSteady | S::Idle | S::Pending { .. }, E::Woke) => (state, Action::Observe),

        (S::ReleasingStale { .. }, E::Released) => (S::Idle, Action::Observe),
        (S::ReleasingStale { attempt }, E::LockFailed(_)) => (
            S::ReleasingStale {
                attempt: attempt.saturating_add(1),
            },
            Action::Sleep(policy.backoff.delay(attempt)),
        ),
        (S::ReleasingStale { .. }, E::Woke) => (state, Action::Release),

        // The update was withdrawn (e.g. ResetStatus) while we waited.
        (
            S::Pending { .. },
            E::Observed {
                reboot_needed: false,
                ..
            },
        ) => (S::Idle, Action::Sleep(policy.poll)),
        (
            S::Pending { attempt },
            E::Observed {
                reboot_needed: true,
                window,
                ..
            },
        ) => pending(policy, attempt, window),

        (S::Acquiring { .. }, E::Acquired) => (S::Warning, Action::WarnUsers),
        (S::Acquiring { attempt }, E::Busy(_) | E::LockFailed(_)) => (
            S::Pending {
                attempt: attempt.saturating_add(1),
            },
            Action::Sleep(policy.backoff.delay(attempt)),
        ),

        (S::Warning, E::Warned { logged_in: 0 }) => (S::Rebooting { attempt: 0 }, Action::Reboot),
        (S::Warning, E::Warned { .. }) => (S::Postponed, Action::Sleep(policy.user_delay)),
        (S::Postponed, E::Woke) => (S::Rebooting { attempt: 0 }, Action::Reboot),

        (S::Rebooting { .. }, E::RebootRequested) => (S::Rebooted, Action::Park),
        (S::Rebooting { attempt }, E::RebootFailed(_)) => (
            S::Rebooting {
                attempt: attempt.saturating_add(1),
            },
            Action::Sleep(policy.backoff.delay(attempt)),
        ),
        (S::Rebooting { .. }, E::Woke) => (state, Action::Reboot),

        (state, event) => return Err(FsmError { state, event }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(strategy: Strategy) -> Policy {
        Policy {
            strategy,
            backoff: Backoff {
                min: Duration::from_secs(5),
                max: Duration::from_secs(300),
            },
            poll: Duration::from_secs(5),
            user_delay: Duration::from_secs(300),
        }
    }

    fn observed(reboot_needed: bool, steady: bool, window: Option<WindowStatus>) -> Event {
        Event::Observed {
            reboot_needed,
            steady,
            window,
        }
    }

    /// Runs events through the machine and returns each action taken.
    fn run(p: &Policy, events: Vec<Event>) -> (State, Vec<Action>) {
        let mut state = State::Starting;
        let mut actions = vec![];
        for e in events {
            let (s, a) = step(p, state, e).unwrap();
            state = s;
            actions.push(a);
        }
        (state, actions)
    }

    #[test]
    fn etcd_happy_path_with_busy_lock_and_logged_in_user() {
        let p = policy(Strategy::EtcdLock);
        let open = Some(WindowStatus::Open {
            closes_in: Duration::from_secs(60),
        });
        let (state, actions) = run(
            &p,
            vec![
                Event::Start,
                observed(false, true, open),
                Event::Released,
                observed(true, true, open),
                Event::Busy("full".into()),
                Event::Woke,
                observed(true, true, open),
                Event::LockFailed("down".into()),
                Event::Woke,
                observed(true, true, open),
                Event::Acquired,
                Event::Warned { logged_in: 1 },
                Event::Woke,
                Event::RebootRequested,
            ],
        );
        use Action::*;
        let s = Duration::from_secs;
        assert_eq!(
            actions,
            [
                Observe,
                Release,
                Observe,
                Acquire,
                Sleep(s(5)),
                Observe,
                Acquire,
                Sleep(s(10)),
                Observe,
                Acquire,
                WarnUsers,
                Sleep(s(300)),
                Reboot,
                Park
            ]
        );
        assert_eq!(state, State::Rebooted);
    }

    #[test]
    fn lock_is_kept_until_steady_then_released() {
        let p = policy(Strategy::FleetLock);
        let (state, actions) = run(
            &p,
            vec![
                Event::Start,
                observed(false, false, None),
                Event::Woke,
                observed(false, false, None),
            ],
        );
        assert_eq!(actions.last(), Some(&Action::Sleep(p.poll)));
        assert_eq!(state, State::AwaitingSteady);
        let (state, action) = step(&p, state, observed(false, true, None)).unwrap();
        assert_eq!(
            (state, action),
            (State::ReleasingStale { attempt: 0 }, Action::Release)
        );
        // Release failures back off and retry; nothing else happens meanwhile.
        let (state, action) = step(&p, state, Event::LockFailed("unreachable".into())).unwrap();
        assert_eq!(action, Action::Sleep(Duration::from_secs(5)));
        let (state, action) = step(&p, state, Event::Woke).unwrap();
        assert_eq!(action, Action::Release);
        assert_eq!(
            step(&p, state, Event::Released).unwrap(),
            (State::Idle, Action::Observe)
        );
    }

    #[test]
    fn closed_window_sleeps_bounded_and_never_acquires() {
        let p = policy(Strategy::EtcdLock);
        let closed = |m: u64| {
            Some(WindowStatus::Closed {
                opens_in: Duration::from_secs(m * 60),
            })
        };
        let (_, actions) = run(
            &p,
            vec![
                Event::Start,
                observed(true, true, closed(600)),
                Event::Woke,
                observed(true, true, closed(0)),
            ],
        );
        assert_eq!(actions[1], Action::Sleep(MAX_WINDOW_SLEEP));
        assert_eq!(actions[3], Action::Sleep(Duration::from_millis(1)));
        assert!(!actions.contains(&Action::Acquire));
    }

    #[test]
    fn reboot_strategy_skips_the_lock_and_off_exits() {
        let p = policy(Strategy::Reboot);
        let (state, actions) = run(
            &p,
            vec![
                Event::Start,
                observed(false, false, None),
                Event::Woke,
                observed(true, false, None),
                Event::Warned { logged_in: 0 },
                Event::RebootFailed("busctl".into()),
                Event::Woke,
            ],
        );
        use Action::*;
        assert_eq!(
            actions,
            [
                Observe,
                Sleep(p.poll),
                Observe,
                WarnUsers,
                Reboot,
                Sleep(Duration::from_secs(5)),
                Reboot
            ]
        );
        assert_eq!(state, State::Rebooting { attempt: 1 });
        assert_eq!(
            step(&policy(Strategy::Off), State::Starting, Event::Start).unwrap(),
            (State::Disabled, Action::Exit)
        );
    }

    #[test]
    fn withdrawn_update_returns_to_idle_and_bad_events_are_errors() {
        let p = policy(Strategy::EtcdLock);
        let (s, _) = step(
            &p,
            State::Pending { attempt: 3 },
            observed(false, true, None),
        )
        .unwrap();
        assert_eq!(s, State::Idle);
        let err = step(&p, State::Idle, Event::Acquired).unwrap_err();
        assert!(err.to_string().contains("Acquired"), "{err}");
        assert!(step(&p, State::Rebooted, Event::Woke).is_err());
    }

    #[test]
    fn conf_states_are_locksmiths() {
        assert_eq!(State::Starting.conf_state(), "starting");
        assert_eq!(State::Idle.conf_state(), "running");
        assert_eq!(State::Pending { attempt: 0 }.conf_state(), "reboot-planned");
        assert_eq!(State::Rebooting { attempt: 0 }.conf_state(), "rebooting");
    }
}
