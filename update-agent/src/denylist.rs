//! The local deny list: versions that were rolled back or failed their health
//! check on this node are never installed again until an admin clears them
//! (Flatcar's rollback/reinstall loop, flatcar/Flatcar#1924).
//!
//! One line per version, `VERSION<TAB>UNIX_SECONDS<TAB>REASON`, rewritten
//! atomically; a hand-edited file with junk lines is an error, not an empty list.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::fsutil::{read_optional, write_atomic};

/// File name inside the state directory.
pub const FILE_NAME: &str = "deny-list";

/// A deny-list failure.
#[derive(Debug, thiserror::Error)]
pub enum DenyListError {
    #[error("reading the deny list {path}")]
    Read { path: PathBuf, source: io::Error },
    #[error("writing the deny list {path}")]
    Write { path: PathBuf, source: io::Error },
    #[error("deny list {path} line {line}: {why}")]
    Malformed {
        path: PathBuf,
        line: usize,
        why: &'static str,
    },
    #[error("invalid version {0:?}: must be non-empty without whitespace")]
    InvalidVersion(String),
}

impl DenyListError {
    /// A stable name for logs, metrics and D-Bus `LastError`.
    pub fn error_kind(&self) -> &'static str {
        match self {
            DenyListError::Read { .. } => "deny_list_read",
            DenyListError::Write { .. } => "deny_list_write",
            DenyListError::Malformed { .. } => "deny_list_malformed",
            DenyListError::InvalidVersion(_) => "deny_list_invalid_version",
        }
    }
}

/// One denied version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub version: String,
    /// When it was added (seconds since the epoch).
    pub since: u64,
    /// Why, in words (e.g. "health check failed: required check 10-etcd exited 1").
    pub reason: String,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (since {}): {}",
            self.version, self.since, self.reason
        )
    }
}

/// The deny list file.
#[derive(Debug, Clone)]
pub struct DenyList {
    path: PathBuf,
}

fn check_version(v: &str) -> Result<(), DenyListError> {
    if v.is_empty() || v.chars().any(char::is_whitespace) {
        return Err(DenyListError::InvalidVersion(v.to_string()));
    }
    Ok(())
}

impl DenyList {
    /// The list stored in `state_dir`.
    pub fn in_dir(state_dir: &Path) -> Self {
        DenyList {
            path: state_dir.join(FILE_NAME),
        }
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All entries, oldest first; a missing file is an empty list.
    pub fn entries(&self) -> Result<Vec<Denied>, DenyListError> {
        let text = read_optional(&self.path)
            .map_err(|source| DenyListError::Read {
                path: self.path.clone(),
                source,
            })?
            .unwrap_or_default();
        let malformed = |line, why| DenyListError::Malformed {
            path: self.path.clone(),
            line,
            why,
        };
        let mut out = Vec::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let mut parts = line.splitn(3, '\t');
            let version = parts.next().unwrap_or_default();
            let since = parts
                .next()
                .ok_or_else(|| malformed(n + 1, "missing timestamp"))?;
            let reason = parts
                .next()
                .ok_or_else(|| malformed(n + 1, "missing reason"))?;
            check_version(version).map_err(|_| malformed(n + 1, "bad version"))?;
            let since = since
                .parse()
                .map_err(|_| malformed(n + 1, "bad timestamp"))?;
            out.push(Denied {
                version: version.to_string(),
                since,
                reason: reason.to_string(),
            });
        }
        Ok(out)
    }

    /// Whether `version` is denied.
    pub fn contains(&self, version: &str) -> Result<bool, DenyListError> {
        Ok(self.entries()?.iter().any(|d| d.version == version))
    }

    /// Adds `version` (keeps the first entry if it is already there).
    pub fn add(&self, version: &str, reason: &str, now_unix: u64) -> Result<(), DenyListError> {
        check_version(version)?;
        let mut all = self.entries()?;
        if all.iter().any(|d| d.version == version) {
            return Ok(());
        }
        // Reasons are free text; keep the file line-based.
        let reason = reason.replace(['\n', '\r', '\t'], " ");
        all.push(Denied {
            version: version.to_string(),
            since: now_unix,
            reason,
        });
        self.store(&all)
    }

    /// Removes `version`; returns whether it was listed.
    pub fn remove(&self, version: &str) -> Result<bool, DenyListError> {
        let mut all = self.entries()?;
        let before = all.len();
        all.retain(|d| d.version != version);
        if all.len() == before {
            return Ok(false);
        }
        self.store(&all)?;
        Ok(true)
    }

    /// Empties the list.
    pub fn clear(&self) -> Result<(), DenyListError> {
        self.store(&[])
    }

    fn store(&self, all: &[Denied]) -> Result<(), DenyListError> {
        let text: String = all
            .iter()
            .map(|d| format!("{}\t{}\t{}\n", d.version, d.since, d.reason))
            .collect();
        let write = || {
            // The state directory may not exist yet on a fresh node.
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            write_atomic(&self.path, text.as_bytes(), 0o644)
        };
        write().map_err(|source| DenyListError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_contains_remove_clear() {
        let dir = tempfile::tempdir().unwrap();
        let list = DenyList::in_dir(dir.path());
        assert!(
            list.entries().unwrap().is_empty(),
            "a missing file is an empty list"
        );
        list.add("3510.2.0", "health check failed:\tunit x\nfailed", 100)
            .unwrap();
        list.add("3510.2.0", "again", 200).unwrap();
        list.add("3602.0.0", "rolled back", 300).unwrap();
        assert!(list.contains("3510.2.0").unwrap());
        assert!(!list.contains("3510.2").unwrap());
        let e = list.entries().unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].reason, "health check failed: unit x failed");
        assert_eq!(e[0].since, 100, "the first entry is kept");
        assert!(list.remove("3510.2.0").unwrap());
        assert!(!list.remove("3510.2.0").unwrap());
        list.clear().unwrap();
        assert!(list.entries().unwrap().is_empty());
    }

    #[test]
    fn creates_the_state_directory() {
        let dir = tempfile::tempdir().unwrap();
        let list = DenyList::in_dir(&dir.path().join("var/lib/update_engine"));
        list.add("3510.2.0", "x", 1).unwrap();
        assert!(list.contains("3510.2.0").unwrap());
    }

    #[test]
    fn bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let list = DenyList::in_dir(dir.path());
        assert_eq!(
            list.add("", "x", 1).unwrap_err().error_kind(),
            "deny_list_invalid_version"
        );
        assert!(list.add("1 2", "x", 1).is_err());
        std::fs::write(list.path(), "3510.2.0\tnot-a-number\tx\n").unwrap();
        assert_eq!(
            list.contains("3510.2.0").unwrap_err().to_string(),
            format!("deny list {} line 1: bad timestamp", list.path().display())
        );
        std::fs::write(list.path(), "3510.2.0\n").unwrap();
        assert!(list.entries().is_err());
    }
}
