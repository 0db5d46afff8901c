//! The narrow interface the D-Bus layer needs from the update engine.
//!
//! The daemon implements it ([`super::DaemonEngine`]); the test crate has a
//! scripted engine on the same [`crate::fsm`] for the service's own tests.
//! What does not depend on the engine (the channel in `update.conf`, the
//! deny list) is implemented here once, as provided methods.

use std::future::Future;

use cgpt::slot::Slot;
use tokio::sync::watch;

use crate::config::flatcar::FlatcarConfigError;
use crate::config::{FlatcarConfig, Root, set_group};
use crate::denylist::{Denied, DenyList, DenyListError};
use crate::fsm::{self, Status};
use crate::slots::BootDiskError;

pub use crate::daemon::LastError;

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

impl From<DenyListError> for EngineError {
    fn from(e: DenyListError) -> Self {
        match e {
            DenyListError::InvalidVersion(_) => Self::InvalidArgument(e.to_string()),
            _ => Self::Failed(crate::error_chain(&e)),
        }
    }
}

impl From<fsm::Refused> for EngineError {
    fn from(e: fsm::Refused) -> Self {
        Self::Busy(e.to_string())
    }
}

impl From<BootDiskError> for EngineError {
    fn from(e: BootDiskError) -> Self {
        match e {
            BootDiskError::NeverBooted(_) => Self::Busy(e.to_string()),
            BootDiskError::Gpt { .. } => Self::Failed(crate::error_chain(&e)),
        }
    }
}

impl From<FlatcarConfigError> for EngineError {
    fn from(e: FlatcarConfigError) -> Self {
        match e {
            FlatcarConfigError::InvalidValue { .. } => Self::InvalidArgument(e.to_string()),
            _ => Self::Failed(crate::error_chain(&e)),
        }
    }
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

/// One USR slot for `Slots`: `(label, priority, tries, successful,
/// version)`; the version is the running one for the booted slot, the
/// staged one for a slot an update waits in, else empty (unknown).
pub type SlotView = (String, u8, u8, bool, String);

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

    /// The node root (`update.conf`).
    fn root(&self) -> &Root;

    /// The deny list file.
    fn deny_file(&self) -> DenyList;

    /// The running OS version.
    fn current_version(&self) -> String;

    /// The USR slot this boot runs from, when known.
    fn booted_slot(&self) -> Option<Slot>;

    /// The last failure since start, if any.
    fn last_error(&self) -> Option<LastError>;

    /// Unix seconds of the next scheduled check (0 = none scheduled).
    fn next_check_time(&self) -> i64 {
        0
    }

    /// Both USR slots as GRUB sees them (empty when the disk is unknown).
    fn slots(&self) -> Vec<SlotView> {
        Vec::new()
    }

    /// The release channel (`GROUP`) the next check uses.
    fn channel(&self) -> Result<String, EngineError> {
        Ok(FlatcarConfig::load(self.root())?.group().to_string())
    }

    /// Switch the release channel (`GROUP=` in `/etc/flatcar/update.conf`).
    fn set_channel(&self, channel: &str) -> Result<(), EngineError> {
        Ok(set_group(self.root(), channel)?)
    }

    /// The local deny list, oldest first.
    fn deny_list(&self) -> Result<Vec<Denied>, EngineError> {
        Ok(self.deny_file().entries()?)
    }

    /// Never install `version` (until removed).
    fn deny(&self, version: &str, reason: &str) -> Result<(), EngineError> {
        let file = self.deny_file();
        if let Some(dir) = file.path().parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| EngineError::Failed(format!("creating {}: {e}", dir.display())))?;
        }
        Ok(file.add(version, reason, crate::fsutil::unix_now())?)
    }

    /// Remove `version` from the deny list; false if it was not there.
    fn undeny(&self, version: &str) -> Result<bool, EngineError> {
        Ok(self.deny_file().remove(version)?)
    }

    /// Empty the deny list.
    fn clear_deny_list(&self) -> Result<(), EngineError> {
        Ok(self.deny_file().clear()?)
    }
}
