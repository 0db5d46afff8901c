//! An image seen as whole blocks: its bytes, read as if zero-padded to a
//! multiple of the block size, without copying the image to pad it.

use super::BLOCK_SIZE;
use std::borrow::Cow;

/// Borrowed image bytes plus its zero-padded last block. Only a read that
/// reaches into the padding copies (at most the bytes it asks for); every
/// other read borrows from the image, which may be a memory map.
#[derive(Debug, Clone)]
pub(super) struct Blocks<'a> {
    data: &'a [u8],
    /// The last block, zero-padded, when the image ends inside it.
    tail: Option<Vec<u8>>,
    /// Padded length in bytes.
    len: usize,
}

impl<'a> Blocks<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        let bs = BLOCK_SIZE as usize;
        let rem = data.len() % bs;
        let tail = (rem != 0).then(|| {
            let mut t = data[data.len() - rem..].to_vec();
            t.resize(bs, 0);
            t
        });
        Blocks {
            data,
            tail,
            len: data.len().next_multiple_of(bs),
        }
    }

    /// Padded length in bytes.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Number of blocks.
    pub(super) fn count(&self) -> u64 {
        (self.len / BLOCK_SIZE as usize) as u64
    }

    /// Block `i` (`i < count()`).
    pub(super) fn block(&self, i: u64) -> &[u8] {
        let bs = BLOCK_SIZE as usize;
        let lo = i as usize * bs;
        if lo + bs <= self.data.len() {
            &self.data[lo..lo + bs]
        } else {
            self.tail.as_deref().unwrap_or(&[])
        }
    }

    /// Bytes `[lo, hi)` of the padded image (`hi <= len()`).
    pub(super) fn bytes(&self, lo: usize, hi: usize) -> Cow<'a, [u8]> {
        if hi <= self.data.len() {
            return Cow::Borrowed(&self.data[lo..hi]);
        }
        let mut v = self.data[lo.min(self.data.len())..].to_vec();
        v.resize(hi - lo, 0);
        Cow::Owned(v)
    }

    /// Blocks `[lo, hi)`.
    pub(super) fn range(&self, lo: u64, hi: u64) -> Cow<'a, [u8]> {
        self.bytes((lo * BLOCK_SIZE) as usize, (hi * BLOCK_SIZE) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_as_if_zero_padded() {
        let bs = BLOCK_SIZE as usize;
        for n in [0, 1, bs - 1, bs, bs + 1, 3 * bs + 17] {
            let data: Vec<u8> = (0..n).map(|i| (i % 251 + 1) as u8).collect();
            let mut padded = data.clone();
            padded.resize(n.next_multiple_of(bs), 0);
            let b = Blocks::new(&data);
            assert_eq!(b.len(), padded.len());
            assert_eq!(b.count() as usize, padded.len() / bs);
            for i in 0..b.count() {
                let i0 = i as usize * bs;
                assert_eq!(b.block(i), &padded[i0..i0 + bs]);
            }
            let ranges = [(0, padded.len()), (1, padded.len()), (0, n), (n / 2, n)];
            for (lo, hi) in ranges.into_iter().filter(|(lo, hi)| lo <= hi) {
                assert_eq!(&*b.bytes(lo, hi), &padded[lo..hi]);
            }
            if b.count() > 0 {
                assert_eq!(&*b.range(0, b.count()), &padded[..]);
            }
        }
    }
}
