//! The narrow interface the D-Bus layer needs from the update engine.
//!
//! The daemon's handle implements [`Engine`]; tests use
//! [`super::sim::SimEngine`], which drives the real [`crate::fsm::step`].

use std::future::Future;

use cgpt::slot::Slot;
use tokio::sync::watch;

use crate::denylist::Denied;
use crate::fsm::Status;

/// The last failure, for the `LastError*` properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    /// A stable machine-readable name (`error_kind()` of the failing step).
    pub kind: String,
    /// What happened, in words.
    pub message: String,
    /// The update_engine error code reported to the server (0 when none).
    pub code: u32,
}

/// Why an engine request was refused or failed. Each variant maps to one
/// D-Bus error name (see [`super::DbusError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The request does not fit the current state (e.g. rollback while an
    /// update runs).
    #[error("{0}")]
    Busy(String),
    /// A bad argument (e.g. an empty channel name).
    #[error("{0}")]
    InvalidArgument(String),
    /// The engine cannot do this here (e.g. no boot disk configured).
    #[error("{0}")]
    NotSupported(String),
    /// The request was valid but failed.
    #[error("{0}")]
    Failed(String),
}

impl EngineError {
    /// A stable name for logs and metrics.
    pub fn error_kind(&self) -> &'static str {
        match self {
            Self::Busy(_) => "busy",
            Self::InvalidArgument(_) => "invalid_argument",
            Self::NotSupported(_) => "not_supported",
            Self::Failed(_) => "failed",
        }
    }
}

/// What the D-Bus service asks of the engine. Reads are cheap and
/// synchronous; requests that may wait on the engine are async.
pub trait Engine: Send + Sync + 'static {
    /// The current status.
    fn status(&self) -> Status;

    /// Status changes (the service throttles what it broadcasts).
    fn subscribe(&self) -> watch::Receiver<Status>;

    /// Unix seconds of the last successful update check (0 = none since start).
    fn last_checked_time(&self) -> i64;

    /// update_engine's `AttemptUpdate`: start an interactive check when idle;
    /// otherwise ignored (not an error).
    fn attempt_update(&self) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// update_engine's `ResetStatus`: a no-op when idle; when an update waits
    /// for reboot, forget it **and** make the booted slot boot next again;
    /// [`EngineError::Busy`] in any other state.
    fn reset_status(&self) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Stop a running check or install (the status ends in IDLE).
    fn cancel(&self) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Make the other (previous) slot boot next, once. Only when idle.
    fn rollback(&self) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// The release channel (`GROUP`) the next check uses.
    fn channel(&self) -> Result<String, EngineError>;

    /// Switch the release channel (`GROUP=` in `/etc/flatcar/update.conf`).
    fn set_channel(&self, channel: &str) -> Result<(), EngineError>;

    /// The running OS version.
    fn current_version(&self) -> String;

    /// The USR slot this boot runs from, when known.
    fn booted_slot(&self) -> Option<Slot>;

    /// The last failure since start, if any.
    fn last_error(&self) -> Option<LastError>;

    /// The local deny list, oldest first.
    fn deny_list(&self) -> Result<Vec<Denied>, EngineError>;

    /// Never install `version` (until removed).
    fn deny(&self, version: &str, reason: &str) -> Result<(), EngineError>;

    /// Remove `version` from the deny list; false if it was not there.
    fn undeny(&self, version: &str) -> Result<bool, EngineError>;

    /// Empty the deny list.
    fn clear_deny_list(&self) -> Result<(), EngineError>;
}
