//! `ExtentWriter`: a `Write` that lays a byte stream over a list of block
//! extents of a [`Storage`], with positioned writes.

use crate::proto::Extent;
use crate::storage::Storage;
use std::io::{self, Write};

/// Sparse-hole marker of v1 payloads: bytes aimed at it are dropped.
pub const SPARSE_HOLE: u64 = u64::MAX;

#[derive(Debug)]
pub struct ExtentWriter<'a, S: ?Sized> {
    target: &'a mut S,
    /// (byte offset or None for a hole, byte length)
    ranges: Vec<(Option<u64>, u64)>,
    idx: usize,
    pos_in_range: u64,
    written: u64,
}

/// Byte ranges of `extents`; callers validated them against the partition.
pub fn extent_ranges(extents: &[Extent], block_size: u64) -> Vec<(Option<u64>, u64)> {
    extents
        .iter()
        .map(|e| {
            let len = e.num() * block_size;
            if e.start() == SPARSE_HOLE {
                (None, len)
            } else {
                (Some(e.start() * block_size), len)
            }
        })
        .collect()
}

impl<'a, S: Storage + ?Sized> ExtentWriter<'a, S> {
    pub fn new(target: &'a mut S, extents: &[Extent], block_size: u64) -> Self {
        ExtentWriter {
            target,
            ranges: extent_ranges(extents, block_size),
            idx: 0,
            pos_in_range: 0,
            written: 0,
        }
    }

    pub fn capacity(&self) -> u64 {
        self.ranges.iter().map(|r| r.1).sum()
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Zero-fill what is left of the extents (REPLACE blobs shorter than
    /// their extents), then return the bytes written.
    pub fn finish_padded(mut self) -> io::Result<u64> {
        let zeros = [0u8; 64 * 1024];
        loop {
            let left = self.capacity() - self.written;
            if left == 0 {
                return Ok(self.written);
            }
            let n = left.min(zeros.len() as u64) as usize;
            self.write_all(&zeros[..n])?;
        }
    }

    /// Require the extents to be exactly filled.
    pub fn finish_exact(self) -> io::Result<u64> {
        if self.written != self.capacity() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "wrote {} bytes into extents of {} bytes",
                    self.written,
                    self.capacity()
                ),
            ));
        }
        Ok(self.written)
    }
}

impl<S: Storage + ?Sized> Write for ExtentWriter<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.idx < self.ranges.len() && self.pos_in_range == self.ranges[self.idx].1 {
            self.idx += 1;
            self.pos_in_range = 0;
        }
        let Some(&(start, len)) = self.ranges.get(self.idx) else {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "data longer than the operation's destination extents",
            ));
        };
        let n = (len - self.pos_in_range).min(buf.len() as u64) as usize;
        if let Some(start) = start {
            self.target
                .write_all_at(&buf[..n], start + self.pos_in_range)?;
        }
        self.pos_in_range += n as u64;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_over_extents_and_skips_holes() {
        let mut t = vec![0xffu8; 8];
        let ext = [
            Extent::new(3, 1),
            Extent::new(SPARSE_HOLE, 1),
            Extent::new(0, 2),
        ];
        let mut w = ExtentWriter::new(&mut t, &ext, 1);
        w.write_all(b"abcd").unwrap();
        assert_eq!(w.finish_exact().unwrap(), 4);
        assert_eq!(t, [b'c', b'd', 0xff, b'a', 0xff, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn overflow_is_an_error() {
        let mut t = vec![0u8; 8];
        let ext = [Extent::new(0, 1)];
        let mut w = ExtentWriter::new(&mut t, &ext, 2);
        assert!(w.write_all(b"abc").is_err());
    }

    #[test]
    fn short_write_padded_or_rejected() {
        let mut t = vec![9u8; 4];
        let ext = [Extent::new(0, 1)];
        let mut w = ExtentWriter::new(&mut t, &ext, 4);
        w.write_all(b"a").unwrap();
        assert_eq!(w.finish_padded().unwrap(), 4);
        assert_eq!(t, b"a\0\0\0");
        let mut w = ExtentWriter::new(&mut t, &ext, 4);
        w.write_all(b"a").unwrap();
        assert_eq!(
            w.finish_exact().unwrap_err().to_string(),
            "wrote 1 bytes into extents of 4 bytes"
        );
    }
}
