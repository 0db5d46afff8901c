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
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            major: 2,
            compressors: vec![Compressor::Xz, Compressor::Bzip2],
            chunk_blocks: 512,
            diff_blocks: 512,
            release: None,
            timestamp: None,
            xz_level: 6,
            zstd_level: 19,
        }
    }
}

impl GenOptions {
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
    jobs.into_par_iter()
        .map(|j| match j {
            Job::Ready(o) => Ok(o),
            Job::Diff { start, len, hint } => diff_piece(&new, &old, start, len, hint, opts),
        })
        .collect()
}

/// Best operation for a run of changed blocks: bsdiff against the old data
/// around where this run probably came from, or a compressed replace.
fn diff_piece(
    new: &[u8],
    old: &[u8],
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
    let margin = len.max(64);
    let mut windows = vec![];
    for s in [shift, 0] {
        let center = (start as i64 + s).clamp(0, old_blocks as i64 - 1) as u64;
        let lo = center.saturating_sub(margin);
        let hi = (center + len + margin).min(old_blocks);
        if !windows.contains(&(lo, hi)) {
            windows.push((lo, hi));
        }
    }
    for (lo, hi) in windows {
        let src = &old[(lo * bs) as usize..(hi * bs) as usize];
        let mut patch = Vec::new();
        qbsdiff::Bsdiff::new(src, data)
            .compression_level(9)
            .compare(std::io::Cursor::new(&mut patch))
            .map_err(|e| PayloadError::Generate(format!("bsdiff: {e}")))?;
        let cur = best.1.as_ref().map_or(usize::MAX, Vec::len);
        if patch.len() < cur {
            let mut op = data_op(OpType::SourceBsdiff, dst.clone(), &patch);
            op.src_extents = vec![Extent::new(lo, hi - lo)];
            op.src_sha256_hash = Some(sha256(src).to_vec());
            best = (op, Some(patch));
        }
    }
    Ok(best)
}
