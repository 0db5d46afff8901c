//! Delta operations for one image: each block of the new image classified
//! as zero, a copy of an old block or changed; runs of each become ZERO,
//! SOURCE_COPY, or SOURCE_BSDIFF / REPLACE_* (whichever is smaller).

use super::anchors::AnchorIndex;
use super::blocks::Blocks;
use super::{GenOptions, OpBlob, best_replace, data_op, in_order};
use crate::error::{PayloadError, Result};
use crate::proto::{Extent, InstallOperation, OpType};
use crate::sha::sha256;
use rayon::prelude::*;
use std::collections::HashMap;

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

/// A run of the new image: ready, or to be diffed on a worker.
enum Job {
    Ready(OpBlob),
    Diff { start: u64, len: u64, hint: i64 },
}

/// The operations turning `old` into `new`, handed to `emit` in order.
pub(super) fn delta_ops(
    new: &[u8],
    old: &[u8],
    opts: &GenOptions,
    emit: &mut impl FnMut(OpBlob) -> Result<()>,
) -> Result<()> {
    let new = Blocks::new(new);
    let old = Blocks::new(old);
    let mut class = match_blocks(&new, &old);
    prefer_continued_copies(&mut class, &new, &old);
    diff_short_copies(&mut class);
    let jobs = group_runs(&class, &old, opts);
    // The classification is as large as the image in blocks: free it
    // before the anchor index is built.
    drop(class);
    let anchors = AnchorIndex::new(&old);
    in_order(
        jobs,
        |j| match j {
            Job::Ready(o) => Ok(o),
            Job::Diff { start, len, hint } => {
                diff_piece(&new, &old, &anchors, start, len, hint, opts)
            }
        },
        emit,
    )
}

/// Every new block classified: zero, the same content as an old block (the
/// first one with it), or changed.
fn match_blocks(new: &Blocks<'_>, old: &Blocks<'_>) -> Vec<Block> {
    let index = old_block_index(old);
    (0..new.count())
        .into_par_iter()
        .map(|i| {
            let b = new.block(i);
            if b.iter().all(|&x| x == 0) {
                Block::Zero
            } else {
                match index.get(&block_key(b)) {
                    Some(&s) if old.block(s) == b => Block::Copy(s),
                    _ => Block::Changed,
                }
            }
        })
        .collect()
}

/// Index of every non-zero old block by content: key → first block number.
fn old_block_index(old: &Blocks<'_>) -> HashMap<u64, u64> {
    let keys: Vec<Option<u64>> = (0..old.count())
        .into_par_iter()
        .map(|i| {
            let b = old.block(i);
            (!b.iter().all(|&x| x == 0)).then(|| block_key(b))
        })
        .collect();
    let mut index: HashMap<u64, u64> = HashMap::with_capacity(old.count() as usize);
    for (i, k) in keys.iter().enumerate() {
        if let Some(k) = k {
            index.entry(*k).or_insert(i as u64);
        }
    }
    index
}

/// Prefer continuing the previous copy run over the first match, so copies
/// of repeated content stay one run.
fn prefer_continued_copies(class: &mut [Block], new: &Blocks<'_>, old: &Blocks<'_>) {
    let old_blocks = old.count() as usize;
    for i in 1..class.len() {
        if let (Block::Copy(prev), Block::Copy(_)) = (class[i - 1], class[i])
            && (prev as usize + 1) < old_blocks
            && old.block(prev + 1) == new.block(i as u64)
        {
            class[i] = Block::Copy(prev + 1);
        }
    }
}

/// Short copy runs between changed blocks go into the diff instead: a
/// SOURCE_COPY costs ~60 manifest bytes, while the bsdiff (whose source is
/// content-matched and so holds those blocks) encodes them almost for free,
/// and the diffed piece keeps its context.
fn diff_short_copies(class: &mut [Block]) {
    let nb = class.len();
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
}

/// Runs of equally classified blocks as jobs: ZERO and SOURCE_COPY
/// operations (up to `chunk_blocks`), changed runs to diff (up to
/// `diff_blocks`, with the last copy's shift as the hint where they came from).
fn group_runs(class: &[Block], old: &Blocks<'_>, opts: &GenOptions) -> Vec<Job> {
    let nb = class.len();
    let chunk = opts.chunk_blocks as usize;
    let mut jobs = Vec::new();
    let mut i = 0usize;
    let mut last_shift: i64 = 0;
    while i < nb {
        let start = i;
        let job = match class[i] {
            Block::Zero => {
                while i < nb && class[i] == Block::Zero && (i - start) < chunk {
                    i += 1;
                }
                zero_op(start as u64, (i - start) as u64)
            }
            Block::Copy(s0) => {
                let mut s = s0;
                i += 1;
                while i < nb && class[i] == Block::Copy(s + 1) && (i - start) < chunk {
                    s += 1;
                    i += 1;
                }
                last_shift = s0 as i64 - start as i64;
                copy_op(old, s0, start as u64, (i - start) as u64)
            }
            Block::Changed => {
                while i < nb
                    && class[i] == Block::Changed
                    && (i - start) < opts.diff_blocks as usize
                {
                    i += 1;
                }
                Job::Diff {
                    start: start as u64,
                    len: (i - start) as u64,
                    hint: last_shift,
                }
            }
        };
        jobs.push(job);
    }
    jobs
}

/// ZERO over `len` blocks at `start`.
fn zero_op(start: u64, len: u64) -> Job {
    let op = InstallOperation {
        r#type: OpType::Zero as i32,
        dst_extents: vec![Extent::new(start, len)],
        ..Default::default()
    };
    Job::Ready((op, None))
}

/// SOURCE_COPY of `n` old blocks at `src` to the new blocks at `dst`.
fn copy_op(old: &Blocks<'_>, src: u64, dst: u64, n: u64) -> Job {
    let data = old.range(src, src + n);
    let op = InstallOperation {
        r#type: OpType::SourceCopy as i32,
        src_extents: vec![Extent::new(src, n)],
        dst_extents: vec![Extent::new(dst, n)],
        src_sha256_hash: Some(sha256(&data).to_vec()),
        ..Default::default()
    };
    Job::Ready((op, None))
}

/// Best operation for a run of changed blocks: bsdiff against the old data
/// around where this run probably came from, or a compressed replace.
fn diff_piece(
    new: &Blocks<'_>,
    old: &Blocks<'_>,
    anchors: &AnchorIndex,
    start: u64,
    len: u64,
    shift: i64,
    opts: &GenOptions,
) -> Result<OpBlob> {
    let data = new.range(start, start + len);
    let data = &data[..];
    let dst = vec![Extent::new(start, len)];
    let (ty, blob) = best_replace(data, opts)?;
    let mut best = (data_op(ty, dst.clone(), &blob), Some(blob));
    let old_blocks = old.count();
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
            src.extend_from_slice(&old.range(lo, hi));
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

#[cfg(test)]
mod tests {
    use super::super::BLOCK_SIZE;
    use super::super::tests::noise;
    use super::*;

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
        let mut ops = Vec::new();
        delta_ops(&new, &old, &opts, &mut |o| {
            ops.push(o);
            Ok(())
        })
        .unwrap();
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
