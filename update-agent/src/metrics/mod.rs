//! Prometheus metrics, from what the daemon already knows.
//!
//! The daemon feeds [`Metrics`] from its state transitions
//! ([`Metrics::transition`], decided by the pure [`check_outcome`] and
//! [`install_result`]), its schedule and its reload; the install counts the
//! bytes it reads through [`Counted`]. [`serve`] answers scrapes on a unix
//! socket. Every label value comes from a fixed set (operations, outcomes,
//! error kinds, image kinds), so the number of series stays bounded.

mod serve;

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::fsm::{Operation, State};

pub use serve::{MetricsServer, serve};

/// The default socket: under `/run`, readable by unprivileged scrapers.
pub const DEFAULT_SOCKET: &str = "/run/update-agent/public/metrics.sock";

type Labels = Vec<(&'static str, String)>;

/// One `name{labels}` family of each kind.
type Gauges = Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>;
type Counters = Family<Labels, Counter>;
/// An unlabelled floating-point gauge.
type Value = Gauge<f64, std::sync::atomic::AtomicU64>;

/// The agent's metrics (a cheap handle; clones share the values).
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    build_info: Gauges,
    status: Gauges,
    staged: Gauges,
    last_check: Value,
    last_success: Value,
    next_check: Value,
    checks: Counters,
    errors: Counters,
    downloaded: Counters,
    install_seconds: Family<Labels, Histogram>,
    deny_list: Value,
    gate_verdicts: Counters,
    install_started: Mutex<Option<Instant>>,
}

/// What an update check ended in, from the state it left and the one it
/// entered; `None` when the transition is not the end of a check.
pub fn check_outcome(before: &State, after: &State) -> Option<&'static str> {
    match (before, after) {
        (State::CheckingForUpdate { .. }, State::Idle) => Some("no_update"),
        (State::CheckingForUpdate { .. }, State::UpdateAvailable { .. }) => Some("update"),
        (State::CheckingForUpdate { .. }, State::ReportingErrorEvent { .. }) => Some("error"),
        _ => None,
    }
}

/// Whether the transition ends an install: `Some(true)` staged,
/// `Some(false)` failed, `None` not the end of one.
pub fn install_result(before: &State, after: &State) -> Option<bool> {
    let installing = matches!(
        before,
        State::UpdateAvailable { .. }
            | State::Downloading { .. }
            | State::Verifying { .. }
            | State::Finalizing { .. }
    );
    match after {
        State::UpdatedNeedReboot { .. } if installing => Some(true),
        State::ReportingErrorEvent { .. } if installing => Some(false),
        _ => None,
    }
}

/// Where downloaded bytes went: the OS payload (full or delta), or an
/// extension image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    /// The OS payload (USR and kernel).
    Os {
        /// A delta against the booted slot.
        delta: bool,
    },
    /// An OEM or Flatcar extension image.
    Extension,
}

impl Image {
    fn labels(self) -> Labels {
        let (image, payload) = match self {
            Image::Os { delta: false } => ("os", "full"),
            Image::Os { delta: true } => ("os", "delta"),
            Image::Extension => ("extension", "full"),
        };
        vec![("image", image.into()), ("payload", payload.into())]
    }
}

fn label(key: &'static str, value: impl Into<String>) -> Labels {
    vec![(key, value.into())]
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers `metric` as `update_agent_<name>` and returns it.
fn reg<M>(r: &mut Registry, name: &str, help: &str, metric: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    r.register(format!("update_agent_{name}"), help, metric.clone());
    metric
}

impl Inner {
    /// Every family, registered in `r` (the order is the exposition's).
    fn register(mut r: Registry) -> Self {
        let g = Gauges::default;
        let v = Value::default;
        let c = Counters::default;
        let durations: Family<Labels, Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(1.0, 2.0, 13)));
        Inner {
            build_info: reg(
                &mut r,
                "build_info",
                "Agent and OS version, board, channel (1)",
                g(),
            ),
            status: reg(
                &mut r,
                "status",
                "1 for the current operation, 0 for the others",
                g(),
            ),
            staged: reg(
                &mut r,
                "staged_version_info",
                "The version staged for the next boot (1)",
                g(),
            ),
            last_check: reg(
                &mut r,
                "last_check_timestamp_seconds",
                "Last update check attempt",
                v(),
            ),
            last_success: reg(
                &mut r,
                "last_successful_check_timestamp_seconds",
                "Last update check the server answered",
                v(),
            ),
            next_check: reg(
                &mut r,
                "next_check_timestamp_seconds",
                "Next scheduled check (0: none)",
                v(),
            ),
            checks: reg(&mut r, "checks", "Update checks by outcome", c()),
            errors: reg(
                &mut r,
                "errors",
                "Failed checks and installs by stable error kind",
                c(),
            ),
            downloaded: reg(
                &mut r,
                "downloaded_bytes",
                "Bytes downloaded by image and payload",
                c(),
            ),
            install_seconds: reg(
                &mut r,
                "install_duration_seconds",
                "From the accepted offer to staged or failed, by result",
                durations,
            ),
            deny_list: reg(
                &mut r,
                "deny_list_entries",
                "Versions on the local deny list",
                v(),
            ),
            gate_verdicts: reg(
                &mut r,
                "health_gate_verdicts",
                "Post-boot health gate verdicts",
                c(),
            ),
            install_started: Mutex::new(None),
            registry: r,
        }
    }
}

impl Metrics {
    /// Every family registered, the status IDLE.
    pub fn new() -> Self {
        let inner = Inner::register(Registry::default());
        for op in Operation::ALL {
            let labels = label("operation", op.as_str());
            inner.status.get_or_create(&labels).set(0.0);
        }
        Metrics {
            inner: Arc::new(inner),
        }
        .with_status(&State::Idle)
    }

    fn with_status(self, state: &State) -> Self {
        self.set_status(state);
        self
    }

    /// The text exposition of every metric (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }

    fn set_status(&self, state: &State) {
        let i = &self.inner;
        for op in Operation::ALL {
            let on = op == state.operation();
            i.status
                .get_or_create(&label("operation", op.as_str()))
                .set(f64::from(u8::from(on)));
        }
        i.staged.clear();
        if let State::UpdatedNeedReboot { target } = state {
            i.staged
                .get_or_create(&label("version", target.version.clone()))
                .set(1.0);
        }
    }

    /// One state transition of the daemon; `error_kind` is the last
    /// error's stable kind when `after` reports a failure.
    pub fn transition(&self, before: &State, after: &State, error_kind: Option<&str>, now: u64) {
        let i = &self.inner;
        self.set_status(after);
        if matches!(after, State::CheckingForUpdate { .. })
            && !matches!(before, State::CheckingForUpdate { .. })
        {
            i.last_check.set(now as f64);
        }
        if let Some(outcome) = check_outcome(before, after) {
            i.checks.get_or_create(&label("outcome", outcome)).inc();
            if outcome != "error" {
                i.last_success.set(now as f64);
            }
        }
        if matches!(after, State::ReportingErrorEvent { .. }) {
            let kind = error_kind.unwrap_or("unknown");
            i.errors.get_or_create(&label("kind", kind)).inc();
        }
        let mut started = i.install_started.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(after, State::UpdateAvailable { .. }) {
            *started = Some(Instant::now());
        }
        if let Some(ok) = install_result(before, after)
            && let Some(t) = started.take()
        {
            let result = if ok { "staged" } else { "failed" };
            i.install_seconds
                .get_or_create(&label("result", result))
                .observe(t.elapsed().as_secs_f64());
        }
    }

    /// The next scheduled check (unix time; 0 when none is scheduled).
    pub fn set_next_check(&self, unix: u64) {
        self.inner.next_check.set(unix as f64);
    }

    /// Agent version, OS version, board, channel.
    pub fn set_build_info(&self, os_version: &str, board: &str, channel: &str) {
        let f = &self.inner.build_info;
        f.clear();
        let labels = vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("os_version", os_version.to_string()),
            ("board", board.to_string()),
            ("channel", channel.to_string()),
        ];
        f.get_or_create(&labels).set(1.0);
    }

    /// Versions on the deny list.
    pub fn set_deny_list_entries(&self, n: usize) {
        self.inner.deny_list.set(n as f64);
    }

    /// Adds `n` gate verdicts of this kind (the gate persists its counts;
    /// the daemon adds them once at start, see
    /// [`crate::health::verdict_counts`]).
    pub fn add_gate_verdicts(&self, verdict: &str, n: u64) {
        self.inner
            .gate_verdicts
            .get_or_create(&label("verdict", verdict))
            .inc_by(n);
    }

    /// The byte counter of `image`.
    pub fn downloaded(&self, image: Image) -> Counter {
        self.inner.downloaded.get_or_create(&image.labels()).clone()
    }
}

/// A reader that adds every byte it reads to a counter.
#[derive(Debug)]
pub struct Counted<R> {
    inner: R,
    counter: Counter,
}

impl<R> Counted<R> {
    /// Counts what `inner` yields into `counter`.
    pub fn new(inner: R, counter: Counter) -> Self {
        Counted { inner, counter }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.inc_by(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
