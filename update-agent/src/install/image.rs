//! What the written USR image says of itself, read through a read-only
//! mount of the target slot before the commit point.
//!
//! A CrAU v1 payload (Flatcar's `flatcar_production_update.gz`) carries no
//! signed release info, so the payload alone cannot tell which version it
//! installs: a validly signed payload of another version (an old one, a
//! replay) would pass every payload check. The image's own
//! `share/flatcar/release` is covered by the signed partition hash, so
//! reading it back from the verified slot binds the install to the
//! announced version and our board after all.
//!
//! The slot is mounted with the configured `mount` command as a read-only
//! loop mount at the slot's offset in the disk (one code path for a block
//! device and a disk image), as update_engine mounts the target for its
//! post-install step.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::flatcar::parse_key_values;
use crate::slots::SlotPlan;

/// The release file inside a USR image (mounted at `/usr`).
pub const RELEASE_FILE: &str = "share/flatcar/release";
/// Logged right before the mount (crash-injection tests kill on it).
pub const MOUNT_LOG: &str = "mounting the new USR image read-only";
/// Mount points are `<state dir>/new-usr.XXXXXX`.
const MOUNT_PREFIX: &str = "new-usr.";

/// Why the written image could not be checked or does not match.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The mount point could not be created.
    #[error("cannot create a mount point in {}", dir.display())]
    MountPoint {
        /// The parent directory.
        dir: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The mount command failed or could not run.
    #[error("cannot mount the new USR image read-only: {0}")]
    Mount(String),
    /// The image has no readable release file.
    #[error("the new USR image has no readable {RELEASE_FILE}")]
    NoRelease(#[source] std::io::Error),
    /// The image names another release than the one announced.
    #[error("the new USR image is {what} {found:?}, the server announced {expected:?}")]
    Mismatch {
        /// `version` or `board`.
        what: &'static str,
        /// In the image.
        found: String,
        /// Announced (version) or ours (board).
        expected: String,
    },
}

/// The target slot mounted read-only; unmounted (and the mount point
/// removed) on drop.
#[derive(Debug)]
pub struct ReadOnlyMount {
    dir: Option<tempfile::TempDir>,
    umount: Vec<String>,
}

impl ReadOnlyMount {
    /// Mounts `plan`'s target slot read-only under a fresh directory in
    /// `parent`.
    pub fn target(
        plan: &SlotPlan,
        mount: &[String],
        umount: &[String],
        parent: &Path,
    ) -> Result<Self, ImageError> {
        let dir = tempfile::Builder::new()
            .prefix(MOUNT_PREFIX)
            .tempdir_in(parent)
            .map_err(|source| ImageError::MountPoint {
                dir: parent.to_path_buf(),
                source,
            })?;
        let options = format!(
            "ro,loop,offset={},sizelimit={}",
            plan.target_offset, plan.target_len
        );
        let (prog, args) = mount
            .split_first()
            .ok_or_else(|| ImageError::Mount("install.mount_command is empty".into()))?;
        tracing::info!("{MOUNT_LOG} at {}", dir.path().display());
        let out = Command::new(prog)
            .args(args)
            .args(["-o", &options])
            .arg(&plan.disk)
            .arg(dir.path())
            .output()
            .map_err(|e| ImageError::Mount(format!("{prog}: {e}")))?;
        if !out.status.success() {
            return Err(ImageError::Mount(format!(
                "{prog} exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(Self {
            dir: Some(dir),
            umount: umount.to_vec(),
        })
    }

    /// Where the image is mounted.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().map(|d| d.path()).unwrap_or(Path::new(""))
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        let Some((prog, args)) = self.umount.split_first() else {
            return;
        };
        match Command::new(prog).args(args).arg(dir.path()).output() {
            Ok(o) if o.status.success() => drop(dir),
            // Never remove a directory that may still be a mount point of
            // the image: keep it and say so.
            Ok(o) => {
                let kept = dir.keep();
                tracing::warn!(
                    "cannot unmount {}: {}",
                    kept.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
            }
            Err(e) => {
                let kept = dir.keep();
                tracing::warn!("cannot unmount {}: {prog}: {e}", kept.display());
            }
        }
    }
}

/// Unmounts and removes mount points a killed agent left in `parent`
/// (a SIGKILL skips [`ReadOnlyMount`]'s drop). A directory that stays
/// busy is left alone with a warning.
pub fn remove_stale_mounts(parent: &Path, umount: &[String]) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let stale = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(MOUNT_PREFIX))
        .map(|e| e.path());
    for dir in stale {
        if let Some((prog, args)) = umount.split_first() {
            // Fails harmlessly when the directory is not a mount point.
            let _ = Command::new(prog).args(args).arg(&dir).output();
        }
        match std::fs::remove_dir(&dir) {
            Ok(()) => tracing::info!("removed a stale mount point {}", dir.display()),
            Err(e) => tracing::warn!("cannot remove stale mount point {}: {e}", dir.display()),
        }
    }
}

/// Checks the mounted image's release file against the announced version
/// and our board (an empty board is not checked, as in the payload's own
/// release binding).
pub fn check_release(usr: &Path, version: &str, board: &str) -> Result<(), ImageError> {
    let text = std::fs::read_to_string(usr.join(RELEASE_FILE)).map_err(ImageError::NoRelease)?;
    release_matches(&text, version, board)
}

/// [`check_release`] on the file's text.
fn release_matches(text: &str, version: &str, board: &str) -> Result<(), ImageError> {
    let kv = parse_key_values(text);
    let get = |k: &str| {
        kv.iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut checks = vec![("version", get("FLATCAR_RELEASE_VERSION"), version)];
    if !board.is_empty() {
        checks.push(("board", get("FLATCAR_RELEASE_BOARD"), board));
    }
    for (what, found, expected) in checks {
        if found != expected {
            return Err(ImageError::Mismatch {
                what,
                found,
                expected: expected.into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_file_table() {
        let file = "FLATCAR_RELEASE_VERSION=3600.0.0\nFLATCAR_RELEASE_BOARD=amd64-usr\n";
        let rows: [(&str, &str, &str, Result<(), &str>); 5] = [
            (file, "3600.0.0", "amd64-usr", Ok(())),
            (file, "3600.0.0", "", Ok(())),
            (
                file,
                "3700.0.0",
                "amd64-usr",
                Err("the new USR image is version \"3600.0.0\", the server announced \"3700.0.0\""),
            ),
            (
                file,
                "3600.0.0",
                "arm64-usr",
                Err("the new USR image is board \"amd64-usr\", the server announced \"arm64-usr\""),
            ),
            (
                "FLATCAR_RELEASE_BOARD=amd64-usr\n",
                "3600.0.0",
                "amd64-usr",
                Err("the new USR image is version \"\", the server announced \"3600.0.0\""),
            ),
        ];
        for (text, version, board, want) in rows {
            let got = release_matches(text, version, board).map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(String::from), "{version} {board}");
        }
    }
}
