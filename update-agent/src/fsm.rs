//! The agent's status state machine, with update_engine's status names.
//!
//! [`step`] is pure: it takes the current [`State`] and an [`Event`] and
//! returns the next state plus the [`Effect`]s the executor must run, in
//! order. Invalid transitions are errors, never panics. The diagram is in
//! `update-agent/docs/fsm.dot`.
//!
//! Differences from update_engine (deliberate): VERIFYING is used (between
//! the last payload byte and the start of finalizing), and progress never
//! drops back to 0 in FINALIZING.

use std::fmt;
use std::str::FromStr;

use omaha::EventErrorCode;

mod table;
pub use table::{failure_event, step};

/// `current_operation` as sent over D-Bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `UPDATE_STATUS_IDLE` (0)
    Idle = 0,
    /// `UPDATE_STATUS_CHECKING_FOR_UPDATE` (1)
    CheckingForUpdate = 1,
    /// `UPDATE_STATUS_UPDATE_AVAILABLE` (2)
    UpdateAvailable = 2,
    /// `UPDATE_STATUS_DOWNLOADING` (3)
    Downloading = 3,
    /// `UPDATE_STATUS_VERIFYING` (4)
    Verifying = 4,
    /// `UPDATE_STATUS_FINALIZING` (5)
    Finalizing = 5,
    /// `UPDATE_STATUS_UPDATED_NEED_REBOOT` (6)
    UpdatedNeedReboot = 6,
    /// `UPDATE_STATUS_REPORTING_ERROR_EVENT` (7)
    ReportingErrorEvent = 7,
}

impl Operation {
    /// Every operation, in numeric order.
    pub const ALL: [Self; 8] = [
        Self::Idle,
        Self::CheckingForUpdate,
        Self::UpdateAvailable,
        Self::Downloading,
        Self::Verifying,
        Self::Finalizing,
        Self::UpdatedNeedReboot,
        Self::ReportingErrorEvent,
    ];

    /// The wire string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "UPDATE_STATUS_IDLE",
            Self::CheckingForUpdate => "UPDATE_STATUS_CHECKING_FOR_UPDATE",
            Self::UpdateAvailable => "UPDATE_STATUS_UPDATE_AVAILABLE",
            Self::Downloading => "UPDATE_STATUS_DOWNLOADING",
            Self::Verifying => "UPDATE_STATUS_VERIFYING",
            Self::Finalizing => "UPDATE_STATUS_FINALIZING",
            Self::UpdatedNeedReboot => "UPDATE_STATUS_UPDATED_NEED_REBOOT",
            Self::ReportingErrorEvent => "UPDATE_STATUS_REPORTING_ERROR_EVENT",
        }
    }

    /// update_engine's numeric value.
    pub const fn code(self) -> u32 {
        self as u32
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Operation {
    type Err = UnknownOperation;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|op| op.as_str() == s)
            .ok_or_else(|| UnknownOperation(s.to_string()))
    }
}

/// A status string that is not one of update_engine's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown update status {0:?}")]
pub struct UnknownOperation(pub String);

/// The update being worked on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `new_version`.
    pub version: String,
    /// `new_size` in bytes.
    pub size: u64,
}

impl Target {
    /// What D-Bus reports when nothing is known: version `0.0.0`, size 0
    /// (also used for UPDATED_NEED_REBOOT restored from the marker).
    pub fn unknown() -> Self {
        Self {
            version: "0.0.0".into(),
            size: 0,
        }
    }
}

/// The state, with the data each status needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Nothing going on.
    Idle,
    /// The update check is in flight.
    CheckingForUpdate {
        /// Started by a user rather than the scheduler.
        interactive: bool,
    },
    /// The response offered `target` and the install is starting.
    UpdateAvailable {
        /// The update.
        target: Target,
    },
    /// Payload bytes are arriving.
    Downloading {
        /// The update.
        target: Target,
        /// Bytes received so far (never decreases).
        bytes: u64,
    },
    /// All bytes are in; payload hash, signature and partition are checked.
    Verifying {
        /// The update.
        target: Target,
    },
    /// Verified; postinst, kernel and slot switch are running.
    Finalizing {
        /// The update.
        target: Target,
    },
    /// The other slot is ready and will boot next.
    UpdatedNeedReboot {
        /// The update.
        target: Target,
    },
    /// An error event is being POSTed.
    ReportingErrorEvent {
        /// The reported code.
        code: EventErrorCode,
    },
}

impl State {
    /// The start state: UPDATED_NEED_REBOOT when the reboot marker exists
    /// (an update was installed during this boot), else IDLE.
    pub fn initial(reboot_marker_exists: bool) -> Self {
        if reboot_marker_exists {
            Self::UpdatedNeedReboot {
                target: Target::unknown(),
            }
        } else {
            Self::Idle
        }
    }

    /// The status name.
    pub fn operation(&self) -> Operation {
        match self {
            Self::Idle => Operation::Idle,
            Self::CheckingForUpdate { .. } => Operation::CheckingForUpdate,
            Self::UpdateAvailable { .. } => Operation::UpdateAvailable,
            Self::Downloading { .. } => Operation::Downloading,
            Self::Verifying { .. } => Operation::Verifying,
            Self::Finalizing { .. } => Operation::Finalizing,
            Self::UpdatedNeedReboot { .. } => Operation::UpdatedNeedReboot,
            Self::ReportingErrorEvent { .. } => Operation::ReportingErrorEvent,
        }
    }

    fn target(&self) -> Option<&Target> {
        match self {
            Self::UpdateAvailable { target }
            | Self::Downloading { target, .. }
            | Self::Verifying { target }
            | Self::Finalizing { target }
            | Self::UpdatedNeedReboot { target } => Some(target),
            _ => None,
        }
    }

    /// Progress in `[0, 1]`: the download fraction while downloading, 1
    /// from VERIFYING on.
    pub fn progress(&self) -> f64 {
        match self {
            Self::Downloading { target, bytes } => fraction(*bytes, target.size),
            Self::Verifying { .. } | Self::Finalizing { .. } | Self::UpdatedNeedReboot { .. } => {
                1.0
            }
            _ => 0.0,
        }
    }

    /// What `GetStatus` reports (without `last_checked_time`, which the
    /// executor tracks).
    pub fn status(&self) -> Status {
        let target = self.target().cloned().unwrap_or_else(Target::unknown);
        Status {
            operation: self.operation(),
            progress: self.progress(),
            new_version: target.version,
            new_size: target.size,
        }
    }
}

fn fraction(bytes: u64, size: u64) -> f64 {
    if size == 0 {
        0.0
    } else {
        (bytes as f64 / size as f64).min(1.0)
    }
}

fn percent(bytes: u64, size: u64) -> u64 {
    if size == 0 {
        0
    } else {
        (u128::from(bytes.min(size)) * 100 / u128::from(size)) as u64
    }
}

/// The status tuple (minus `last_checked_time`).
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// `current_operation`.
    pub operation: Operation,
    /// `progress`.
    pub progress: f64,
    /// `new_version`.
    pub new_version: String,
    /// `new_size`.
    pub new_size: u64,
}

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The scheduler or a user asks for a check.
    CheckRequested {
        /// From a user (`installsource="ondemandupdate"`).
        interactive: bool,
    },
    /// The server has no update.
    NoUpdate,
    /// The response was accepted and offers `target`.
    UpdateFound {
        /// The update.
        target: Target,
    },
    /// `bytes` of the payload have been received in total.
    DownloadProgress {
        /// Total bytes received.
        bytes: u64,
    },
    /// The release turned out to need `bytes` in all: USR plus the
    /// extension images this node needs (known once the new image was
    /// read); `new_size` and the progress count them all from then on.
    DownloadSize {
        /// Bytes of every image of the release.
        bytes: u64,
    },
    /// A delta failed; the same attempt goes on with the full payload of
    /// `full_size` bytes (progress starts over), and the server hears of
    /// the failure.
    DeltaFailed {
        /// The delta's error.
        code: EventErrorCode,
        /// Bytes of the full payload.
        full_size: u64,
    },
    /// The last byte of the release arrived.
    DownloadComplete,
    /// Payload hash, signature and partition contents are verified.
    Verified,
    /// Postinst succeeded and the slot switch is committed.
    InstallComplete,
    /// The check or the install failed with `code`.
    Failed {
        /// The code to report.
        code: EventErrorCode,
    },
    /// The error event POST finished (whether or not it reached the server).
    ErrorEventSent,
    /// `ResetStatus` (D-Bus): forget a staged update.
    ResetStatus,
}

impl Event {
    /// A short name for errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::CheckRequested { .. } => "CheckRequested",
            Self::NoUpdate => "NoUpdate",
            Self::UpdateFound { .. } => "UpdateFound",
            Self::DownloadProgress { .. } => "DownloadProgress",
            Self::DownloadSize { .. } => "DownloadSize",
            Self::DeltaFailed { .. } => "DeltaFailed",
            Self::DownloadComplete => "DownloadComplete",
            Self::Verified => "Verified",
            Self::InstallComplete => "InstallComplete",
            Self::Failed { .. } => "Failed",
            Self::ErrorEventSent => "ErrorEventSent",
            Self::ResetStatus => "ResetStatus",
        }
    }
}

/// Work for the executor, in the order returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Emit the `StatusUpdate` signal with the new status.
    NotifyStatus,
    /// POST an update check.
    PostUpdateCheck {
        /// `ondemandupdate` rather than `scheduler`.
        interactive: bool,
    },
    /// POST a ping-only request (an update is waiting for reboot).
    PostPing,
    /// POST an event-only request.
    PostEvent(omaha::Event),
    /// Start the install pipeline for the accepted response.
    StartInstall,
    /// Write the reboot-pending marker.
    WriteRebootMarker,
    /// Remove the reboot-pending marker.
    RemoveRebootMarker,
    /// Undo the slot switch of the staged update (boot the current slot
    /// next again). update_engine's ResetStatus leaves it in place.
    RevertSlotSwitch,
    /// Arm the timer for the next scheduled check.
    ScheduleCheck,
}

/// A request from outside the state machine: D-Bus, the CLI, the timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `AttemptUpdate`: an interactive check.
    AttemptUpdate,
    /// The scheduler's periodic check.
    ScheduledCheck,
    /// `ResetStatus`: forget a staged update.
    ResetStatus,
    /// Abort a running check or install.
    Cancel,
    /// Boot the other slot next.
    Rollback,
}

/// What to do with an admitted [`Command`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Act on it.
    Accept,
    /// Drop it silently (update_engine ignores `AttemptUpdate` while busy,
    /// and `ResetStatus` when idle is a successful no-op).
    Ignore,
}

/// A [`Command`] the current status refuses (a D-Bus error for the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// `ResetStatus` while an update runs.
    #[error("ResetStatus is only possible when idle or waiting for reboot, not in {0}")]
    ResetStatus(Operation),
    /// `Cancel` with nothing to cancel.
    #[error("nothing to cancel in {0} (FINALIZING cannot be interrupted)")]
    Cancel(Operation),
    /// `Rollback` while not idle.
    #[error("roll back only when idle, not in {0}")]
    Rollback(Operation),
}

/// Which statuses accept which commands: the one table the daemon, its
/// handle and the D-Bus service consult. `tests.rs` checks it against
/// [`step`] for every state.
pub fn admits(op: Operation, cmd: Command) -> Result<Admission, Refused> {
    use Operation as O;
    let idle_or_staged = matches!(op, O::Idle | O::UpdatedNeedReboot);
    match cmd {
        Command::AttemptUpdate | Command::ScheduledCheck if idle_or_staged => Ok(Admission::Accept),
        Command::AttemptUpdate | Command::ScheduledCheck => Ok(Admission::Ignore),
        Command::ResetStatus if op == O::Idle => Ok(Admission::Ignore),
        Command::ResetStatus if op == O::UpdatedNeedReboot => Ok(Admission::Accept),
        Command::ResetStatus => Err(Refused::ResetStatus(op)),
        Command::Cancel => match op {
            O::CheckingForUpdate | O::UpdateAvailable | O::Downloading | O::Verifying => {
                Ok(Admission::Accept)
            }
            _ => Err(Refused::Cancel(op)),
        },
        Command::Rollback if op == O::Idle => Ok(Admission::Accept),
        Command::Rollback => Err(Refused::Rollback(op)),
    }
}

/// An event that is not valid in the current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {event} is not valid in state {from}")]
pub struct TransitionError {
    /// The state's status.
    pub from: Operation,
    /// The event's name.
    pub event: &'static str,
}

#[cfg(test)]
mod tests;
