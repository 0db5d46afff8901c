//! Small filesystem helpers shared by the config, prefs and health code.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Replaces `path` with `contents` atomically: a temp file in the same
/// directory is written, fsynced and renamed over `path`, then the directory
/// is fsynced. A reader sees either the old or the new file, never a torn
/// one. The existing file's permission bits are kept; a new file gets `mode`.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mode = match fs::metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o7777,
        Err(e) if e.kind() == io::ErrorKind::NotFound => mode,
        Err(e) => return Err(e),
    };
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    fs::File::open(dir)?.sync_all()
}

/// A filesystem step that failed, and the path it failed on.
#[derive(Debug, thiserror::Error)]
#[error("{}", path.display())]
pub struct PathError {
    /// The file or directory the step was on.
    pub path: PathBuf,
    /// What the step returned.
    #[source]
    pub source: io::Error,
}

/// Gives a written, verified file its final name so that after a power cut
/// the name holds either nothing new or every byte: fsyncs `from`, renames
/// it over `to`, fsyncs the file again and then the directory.
pub fn durable_rename(from: &Path, to: &Path) -> Result<(), PathError> {
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PathError { path, source }
    };
    let dir = to
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let f = fs::File::open(from).map_err(at(from))?;
    f.sync_all().map_err(at(from))?;
    fs::rename(from, to).map_err(at(to))?;
    // vfat (the ESP) keeps a file's size in its directory entry, and a
    // rename writes a new entry that gets the size only when the inode is
    // written back: without this second fsync a power cut right after the
    // commit left a 0-byte vmlinuz-X behind a committed GPT (tests/vm).
    f.sync_all().map_err(at(to))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(at(dir))
}

/// Reads a file to a string; `Ok(None)` when it does not exist.
pub fn read_optional(path: &Path) -> io::Result<Option<String>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

pub use ab_node::unix_now;

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn atomic_write_creates_and_keeps_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"one", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&path, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // No temp files left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn read_optional_missing_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_optional(&dir.path().join("nope")).unwrap(), None);
    }
}
