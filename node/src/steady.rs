//! The steady-state marker: `run/update-engine/health/steady` under the node's root.
//!
//! The health gate writes it once it marked the booted slot good; its content is the booted
//! version, one line. It lives in `/run`, so every boot starts without it and the marker
//! always speaks of the current boot. The reboot coordinator keeps its cluster lock until it
//! appears.

use std::io;
use std::path::{Path, PathBuf};

/// The marker's path under the root (`/` on a real node, a temporary directory in tests).
pub const STEADY_MARKER: &str = "run/update-engine/health/steady";

/// Where the marker is for `root`.
pub fn marker_path(root: &Path) -> PathBuf {
    root.join(STEADY_MARKER)
}

/// Whether this boot reached steady state: the marker exists.
pub fn is_steady(root: &Path) -> bool {
    marker_path(root).exists()
}

/// Writes the marker with the booted version (for the health gate, and for tests). Creates
/// the directory, which does not exist early in a boot.
pub fn write_steady(root: &Path, booted_version: &str) -> io::Result<()> {
    let path = marker_path(root);
    std::fs::create_dir_all(path.parent().unwrap_or(root))?;
    std::fs::write(path, format!("{booted_version}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_marker_is_seen_and_holds_the_version() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_steady(dir.path()));
        write_steady(dir.path(), "4000.0.0").unwrap();
        assert!(is_steady(dir.path()));
        assert_eq!(
            std::fs::read_to_string(dir.path().join(STEADY_MARKER)).unwrap(),
            "4000.0.0\n"
        );
    }
}
