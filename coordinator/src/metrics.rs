//! The coordinator's Prometheus metrics: its state, the reboot-lock
//! attempts and how long a needed reboot waited for the lock. Served by
//! `update-coordinator` on [`DEFAULT_SOCKET`] through
//! `ab_node::metrics_socket` (the update agent's server).
//!
//! [`Metrics::observe`] reads the state machine's transitions; every label
//! value comes from a closed set.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::time::Instant;

use crate::fsm::{Event, State};

/// The default socket (node path), next to the update agent's.
pub const DEFAULT_SOCKET: &str = "/run/update-agent/public/coordinator-metrics.sock";

/// Every `STATE=` of coordinator.conf (the `state` label's values).
const STATES: [&str; 5] = [
    "starting",
    "running",
    "reboot-planned",
    "rebooting",
    "disabled",
];

type Label = [(&'static str, &'static str); 1];

/// The metrics (clones share them).
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    state: Family<Label, Gauge>,
    attempts: Family<Label, Counter>,
    wait: Histogram,
    pending_since: Gauge,
    /// When the current wait for the lock began.
    waiting: Mutex<Option<Instant>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics in state `starting`.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("update_coordinator");
        let state = Family::<Label, Gauge>::default();
        let attempts = Family::<Label, Counter>::default();
        // 1 s to about 4.5 days, quadrupling.
        let wait = Histogram::new(exponential_buckets(1.0, 4.0, 10));
        let pending_since = Gauge::default();
        registry.register(
            "state",
            "1 for the coordinator's current STATE (coordinator.conf), 0 for the others",
            state.clone(),
        );
        registry.register(
            "reboot_lock_attempts",
            "Attempts to take the cluster reboot lock by result (acquired, busy, error)",
            attempts.clone(),
        );
        registry.register(
            "reboot_lock_wait_seconds",
            "From a needed reboot to the lock being held",
            wait.clone(),
        );
        registry.register(
            "reboot_pending_since_timestamp_seconds",
            "Unix time the current wait for the reboot lock began (0: not waiting)",
            pending_since.clone(),
        );
        for s in STATES {
            state
                .get_or_create(&[("state", s)])
                .set(i64::from(s == "starting"));
        }
        for r in ["acquired", "busy", "error"] {
            let _ = attempts.get_or_create(&[("result", r)]);
        }
        Self {
            inner: Arc::new(Inner {
                registry,
                state,
                attempts,
                wait,
                pending_since,
                waiting: Mutex::new(None),
            }),
        }
    }

    /// The text exposition (OpenMetrics 1.0).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.inner.registry);
        out
    }

    /// One transition of the state machine: `event` took it from `from`
    /// to `to`.
    pub fn observe(&self, from: State, event: &Event, to: State) {
        let i = &self.inner;
        for s in STATES {
            let on = s == to.conf_state();
            i.state.get_or_create(&[("state", s)]).set(i64::from(on));
        }
        let mut waiting = i.waiting.lock().unwrap_or_else(|p| p.into_inner());
        // With the window open the machine goes from Idle (or Starting)
        // straight to Acquiring.
        let wants_lock = |s| matches!(s, State::Pending { .. } | State::Acquiring { .. });
        if wants_lock(to) && !wants_lock(from) {
            *waiting = Some(Instant::now());
            i.pending_since
                .set(i64::try_from(ab_node::unix_now()).unwrap_or(i64::MAX));
        }
        let result = match (from, event) {
            (State::Acquiring { .. }, Event::Acquired) => Some("acquired"),
            (State::Acquiring { .. }, Event::Busy(_)) => Some("busy"),
            (State::Acquiring { .. }, Event::LockFailed(_)) => Some("error"),
            _ => None,
        };
        if let Some(r) = result {
            i.attempts.get_or_create(&[("result", r)]).inc();
        }
        if result == Some("acquired") {
            if let Some(start) = waiting.take() {
                i.wait.observe(start.elapsed().as_secs_f64());
            }
            i.pending_since.set(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {prefix} in {text}"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_is_measured_from_the_needed_reboot_to_the_lock() {
        let m = Metrics::new();
        let p0 = State::Pending { attempt: 0 };
        let a0 = State::Acquiring { attempt: 0 };
        let obs = Event::Observed {
            reboot_needed: true,
            steady: true,
            window: None,
        };
        // Straight to Acquiring with the window open; Pending when closed.
        m.observe(State::Starting, &obs, a0);
        m.observe(a0, &Event::LockFailed("down".into()), p0);
        m.observe(p0, &Event::Woke, a0);
        tokio::time::advance(std::time::Duration::from_secs(30)).await;
        m.observe(
            a0,
            &Event::Busy("full".into()),
            State::Pending { attempt: 1 },
        );
        m.observe(
            State::Pending { attempt: 1 },
            &Event::Woke,
            State::Acquiring { attempt: 1 },
        );
        let text = m.encode();
        assert_eq!(
            line(&text, r#"update_coordinator_state{state="reboot-planned"}"#),
            "1"
        );
        assert_ne!(
            line(
                &text,
                "update_coordinator_reboot_pending_since_timestamp_seconds"
            ),
            "0"
        );
        tokio::time::advance(std::time::Duration::from_secs(90)).await;
        m.observe(
            State::Acquiring { attempt: 1 },
            &Event::Acquired,
            State::Warning,
        );
        let text = m.encode();
        assert_eq!(
            line(&text, "update_coordinator_reboot_lock_wait_seconds_sum"),
            "120.0"
        );
        assert_eq!(
            line(&text, "update_coordinator_reboot_lock_wait_seconds_count"),
            "1"
        );
        let busy = r#"update_coordinator_reboot_lock_attempts_total{result="busy"}"#;
        assert_eq!(line(&text, busy), "1");
        let error = r#"update_coordinator_reboot_lock_attempts_total{result="error"}"#;
        assert_eq!(line(&text, error), "1");
        assert_eq!(
            line(&text, r#"update_coordinator_state{state="rebooting"}"#),
            "1"
        );
        assert_eq!(
            line(
                &text,
                "update_coordinator_reboot_pending_since_timestamp_seconds"
            ),
            "0"
        );
    }
}
