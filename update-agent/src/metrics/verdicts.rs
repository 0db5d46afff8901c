//! The health gate's verdicts on this node, counted across boots: the gate
//! (a separate process, once per boot) adds its verdict, the daemon's
//! metrics read the counts at scrape time.
//!
//! `<state_dir>/health/verdicts`, one `VERDICT COUNT` line per verdict,
//! rewritten atomically.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use crate::fsutil::{read_optional, write_atomic};

/// The record's path inside the state directory.
pub const FILE: &str = "health/verdicts";

/// Every verdict the gate gives (the `verdict` label's values).
pub const VERDICTS: [&str; 5] = [
    "already_good",
    "rolled_back",
    "blessed",
    "fell_back",
    "no_fallback",
];

/// Count per verdict; every verdict of [`VERDICTS`] is present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts(BTreeMap<&'static str, u64>);

impl Default for Counts {
    fn default() -> Self {
        Self(VERDICTS.iter().map(|v| (*v, 0)).collect())
    }
}

impl Counts {
    /// Parses the record; unknown verdicts and junk lines are skipped (a
    /// newer gate may know more verdicts than this daemon).
    pub fn parse(text: &str) -> Self {
        let mut counts = Self::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (Some(name), Some(n), None) = (words.next(), words.next(), words.next()) else {
                continue;
            };
            if let (Some(slot), Ok(n)) = (counts.0.get_mut(name), n.parse()) {
                *slot = n;
            }
        }
        counts
    }

    /// The record's text.
    pub fn render(&self) -> String {
        self.0.iter().map(|(v, n)| format!("{v} {n}\n")).collect()
    }

    /// One more `verdict` (one of [`VERDICTS`]; others are ignored).
    pub fn add(&mut self, verdict: &str) {
        if let Some(n) = self.0.get_mut(verdict) {
            *n = n.saturating_add(1);
        }
    }

    /// `(verdict, count)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.0.iter().map(|(v, n)| (*v, *n))
    }
}

/// The counts in `path` (all zero when it does not exist).
pub fn read(path: &Path) -> io::Result<Counts> {
    Ok(read_optional(path)?.map_or_else(Counts::default, |t| Counts::parse(&t)))
}

/// Adds `verdict` to the record at `path`.
pub fn record(path: &Path, verdict: &str) -> io::Result<()> {
    let mut counts = read(path)?;
    counts.add(verdict);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    write_atomic(path, counts.render().as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_round_trip_and_skip_junk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("health/verdicts");
        assert_eq!(read(&path).unwrap(), Counts::default());
        record(&path, "blessed").unwrap();
        record(&path, "blessed").unwrap();
        record(&path, "fell_back").unwrap();
        record(&path, "no such verdict").unwrap();
        let counts = read(&path).unwrap();
        let map: BTreeMap<_, _> = counts.iter().collect();
        assert_eq!(map["blessed"], 2);
        assert_eq!(map["fell_back"], 1);
        assert_eq!(map["already_good"], 0);
        assert_eq!(map.len(), VERDICTS.len());
        let parsed = Counts::parse("blessed x\nfell_back 3\nweird 9\nblessed 1 2\n");
        let map: BTreeMap<_, _> = parsed.iter().collect();
        assert_eq!((map["blessed"], map["fell_back"]), (0, 3));
    }
}
