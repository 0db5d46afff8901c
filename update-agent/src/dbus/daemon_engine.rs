//! [`Engine`] for the real daemon: its [`Handle`] plus the node's files
//! (channel, deny list) and boot disk (rollback).
//!
//! The handle's commands are fire-and-forget, so the state checks that
//! update_engine answers with a D-Bus error (ResetStatus outside IDLE and
//! UPDATED_NEED_REBOOT, Cancel when nothing runs) are made here against the
//! published status before the command is sent.

use cgpt::slot::Slot;
use tokio::sync::watch;

use super::sim::BootDisk;
use super::{Engine, EngineError, LastError};
use crate::config::flatcar::FlatcarConfigError;
use crate::config::{FlatcarConfig, Root, set_group};
use crate::daemon::Handle;
use crate::denylist::{Denied, DenyList, DenyListError};
use crate::fsm::{Operation, Status};

/// The daemon as the D-Bus service sees it.
#[derive(Debug, Clone)]
pub struct DaemonEngine {
    handle: Handle,
    root: Root,
    deny_list: DenyList,
    boot: Option<BootDisk>,
}

impl DaemonEngine {
    /// `state_dir` holds the deny list; `boot` is the boot disk and booted
    /// slot when known (needed for Rollback).
    pub fn new(
        handle: Handle,
        root: Root,
        state_dir: &std::path::Path,
        boot: Option<BootDisk>,
    ) -> Self {
        Self {
            handle,
            root,
            deny_list: DenyList::in_dir(state_dir),
            boot,
        }
    }
}

fn deny_err(e: DenyListError) -> EngineError {
    match e {
        DenyListError::InvalidVersion(_) => EngineError::InvalidArgument(e.to_string()),
        _ => EngineError::Failed(e.to_string()),
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Engine for DaemonEngine {
    fn status(&self) -> Status {
        self.handle.status()
    }

    fn subscribe(&self) -> watch::Receiver<Status> {
        self.handle.subscribe()
    }

    fn last_checked_time(&self) -> i64 {
        self.handle.last_checked_time()
    }

    async fn attempt_update(&self) -> Result<(), EngineError> {
        self.handle.attempt_update();
        Ok(())
    }

    async fn reset_status(&self) -> Result<(), EngineError> {
        match self.handle.status().operation {
            Operation::Idle => Ok(()),
            Operation::UpdatedNeedReboot => {
                self.handle.reset_status();
                Ok(())
            }
            other => Err(EngineError::Busy(format!(
                "ResetStatus is only possible when idle or waiting for reboot, not in {other}"
            ))),
        }
    }

    async fn cancel(&self) -> Result<(), EngineError> {
        match self.handle.status().operation {
            Operation::CheckingForUpdate
            | Operation::UpdateAvailable
            | Operation::Downloading
            | Operation::Verifying => {
                self.handle.cancel();
                Ok(())
            }
            other => Err(EngineError::Busy(format!(
                "nothing to cancel in {other} (FINALIZING cannot be interrupted)"
            ))),
        }
    }

    async fn rollback(&self) -> Result<(), EngineError> {
        let op = self.handle.status().operation;
        if op != Operation::Idle {
            return Err(EngineError::Busy(format!(
                "roll back only when idle, not in {op}"
            )));
        }
        self.boot
            .as_ref()
            .ok_or_else(|| {
                EngineError::NotSupported("the boot disk is unknown on this node".into())
            })?
            .rollback()
    }

    fn channel(&self) -> Result<String, EngineError> {
        FlatcarConfig::load(&self.root)
            .map(|c| c.group().to_string())
            .map_err(|e| EngineError::Failed(e.to_string()))
    }

    fn set_channel(&self, channel: &str) -> Result<(), EngineError> {
        set_group(&self.root, channel).map_err(|e| match e {
            FlatcarConfigError::InvalidValue { .. } => EngineError::InvalidArgument(e.to_string()),
            _ => EngineError::Failed(e.to_string()),
        })
    }

    fn current_version(&self) -> String {
        FlatcarConfig::load(&self.root)
            .map(|c| c.version().to_string())
            .unwrap_or_default()
    }

    fn booted_slot(&self) -> Option<Slot> {
        self.boot.as_ref().map(|b| b.booted)
    }

    fn last_error(&self) -> Option<LastError> {
        self.handle.last_error().map(|e| LastError {
            kind: e.kind,
            message: e.message,
            code: e.code,
        })
    }

    fn deny_list(&self) -> Result<Vec<Denied>, EngineError> {
        self.deny_list.entries().map_err(deny_err)
    }

    fn deny(&self, version: &str, reason: &str) -> Result<(), EngineError> {
        if let Some(dir) = self.deny_list.path().parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| EngineError::Failed(format!("creating {}: {e}", dir.display())))?;
        }
        self.deny_list
            .add(version, reason, now_unix())
            .map_err(deny_err)
    }

    fn undeny(&self, version: &str) -> Result<bool, EngineError> {
        self.deny_list.remove(version).map_err(deny_err)
    }

    fn clear_deny_list(&self) -> Result<(), EngineError> {
        self.deny_list.clear().map_err(deny_err)
    }
}
