//! The daemon's Prometheus metrics: what it already knows (status, check
//! times and results, errors, downloaded bytes, install durations, the
//! deny list, the health gate's verdicts), kept in a
//! [`prometheus_client`] registry and served as text on a unix socket by
//! [`ab_node::metrics_socket`].
//!
//! Every label takes values from a closed set (statuses, check results,
//! image kinds, the agent's stable error kinds, gate verdicts), so the
//! number of series is bounded; the only free-form values are the staged
//! version and the build info, one series each.
//!
//! The daemon updates the metrics where it already records the same fact
//! (the state machine's transitions, [`crate::daemon::Handle`]'s error and
//! check time, the download loop); [`NodeFiles::refresh`] reads the two
//! files other processes write (the deny list, the gate's verdicts) at
//! scrape time.

pub mod verdicts;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::fsm::{Operation, State};

/// A byte counter shared with the download loop.
pub type ByteCounter = Counter;

type Label1 = [(&'static str, &'static str); 1];
type Label2 = [(&'static str, &'static str); 2];
type OwnedLabel1 = [(&'static str, String); 1];
type BuildLabels = [(&'static str, String); 4];

/// Install durations: 1 s to about 2 h, doubling.
fn duration_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        1.0, 2.0, 13,
    ))
}

/// How an update check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckResult {
    /// The server had nothing newer.
    NoUpdate,
    /// An update was offered and accepted.
    UpdateAvailable,
    /// The server answered, but the offer was refused (deny list,
    /// downgrade, payload backoff, bad URL).
    Refused,
    /// No usable answer (settings, network, HTTP status, parse).
    Failed,
    /// A scheduled check skipped because `SERVER=disabled`.
    Disabled,
}

impl CheckResult {
    /// The `result` label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NoUpdate => "no_update",
            Self::UpdateAvailable => "update_available",
            Self::Refused => "refused",
            Self::Failed => "failed",
            Self::Disabled => "disabled",
        }
    }
}

/// Which package a download belongs to (the `image` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    /// The release payload: USR and the kernel (and, in a v2 release, its
    /// own extension images).
    Usr,
    /// The node's OEM system extension package.
    Oem,
    /// An official extension package (`flatcar-<NAME>`).
    Extension,
}

impl Image {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Usr => "usr",
            Self::Oem => "oem",
            Self::Extension => "extension",
        }
    }
}

/// The metrics (cheap to clone: every clone updates the same registry).
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    build: Family<BuildLabels, Gauge>,
    status: Family<Label1, Gauge>,
    staged: Family<OwnedLabel1, Gauge>,
    last_check: Gauge,
    last_success: Gauge,
    next_check: Gauge,
    checks: Family<Label1, Counter>,
    errors: Family<OwnedLabel1, Counter>,
    downloaded: Family<Label2, Counter>,
    installs: Family<Label1, Histogram, fn() -> Histogram>,
    deny_list: Gauge,
    deny_list_readable: Gauge,
    gate_verdicts: Family<Label1, Counter>,
    updates_disabled: Gauge,
}

impl Inner {
    /// Names and help texts (the registry adds the prefix, and `_total` to
    /// counters).
    fn register(&mut self) {
        let r = &mut self.registry;
        r.register(
            "build_info",
            "The agent's version and the node's OS version, board and channel (value 1)",
            self.build.clone(),
        );
        r.register(
            "status",
            "1 for the current update_engine status, 0 for the others",
            self.status.clone(),
        );
        r.register(
            "staged_version_info",
            "The version staged for the next boot (value 1; absent when none)",
            self.staged.clone(),
        );
        r.register(
            "last_check_timestamp_seconds",
            "Unix time the last update check ended, whatever its result (0: none since start)",
            self.last_check.clone(),
        );
        r.register(
            "last_successful_check_timestamp_seconds",
            "Unix time of the last check the server answered (kept across restarts; 0: never)",
            self.last_success.clone(),
        );
        r.register(
            "next_check_timestamp_seconds",
            "Unix time of the next scheduled check (0: none scheduled)",
            self.next_check.clone(),
        );
        r.register("checks", "Update checks by result", self.checks.clone());
        r.register(
            "errors",
            "Failed checks and installs by stable error kind",
            self.errors.clone(),
        );
        r.register(
            "download_bytes",
            "Bytes received by package (usr, oem, extension) and payload (full, delta)",
            self.downloaded.clone(),
        );
        r.register(
            "install_duration_seconds",
            "Install attempts (download to commit) by result",
            self.installs.clone(),
        );
        r.register(
            "deny_list_entries",
            "Versions on the local deny list",
            self.deny_list.clone(),
        );
        r.register(
            "deny_list_readable",
            "1 when the deny list could be read (0: updates are refused until it is fixed)",
            self.deny_list_readable.clone(),
        );
        r.register(
            "health_gate_verdicts",
            "Health gate runs on this node by verdict (persisted across boots)",
            self.gate_verdicts.clone(),
        );
        r.register(
            "updates_disabled",
            "1 when update.conf says SERVER=disabled (scheduled checks are skipped)",
            self.updates_disabled.clone(),
        );
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Fresh metrics: IDLE, nothing checked or downloaded yet.
    pub fn new() -> Self {
        let mut inner = Inner {
            registry: Registry::with_prefix("update_agent"),
            build: Family::default(),
            status: Family::default(),
            staged: Family::default(),
            last_check: Gauge::default(),
            last_success: Gauge::default(),
            next_check: Gauge::default(),
            checks: Family::default(),
            errors: Family::default(),
            downloaded: Family::default(),
            installs: Family::new_with_constructor(duration_histogram),
            deny_list: Gauge::default(),
            deny_list_readable: Gauge::default(),
            gate_verdicts: Family::default(),
            updates_disabled: Gauge::default(),
        };
        inner.register();
        for op in Operation::ALL {
            let on = i64::from(op == Operation::Idle);
            inner
                .status
                .get_or_create(&[("status", op.as_str())])
                .set(on);
        }
        for result in [
            CheckResult::NoUpdate,
            CheckResult::UpdateAvailable,
            CheckResult::Refused,
            CheckResult::Failed,
            CheckResult::Disabled,
        ] {
            let _ = inner.checks.get_or_create(&[("result", result.as_str())]);
        }
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The text exposition (OpenMetrics 1.0, which Prometheus reads).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.inner.registry);
        out
    }

    /// The agent's version and what the node's configuration says.
    pub fn set_build_info(&self, os_version: &str, board: &str, channel: &str) {
        let labels = [
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("os_version", os_version.to_string()),
            ("board", board.to_string()),
            ("channel", channel.to_string()),
        ];
        if self.inner.build.get(&labels).is_none() {
            // One series: a channel switch replaces it.
            self.inner.build.clear();
        }
        self.inner.build.get_or_create(&labels).set(1);
    }

    /// The state machine's new state: the status, and the staged version.
    pub fn set_state(&self, state: &State) {
        let current = state.operation();
        for op in Operation::ALL {
            let v = i64::from(op == current);
            self.inner
                .status
                .get_or_create(&[("status", op.as_str())])
                .set(v);
        }
        match state {
            State::UpdatedNeedReboot { target } => {
                let labels = [("version", target.version.clone())];
                if self.inner.staged.get(&labels).is_none() {
                    self.inner.staged.clear();
                }
                self.inner.staged.get_or_create(&labels).set(1);
            }
            _ => self.inner.staged.clear(),
        }
    }

    /// A check ended at `unix` with `result`.
    pub fn check_done(&self, result: CheckResult, unix: u64) {
        self.inner.last_check.set(to_i64(unix));
        self.inner
            .checks
            .get_or_create(&[("result", result.as_str())])
            .inc();
    }

    /// The server answered a check at `unix`.
    pub fn set_last_successful_check(&self, unix: i64) {
        self.inner.last_success.set(unix);
    }

    /// The next scheduled check (`None`: none armed).
    pub fn set_next_check(&self, unix: Option<u64>) {
        self.inner.next_check.set(unix.map_or(0, to_i64));
    }

    /// A failure of kind `kind` (the agent's stable `error_kind` names).
    pub fn error(&self, kind: &str) {
        self.inner
            .errors
            .get_or_create(&[("kind", bounded_kind(kind))])
            .inc();
    }

    /// The counter the download loop adds received bytes to.
    pub fn download_counter(&self, image: Image, delta: bool) -> ByteCounter {
        let payload = if delta { "delta" } else { "full" };
        self.inner
            .downloaded
            .get_or_create(&[("image", image.as_str()), ("payload", payload)])
            .clone()
    }

    /// An install attempt ended after `secs`.
    pub fn install_done(&self, success: bool, secs: f64) {
        let result = if success { "success" } else { "failure" };
        self.inner
            .installs
            .get_or_create(&[("result", result)])
            .observe(secs);
    }

    /// Whether the last check found `SERVER=disabled`.
    pub fn set_updates_disabled(&self, disabled: bool) {
        self.inner.updates_disabled.set(i64::from(disabled));
    }

    /// The deny list's size, or `None` when it cannot be read.
    pub fn set_deny_list(&self, entries: Option<usize>) {
        self.inner.deny_list.set(entries.map_or(0, |n| n as i64));
        self.inner
            .deny_list_readable
            .set(i64::from(entries.is_some()));
    }

    /// The gate's persisted verdict counts.
    pub fn set_gate_verdicts(&self, counts: &verdicts::Counts) {
        for (verdict, n) in counts.iter() {
            let c = self
                .inner
                .gate_verdicts
                .get_or_create(&[("verdict", verdict)]);
            let counter: &AtomicU64 = c.inner();
            counter.store(n, Ordering::Relaxed);
        }
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Error kinds are the code's own `&'static str` names; anything else
/// (which would be a bug) is folded into `other` so a label can never grow
/// without bound.
fn bounded_kind(kind: &str) -> String {
    let plain = !kind.is_empty()
        && kind.len() <= 48
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if plain { kind } else { "other" }.to_string()
}

/// The files other processes write, read again at each scrape.
#[derive(Debug, Clone)]
pub struct NodeFiles {
    /// The state directory (host path): the deny list and the gate's
    /// verdict record live there.
    pub state_dir: PathBuf,
}

impl NodeFiles {
    /// What the socket serves: the files read again, then the text.
    pub fn render(self, m: Metrics) -> ab_node::metrics_socket::Render {
        // Two small files; reading them inline keeps the numbers current.
        std::sync::Arc::new(move || {
            self.refresh(&m);
            m.encode()
        })
    }

    /// Reads the deny list and the gate's verdicts into `m`.
    pub fn refresh(&self, m: &Metrics) {
        let deny = crate::denylist::DenyList::in_dir(&self.state_dir);
        m.set_deny_list(deny.entries().ok().map(|e| e.len()));
        match verdicts::read(&self.state_dir.join(verdicts::FILE)) {
            Ok(counts) => m.set_gate_verdicts(&counts),
            Err(e) => tracing::debug!("health gate verdicts: {e}"),
        }
    }
}

#[cfg(test)]
mod tests;
