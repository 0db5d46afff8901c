//! update_engine's prefs store: one file per key under
//! `/var/lib/update_engine/prefs/`, holding the raw value (integers as
//! decimal text). flatcar-postinst reads `previous-version` and
//! `full-response` from here, so the layout is a compatibility contract.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::fsutil;
use crate::schedule::PayloadState;

/// `previous-version`: the version before the last update (see
/// `omaha::Event::for_update_check`).
pub const PREVIOUS_VERSION: &str = "previous-version";
/// `aleph-version`: the first version ever installed on this node.
pub const ALEPH_VERSION: &str = "aleph-version";
/// `full-response`: the last update-check response body (read by postinst).
pub const FULL_RESPONSE: &str = "full-response";
/// Unix time of the last completed update check (the agent's own pref,
/// so `LAST_CHECKED_TIME` survives a restart).
pub const LAST_CHECKED_TIME: &str = "update-agent-last-checked-time";
/// `payload-attempt-number`.
pub const PAYLOAD_ATTEMPT_NUMBER: &str = "payload-attempt-number";
/// `current-response-signature`.
pub const CURRENT_RESPONSE_SIGNATURE: &str = "current-response-signature";
/// `current-url-index`.
pub const CURRENT_URL_INDEX: &str = "current-url-index";
/// `current-url-failure-count`.
pub const CURRENT_URL_FAILURE_COUNT: &str = "current-url-failure-count";
/// `backoff-expiry-time`.
pub const BACKOFF_EXPIRY_TIME: &str = "backoff-expiry-time";

/// Microseconds from 1601-01-01 (the origin of Chromium's `base::Time`,
/// whose internal value update_engine stores in `backoff-expiry-time`) to
/// the Unix epoch.
pub const WINDOWS_EPOCH_DELTA_US: i64 = 11_644_473_600_000_000;

/// `backoff-expiry-time` as update_engine writes it:
/// `base::Time::ToInternalValue()`, microseconds since 1601-01-01 UTC;
/// `0` for none.
pub fn time_to_pref(t: Option<SystemTime>) -> i64 {
    let Some(t) = t else { return 0 };
    let us = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX - WINDOWS_EPOCH_DELTA_US),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(WINDOWS_EPOCH_DELTA_US),
    };
    us.saturating_add(WINDOWS_EPOCH_DELTA_US).max(1)
}

/// The inverse of [`time_to_pref`]; `0` is none.
pub fn time_from_pref(v: i64) -> Option<SystemTime> {
    if v == 0 {
        return None;
    }
    let unix_us = v.checked_sub(WINDOWS_EPOCH_DELTA_US)?;
    let d = Duration::from_micros(unix_us.unsigned_abs());
    if unix_us >= 0 {
        UNIX_EPOCH.checked_add(d)
    } else {
        UNIX_EPOCH.checked_sub(d)
    }
}

/// Why a stored payload state was thrown away.
#[derive(Debug, thiserror::Error)]
pub enum PayloadStateError {
    /// A pref file exists but cannot be read.
    #[error("cannot read pref {key}")]
    Read {
        /// The key.
        key: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A pref holds something that is not a valid value.
    #[error("pref {key} holds {value:?}, not {expected}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What it holds (shortened).
        value: String,
        /// What it should hold.
        expected: &'static str,
    },
}

/// A prefs directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefs {
    dir: PathBuf,
}

impl Prefs {
    /// Prefs stored in `dir` (e.g. `/var/lib/update_engine/prefs`).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &str) -> io::Result<PathBuf> {
        let valid = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(self.dir.join(key))
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid pref key {key:?}"),
            ))
        }
    }

    /// The raw value, `None` when the key is not set.
    pub fn get(&self, key: &str) -> io::Result<Option<String>> {
        fsutil::read_optional(&self.path(key)?)
    }

    /// An integer value; `None` when unset or not a decimal integer
    /// (update_engine treats an unparsable pref as missing).
    pub fn get_i64(&self, key: &str) -> io::Result<Option<i64>> {
        Ok(self.get(key)?.and_then(|v| v.trim().parse().ok()))
    }

    /// Sets `key` atomically, creating the directory if needed.
    pub fn set(&self, key: &str, value: &str) -> io::Result<()> {
        let path = self.path(key)?;
        std::fs::create_dir_all(&self.dir)?;
        fsutil::write_atomic(&path, value.as_bytes(), 0o644)
    }

    /// Sets an integer value.
    pub fn set_i64(&self, key: &str, value: i64) -> io::Result<()> {
        self.set(key, &value.to_string())
    }

    /// Reads the payload state (`payload-attempt-number`,
    /// `current-url-index`, `current-url-failure-count`,
    /// `backoff-expiry-time`, `current-response-signature`), strictly:
    /// missing keys are defaults, anything unreadable or malformed is an
    /// error. See [`Prefs::load_payload_state`] for the forgiving form.
    pub fn try_load_payload_state(&self) -> Result<PayloadState, PayloadStateError> {
        fn int<T: std::str::FromStr>(
            prefs: &Prefs,
            key: &'static str,
            expected: &'static str,
        ) -> Result<Option<T>, PayloadStateError> {
            let Some(raw) = prefs
                .get(key)
                .map_err(|source| PayloadStateError::Read { key, source })?
            else {
                return Ok(None);
            };
            raw.trim()
                .parse()
                .map(Some)
                .map_err(|_| PayloadStateError::Invalid {
                    key,
                    value: raw.chars().take(40).collect(),
                    expected,
                })
        }
        let signature = self
            .get(CURRENT_RESPONSE_SIGNATURE)
            .map_err(|source| PayloadStateError::Read {
                key: CURRENT_RESPONSE_SIGNATURE,
                source,
            })?
            .unwrap_or_default();
        let expiry: Option<i64> = int(self, BACKOFF_EXPIRY_TIME, "a time (integer)")?;
        Ok(PayloadState {
            response_signature: signature,
            attempt_number: int(self, PAYLOAD_ATTEMPT_NUMBER, "a count")?.unwrap_or(0),
            url_index: int(self, CURRENT_URL_INDEX, "an index")?.unwrap_or(0),
            url_failure_count: int(self, CURRENT_URL_FAILURE_COUNT, "a count")?.unwrap_or(0),
            backoff_expiry: expiry.and_then(time_from_pref),
        })
    }

    /// The payload state; a damaged one is logged and replaced by a fresh
    /// state (as if no update had been attempted yet), never an error.
    pub fn load_payload_state(&self) -> PayloadState {
        self.try_load_payload_state().unwrap_or_else(|e| {
            tracing::warn!(
                "{}; starting with a fresh payload state",
                crate::error_chain(&e)
            );
            PayloadState::default()
        })
    }

    /// Writes the payload state, the signature last (a crash in between
    /// leaves counters that the next response's signature check resets).
    pub fn save_payload_state(&self, state: &PayloadState) -> io::Result<()> {
        self.set_i64(PAYLOAD_ATTEMPT_NUMBER, state.attempt_number.into())?;
        self.set_i64(
            CURRENT_URL_INDEX,
            i64::try_from(state.url_index).unwrap_or(i64::MAX),
        )?;
        self.set_i64(CURRENT_URL_FAILURE_COUNT, state.url_failure_count.into())?;
        self.set_i64(BACKOFF_EXPIRY_TIME, time_to_pref(state.backoff_expiry))?;
        self.set(CURRENT_RESPONSE_SIGNATURE, &state.response_signature)
    }

    /// Removes `key`; removing a missing key is not an error.
    pub fn delete(&self, key: &str) -> io::Result<()> {
        match std::fs::remove_file(self.path(key)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let prefs = Prefs::new(dir.path().join("prefs"));
        assert_eq!(prefs.get(PREVIOUS_VERSION).unwrap(), None);
        prefs.set(PREVIOUS_VERSION, "3510.2.0").unwrap();
        assert_eq!(
            prefs.get(PREVIOUS_VERSION).unwrap().as_deref(),
            Some("3510.2.0")
        );
        prefs.set_i64(PAYLOAD_ATTEMPT_NUMBER, 3).unwrap();
        assert_eq!(prefs.get_i64(PAYLOAD_ATTEMPT_NUMBER).unwrap(), Some(3));
        prefs.set(PAYLOAD_ATTEMPT_NUMBER, "junk").unwrap();
        assert_eq!(prefs.get_i64(PAYLOAD_ATTEMPT_NUMBER).unwrap(), None);
        prefs.delete(PREVIOUS_VERSION).unwrap();
        prefs.delete(PREVIOUS_VERSION).unwrap();
        assert_eq!(prefs.get(PREVIOUS_VERSION).unwrap(), None);
    }

    fn sample_state() -> PayloadState {
        PayloadState {
            response_signature: "NumURLs = 1\nUrl0 = https://x/p\n".into(),
            attempt_number: 3,
            url_index: 1,
            url_failure_count: 7,
            backoff_expiry: Some(UNIX_EPOCH + Duration::from_micros(1_800_000_000_123_456)),
        }
    }

    #[test]
    fn payload_state_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let prefs = Prefs::new(dir.path().join("prefs"));
        assert_eq!(prefs.load_payload_state(), PayloadState::default());
        let state = sample_state();
        prefs.save_payload_state(&state).unwrap();
        assert_eq!(prefs.try_load_payload_state().unwrap(), state);
        // update_engine's encoding: base::Time internal value.
        assert_eq!(
            prefs.get(BACKOFF_EXPIRY_TIME).unwrap().as_deref(),
            Some("13444473600123456")
        );
        assert_eq!(
            prefs.get(PAYLOAD_ATTEMPT_NUMBER).unwrap().as_deref(),
            Some("3")
        );
        let none = PayloadState {
            backoff_expiry: None,
            ..state
        };
        prefs.save_payload_state(&none).unwrap();
        assert_eq!(
            prefs.get(BACKOFF_EXPIRY_TIME).unwrap().as_deref(),
            Some("0")
        );
        assert_eq!(prefs.load_payload_state(), none);
    }

    #[test]
    fn time_encoding() {
        assert_eq!(time_to_pref(None), 0);
        assert_eq!(time_from_pref(0), None);
        assert_eq!(time_to_pref(Some(UNIX_EPOCH)), WINDOWS_EPOCH_DELTA_US);
        assert_eq!(time_from_pref(WINDOWS_EPOCH_DELTA_US), Some(UNIX_EPOCH));
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(time_from_pref(time_to_pref(Some(before))), Some(before));
        // Out of range values do not panic.
        let _ = time_from_pref(i64::MIN);
        let _ = time_from_pref(i64::MAX);
    }

    #[test]
    fn corrupt_payload_state_is_fresh() {
        let cases: &[(&str, &str)] = &[
            (PAYLOAD_ATTEMPT_NUMBER, "three"),
            (PAYLOAD_ATTEMPT_NUMBER, "-1"),
            (PAYLOAD_ATTEMPT_NUMBER, "99999999999999999999"),
            (CURRENT_URL_INDEX, ""),
            (CURRENT_URL_INDEX, "-2"),
            (CURRENT_URL_FAILURE_COUNT, "1.5"),
            (BACKOFF_EXPIRY_TIME, "tomorrow"),
            (BACKOFF_EXPIRY_TIME, "\u{0}\u{ff}"),
        ];
        for (key, value) in cases {
            let dir = tempfile::tempdir().unwrap();
            let prefs = Prefs::new(dir.path().join("prefs"));
            prefs.save_payload_state(&sample_state()).unwrap();
            prefs.set(key, value).unwrap();
            let err = prefs.try_load_payload_state().unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
            assert_eq!(
                prefs.load_payload_state(),
                PayloadState::default(),
                "{key}={value:?}"
            );
        }
        // A signature that is not UTF-8 cannot match any response (so the
        // next one resets the state); a directory where a file should be is
        // an unreadable pref: fresh.
        let dir = tempfile::tempdir().unwrap();
        let prefs = Prefs::new(dir.path().join("prefs"));
        prefs.save_payload_state(&sample_state()).unwrap();
        std::fs::write(prefs.dir().join(CURRENT_RESPONSE_SIGNATURE), [0xff, 0xfe]).unwrap();
        let loaded = prefs.load_payload_state();
        assert!(!loaded.response_signature.starts_with("NumURLs"));
        std::fs::remove_file(prefs.dir().join(CURRENT_URL_INDEX)).unwrap();
        std::fs::create_dir(prefs.dir().join(CURRENT_URL_INDEX)).unwrap();
        assert!(matches!(
            prefs.try_load_payload_state(),
            Err(PayloadStateError::Read { .. })
        ));
        assert_eq!(prefs.load_payload_state(), PayloadState::default());
    }

    #[test]
    fn rejects_path_like_keys() {
        let prefs = Prefs::new("/nonexistent");
        for key in ["", "../x", "a/b", "a b"] {
            assert_eq!(
                prefs.get(key).unwrap_err().kind(),
                io::ErrorKind::InvalidInput,
                "{key:?}"
            );
        }
    }
}
