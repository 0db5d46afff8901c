//! The on-node A/B update agent: a drop-in replacement for Flatcar's
//! update_engine.
//!
//! Pure policy lives in [`fsm`] (the status state machine) and [`schedule`]
//! (check timing and backoff); I/O lives in [`config`] (Flatcar's
//! `update.conf` lookup and the agent's TOML settings), [`prefs`] (the
//! update_engine prefs directory) and [`omaha_client`] (the HTTP client).

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cli")]
pub mod client_args;
pub mod config;
pub mod daemon;
pub mod dbus;
pub mod decide;
pub mod denylist;
pub mod download;
pub mod fsm;
mod fsutil;
pub mod health;
pub mod http;
pub mod install;
pub mod metrics;
pub mod omaha_client;
pub mod prefs;
pub mod schedule;
pub mod slots;

pub use fsutil::write_atomic;

/// An error and its causes, `: `-separated, for `LastError`, the logs and
/// the binaries. A cause whose text the message already contains is not
/// repeated.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = e.source();
    }
    s
}
