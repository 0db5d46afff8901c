//! The blocking end of a download: a `Read` over the chunks the async task
//! receives. A failed download surfaces as an `io::Error` that carries the
//! typed [`DownloadError`] (recovered with [`DownloadError::from_io`]).

use std::io::{self, Read};

use bytes::Bytes;
use tokio::sync::mpsc;

use super::DownloadError;

/// The blocking end of a download: a `Read` over the received chunks.
#[derive(Debug)]
pub struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, DownloadError>>,
    current: Bytes,
    done: bool,
}

impl ChannelReader {
    pub(super) fn new(rx: mpsc::Receiver<Result<Bytes, DownloadError>>) -> Self {
        Self {
            rx,
            current: Bytes::new(),
            done: false,
        }
    }

    /// A reader over fixed chunks (tests).
    pub fn from_chunks(chunks: Vec<Result<Bytes, DownloadError>>) -> Self {
        let (tx, rx) = mpsc::channel(chunks.len().max(1));
        for c in chunks {
            tx.try_send(c).expect("capacity");
        }
        Self::new(rx)
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.current.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => {
                    self.done = true;
                    return Err(io::Error::other(e));
                }
                None => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        bytes::Buf::advance(&mut self.current, n);
        Ok(n)
    }
}
