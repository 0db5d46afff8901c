//! The narrow I/O edge: positioned reads and writes on a disk image, a block device,
//! or memory, plus a write log used to replay crashes.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

use crate::blockdev;

/// A disk as the GPT code sees it.
pub trait Disk {
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// A write barrier: everything written before has reached stable storage.
    fn sync(&mut self) -> io::Result<()>;
    /// Length in bytes.
    fn size_bytes(&mut self) -> io::Result<u64>;
    /// The logical sector size if the medium reports one (block devices); `None`
    /// means "an image file: probe 512, then 4096".
    fn sector_size(&mut self) -> io::Result<Option<u64>> {
        Ok(None)
    }
}

/// A disk image file or a whole-disk block device.
#[derive(Debug)]
pub struct FileDisk {
    file: File,
    path: PathBuf,
    block_device: bool,
}

impl FileDisk {
    /// Opens `path` read-only.
    pub fn open_ro(path: &Path) -> io::Result<Self> {
        Self::open(path, false)
    }

    /// Opens `path` for reading and writing.
    pub fn open_rw(path: &Path) -> io::Result<Self> {
        Self::open(path, true)
    }

    fn open(path: &Path, write: bool) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(write).open(path)?;
        let block_device = file.metadata()?.file_type().is_block_device();
        Ok(FileDisk {
            file,
            path: path.to_owned(),
            block_device,
        })
    }

    /// The open file (for block-device ioctls).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Whether this is a block device rather than an image file.
    pub fn is_block_device(&self) -> bool {
        self.block_device
    }

    /// The path this disk was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Disk for FileDisk {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn sync(&mut self) -> io::Result<()> {
        // fdatasync is enough: the GPT lives inside the file, its metadata does not change.
        self.file.sync_data()
    }

    fn size_bytes(&mut self) -> io::Result<u64> {
        if self.block_device {
            blockdev::size_bytes(&self.file)
        } else {
            Ok(self.file.metadata()?.len())
        }
    }

    fn sector_size(&mut self) -> io::Result<Option<u64>> {
        if self.block_device {
            blockdev::logical_sector_size(&self.file).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// An in-memory disk, for tests and dry runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemDisk(pub Vec<u8>);

impl Disk for MemDisk {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.0.get(start..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let dst = start
            .checked_add(buf.len())
            .and_then(|end| self.0.get_mut(start..end))
            .ok_or(io::ErrorKind::InvalidInput)?;
        dst.copy_from_slice(buf);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn size_bytes(&mut self) -> io::Result<u64> {
        Ok(self.0.len() as u64)
    }
}

/// One event of a [`WriteLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoggedOp {
    /// A positioned write.
    Write { offset: u64, data: Vec<u8> },
    /// A barrier.
    Sync,
}

/// Passes everything to an inner disk and records each write and barrier, so tests
/// can rebuild every state a crash could leave behind.
#[derive(Debug)]
pub struct WriteLog<D> {
    inner: D,
    ops: Vec<LoggedOp>,
}

impl<D: Disk> WriteLog<D> {
    /// Wraps `inner`.
    pub fn new(inner: D) -> Self {
        WriteLog {
            inner,
            ops: Vec::new(),
        }
    }

    /// The operations recorded so far.
    pub fn ops(&self) -> &[LoggedOp] {
        &self.ops
    }

    /// Returns the inner disk.
    pub fn into_inner(self) -> D {
        self.inner
    }
}

impl<D: Disk> Disk for WriteLog<D> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.ops.push(LoggedOp::Write {
            offset,
            data: buf.to_vec(),
        });
        self.inner.write_at(offset, buf)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.ops.push(LoggedOp::Sync);
        self.inner.sync()
    }

    fn size_bytes(&mut self) -> io::Result<u64> {
        self.inner.size_bytes()
    }

    fn sector_size(&mut self) -> io::Result<Option<u64>> {
        self.inner.sector_size()
    }
}

/// Hands `visit` every disk state a power loss during the logged `ops` can leave
/// on a disk that held `old`: writes before the last barrier are durable, later
/// ones may each be lost, torn after the first sector, half written or complete
/// (a device only promises single-sector atomicity). The label says which.
pub fn for_each_crash_state(old: &[u8], ops: &[LoggedOp], mut visit: impl FnMut(&str, Vec<u8>)) {
    let mut durable = old.to_vec();
    let mut pending: Vec<(u64, Vec<u8>)> = Vec::new();
    let apply = |img: &mut Vec<u8>, off: u64, data: &[u8]| {
        img[off as usize..off as usize + data.len()].copy_from_slice(data);
    };
    for (k, op) in ops.iter().enumerate() {
        match op {
            LoggedOp::Sync => {
                for (off, data) in pending.drain(..) {
                    apply(&mut durable, off, &data);
                }
            }
            LoggedOp::Write { offset, data } => pending.push((*offset, data.clone())),
        }
        // Each pending write: 0 = lost, 1 = first sector only, 2 = half, 3 = complete.
        for combo in 0..4usize.pow(pending.len() as u32) {
            let mut img = durable.clone();
            let mut c = combo;
            let mut label = format!("after op {k}:");
            for (off, data) in &pending {
                let len = match c % 4 {
                    0 => 0,
                    1 => 512.min(data.len()),
                    2 => (data.len() / 2).max(512).min(data.len()),
                    _ => data.len(),
                };
                c /= 4;
                apply(&mut img, *off, &data[..len]);
                label.push_str(&format!(" write@{off}={len}B"));
            }
            visit(&label, img);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_disk_bounds() {
        let mut d = MemDisk(vec![0; 16]);
        d.write_at(8, &[1; 8]).unwrap();
        assert!(d.write_at(9, &[1; 8]).is_err());
        let mut buf = [0u8; 4];
        assert!(d.read_at(u64::MAX, &mut buf).is_err());
        d.read_at(12, &mut buf).unwrap();
        assert_eq!(buf, [1; 4]);
    }

    #[test]
    fn write_log_records_in_order() {
        let mut d = WriteLog::new(MemDisk(vec![0; 8]));
        d.write_at(0, &[1]).unwrap();
        d.sync().unwrap();
        assert_eq!(
            d.ops(),
            &[
                LoggedOp::Write {
                    offset: 0,
                    data: vec![1]
                },
                LoggedOp::Sync
            ]
        );
        assert_eq!(d.into_inner().0[0], 1);
    }
}
