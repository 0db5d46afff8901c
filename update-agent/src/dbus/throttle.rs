//! When to emit `StatusUpdate`: update_engine's rules as a pure function.
//!
//! update_engine (`update_attempter.cc` `SetStatusAndNotify`, `BytesReceived`)
//! broadcasts on every status change and, while downloading, only when the
//! progress grew by at least 1 %, reached 100 %, or 10 s passed since the
//! last broadcast (checked when new bytes arrive).

use std::time::Duration;

use crate::fsm::Operation;

/// The wire tuple of `GetStatus` and `StatusUpdate`, `(xdssx)`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusTuple {
    /// `last_checked_time` (Unix seconds of the last successful check).
    pub last_checked_time: i64,
    /// `progress` in `[0, 1]`.
    pub progress: f64,
    /// `current_operation`.
    pub operation: Operation,
    /// `new_version` (`0.0.0` when unknown).
    pub new_version: String,
    /// `new_size` in bytes.
    pub new_size: i64,
}

impl StatusTuple {
    /// The tuple for an [`crate::fsm::Status`] plus the time of the last check.
    pub fn new(status: &crate::fsm::Status, last_checked_time: i64) -> Self {
        Self {
            last_checked_time,
            progress: status.progress,
            operation: status.operation,
            new_version: status.new_version.clone(),
            new_size: i64::try_from(status.new_size).unwrap_or(i64::MAX),
        }
    }

    /// As sent on the wire.
    pub fn to_wire(&self) -> (i64, f64, String, String, i64) {
        (
            self.last_checked_time,
            self.progress,
            self.operation.as_str().to_string(),
            self.new_version.clone(),
            self.new_size,
        )
    }
}

/// Minimum progress growth that is broadcast while downloading.
pub const PROGRESS_STEP: f64 = 0.01;
/// Longest silence while downloading.
pub const MAX_SILENCE: Duration = Duration::from_secs(10);

/// The last broadcast.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    /// What was sent.
    pub status: StatusTuple,
    /// When (any monotonic clock, as a duration since its origin).
    pub at: Duration,
}

/// Whether `status`, observed at `now`, must be broadcast after `last`.
///
/// - nothing sent yet (startup): yes;
/// - identical to what was sent: no;
/// - not downloading, or the operation, version, size or check time changed: yes;
/// - downloading with only progress changed: when it grew by at least 1 %,
///   reached 100 %, or at least 10 s passed since the last broadcast.
pub fn should_emit(last: Option<&Emitted>, status: &StatusTuple, now: Duration) -> bool {
    let Some(last) = last else { return true };
    let prev = &last.status;
    if prev == status {
        return false;
    }
    if status.operation != Operation::Downloading
        || prev.operation != status.operation
        || prev.new_version != status.new_version
        || prev.new_size != status.new_size
        || prev.last_checked_time != status.last_checked_time
    {
        return true;
    }
    status.progress >= 1.0
        || status.progress - prev.progress >= PROGRESS_STEP
        || now.saturating_sub(last.at) >= MAX_SILENCE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(op: Operation, progress: f64) -> StatusTuple {
        StatusTuple {
            last_checked_time: 100,
            progress,
            operation: op,
            new_version: "3815.2.1".into(),
            new_size: 1000,
        }
    }

    fn sent(op: Operation, progress: f64, at_secs: u64) -> Emitted {
        Emitted {
            status: tuple(op, progress),
            at: Duration::from_secs(at_secs),
        }
    }

    #[test]
    fn table() {
        use Operation::*;
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        #[rustfmt::skip]
        let rows: &[(&str, Option<Emitted>, StatusTuple, Duration, bool)] = &[
            ("startup", None, tuple(Idle, 0.0), s(0), true),
            ("unchanged idle", Some(sent(Idle, 0.0, 0)), tuple(Idle, 0.0), s(100), false),
            ("unchanged downloading, 20 s later", Some(sent(Downloading, 0.5, 0)), tuple(Downloading, 0.5), s(20), false),
            ("into downloading", Some(sent(UpdateAvailable, 0.0, 0)), tuple(Downloading, 0.001), ms(1), true),
            ("out of downloading", Some(sent(Downloading, 0.5, 0)), tuple(Verifying, 1.0), ms(1), true),
            ("+0.5 % after 1 s", Some(sent(Downloading, 0.100, 0)), tuple(Downloading, 0.105), s(1), false),
            ("+0.99 % after 9.9 s", Some(sent(Downloading, 0.100, 0)), tuple(Downloading, 0.1099), ms(9_900), false),
            ("+1 %", Some(sent(Downloading, 0.100, 0)), tuple(Downloading, 0.111), ms(1), true),
            ("+0.1 % after 10 s", Some(sent(Downloading, 0.100, 0)), tuple(Downloading, 0.101), s(10), true),
            ("100 %", Some(sent(Downloading, 0.995, 0)), tuple(Downloading, 1.0), ms(1), true),
            ("clock went backwards", Some(sent(Downloading, 0.1, 50)), tuple(Downloading, 0.101), s(10), false),
            ("other status change", Some(sent(CheckingForUpdate, 0.0, 0)), tuple(Idle, 0.0), ms(1), true),
        ];
        for (name, last, status, now, want) in rows {
            assert_eq!(should_emit(last.as_ref(), status, *now), *want, "{name}");
        }
    }

    #[test]
    fn version_or_check_time_change_while_downloading_is_sent() {
        let last = sent(Operation::Downloading, 0.5, 0);
        let mut v = tuple(Operation::Downloading, 0.5);
        v.new_version = "9999.0.0".into();
        assert!(should_emit(Some(&last), &v, Duration::ZERO));
        let mut t = tuple(Operation::Downloading, 0.5);
        t.last_checked_time = 101;
        assert!(should_emit(Some(&last), &t, Duration::ZERO));
    }

    #[test]
    fn a_steady_download_is_sent_about_once_per_percent() {
        // 10 000 progress events over 1 s: at most 101 broadcasts plus the first.
        let mut last: Option<Emitted> = None;
        let mut count = 0;
        for i in 0..=10_000u64 {
            let status = tuple(Operation::Downloading, i as f64 / 10_000.0);
            let now = Duration::from_micros(i * 100);
            if should_emit(last.as_ref(), &status, now) {
                count += 1;
                last = Some(Emitted { status, at: now });
            }
        }
        assert!((100..=102).contains(&count), "{count}");
        assert_eq!(last.unwrap().status.progress, 1.0);
    }
}
