//! `HashingReader`: the payload byte stream, counted and hashed as it is read.
//!
//! Two running hashes: the whole file (Omaha `sha256`, Android `FILE_HASH`)
//! and the signed hash Hp (header + manifest + blobs, skipping both
//! signature blobs), toggled with [`HashingReader::set_signed`].

use crate::error::{PayloadError, Result};
use crate::sha::ResumableSha256;
use std::io::{self, Read};

#[derive(Debug)]
pub struct HashingReader<R> {
    inner: R,
    offset: u64,
    pub(crate) file_hash: ResumableSha256,
    pub(crate) signed_hash: ResumableSha256,
    signed: bool,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self::resume(inner, 0, ResumableSha256::new(), ResumableSha256::new())
    }

    /// Continue from saved hasher states; `inner` is positioned at `offset`.
    pub fn resume(
        inner: R,
        offset: u64,
        file_hash: ResumableSha256,
        signed_hash: ResumableSha256,
    ) -> Self {
        HashingReader {
            inner,
            offset,
            file_hash,
            signed_hash,
            signed: true,
        }
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether bytes read from now on are covered by the payload signature.
    pub fn set_signed(&mut self, signed: bool) {
        self.signed = signed;
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Fill `buf` completely; a short stream is [`PayloadError::Truncated`].
    pub fn read_exact_or(&mut self, buf: &mut [u8], what: &'static str) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match self.read(&mut buf[done..]) {
                Ok(0) => {
                    return Err(PayloadError::Truncated {
                        offset: self.offset,
                        what,
                    });
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(PayloadError::Read {
                        offset: self.offset,
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Read a `len`-byte region into `buf` (reused between calls). The caller
    /// has bounded `len` already.
    pub fn read_vec(&mut self, buf: &mut Vec<u8>, len: usize, what: &'static str) -> Result<()> {
        buf.clear();
        buf.resize(len, 0);
        self.read_exact_or(buf, what)
    }

    /// True if the stream has ended (reads one byte to find out).
    pub fn at_eof(&mut self) -> Result<bool> {
        let mut b = [0u8; 1];
        loop {
            match self.inner.read(&mut b) {
                Ok(0) => return Ok(true),
                Ok(_) => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(PayloadError::Read {
                        offset: self.offset,
                        source,
                    });
                }
            }
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        self.file_hash.update(&buf[..n]);
        if self.signed {
            self.signed_hash.update(&buf[..n]);
        }
        self.offset += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sha::sha256;
    use std::io::Cursor;

    #[test]
    fn hashes_and_counts() {
        let data = b"header|sig|blob".to_vec();
        let mut r = HashingReader::new(Cursor::new(data.clone()));
        let mut a = [0u8; 7];
        r.read_exact_or(&mut a, "header").unwrap();
        r.set_signed(false);
        let mut b = [0u8; 4];
        r.read_exact_or(&mut b, "sig").unwrap();
        r.set_signed(true);
        let mut c = Vec::new();
        r.read_vec(&mut c, 4, "blob").unwrap();
        assert_eq!(r.offset(), 15);
        assert!(r.at_eof().unwrap());
        assert_eq!(r.file_hash.digest(), sha256(&data));
        assert_eq!(r.signed_hash.digest(), sha256(b"header|blob"));
    }

    #[test]
    fn truncation_reports_offset_and_what() {
        let mut r = HashingReader::new(Cursor::new(vec![1u8; 5]));
        let mut a = [0u8; 8];
        let e = r.read_exact_or(&mut a, "manifest").unwrap_err();
        assert_eq!(
            e.to_string(),
            "payload truncated at byte 5 while reading manifest"
        );
    }

    #[test]
    fn empty_buffer_reads_nothing() {
        let mut r = HashingReader::new(Cursor::new(vec![1u8; 5]));
        assert_eq!(r.read(&mut []).unwrap(), 0);
        assert_eq!(r.offset(), 0);
    }
}
