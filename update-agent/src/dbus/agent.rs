//! `org.ab_update_engine.Agent1`: what update_engine's interface lacks.
//!
//! Read-only properties (with `PropertiesChanged`, emitted by the service's
//! notifier), and methods to switch the channel, roll back, cancel and edit
//! the deny list. Introspection: `systemd/dbus/org.ab_update_engine.Agent1.xml`.

use std::sync::Arc;

use tokio::sync::Notify;
use zbus::interface;
use zbus::zvariant::Value;

use super::throttle::StatusTuple;
use super::{DbusError, Engine, EngineError};

/// The exported object.
#[derive(Debug)]
pub struct Agent<E> {
    engine: Arc<E>,
    /// Wakes the notifier after a method changed a property.
    changed: Arc<Notify>,
}

impl<E> Agent<E> {
    /// Serves `engine`; `changed` is notified after every successful method.
    pub fn new(engine: Arc<E>, changed: Arc<Notify>) -> Self {
        Self { engine, changed }
    }
}

/// The deny list as sent: `(version, since_unix_seconds, reason)`.
pub type DenyEntry = (String, u64, String);

/// Every property's value, for change detection.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub status: StatusTuple,
    pub current_version: String,
    pub channel: String,
    pub booted_slot: String,
    pub last_error_kind: String,
    pub last_error_message: String,
    pub last_error_code: u32,
    pub deny_list: Vec<DenyEntry>,
}

impl Snapshot {
    /// Reads every property from `engine`; `status` is the tuple last broadcast.
    pub fn read<E: Engine>(engine: &E, status: StatusTuple) -> Self {
        let err = engine.last_error();
        Self {
            status,
            current_version: engine.current_version(),
            channel: engine.channel().unwrap_or_default(),
            booted_slot: slot_label(engine),
            last_error_kind: err.as_ref().map(|e| e.kind.clone()).unwrap_or_default(),
            last_error_message: err.as_ref().map(|e| e.message.clone()).unwrap_or_default(),
            last_error_code: err.map_or(0, |e| e.code),
            deny_list: deny_entries(engine).unwrap_or_default(),
        }
    }

    /// `(property name, value)` for every property that differs from `old`
    /// (nothing for the first snapshot).
    pub fn changes(&self, old: Option<&Snapshot>) -> Vec<(&'static str, Value<'static>)> {
        let Some(o) = old else { return Vec::new() };
        let (s, os) = (&self.status, &o.status);
        let rows: [(&'static str, bool, Value<'static>); 12] = [
            (
                "Status",
                os.operation != s.operation,
                Value::from(s.operation.as_str().to_string()),
            ),
            (
                "Progress",
                os.progress != s.progress,
                Value::from(s.progress),
            ),
            (
                "NewVersion",
                os.new_version != s.new_version,
                Value::from(s.new_version.clone()),
            ),
            (
                "NewSize",
                os.new_size != s.new_size,
                Value::from(s.new_size),
            ),
            (
                "LastCheckedTime",
                os.last_checked_time != s.last_checked_time,
                Value::from(s.last_checked_time),
            ),
            (
                "CurrentVersion",
                o.current_version != self.current_version,
                Value::from(self.current_version.clone()),
            ),
            (
                "Channel",
                o.channel != self.channel,
                Value::from(self.channel.clone()),
            ),
            (
                "BootedSlot",
                o.booted_slot != self.booted_slot,
                Value::from(self.booted_slot.clone()),
            ),
            (
                "LastErrorKind",
                o.last_error_kind != self.last_error_kind,
                Value::from(self.last_error_kind.clone()),
            ),
            (
                "LastErrorMessage",
                o.last_error_message != self.last_error_message,
                Value::from(self.last_error_message.clone()),
            ),
            (
                "LastErrorCode",
                o.last_error_code != self.last_error_code,
                Value::from(self.last_error_code),
            ),
            (
                "DenyList",
                o.deny_list != self.deny_list,
                Value::from(self.deny_list.clone()),
            ),
        ];
        rows.into_iter()
            .filter(|(_, differs, _)| *differs)
            .map(|(name, _, v)| (name, v))
            .collect()
    }
}

fn slot_label<E: Engine>(engine: &E) -> String {
    engine
        .booted_slot()
        .map(|s| s.label().to_string())
        .unwrap_or_default()
}

fn deny_entries<E: Engine>(engine: &E) -> Result<Vec<DenyEntry>, EngineError> {
    Ok(engine
        .deny_list()?
        .into_iter()
        .map(|d| (d.version, d.since, d.reason))
        .collect())
}

#[interface(name = "org.ab_update_engine.Agent1", introspection_docs = false)]
impl<E: Engine> Agent<E> {
    /// `current_operation` (`UPDATE_STATUS_*`).
    #[zbus(property)]
    fn status(&self) -> String {
        self.engine.status().operation.as_str().to_string()
    }

    /// Download progress in `[0, 1]`.
    #[zbus(property)]
    fn progress(&self) -> f64 {
        self.engine.status().progress
    }

    /// The version being installed (`0.0.0` when none).
    #[zbus(property)]
    fn new_version(&self) -> String {
        self.engine.status().new_version
    }

    /// The size of the update in bytes.
    #[zbus(property)]
    fn new_size(&self) -> i64 {
        i64::try_from(self.engine.status().new_size).unwrap_or(i64::MAX)
    }

    /// Unix seconds of the last successful check (0 = none since start).
    #[zbus(property)]
    fn last_checked_time(&self) -> i64 {
        self.engine.last_checked_time()
    }

    /// The running OS version.
    #[zbus(property)]
    fn current_version(&self) -> String {
        self.engine.current_version()
    }

    /// The release channel (`GROUP`) of the next check.
    #[zbus(property)]
    fn channel(&self) -> Result<String, zbus::fdo::Error> {
        self.engine
            .channel()
            .map_err(|e| zbus::fdo::Error::Failed(e.to_string()))
    }

    /// `USR-A` or `USR-B` (empty when unknown).
    #[zbus(property)]
    fn booted_slot(&self) -> String {
        slot_label(&*self.engine)
    }

    /// Stable name of the last failure (empty when none).
    #[zbus(property)]
    fn last_error_kind(&self) -> String {
        self.engine.last_error().map(|e| e.kind).unwrap_or_default()
    }

    /// The last failure in words (empty when none).
    #[zbus(property)]
    fn last_error_message(&self) -> String {
        self.engine
            .last_error()
            .map(|e| e.message)
            .unwrap_or_default()
    }

    /// The update_engine error code reported for the last failure (0 = none).
    #[zbus(property)]
    fn last_error_code(&self) -> u32 {
        self.engine.last_error().map_or(0, |e| e.code)
    }

    /// Versions never to install: `(version, since, reason)`.
    /// Unix seconds of the next scheduled check (0: none). Read on demand:
    /// no PropertiesChanged.
    #[zbus(property(emits_changed_signal = "false"))]
    fn next_check_time(&self) -> i64 {
        self.engine.next_check_time()
    }

    /// Both USR slots: `(label, priority, tries, successful, version)`.
    /// Read from the GPT on demand: no PropertiesChanged.
    #[zbus(property(emits_changed_signal = "false"))]
    fn slots(&self) -> Vec<super::SlotView> {
        self.engine.slots()
    }

    #[zbus(property)]
    fn deny_list(&self) -> Result<Vec<DenyEntry>, zbus::fdo::Error> {
        deny_entries(&*self.engine).map_err(|e| zbus::fdo::Error::Failed(e.to_string()))
    }

    /// Switches the release channel; the next check uses it.
    async fn set_channel(&self, channel: String) -> Result<(), DbusError> {
        self.engine.set_channel(&channel)?;
        self.changed.notify_one();
        Ok(())
    }

    /// Makes the previous slot boot next (once; falls back if it fails).
    async fn rollback(&self) -> Result<(), DbusError> {
        self.engine.rollback().await?;
        self.changed.notify_one();
        Ok(())
    }

    /// Stops a running check or install.
    async fn cancel(&self) -> Result<(), DbusError> {
        self.engine.cancel().await?;
        self.changed.notify_one();
        Ok(())
    }

    /// Never installs `version` until it is removed again.
    async fn deny(&self, version: String, reason: String) -> Result<(), DbusError> {
        self.engine.deny(&version, &reason)?;
        self.changed.notify_one();
        Ok(())
    }

    /// Removes `version` from the deny list; returns whether it was there.
    async fn undeny(&self, version: String) -> Result<bool, DbusError> {
        let removed = self.engine.undeny(&version)?;
        self.changed.notify_one();
        Ok(removed)
    }

    /// Empties the deny list.
    async fn clear_deny_list(&self) -> Result<(), DbusError> {
        self.engine.clear_deny_list()?;
        self.changed.notify_one();
        Ok(())
    }
}
