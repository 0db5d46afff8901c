//! `com.coreos.update1.Manager`: update_engine's interface, unchanged.
//!
//! Introspection: `systemd/dbus/com.coreos.update1.Manager.xml`.

use std::sync::Arc;

use zbus::interface;
use zbus::object_server::SignalEmitter;

use super::throttle::StatusTuple;
use super::{DbusError, Engine};

/// The exported object.
#[derive(Debug)]
pub struct Manager<E> {
    engine: Arc<E>,
}

impl<E> Manager<E> {
    /// Serves `engine`.
    pub fn new(engine: Arc<E>) -> Self {
        Self { engine }
    }
}

#[interface(name = "com.coreos.update1.Manager", introspection_docs = false)]
impl<E: Engine> Manager<E> {
    /// Starts an interactive check when idle; ignored otherwise. Always
    /// succeeds, as in update_engine.
    async fn attempt_update(&self) {
        if let Err(e) = self.engine.attempt_update().await {
            tracing::info!("AttemptUpdate ignored: {}", crate::error_chain(&e));
        }
    }

    /// Forgets a staged update (and, unlike update_engine, makes the booted
    /// slot boot next again). Fails unless idle or waiting for reboot.
    async fn reset_status(&self) -> Result<(), DbusError> {
        self.engine.reset_status().await.map_err(DbusError::from)
    }

    /// `(last_checked_time, progress, current_operation, new_version, new_size)`.
    #[zbus(out_args(
        "last_checked_time",
        "progress",
        "current_operation",
        "new_version",
        "new_size"
    ))]
    async fn get_status(&self) -> (i64, f64, String, String, i64) {
        StatusTuple::new(&self.engine.status(), self.engine.last_checked_time()).to_wire()
    }

    /// Broadcast on status changes (throttled while downloading).
    #[zbus(signal)]
    pub async fn status_update(
        emitter: &SignalEmitter<'_>,
        last_checked_time: i64,
        progress: f64,
        current_operation: &str,
        new_version: &str,
        new_size: i64,
    ) -> zbus::Result<()>;
}
