//! The streaming apply: `payload::apply(reader, slots, keys)`.
//!
//! Order (v2): header → bounded manifest → metadata signature checked with
//! the keyring → only then the manifest is parsed and fully validated → per
//! operation: read its blob (capped), check its hash, check the source hash,
//! write → payload signature, size, whole-file hash → every written partition
//! re-hashed against `new_partition_info`. v1 (Flatcar) has no metadata
//! signature: its manifest is validated and every blob hash-checked before
//! writing, and the signature is checked at the end, as Flatcar does.
//!
//! Layout: this module holds the entry points and the order of the steps;
//! `metadata` reads and authenticates the front of the payload, `checks`
//! does the checks before the first and after the last write, `pipeline`
//! runs the operations (reader, decompression workers, in-order writer)
//! within the memory bounds of `budget`, `checkpoint` is the resume state
//! and `slots` the targets.

mod budget;
mod checkpoint;
mod checks;
mod metadata;
mod pipeline;
mod slots;

pub use checkpoint::Checkpoint;
pub use checks::{Expectations, hash_storage};
pub use metadata::{Metadata, read_metadata};
pub use pipeline::IN_FLIGHT;
pub use slots::{Slot, Slots};

use crate::error::{PayloadError, Result};
use crate::hashing_reader::HashingReader;
use crate::header::Limits;
use crate::keys::Keyring;
use crate::proto::ReleaseInfo;
use pipeline::{Done, Start};
use serde::Serialize;
use std::io::Read;

#[derive(Debug, Default, Clone)]
pub struct ApplyOptions {
    pub limits: Limits,
    /// Omaha `size`.
    pub expected_size: Option<u64>,
    /// Omaha `sha256` of the whole file.
    pub expected_sha256: Option<[u8; 32]>,
    pub expect: Expectations,
    /// Bytes of blobs and decompressed data the pipeline may hold at once;
    /// `None` is [`IN_FLIGHT`]. A daemon with a tight memory budget lowers
    /// it (the pipeline then overlaps less work).
    pub in_flight: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub bytes_read: u64,
    pub bytes_total: u64,
    pub ops_done: usize,
    pub ops_total: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub major: u64,
    pub minor: u32,
    pub release: Option<ReleaseInfo>,
    pub timestamp: Option<i64>,
    /// Partitions written, with their sizes.
    pub written: Vec<(String, u64)>,
    /// Partitions verified but not written (no slot, `skip_missing`).
    pub skipped: Vec<String>,
    pub metadata_signed_by: Option<String>,
    pub payload_signed_by: String,
    pub payload_size: u64,
    pub payload_sha256: String,
}

/// Apply a payload with default options. See [`Applier`] for the knobs.
pub fn apply<R: Read>(reader: R, slots: &mut Slots, keys: &Keyring) -> Result<ApplyReport> {
    Applier::new(keys).apply(reader, slots)
}

/// Verify a whole payload (signatures, every blob hash, size) without
/// writing anything.
pub fn verify<R: Read>(reader: R, keys: &Keyring, opts: ApplyOptions) -> Result<ApplyReport> {
    let mut slots = Slots::new();
    slots.skip_missing = true;
    Applier::new(keys).options(opts).apply(reader, &mut slots)
}

type CheckpointFn<'a> = Box<dyn FnMut(&Checkpoint) + Send + 'a>;
type ProgressFn<'a> = Box<dyn FnMut(Progress) + Send + 'a>;

/// Configurable applier; [`apply`] is `Applier::new(keys).apply(..)`.
pub struct Applier<'a> {
    keys: &'a Keyring,
    opts: ApplyOptions,
    on_checkpoint: Option<CheckpointFn<'a>>,
    on_progress: Option<ProgressFn<'a>>,
}

impl std::fmt::Debug for Applier<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Applier {{ opts: {:?} }}", self.opts)
    }
}

impl<'a> Applier<'a> {
    pub fn new(keys: &'a Keyring) -> Self {
        Applier {
            keys,
            opts: ApplyOptions::default(),
            on_checkpoint: None,
            on_progress: None,
        }
    }

    pub fn options(mut self, opts: ApplyOptions) -> Self {
        self.opts = opts;
        self
    }

    /// Called after each written operation, in order, from the pipeline's
    /// reporter thread (hence `Send`), even while the reader waits for data.
    pub fn on_checkpoint(mut self, f: impl FnMut(&Checkpoint) + Send + 'a) -> Self {
        self.on_checkpoint = Some(Box::new(f));
        self
    }

    /// Called with the progress after each written operation, from the same
    /// thread as [`Applier::on_checkpoint`].
    pub fn on_progress(mut self, f: impl FnMut(Progress) + Send + 'a) -> Self {
        self.on_progress = Some(Box::new(f));
        self
    }

    pub fn apply<R: Read>(&mut self, reader: R, slots: &mut Slots) -> Result<ApplyReport> {
        self.keys.active()?;
        let mut r = HashingReader::new(reader);
        let meta = read_metadata(&mut r, Some(self.keys), &self.opts.limits)?;
        self.run(&mut r, &meta, slots, 0, 0)
    }

    /// Continue after `checkpoint`: `metadata` yields the payload's first
    /// `checkpoint.data_start` bytes again (they are re-verified), `rest`
    /// yields the payload from `checkpoint.resume_offset()` on.
    pub fn resume<M: Read, R: Read>(
        &mut self,
        metadata: M,
        rest: R,
        slots: &mut Slots,
        checkpoint: &Checkpoint,
    ) -> Result<ApplyReport> {
        self.keys.active()?;
        let mut mr = HashingReader::new(metadata);
        let meta = read_metadata(&mut mr, Some(self.keys), &self.opts.limits)?;
        let cp = checkpoint;
        cp.check_fits(&meta)?;
        let mut r = HashingReader::resume(
            rest,
            cp.resume_offset(),
            cp.file_hash.clone(),
            cp.signed_hash.clone(),
        );
        self.run(&mut r, &meta, slots, cp.next_op, cp.next_data_offset)
    }

    /// Everything after the metadata: checks before the first write, the
    /// operations from `start_op` (whose blob is at `start_data`), then the
    /// checks after the last write.
    fn run<R: Read>(
        &mut self,
        r: &mut HashingReader<R>,
        meta: &Metadata,
        slots: &mut Slots,
        start_op: usize,
        start_data: u64,
    ) -> Result<ApplyReport> {
        let plan = &meta.plan;
        let data_start = meta.header.data_start();
        let sig_size = plan.signatures_size.ok_or_else(|| {
            PayloadError::PayloadSignatureMissing("manifest has no signatures_offset/size".into())
        })?;
        let total = data_start + plan.total_data + sig_size;
        if let Some(expected) = self.opts.expected_size
            && expected != total
        {
            return Err(PayloadError::PayloadSizeMismatch {
                expected,
                actual: total,
            });
        }
        checks::check_release(&self.opts.expect, plan)?;
        let skipped = checks::check_slots(plan, slots)?;
        let ops_total = plan.op_count();
        let start = Start {
            op: start_op,
            data_offset: start_data,
            max_op_size: self.opts.limits.max_op_size,
            in_flight: self.opts.in_flight.unwrap_or(IN_FLIGHT),
        };
        pipeline::run_ops(r, plan, slots, start, |d| {
            self.done(d, data_start, meta, total, ops_total)
        })?;
        // Payload signature over header + manifest + blobs.
        let signed = r.signed_hash.digest();
        r.set_signed(false);
        let mut sig = Vec::new();
        r.read_vec(&mut sig, sig_size as usize, "payload signature")?;
        let payload_signed_by = checks::check_payload_signature(self.keys, &signed, &sig)?;
        if !r.at_eof()? {
            return Err(PayloadError::TrailingData { offset: r.offset() });
        }
        let file_hash = r.file_hash.digest();
        if let Some(expected) = self.opts.expected_sha256
            && expected != file_hash
        {
            return Err(PayloadError::PayloadHashMismatch {
                expected: hex::encode(expected),
                actual: hex::encode(file_hash),
            });
        }
        let written = checks::check_written(plan, slots)?;
        Ok(ApplyReport {
            major: plan.major,
            minor: plan.minor,
            release: plan.release.clone(),
            timestamp: plan.timestamp,
            written,
            skipped,
            metadata_signed_by: meta.metadata_signed_by.clone(),
            payload_signed_by,
            payload_size: r.offset(),
            payload_sha256: hex::encode(file_hash),
        })
    }

    /// Report a finished (written) operation: checkpoint and progress.
    fn done(&mut self, d: &Done, data_start: u64, meta: &Metadata, total: u64, ops_total: usize) {
        if let Some(cb) = self.on_checkpoint.as_mut() {
            cb(&Checkpoint {
                metadata_hash: hex::encode(meta.metadata_hash),
                data_start,
                next_op: d.index + 1,
                next_data_offset: d.next_data_offset,
                file_hash: d.file_hash.clone(),
                signed_hash: d.signed_hash.clone(),
            });
        }
        if let Some(cb) = self.on_progress.as_mut() {
            cb(Progress {
                bytes_read: d.offset,
                bytes_total: total,
                ops_done: d.index + 1,
                ops_total,
            });
        }
    }
}
