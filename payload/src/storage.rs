//! Positioned-I/O targets and sources: a partition or image file, a block
//! device, or an in-memory `Vec<u8>` for tests.

use std::fs::File;
use std::io;

/// A slot (target or source) accessed by absolute byte offsets.
pub trait Storage: Send {
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Fixed capacity of the device, or `None` for storage that grows on write.
    fn capacity(&mut self) -> io::Result<Option<u64>>;
    /// Shrink growable storage to `len` if it is longer (kernel files).
    fn truncate(&mut self, _len: u64) -> io::Result<()> {
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Storage for Vec<u8> {
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| eof())?;
        let end = start.checked_add(buf.len()).ok_or_else(eof)?;
        let src = self.get(start..end).ok_or_else(eof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| eof())?;
        let end = start.checked_add(buf.len()).ok_or_else(eof)?;
        if self.len() < end {
            self.resize(end, 0);
        }
        self[start..end].copy_from_slice(buf);
        Ok(())
    }
    fn capacity(&mut self) -> io::Result<Option<u64>> {
        Ok(None)
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        if (self.len() as u64) > len {
            Vec::truncate(self, len as usize);
        }
        Ok(())
    }
}

impl Storage for File {
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, buf, offset)
    }
    fn capacity(&mut self) -> io::Result<Option<u64>> {
        use std::io::{Seek, SeekFrom};
        use std::os::unix::fs::FileTypeExt;
        if self.metadata()?.file_type().is_block_device() {
            Ok(Some(self.seek(SeekFrom::End(0))?))
        } else {
            Ok(None)
        }
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let m = self.metadata()?;
        if m.is_file() && m.len() > len {
            self.set_len(len)?;
        }
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        self.sync_data()
    }
}

/// In-memory storage that stays readable after it is handed to a `Slot`.
#[derive(Debug, Clone, Default)]
pub struct SharedBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl SharedBuffer {
    pub fn new(data: Vec<u8>) -> Self {
        SharedBuffer(std::sync::Arc::new(std::sync::Mutex::new(data)))
    }
    pub fn contents(&self) -> Vec<u8> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
    fn with<T>(&self, f: impl FnOnce(&mut Vec<u8>) -> io::Result<T>) -> io::Result<T> {
        let mut g = self.0.lock().map_err(|_| io::Error::other("poisoned"))?;
        f(&mut g)
    }
}

impl Storage for SharedBuffer {
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.with(|v| v.read_exact_at(buf, offset))
    }
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.with(|v| v.write_all_at(buf, offset))
    }
    fn capacity(&mut self) -> io::Result<Option<u64>> {
        Ok(None)
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.with(|v| Storage::truncate(v, len))
    }
}

fn eof() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "read past the end of the image",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_grows_on_write_and_bounds_reads() {
        let mut v: Vec<u8> = Vec::new();
        v.write_all_at(b"abc", 5).unwrap();
        assert_eq!(v, b"\0\0\0\0\0abc");
        let mut b = [0u8; 2];
        v.read_exact_at(&mut b, 6).unwrap();
        assert_eq!(&b, b"bc");
        assert!(v.read_exact_at(&mut b, 7).is_err());
        assert!(v.read_exact_at(&mut b, u64::MAX).is_err());
        assert_eq!(Storage::capacity(&mut v).unwrap(), None);
    }

    #[test]
    fn file_positioned_io() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all_at(b"xyz", 4096).unwrap();
        let mut b = [0u8; 3];
        f.read_exact_at(&mut b, 4096).unwrap();
        assert_eq!(&b, b"xyz");
        Storage::truncate(&mut f, 10).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 10);
    }
}
