//! Input images as read-only memory maps, so that generating a payload does
//! not copy the images into memory: their pages are file-backed, read on
//! demand and dropped by the kernel under pressure, instead of counting as
//! anonymous memory the size of the images.

use crate::error::{PayloadError, Result};
use memmap2::{Mmap, MmapOptions};
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;

/// A whole file (or block device) mapped read-only; derefs to its bytes.
#[derive(Debug)]
pub struct MappedImage {
    /// `None` for an empty file: a zero-length mapping is an error.
    map: Option<Mmap>,
}

impl MappedImage {
    /// Map `path` read-only.
    ///
    /// The file must not be modified (or truncated) while the map lives:
    /// what the generator then reads is undefined, and a truncation can
    /// kill the process with SIGBUS. The images are our inputs and the
    /// generator never writes them.
    pub fn open(path: &Path) -> Result<Self> {
        let ctx = || format!("opening image {}", path.display());
        let mut file = File::open(path).map_err(|e| PayloadError::io(ctx(), e))?;
        // Seeking to the end also sizes block devices, whose metadata says 0.
        let len = file
            .seek(SeekFrom::End(0))
            .map_err(|e| PayloadError::io(ctx(), e))?;
        if len == 0 {
            return Ok(MappedImage { map: None });
        }
        let len = usize::try_from(len)
            .map_err(|_| PayloadError::Generate(format!("{}: too large to map", path.display())))?;
        let map = map_read_only(&file, len).map_err(|e| PayloadError::io(ctx(), e))?;
        Ok(MappedImage { map: Some(map) })
    }
}

// SAFETY of the map: memory-mapped bytes change if someone writes the file,
// which Rust's `&[u8]` forbids. The map is read-only (a shared mapping, so
// another process writing the file would show through); the files are input
// images that this program only reads, and
// concurrent modification by another process is documented as undefined on
// `MappedImage::open` (as for any tool reading an image that is being
// rewritten, the output would be garbage either way).
#[allow(unsafe_code)]
fn map_read_only(file: &File, len: usize) -> std::io::Result<Mmap> {
    // SAFETY: see above.
    unsafe { MmapOptions::new().len(len).map(file) }
}

impl std::ops::Deref for MappedImage {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn maps_whole_files_and_empty_ones() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        f.write_all(&data).unwrap();
        f.flush().unwrap();
        assert_eq!(&*MappedImage::open(f.path()).unwrap(), &data[..]);
        let empty = tempfile::NamedTempFile::new().unwrap();
        assert!(MappedImage::open(empty.path()).unwrap().is_empty());
        assert!(MappedImage::open(Path::new("/nonexistent/image")).is_err());
    }
}
