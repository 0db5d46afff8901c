//! The reboot-loop guard: the gate reboots a node at most once per boot and at
//! most `max` times within a window, so a check that fails on both slots (a
//! broken dependency, say) cannot keep a node rebooting forever.

use std::io;
use std::path::{Path, PathBuf};

use crate::fsutil::{read_optional, write_atomic};

/// Gate-initiated reboots, one `BOOT_ID UNIX_SECONDS` line each.
#[derive(Debug, Clone)]
pub struct RebootGuard {
    path: PathBuf,
    max: u32,
    window_secs: u64,
}

/// Why a reboot is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the health gate already rebooted during this boot ({0})")]
    SameBoot(String),
    #[error("the health gate rebooted {count} times in the last {window_secs} s (limit {max})")]
    TooMany {
        count: u32,
        max: u32,
        window_secs: u64,
    },
}

impl RebootGuard {
    /// A guard stored at `path`.
    pub fn new(path: &Path, max: u32, window_secs: u64) -> Self {
        RebootGuard {
            path: path.to_owned(),
            max,
            window_secs,
        }
    }

    fn records(&self) -> io::Result<Vec<(String, u64)>> {
        let text = read_optional(&self.path)?.unwrap_or_default();
        Ok(text
            .lines()
            .filter_map(|l| {
                let (id, t) = l.split_once(' ')?;
                Some((id.to_string(), t.trim().parse().ok()?))
            })
            .collect())
    }

    /// Whether a reboot is allowed now; the pure rule over the records.
    pub fn check(&self, boot_id: &str, now: u64) -> io::Result<Result<(), Refusal>> {
        let records = self.records()?;
        if records.iter().any(|(id, _)| id == boot_id) {
            return Ok(Err(Refusal::SameBoot(boot_id.to_string())));
        }
        let recent = records
            .iter()
            .filter(|(_, t)| now.saturating_sub(*t) < self.window_secs)
            .count() as u32;
        if recent >= self.max {
            return Ok(Err(Refusal::TooMany {
                count: recent,
                max: self.max,
                window_secs: self.window_secs,
            }));
        }
        Ok(Ok(()))
    }

    /// Records a reboot (before it is issued, so a crash mid-reboot still counts).
    /// Records older than the window are dropped.
    pub fn record(&self, boot_id: &str, now: u64) -> io::Result<()> {
        let mut records = self.records()?;
        records.retain(|(_, t)| now.saturating_sub(*t) < self.window_secs);
        records.push((boot_id.to_string(), now));
        let text: String = records
            .iter()
            .map(|(id, t)| format!("{id} {t}\n"))
            .collect();
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        write_atomic(&self.path, text.as_bytes(), 0o644)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_boot_and_bounded_per_window() {
        let dir = tempfile::tempdir().unwrap();
        let g = RebootGuard::new(&dir.path().join("health/reboots"), 2, 3600);
        assert_eq!(g.check("boot-1", 1000).unwrap(), Ok(()));
        g.record("boot-1", 1000).unwrap();
        assert_eq!(
            g.check("boot-1", 1001).unwrap(),
            Err(Refusal::SameBoot("boot-1".into()))
        );
        assert_eq!(g.check("boot-2", 1100).unwrap(), Ok(()));
        g.record("boot-2", 1100).unwrap();
        assert!(matches!(
            g.check("boot-3", 1200).unwrap(),
            Err(Refusal::TooMany { count: 2, .. })
        ));
        // An hour later the window has passed.
        assert_eq!(g.check("boot-3", 1100 + 3600).unwrap(), Ok(()));
        g.record("boot-3", 1100 + 3600).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("health/reboots")).unwrap(),
            "boot-3 4700\n"
        );
    }
}
