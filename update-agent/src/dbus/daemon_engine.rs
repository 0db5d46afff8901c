//! [`Engine`] for the real daemon: its [`Handle`] plus the node's files
//! (channel, deny list) and boot disk (rollback). Which statuses accept
//! which request is decided by [`crate::fsm::admits`], through the handle.

use cgpt::slot::Slot;
use tokio::sync::watch;

use super::{Engine, EngineError, LastError, SlotView};
use crate::config::{FlatcarConfig, Root};
use crate::daemon::Handle;
use crate::denylist::DenyList;
use crate::fsm::{self, Command, Status};
use crate::slots::BootDisk;

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
        Ok(self.handle.reset_status().await?)
    }

    async fn cancel(&self) -> Result<(), EngineError> {
        Ok(self.handle.cancel()?)
    }

    async fn rollback(&self) -> Result<(), EngineError> {
        fsm::admits(self.handle.status().operation, Command::Rollback)?;
        let boot = self.boot.as_ref().ok_or_else(|| {
            EngineError::NotSupported("the boot disk is unknown on this node".into())
        })?;
        Ok(boot.rollback()?)
    }

    fn root(&self) -> &Root {
        &self.root
    }

    fn deny_file(&self) -> DenyList {
        self.deny_list.clone()
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
        self.handle.last_error()
    }

    fn next_check_time(&self) -> i64 {
        self.handle.next_check_time()
    }

    fn slots(&self) -> Vec<SlotView> {
        let Some(boot) = &self.boot else {
            return Vec::new();
        };
        let read = cgpt::FileDisk::open_ro(&boot.path)
            .and_then(|mut d| cgpt::slot::read_slots(&mut d).map_err(std::io::Error::other));
        let states = match read {
            Ok(states) => states,
            Err(e) => {
                tracing::warn!("Slots: reading {}: {e}", boot.path.display());
                return Vec::new();
            }
        };
        let status = self.handle.status();
        let staged =
            (status.operation == fsm::Operation::UpdatedNeedReboot).then_some(status.new_version);
        states
            .iter()
            .map(|st| {
                let a = st.entry.attrs;
                let version = if st.slot == boot.booted {
                    self.current_version()
                } else {
                    staged.clone().unwrap_or_default()
                };
                let label = st.slot.label().to_string();
                (label, a.priority(), a.tries(), a.successful(), version)
            })
            .collect()
    }
}
