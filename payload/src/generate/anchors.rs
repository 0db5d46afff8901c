//! Content-defined anchors of the old image, to find where the bytes of a
//! changed run of the new image were in the old one.

use super::BLOCK_SIZE;
use super::blocks::Blocks;
use rayon::prelude::*;

/// Content-defined anchors of the old image: positions where a rolling
/// (gear) hash of the preceding 64 bytes has its top `ANCHOR_BITS` bits
/// clear, about one every 2^ANCHOR_BITS bytes, found again in the new image
/// wherever the same bytes moved to. Used to pick the old blocks a changed
/// run of the new image should be bsdiffed against (file-level matching
/// without parsing the file system).
///
/// Kept as a sorted `(hash, position)` table rather than a hash map: 16
/// bytes per anchor with no table overhead (~1/8 of the old image, 0.25 GiB
/// for 2 GiB), built without a second copy; lookups are binary searches.
pub(super) struct AnchorIndex {
    /// One entry per hash, its first position in the old image, by hash.
    sorted: Vec<(u64, u64)>,
    old_blocks: u64,
}

const ANCHOR_BITS: u32 = 7;

fn gear() -> &'static [u64; 256] {
    static G: std::sync::OnceLock<[u64; 256]> = std::sync::OnceLock::new();
    G.get_or_init(|| {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        std::array::from_fn(|_| {
            // splitmix64
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
    })
}

/// Anchors `(hash, position)` of `data[from..]`, with `data[..from]` (up to
/// 64 bytes) only warming up the rolling hash.
fn anchors_of(data: &[u8], from: usize, mut f: impl FnMut(u64, usize)) {
    let g = gear();
    let mut h = 0u64;
    let warm = from.saturating_sub(64);
    for (i, &b) in data.iter().enumerate().skip(warm) {
        h = (h << 1).wrapping_add(g[b as usize]);
        if i + 1 >= from + 64 && h >> (64 - ANCHOR_BITS) == 0 {
            // Skip runs of one byte (zeros, padding): they match everywhere.
            let w = &data[i + 1 - 64..=i];
            if w.iter().any(|&c| c != w[0]) {
                f(h, i + 1 - 64);
            }
        }
    }
}

impl AnchorIndex {
    pub(super) fn new(old: &Blocks<'_>) -> Self {
        /// Bytes scanned per task.
        const PIECE: usize = 4 << 20;
        /// Pieces scanned in parallel before their anchors are appended:
        /// bounds the per-piece lists in memory at once.
        const WINDOW: usize = 64;
        let len = old.len();
        let pieces = len.div_ceil(PIECE);
        let mut all: Vec<(u64, u64)> = Vec::with_capacity((len >> ANCHOR_BITS) + 1024);
        for w in (0..pieces).step_by(WINDOW) {
            let parts: Vec<Vec<(u64, u64)>> = (w..(w + WINDOW).min(pieces))
                .into_par_iter()
                .map(|k| {
                    let lo = k * PIECE;
                    let hi = (lo + PIECE + 63).min(len);
                    // The 64 bytes before `lo` only warm the rolling hash up.
                    let base = lo.saturating_sub(64);
                    let bytes = old.bytes(base, hi);
                    let mut v = Vec::new();
                    // Anchors starting in [lo, lo + PIECE).
                    anchors_of(&bytes, lo - base, |h, p| {
                        let p = base + p;
                        if p < lo + PIECE {
                            v.push((h, p as u64));
                        }
                    });
                    v
                })
                .collect();
            for v in parts {
                all.extend_from_slice(&v);
            }
        }
        // Sorted by hash, then position: the first entry of each hash is the
        // anchor's first place in the old image.
        all.par_sort_unstable();
        all.dedup_by_key(|e| e.0);
        AnchorIndex {
            sorted: all,
            old_blocks: old.count(),
        }
    }

    /// First position in the old image of an anchor with hash `h`.
    fn get(&self, h: u64) -> Option<u64> {
        self.sorted
            .binary_search_by_key(&h, |e| e.0)
            .ok()
            .map(|i| self.sorted[i].1)
    }

    /// Old block ranges sharing content with `data`, most-hit first, padded
    /// and merged, at most `max_blocks` in all, returned in old order.
    pub(super) fn source_ranges(&self, data: &[u8], max_blocks: u64) -> Vec<(u64, u64)> {
        const PAD: u64 = 8;
        const GAP: u64 = 32;
        let bs = BLOCK_SIZE;
        let mut hits: Vec<u64> = Vec::new();
        anchors_of(data, 0, |h, p| {
            if let Some(o) = self.get(h) {
                // The old block where this new block's bytes start.
                let ob = o.saturating_sub(p as u64 % bs) / bs;
                hits.push(ob);
            }
        });
        if hits.is_empty() {
            return Vec::new();
        }
        hits.sort_unstable();
        // Merge hits into ranges [lo, hi) with padding, joining close ones.
        let mut ranges: Vec<(u64, u64, usize)> = Vec::new();
        for ob in hits {
            let lo = ob.saturating_sub(PAD);
            let hi = (ob + PAD + 1).min(self.old_blocks);
            match ranges.last_mut() {
                Some(r) if lo <= r.1 + GAP => {
                    r.1 = r.1.max(hi);
                    r.2 += 1;
                }
                _ => ranges.push((lo, hi, 1)),
            }
        }
        // Keep the ranges with the most hits per block until the cap.
        ranges.sort_by(|a, b| {
            let da = a.2 as f64 / (a.1 - a.0) as f64;
            let db = b.2 as f64 / (b.1 - b.0) as f64;
            db.total_cmp(&da)
        });
        let mut kept = Vec::new();
        let mut total = 0;
        for (lo, hi, _) in ranges {
            let n = hi - lo;
            if total + n > max_blocks {
                continue;
            }
            total += n;
            kept.push((lo, hi));
        }
        kept.sort_unstable();
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::noise;
    use super::*;

    #[test]
    fn anchors_find_moved_and_edited_content() {
        // Old: A B C (64 KiB each); new: a run of C with edits, at another
        // place and misaligned by 100 bytes.
        let old = noise(19, 3 * 65536);
        let mut run = vec![0u8; 100];
        run.extend_from_slice(&old[2 * 65536..3 * 65536 - 100]);
        for i in (500..run.len()).step_by(3000) {
            run[i] ^= 0xFF;
        }
        let idx = AnchorIndex::new(&Blocks::new(&old));
        let ranges = idx.source_ranges(&run, 1000);
        assert!(!ranges.is_empty());
        let covered: u64 = ranges
            .iter()
            .map(|&(lo, hi)| hi.min(48).saturating_sub(lo.max(32)))
            .sum();
        assert!(covered >= 14, "{ranges:?}");
        // Capped, inside the image, sorted.
        assert!(ranges.iter().all(|&(lo, hi)| lo < hi && hi <= 48));
        assert!(ranges.windows(2).all(|w| w[0].1 <= w[1].0));
        assert!(
            idx.source_ranges(&run, 4)
                .iter()
                .map(|r| r.1 - r.0)
                .sum::<u64>()
                <= 4
        );
        // Zeros match nothing.
        assert!(idx.source_ranges(&[0u8; 8192], 100).is_empty());
    }

    #[test]
    fn index_keeps_each_hash_at_its_first_position() {
        // The same 8 KiB twice (and a piece boundary crossed): every anchor
        // of the second copy resolves to the first.
        let a = noise(5, 8192);
        let mut old = a.clone();
        old.extend(noise(7, (4 << 20) - 8192 + 100));
        old.extend_from_slice(&a);
        let idx = AnchorIndex::new(&Blocks::new(&old));
        let mut n = 0;
        anchors_of(&a, 0, |h, p| {
            assert_eq!(idx.get(h), Some(p as u64));
            n += 1;
        });
        assert!(n > 10);
    }
}
