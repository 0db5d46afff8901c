//! Payload generation: full payloads (2 MiB chunks, smallest of raw / xz /
//! bzip2 / zstd, compressed on all cores) and deltas (ZERO, SOURCE_COPY via a
//! block-hash index of the old image, SOURCE_BSDIFF in BSDIFF40 format, or
//! REPLACE_* where smaller).
//!
//! Memory: the images are only read, through borrowed slices (the CLI maps
//! the image files, see [`crate::mapped`]); nothing copies a whole image.
//! Resident memory of its own is the block-hash index and the anchor index
//! of the old image (`delta`, `anchors`), plus one window of operations in
//! flight: their inputs are borrowed, their blobs are appended to the blob
//! temp file in operation order as each window finishes.
//!
//! Layout: this module holds the options and the driver, [`generate`] (full
//! payloads too); `delta` classifies blocks and diffs changed runs, `anchors`
//! finds moved content, `blocks` reads an image as zero-padded blocks.

mod anchors;
mod blocks;
mod delta;

use crate::error::{PayloadError, Result};
use crate::plan::{MINOR_DELTA, MINOR_FULL, MINOR_ZSTD};
use crate::proto::{
    Extent, InstallOperation, ManifestV1, ManifestV2, OpType, PartitionInfo, PartitionUpdate,
    ReleaseInfo,
};
use crate::sha::sha256;
use crate::write::{BlobStore, Manifest, UnsignedPayload};
use blocks::Blocks;
use rayon::prelude::*;
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
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), opts.xz_level);
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
    check_layout(parts, opts)?;
    let mut blobs = BlobStore::temp()?;
    let updates = parts
        .iter()
        .map(|p| partition_update(p, opts, &mut blobs))
        .collect::<Result<Vec<_>>>()?;
    let manifest = if opts.major == 1 {
        manifest_v1(updates)?
    } else {
        manifest_v2(updates, parts, opts)
    };
    Ok(UnsignedPayload { manifest, blobs })
}

/// Major version 1 (Flatcar's) is full only, with a "usr" image and
/// optionally a "kernel".
fn check_layout(parts: &[PartitionInput<'_>], opts: &GenOptions) -> Result<()> {
    if opts.major != 1 {
        return Ok(());
    }
    if parts.iter().any(|p| p.old.is_some()) {
        return Err(PayloadError::Generate(
            "major version 1 payloads are full only".into(),
        ));
    }
    if parts.is_empty()
        || parts[0].name != "usr"
        || parts.iter().skip(1).any(|p| p.name != "kernel")
    {
        return Err(PayloadError::Generate(
            "major version 1 holds a \"usr\" image and optionally a \"kernel\"".into(),
        ));
    }
    Ok(())
}

/// One image's operations (delta when it has an old image), their blobs
/// appended to `blobs`.
fn partition_update(
    p: &PartitionInput<'_>,
    opts: &GenOptions,
    blobs: &mut BlobStore,
) -> Result<PartitionUpdate> {
    let mut ops = Vec::new();
    // Blobs go to the temp file as soon as their window is done, in
    // operation order: the data offsets come out as before.
    let mut emit = |(mut op, blob): OpBlob| -> Result<()> {
        if let Some(blob) = blob {
            op.data_offset = Some(blobs.append(&blob)?);
        }
        ops.push(op);
        Ok(())
    };
    match p.old {
        Some(old) => delta::delta_ops(p.new, old, opts, &mut emit)?,
        None => full_ops(p.new, opts, &mut emit)?,
    }
    Ok(PartitionUpdate {
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
    })
}

/// A v1 manifest: the first update is "usr", the others kernel procedures.
fn manifest_v1(updates: Vec<PartitionUpdate>) -> Result<Manifest> {
    let mut it = updates.into_iter();
    let usr = it
        .next()
        .ok_or_else(|| PayloadError::Generate("no images".into()))?;
    Ok(Manifest::V1(ManifestV1 {
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
    }))
}

/// A v2 manifest; its minor version says what a reader must support (zstd,
/// then delta operations).
fn manifest_v2(
    updates: Vec<PartitionUpdate>,
    parts: &[PartitionInput<'_>],
    opts: &GenOptions,
) -> Manifest {
    let zstd = opts.compressors.contains(&Compressor::Zstd) && opts.major == 2;
    let delta = parts.iter().any(|p| p.old.is_some());
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
}

/// An operation and its blob (none for ZERO and SOURCE_COPY).
type OpBlob = (InstallOperation, Option<Vec<u8>>);

/// Full payload ops: the padded image in chunks of `chunk_blocks`, each the
/// smallest REPLACE_*.
fn full_ops(
    new: &[u8],
    opts: &GenOptions,
    emit: &mut impl FnMut(OpBlob) -> Result<()>,
) -> Result<()> {
    let img = Blocks::new(new);
    let chunk = (opts.chunk_blocks * BLOCK_SIZE) as usize;
    let chunks: Vec<usize> = (0..img.len().div_ceil(chunk)).collect();
    in_order(
        chunks,
        |i| {
            let data = img.bytes(i * chunk, ((i + 1) * chunk).min(img.len()));
            let (ty, blob) = best_replace(&data, opts)?;
            let dst = vec![Extent::new(
                i as u64 * opts.chunk_blocks,
                (data.len() as u64) / BLOCK_SIZE,
            )];
            Ok((data_op(ty, dst, &blob), Some(blob)))
        },
        emit,
    )
}

/// Run `work` over `jobs` on all cores, a window of `16 × threads` jobs (at
/// most [`MAX_WINDOW`]) at a time, and hand the results to `emit` in job
/// order. Only one window of results is held at once, so the memory for
/// blobs is bounded by the window, not by the image (a job's input is
/// borrowed from the image).
/// Jobs per window: with ≤ 2 MiB of output per job, ≤ 256 MiB of results
/// at once however many cores the release machine has.
const MAX_WINDOW: usize = 128;

fn in_order<J: Send, T: Send>(
    jobs: Vec<J>,
    work: impl Fn(J) -> Result<T> + Sync + Send,
    emit: &mut impl FnMut(T) -> Result<()>,
) -> Result<()> {
    let window = (16 * rayon::current_num_threads()).clamp(16, MAX_WINDOW);
    let mut jobs = jobs.into_iter();
    loop {
        let batch: Vec<J> = jobs.by_ref().take(window).collect();
        if batch.is_empty() {
            return Ok(());
        }
        let done: Vec<T> = batch.into_par_iter().map(&work).collect::<Result<_>>()?;
        for t in done {
            emit(t)?;
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    /// Deterministic incompressible bytes (xorshift).
    pub(crate) fn noise(seed: u64, len: usize) -> Vec<u8> {
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
}
