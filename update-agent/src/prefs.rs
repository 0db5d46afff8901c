//! update_engine's prefs store: one file per key under
//! `/var/lib/update_engine/prefs/`, holding the raw value (integers as
//! decimal text). flatcar-postinst reads `previous-version` and
//! `full-response` from here, so the layout is a compatibility contract.

use std::io;
use std::path::{Path, PathBuf};

use crate::fsutil;

/// `previous-version`: the version before the last update (see
/// `omaha::Event::for_update_check`).
pub const PREVIOUS_VERSION: &str = "previous-version";
/// `aleph-version`: the first version ever installed on this node.
pub const ALEPH_VERSION: &str = "aleph-version";
/// `full-response`: the last update-check response body (read by postinst).
pub const FULL_RESPONSE: &str = "full-response";
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
