//! The clonable [`Handle`] on a running daemon (D-Bus, the CLI, tests).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot, watch};

use crate::fsm::{self, Command, Status};
use crate::metrics::Metrics;

/// The last failure, for `LastError` and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    /// The reported code with flags (as in the error event).
    pub code: u32,
    /// Stable machine-readable kind.
    pub kind: String,
    /// Human-readable text.
    pub message: String,
}

#[derive(Debug)]
pub(super) struct HandleInner {
    pub(super) status: watch::Sender<Status>,
    pub(super) commands: mpsc::UnboundedSender<Queued>,
    last_error: Mutex<Option<LastError>>,
    last_checked: AtomicI64,
    next_check: AtomicI64,
    cancel: Mutex<Arc<AtomicBool>>,
    metrics: Metrics,
}

/// A command on its way to the daemon, with who waits for it to be done.
#[derive(Debug)]
pub(super) struct Queued {
    pub(super) command: Command,
    pub(super) done: Option<oneshot::Sender<()>>,
}

/// A clonable handle on a running daemon (see the module docs).
///
/// Commands are checked against the published status with
/// [`fsm::admits`] (the caller gets a refusal at once) and queued; the
/// daemon checks them again against its own state when it takes them.
#[derive(Debug, Clone)]
pub struct Handle {
    pub(super) inner: Arc<HandleInner>,
}

impl Handle {
    /// The current status.
    pub fn status(&self) -> Status {
        self.inner.status.borrow().clone()
    }

    /// A receiver that sees every published status.
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.inner.status.subscribe()
    }

    /// A handle publishing `status`, with the daemon's end of the command
    /// queue.
    pub(super) fn new(status: Status) -> (Self, mpsc::UnboundedReceiver<Queued>) {
        let (status, _) = watch::channel(status);
        let (commands, rx) = mpsc::unbounded_channel();
        let inner = HandleInner {
            status,
            commands,
            last_error: Mutex::new(None),
            last_checked: AtomicI64::new(0),
            next_check: AtomicI64::new(0),
            cancel: Mutex::new(Arc::default()),
            metrics: Metrics::new(),
        };
        (
            Self {
                inner: Arc::new(inner),
            },
            rx,
        )
    }

    /// Queues `command` if the published status admits it; the receiver
    /// fires once the daemon has acted on it.
    fn send(&self, command: Command) -> Result<Option<oneshot::Receiver<()>>, fsm::Refused> {
        if fsm::admits(self.status().operation, command)? == fsm::Admission::Ignore {
            return Ok(None);
        }
        let (tx, rx) = oneshot::channel();
        let queued = Queued {
            command,
            done: Some(tx),
        };
        Ok(self.inner.commands.send(queued).ok().map(|()| rx))
    }

    /// Asks for an interactive update check (ignored unless IDLE or
    /// UPDATED_NEED_REBOOT, as update_engine does). Returns at once.
    pub fn attempt_update(&self) {
        // Never refused, at worst ignored.
        let _ = self.send(Command::AttemptUpdate);
    }

    /// `ResetStatus`: forget a staged update (reverts the slot switch); a
    /// no-op when idle, refused while an update runs. Returns once the
    /// revert is done, as update_engine's call does.
    pub async fn reset_status(&self) -> Result<(), fsm::Refused> {
        if let Some(done) = self.send(Command::ResetStatus)? {
            let _ = done.await;
        }
        Ok(())
    }

    /// Aborts the running check or install; refused when nothing runs.
    pub fn cancel(&self) -> Result<(), fsm::Refused> {
        fsm::admits(self.status().operation, Command::Cancel)?;
        lock(&self.inner.cancel).store(true, Ordering::Relaxed);
        Ok(())
    }

    /// A fresh cancel flag for the next install.
    pub(super) fn new_cancel_flag(&self) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        *lock(&self.inner.cancel) = flag.clone();
        flag
    }

    pub(super) fn set_last_checked(&self, unix: i64) {
        self.inner.last_checked.store(unix, Ordering::Relaxed);
        self.inner.metrics.set_last_successful_check(unix);
    }

    /// The daemon's metrics (served by [`crate::metrics::serve`]).
    pub fn metrics(&self) -> Metrics {
        self.inner.metrics.clone()
    }

    pub(super) fn set_next_check(&self, unix: i64) {
        self.inner.next_check.store(unix, Ordering::Relaxed);
    }

    /// Unix time of the next scheduled update check (0 = none scheduled).
    pub fn next_check_time(&self) -> i64 {
        self.inner.next_check.load(Ordering::Relaxed)
    }

    /// The last failure.
    pub fn last_error(&self) -> Option<LastError> {
        lock(&self.inner.last_error).clone()
    }

    /// Unix time of the last completed update check (0 = never).
    pub fn last_checked_time(&self) -> i64 {
        self.inner.last_checked.load(Ordering::Relaxed)
    }

    /// A later successful check makes an old failure history.
    pub(super) fn clear_error(&self) {
        *lock(&self.inner.last_error) = None;
    }

    pub(super) fn set_error(&self, e: LastError) {
        let code = omaha::NamedErrorCode(e.code);
        tracing::error!("update failed ({}, error {code}): {}", e.kind, e.message);
        self.inner.metrics.error(&e.kind);
        *lock(&self.inner.last_error) = Some(e);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
