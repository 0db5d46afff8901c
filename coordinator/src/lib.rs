//! Reboot coordination for A/B updates: a locksmithd drop-in that the update agent embeds.
//!
//! An installed update only counts once the node reboots into it, and a fleet must not reboot
//! all at once. This crate reads locksmith's configuration ([`config`]), waits for the reboot
//! window ([`window`]), takes a cluster-wide slot ([`lock`]: locksmith's semaphore on etcd's
//! v3 API, or FleetLock), warns users ([`users`]), reboots through logind ([`node`]) and gives
//! the slot back only once the new boot passed the health gate. The decisions are a pure state
//! machine ([`fsm`]); [`run`] is its executor; [`metrics`] counts what it did.

#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
pub mod fsm;
pub mod lock;
pub mod metrics;
pub mod node;
pub mod run;
pub mod semaphore;
pub mod users;
pub mod window;

pub use config::{Config, ConfigError, KeyValues, Strategy};
pub use run::{Clock, Coordinator, Outcome, Standalone, SystemClock};

/// Everything that can stop the coordinator from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid or unreadable.
    #[error("configuration")]
    Config(#[from] ConfigError),
    /// Reading the node's identity, writing its files or rebooting failed.
    #[error(transparent)]
    Node(#[from] node::NodeError),
    /// The cluster lock could not be taken or given back.
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    /// The state machine got an event it does not expect.
    #[error(transparent)]
    Fsm(#[from] fsm::FsmError),
}

impl Error {
    /// A stable name for metrics and logs.
    pub fn error_kind(&self) -> &'static str {
        match self {
            Error::Config(e) => e.error_kind(),
            Error::Node(_) => "node",
            Error::Lock(e) => e.error_kind(),
            Error::Fsm(_) => "fsm",
        }
    }
}

/// An error and its causes joined with ": ", as the binaries print them (anyhow's `{:#}`).
/// Error messages leave their cause out, so logs use this to show the whole story.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
