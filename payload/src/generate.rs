//! Payload generation: full payloads (2 MiB chunks, smallest of raw / xz /
//! bzip2 / zstd, compressed on all cores) and deltas (ZERO, SOURCE_COPY via a
//! block-hash index of the old image, SOURCE_BSDIFF in BSDIFF40 format, or
//! REPLACE_* where smaller).

use crate::error::{PayloadError, Result};
use crate::plan::{MINOR_DELTA, MINOR_FULL, MINOR_ZSTD};
use crate::proto::{
    Extent, InstallOperation, ManifestV1, ManifestV2, OpType, PartitionInfo, PartitionUpdate,
    ReleaseInfo,
};
use crate::sha::sha256;
use crate::write::{BlobStore, Manifest, UnsignedPayload};
use rayon::prelude::*;
use std::collections::HashMap;
use std::io::Write;

pub const BLOCK_SIZE: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compressor {
    Bzip2,
    Xz,
    Zstd,
}

#[derive(Debug, Clone)]
pub struct GenOptions {
    /// 1 (Flatcar, RSA, REPLACE/REPLACE_BZ only) or 2.
    pub major: u64,
    pub compressors: Vec<Compressor>,
    /// Blocks per full-payload chunk (512 = 2 MiB; Flatcar v1 uses 256).
    pub chunk_blocks: u64,
    /// Blocks per diffed piece of changed data.
    pub diff_blocks: u64,
    pub release: Option<ReleaseInfo>,
    pub timestamp: Option<i64>,
    pub xz_level: u32,
    pub zstd_level: i32,
    /// Delta: also bsdiff each changed run against the old data at its
    /// position when content-matched old blocks were found (slower, rarely
    /// smaller).
    pub thorough_diff: bool,
}

/// Defaults: v2, REPLACE_ZSTD chunks (project minor version 64). zstd
/// decompresses an order of magnitude faster than xz/bzip2 for a few percent
/// more bytes (see README "Benchmarks"); [`GenOptions::aosp`] gives payloads
/// stock AOSP tools read (xz + bzip2, minor 0 / 4).
impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            major: 2,
            compressors: vec![Compressor::Zstd],
            chunk_blocks: 512,
            diff_blocks: 512,
            release: None,
            timestamp: None,
            xz_level: 6,
            zstd_level: 19,
            thorough_diff: false,
        }
    }
}

impl GenOptions {
    /// AOSP-compatible v2 settings: smallest of xz and bzip2 per chunk.
    pub fn aosp() -> Self {
        GenOptions {
            compressors: vec![Compressor::Xz, Compressor::Bzip2],
            ..Default::default()
        }
    }

    /// Flatcar-compatible v1 settings: 1 MiB chunks, bzip2 only.
    pub fn flatcar_v1() -> Self {
        GenOptions {
            major: 1,
            compressors: vec![Compressor::Bzip2],
            chunk_blocks: 256,
            ..Default::default()
        }
    }
}

/// One image of the release.
#[derive(Debug, Clone)]
pub struct PartitionInput<'a> {
    pub name: String,
    pub new: &'a [u8],
    pub old: Option<&'a [u8]>,
}

/// Compress `data` with every configured compressor and keep the smallest
/// (plain REPLACE if nothing helps).
pub fn best_replace(data: &[u8], opts: &GenOptions) -> Result<(OpType, Vec<u8>)> {
    let mut best = (OpType::Replace, data.to_vec());
    for c in &opts.compressors {
        if opts.major == 1 && *c != Compressor::Bzip2 {
            continue;
        }
        let out = match c {
            Compressor::Bzip2 => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
                e.write_all(data).and_then(|_| e.finish())
            }
            Compressor::Xz => {
                let mut e = xz2::write::XzEncoder::new(Vec::new(), opts.xz_level);
                e.write_all(data).and_then(|_| e.finish())
            }
            Compressor::Zstd => zstd::bulk::compress(data, opts.zstd_level),
        }
        .map_err(|e| PayloadError::Generate(format!("compressing: {e}")))?;
        if out.len() < best.1.len() {
            let ty = match c {
                Compressor::Bzip2 => OpType::ReplaceBz,
                Compressor::Xz => OpType::ReplaceXz,
                Compressor::Zstd => OpType::ReplaceZstd,
            };
            best = (ty, out);
        }
    }
    Ok(best)
}

fn padded(img: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let rem = img.len() % BLOCK_SIZE as usize;
    if rem == 0 {
        img.into()
    } else {
        let mut v = img.to_vec();
        v.resize(img.len() + BLOCK_SIZE as usize - rem, 0);
        v.into()
    }
}

fn data_op(ty: OpType, dst: Vec<Extent>, blob: &[u8]) -> InstallOperation {
    InstallOperation {
        r#type: ty as i32,
        dst_extents: dst,
        data_length: Some(blob.len() as u64),
        data_sha256_hash: Some(sha256(blob).to_vec()),
        ..Default::default()
    }
}

/// Generate a payload for all images of a release (full for images without
/// `old`, delta otherwise).
pub fn generate(parts: &[PartitionInput<'_>], opts: &GenOptions) -> Result<UnsignedPayload> {
    let zstd = opts.compressors.contains(&Compressor::Zstd) && opts.major == 2;
    let delta = parts.iter().any(|p| p.old.is_some());
    if opts.major == 1 && delta {
        return Err(PayloadError::Generate(
            "major version 1 payloads are full only".into(),
        ));
    }
    if opts.major == 1
        && (parts.is_empty()
            || parts[0].name != "usr"
            || parts.iter().skip(1).any(|p| p.name != "kernel"))
    {
        return Err(PayloadError::Generate(
            "major version 1 holds a \"usr\" image and optionally a \"kernel\"".into(),
        ));
    }
    let mut blobs = BlobStore::temp()?;
    let mut updates = Vec::new();
    for p in parts {
        let ops_blobs = match p.old {
            Some(old) => delta_ops(p.new, old, opts)?,
            None => full_ops(p.new, opts)?,
        };
        let mut ops = Vec::with_capacity(ops_blobs.len());
        for (mut op, blob) in ops_blobs {
            if let Some(blob) = blob {
                op.data_offset = Some(blobs.append(&blob)?);
            }
            ops.push(op);
        }
        updates.push(PartitionUpdate {
            partition_name: p.name.clone(),
            new_partition_info: Some(PartitionInfo {
                size: Some(p.new.len() as u64),
                hash: Some(sha256(p.new).to_vec()),
            }),
            old_partition_info: p.old.map(|o| PartitionInfo {
                size: Some(o.len() as u64),
                hash: Some(sha256(o).to_vec()),
            }),
            operations: ops,
            ..Default::default()
        });
    }
    let manifest = if opts.major == 1 {
        let mut it = updates.into_iter();
        let usr = it
            .next()
            .ok_or_else(|| PayloadError::Generate("no images".into()))?;
        Manifest::V1(ManifestV1 {
            partition_operations: usr.operations,
            block_size: Some(BLOCK_SIZE as u32),
            new_partition_info: usr.new_partition_info,
            procedures: it
                .map(|k| crate::proto::InstallProcedure {
                    r#type: Some(crate::proto::PROCEDURE_KERNEL),
                    operations: k.operations,
                    old_info: None,
                    new_info: k.new_partition_info,
                })
                .collect(),
            ..Default::default()
        })
    } else {
        Manifest::V2(ManifestV2 {
            block_size: Some(BLOCK_SIZE as u32),
            minor_version: Some(if zstd {
                MINOR_ZSTD
            } else if delta {
                MINOR_DELTA
            } else {
                MINOR_FULL
            }),
            partitions: updates,
            max_timestamp: opts.timestamp,
            release: opts.release.clone(),
            ..Default::default()
        })
    };
    Ok(UnsignedPayload { manifest, blobs })
}

type OpBlob = (InstallOperation, Option<Vec<u8>>);

fn full_ops(new: &[u8], opts: &GenOptions) -> Result<Vec<OpBlob>> {
    let img = padded(new);
    let chunk = (opts.chunk_blocks * BLOCK_SIZE) as usize;
    img.par_chunks(chunk)
        .enumerate()
        .map(|(i, data)| {
            let (ty, blob) = best_replace(data, opts)?;
            let dst = vec![Extent::new(
                i as u64 * opts.chunk_blocks,
                (data.len() as u64) / BLOCK_SIZE,
            )];
            Ok((data_op(ty, dst, &blob), Some(blob)))
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Zero,
    Copy(u64),
    Changed,
}

fn block_key(b: &[u8]) -> u64 {
    let h = sha256(b);
    u64::from_le_bytes(h[..8].try_into().unwrap_or_default())
}

fn delta_ops(new: &[u8], old: &[u8], opts: &GenOptions) -> Result<Vec<OpBlob>> {
    let bs = BLOCK_SIZE as usize;
    let new = padded(new);
    let old = padded(old);
    let old_blocks = old.len() / bs;
    let nb = new.len() / bs;
    let blk =
        |_img: &[u8], i: u64| -> std::ops::Range<usize> { i as usize * bs..(i as usize + 1) * bs };
    // Index of every non-zero old block by content.
    let keys: Vec<Option<u64>> = old
        .par_chunks(bs)
        .map(|b| (!b.iter().all(|&x| x == 0)).then(|| block_key(b)))
        .collect();
    let mut index: HashMap<u64, u64> = HashMap::with_capacity(old_blocks);
    for (i, k) in keys.iter().enumerate() {
        if let Some(k) = k {
            index.entry(*k).or_insert(i as u64);
        }
    }
    let lookup: Vec<Block> = new
        .par_chunks(bs)
        .map(|b| {
            if b.iter().all(|&x| x == 0) {
                Block::Zero
            } else {
                match index.get(&block_key(b)) {
                    Some(&s) if old[blk(&old, s)] == *b => Block::Copy(s),
                    _ => Block::Changed,
                }
            }
        })
        .collect();
    // Prefer continuing the previous copy run over the first match.
    let mut class = lookup;
    for i in 1..nb {
        if let (Block::Copy(prev), Block::Copy(_)) = (class[i - 1], class[i])
            && (prev as usize + 1) < old_blocks
            && old[blk(&old, prev + 1)] == new[blk(&new, i as u64)]
        {
            class[i] = Block::Copy(prev + 1);
        }
    }
    // Short copy runs between changed blocks go into the diff instead: a
    // SOURCE_COPY costs ~60 manifest bytes, while the bsdiff (whose source
    // is content-matched and so holds those blocks) encodes them almost
    // for free, and the diffed piece keeps its context.
    let mut i = 0;
    while i < nb {
        if !matches!(class[i], Block::Copy(_)) {
            i += 1;
            continue;
        }
        let s0 = i;
        while i < nb && matches!(class[i], Block::Copy(_)) {
            i += 1;
        }
        let before = s0 > 0 && class[s0 - 1] == Block::Changed;
        let after = i < nb && class[i] == Block::Changed;
        if i - s0 < SHORT_COPY && before && after {
            class[s0..i].fill(Block::Changed);
        }
    }
    // Group into runs.
    enum Job {
        Ready(OpBlob),
        Diff { start: u64, len: u64, hint: i64 },
    }
    let mut jobs = Vec::new();
    let mut i = 0usize;
    let mut last_shift: i64 = 0;
    while i < nb {
        let start = i;
        match class[i] {
            Block::Zero => {
                while i < nb && class[i] == Block::Zero && (i - start) < opts.chunk_blocks as usize
                {
                    i += 1;
                }
                let dst = vec![Extent::new(start as u64, (i - start) as u64)];
                let op = InstallOperation {
                    r#type: OpType::Zero as i32,
                    dst_extents: dst,
                    ..Default::default()
                };
                jobs.push(Job::Ready((op, None)));
            }
            Block::Copy(s0) => {
                let mut s = s0;
                i += 1;
                while i < nb
                    && class[i] == Block::Copy(s + 1)
                    && (i - start) < opts.chunk_blocks as usize
                {
                    s += 1;
                    i += 1;
                }
                let n = (i - start) as u64;
                last_shift = s0 as i64 - start as i64;
                let src = &old[s0 as usize * bs..(s0 + n) as usize * bs];
                let op = InstallOperation {
                    r#type: OpType::SourceCopy as i32,
                    src_extents: vec![Extent::new(s0, n)],
                    dst_extents: vec![Extent::new(start as u64, n)],
                    src_sha256_hash: Some(sha256(src).to_vec()),
                    ..Default::default()
                };
                jobs.push(Job::Ready((op, None)));
            }
            Block::Changed => {
                while i < nb
                    && class[i] == Block::Changed
                    && (i - start) < opts.diff_blocks as usize
                {
                    i += 1;
                }
                jobs.push(Job::Diff {
                    start: start as u64,
                    len: (i - start) as u64,
                    hint: last_shift,
                });
            }
        }
    }
    let anchors = AnchorIndex::new(&old);
    jobs.into_par_iter()
        .map(|j| match j {
            Job::Ready(o) => Ok(o),
            Job::Diff { start, len, hint } => {
                diff_piece(&new, &old, &anchors, start, len, hint, opts)
            }
        })
        .collect()
}

/// Best operation for a run of changed blocks: bsdiff against the old data
/// around where this run probably came from, or a compressed replace.
fn diff_piece(
    new: &[u8],
    old: &[u8],
    anchors: &AnchorIndex,
    start: u64,
    len: u64,
    shift: i64,
    opts: &GenOptions,
) -> Result<OpBlob> {
    let bs = BLOCK_SIZE;
    let data = &new[(start * bs) as usize..((start + len) * bs) as usize];
    let dst = vec![Extent::new(start, len)];
    let (ty, blob) = best_replace(data, opts)?;
    let mut best = (data_op(ty, dst.clone(), &blob), Some(blob));
    let old_blocks = old.len() as u64 / bs;
    if old_blocks == 0 {
        return Ok(best);
    }
    // Candidate sources: the old blocks whose content this run shares
    // (content-defined anchors, wherever they are in the old image), and the
    // old data around where the run probably came from (position).
    let mut candidates: Vec<Vec<(u64, u64)>> = Vec::new();
    let max_src = (4 * len + 256).min(MAX_SRC_BLOCKS);
    let matched = anchors.source_ranges(data, max_src);
    if !matched.is_empty() {
        candidates.push(matched);
    }
    let margin = len.max(64);
    let positional = if candidates.is_empty() || opts.thorough_diff {
        &[shift, 0][..]
    } else {
        &[]
    };
    for &s in positional {
        let center = (start as i64 + s).clamp(0, old_blocks as i64 - 1) as u64;
        let lo = center.saturating_sub(margin);
        let hi = (center + len + margin).min(old_blocks);
        if !candidates.contains(&vec![(lo, hi)]) {
            candidates.push(vec![(lo, hi)]);
        }
    }
    for ranges in candidates {
        let mut src = Vec::new();
        for &(lo, hi) in &ranges {
            src.extend_from_slice(&old[(lo * bs) as usize..(hi * bs) as usize]);
        }
        let mut patch = Vec::new();
        qbsdiff::Bsdiff::new(&src, data)
            .compression_level(9)
            .compare(std::io::Cursor::new(&mut patch))
            .map_err(|e| PayloadError::Generate(format!("bsdiff: {e}")))?;
        let cur = best.1.as_ref().map_or(usize::MAX, Vec::len);
        if patch.len() < cur {
            let mut op = data_op(OpType::SourceBsdiff, dst.clone(), &patch);
            op.src_extents = ranges
                .iter()
                .map(|&(lo, hi)| Extent::new(lo, hi - lo))
                .collect();
            op.src_sha256_hash = Some(sha256(&src).to_vec());
            best = (op, Some(patch));
        }
    }
    Ok(best)
}

/// Copy runs shorter than this (blocks) between changed data are diffed.
const SHORT_COPY: usize = 64;

/// Largest bsdiff source, in blocks (16 MiB: `Limits::max_op_size`).
const MAX_SRC_BLOCKS: u64 = 4096;

/// Content-defined anchors of the old image: positions where a rolling
/// (gear) hash of the preceding 64 bytes has its top `ANCHOR_BITS` bits
/// clear, about one every 2^ANCHOR_BITS bytes, found again in the new image
/// wherever the same bytes moved to. Used to pick the old blocks a changed
/// run of the new image should be bsdiffed against (file-level matching
/// without parsing the file system). 16 bytes per anchor: ~0.25 GiB for a
/// 2 GiB image.
struct AnchorIndex {
    map: HashMap<u64, u64>,
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
    fn new(old: &[u8]) -> Self {
        const PIECE: usize = 4 << 20;
        let parts: Vec<Vec<(u64, u64)>> = (0..old.len().div_ceil(PIECE))
            .into_par_iter()
            .map(|k| {
                let lo = k * PIECE;
                let hi = (lo + PIECE + 63).min(old.len());
                let mut v = Vec::new();
                // Anchors starting in [lo, lo + PIECE).
                anchors_of(&old[..hi], lo, |h, p| {
                    if p < lo + PIECE {
                        v.push((h, p as u64));
                    }
                });
                v
            })
            .collect();
        let n = parts.iter().map(Vec::len).sum();
        let mut map = HashMap::with_capacity(n);
        for (h, p) in parts.into_iter().flatten() {
            map.entry(h).or_insert(p);
        }
        AnchorIndex {
            map,
            old_blocks: old.len() as u64 / BLOCK_SIZE,
        }
    }

    /// Old block ranges sharing content with `data`, most-hit first, padded
    /// and merged, at most `max_blocks` in all, returned in old order.
    fn source_ranges(&self, data: &[u8], max_blocks: u64) -> Vec<(u64, u64)> {
        const PAD: u64 = 8;
        const GAP: u64 = 32;
        let bs = BLOCK_SIZE;
        let mut hits: Vec<u64> = Vec::new();
        anchors_of(data, 0, |h, p| {
            if let Some(&o) = self.map.get(&h) {
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
    use super::*;

    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

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
        let idx = AnchorIndex::new(&old);
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
    fn content_matched_bsdiff_source_beats_position() {
        // The changed file moved far away in the new image: bsdiff against
        // the content-matched source, not the blocks at the same position.
        let bs = BLOCK_SIZE as usize;
        let mut old = noise(11, 256 * bs);
        old.extend(noise(13, 64 * bs)); // "file" at old block 256
        let mut new = noise(17, 256 * bs); // unrelated data first
        new.splice(0..0, old[256 * bs..].iter().copied()); // file moved to 0
        new.truncate(old.len());
        for i in (7..64 * bs).step_by(3001) {
            new[i] ^= 1; // edited: no block is identical
        }
        let opts = GenOptions::default();
        let ops = delta_ops(&new, &old, &opts).unwrap();
        let first = &ops[0].0;
        assert_eq!(first.r#type, OpType::SourceBsdiff as i32);
        assert!(
            first.src_extents.iter().all(|x| x.start() >= 240),
            "{first:?}"
        );
        // The unrelated noise costs its size; the moved, edited file little.
        assert!(ops[0].1.as_ref().unwrap().len() < 256 * bs + 64 * bs / 10);
    }
}
