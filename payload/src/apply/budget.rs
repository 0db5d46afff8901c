//! The apply pipeline's memory bounds: a byte budget for what is in flight
//! between the reader and the writer, and a capped pool of reused buffers.

use std::sync::{Condvar, Mutex};

/// Bytes in flight between the reader and the writer.
pub(super) struct Budget {
    state: Mutex<(u64, bool)>,
    cv: Condvar,
    max: u64,
}

impl Budget {
    pub(super) fn new(max: u64) -> Self {
        Budget {
            state: Mutex::new((0, false)),
            cv: Condvar::new(),
            max,
        }
    }

    /// Wait until `n` more bytes fit (always when nothing is in flight);
    /// false once the writer has stopped.
    pub(super) fn acquire(&self, n: u64) -> bool {
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        while !s.1 && s.0 > 0 && s.0 + n > self.max {
            s = match self.cv.wait(s) {
                Ok(s) => s,
                Err(_) => return false,
            };
        }
        if s.1 {
            return false;
        }
        s.0 += n;
        true
    }

    pub(super) fn release(&self, n: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.0 = s.0.saturating_sub(n);
        }
        self.cv.notify_all();
    }

    pub(super) fn close(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.1 = true;
        }
        self.cv.notify_all();
    }
}

/// Buffers for blobs and decompressed data, reused so that the pipeline
/// does not fault in fresh pages for every operation. Holds at most `max`
/// bytes of capacity.
pub(super) struct BufPool {
    bufs: Mutex<(Vec<Vec<u8>>, u64)>,
    max: u64,
}

impl BufPool {
    pub(super) fn new(max: u64) -> Self {
        BufPool {
            bufs: Mutex::new((Vec::new(), 0)),
            max,
        }
    }

    pub(super) fn take(&self) -> Vec<u8> {
        match self.bufs.lock() {
            Ok(mut b) => match b.0.pop() {
                Some(v) => {
                    b.1 -= v.capacity() as u64;
                    v
                }
                None => Vec::new(),
            },
            Err(_) => Vec::new(),
        }
    }

    pub(super) fn put(&self, mut v: Vec<u8>) {
        let c = v.capacity() as u64;
        if c == 0 {
            return;
        }
        if let Ok(mut b) = self.bufs.lock()
            && b.1 + c <= self.max
        {
            v.clear();
            b.1 += c;
            b.0.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_admits_one_oversized_op_and_wakes_on_close() {
        let b = Budget::new(10);
        assert!(b.acquire(100));
        std::thread::scope(|s| {
            let h = s.spawn(|| b.acquire(1));
            std::thread::sleep(std::time::Duration::from_millis(20));
            b.close();
            assert!(!h.join().unwrap());
        });
    }
}
