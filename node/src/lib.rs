//! What the update agent and the reboot coordinator agree on about the node, in one place so
//! the two sides cannot drift apart:
//!
//! - [`steady`]: the health gate's "this boot is healthy" marker, which the agent writes and
//!   the coordinator waits for before it gives its reboot lock back;
//! - [`reboot`]: how both of them reboot the machine (logind's `Reboot`, or a configured
//!   command), with the retry a freshly written command needs;
//! - `metrics_socket` (feature `metrics-socket`): where and how both serve their Prometheus
//!   metrics to unprivileged scrapers.
//!
//! No D-Bus library, and without the `metrics-socket` feature no async runtime: the reboot is
//! a short blocking command, which an async caller runs on its blocking pool.

#[cfg(feature = "metrics-socket")]
pub mod metrics_socket;
pub mod reboot;
pub mod steady;

pub use reboot::{LOGIND_REBOOT, RebootError, logind_command, retry_text_busy};
pub use steady::{STEADY_MARKER, is_steady, write_steady};

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
