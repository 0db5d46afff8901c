//! Reboot coordination for A/B updates: a locksmithd drop-in that the update agent embeds.
//!
//! An installed update only counts once the node reboots into it, and a fleet must not reboot
//! all at once. This crate reads locksmith's configuration ([`config`]), waits for the reboot
//! window ([`window`]), takes a cluster-wide slot ([`lock`]: locksmith's semaphore on etcd's
//! v3 API, or FleetLock), warns users ([`users`]), reboots through logind ([`node`]) and gives
//! the slot back only once the new boot passed the health gate. The decisions are a pure state
//! machine ([`fsm`]); [`run`] is its executor.

pub mod config;
pub mod fsm;
pub mod lock;
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
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Node(#[from] node::NodeError),
    #[error(transparent)]
    Lock(#[from] lock::LockError),
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
