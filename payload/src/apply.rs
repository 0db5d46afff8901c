//! The streaming apply pipeline: `payload::apply(reader, slots, keys)`.
//!
//! Order (v2): header → bounded manifest → metadata signature checked with
//! the keyring → only then the manifest is parsed and fully validated → per
//! operation: read its blob (capped), check its hash, check the source hash,
//! write → payload signature, size, whole-file hash → every written partition
//! re-hashed against `new_partition_info`. v1 (Flatcar) has no metadata
//! signature: its manifest is validated and every blob hash-checked before
//! writing, and the signature is checked at the end, as Flatcar does.

use crate::error::{PayloadError, Result};
use crate::hashing_reader::HashingReader;
use crate::header::{Header, Limits};
use crate::keys::{Keyring, SigCheck};
use crate::ops::{self, OpFailure, Scratch};
use crate::plan::Plan;
use crate::proto::{OpType, ReleaseInfo};
use crate::sha::{ResumableSha256, sha256};
use crate::storage::Storage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Condvar, Mutex, mpsc};

/// Where one partition of the payload goes.
pub struct Slot {
    pub target: Box<dyn Storage>,
    /// The old slot, for delta operations.
    pub source: Option<Box<dyn Storage>>,
    /// Shrink a regular-file target to the new size (kernel files).
    pub truncate: bool,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Slot {{ source: {}, truncate: {} }}",
            self.source.is_some(),
            self.truncate
        )
    }
}

impl Slot {
    pub fn new(target: impl Storage + 'static) -> Self {
        Slot {
            target: Box::new(target),
            source: None,
            truncate: false,
        }
    }
    pub fn with_source(mut self, source: impl Storage + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
}

/// Targets by partition name ("usr", "kernel", extra images).
#[derive(Debug, Default)]
pub struct Slots {
    map: BTreeMap<String, Slot>,
    /// Consume (and verify) but do not write partitions without a slot.
    pub skip_missing: bool,
}

impl Slots {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn insert(&mut self, name: impl Into<String>, slot: Slot) -> &mut Self {
        self.map.insert(name.into(), slot);
        self
    }
    pub fn take(&mut self, name: &str) -> Option<Slot> {
        self.map.remove(name)
    }
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Slot> {
        self.map.get_mut(name)
    }
}

/// What the engine binds to the Omaha answer; checked before any write.
#[derive(Debug, Default, Clone)]
pub struct Expectations {
    pub version: Option<String>,
    pub app_id: Option<String>,
    pub board: Option<String>,
    /// Downgrade protection: the payload's timestamp must be at least this.
    pub min_timestamp: Option<i64>,
}

#[derive(Debug, Default, Clone)]
pub struct ApplyOptions {
    pub limits: Limits,
    /// Omaha `size`.
    pub expected_size: Option<u64>,
    /// Omaha `sha256` of the whole file.
    pub expected_sha256: Option<[u8; 32]>,
    pub expect: Expectations,
}

/// Saved after every operation: enough to resume without re-reading the
/// bytes already applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Hex SHA-256 of the metadata; a resume must present the same payload.
    pub metadata_hash: String,
    /// Offset of the first blob in the file.
    pub data_start: u64,
    /// Global index of the next operation to run.
    pub next_op: usize,
    /// Blob offset (relative to `data_start`) of the next operation.
    pub next_data_offset: u64,
    pub file_hash: ResumableSha256,
    pub signed_hash: ResumableSha256,
}

impl Checkpoint {
    /// File offset to continue downloading from (HTTP `Range: bytes=N-`).
    pub fn resume_offset(&self) -> u64 {
        self.data_start + self.next_data_offset
    }
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

/// Parsed, authenticated (v2) metadata.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub header: Header,
    pub plan: Plan,
    pub metadata_hash: [u8; 32],
    pub metadata_signed_by: Option<String>,
}

/// Read header, manifest and metadata signature. With `keys`, the metadata
/// signature (v2) is verified before the manifest is parsed; without, the
/// manifest is parsed unverified (inspection only).
pub fn read_metadata<R: Read>(
    r: &mut HashingReader<R>,
    keys: Option<&Keyring>,
    limits: &Limits,
) -> Result<Metadata> {
    let mut prefix = [0u8; 20];
    r.read_exact_or(&mut prefix, "header")?;
    let mut header = Header::parse_prefix(&prefix, limits)?;
    if header.major == 2 {
        let mut s = [0u8; 4];
        r.read_exact_or(&mut s, "header")?;
        header.set_v2_signature_size(s, limits)?;
    }
    let mut manifest = Vec::new();
    r.read_vec(&mut manifest, header.manifest_size as usize, "manifest")?;
    let metadata_hash = r.signed_hash.digest();
    let mut metadata_signed_by = None;
    if header.major == 2 {
        r.set_signed(false);
        let mut sig = Vec::new();
        r.read_vec(
            &mut sig,
            header.metadata_signature_size as usize,
            "metadata signature",
        )?;
        r.set_signed(true);
        if let Some(keys) = keys {
            if sig.is_empty() {
                return Err(PayloadError::MetadataSignatureMissing);
            }
            metadata_signed_by = Some(keys.verify_blob(&metadata_hash, &sig).map_err(
                |e| match e {
                    SigCheck::Keyring(e) => e,
                    SigCheck::Parse(s) => PayloadError::MetadataSignatureParse(s),
                    SigCheck::Mismatch => PayloadError::MetadataSignatureMismatch,
                },
            )?);
        }
    }
    let plan = if header.major == 2 {
        Plan::from_v2(&manifest, limits)?
    } else {
        Plan::from_v1(&manifest, limits)?
    };
    Ok(Metadata {
        header,
        plan,
        metadata_hash,
        metadata_signed_by,
    })
}

/// Apply a payload with default options. See [`Applier`] for the knobs.
pub fn apply<R: Read>(reader: R, slots: &mut Slots, keys: &Keyring) -> Result<ApplyReport> {
    Applier::new(keys).apply(reader, slots)
}

/// Verify a whole payload (signatures, every blob hash, size) without
/// writing anything.
pub fn verify<R: Read>(reader: R, keys: &Keyring, opts: ApplyOptions) -> Result<ApplyReport> {
    let mut slots = Slots {
        skip_missing: true,
        ..Default::default()
    };
    Applier::new(keys).options(opts).apply(reader, &mut slots)
}

type CheckpointFn<'a> = Box<dyn FnMut(&Checkpoint) + 'a>;
type ProgressFn<'a> = Box<dyn FnMut(Progress) + 'a>;

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

    pub fn on_checkpoint(mut self, f: impl FnMut(&Checkpoint) + 'a) -> Self {
        self.on_checkpoint = Some(Box::new(f));
        self
    }

    pub fn on_progress(mut self, f: impl FnMut(Progress) + 'a) -> Self {
        self.on_progress = Some(Box::new(f));
        self
    }

    pub fn apply<R: Read>(&mut self, reader: R, slots: &mut Slots) -> Result<ApplyReport> {
        self.keys.active()?;
        let mut r = HashingReader::new(reader);
        let meta = read_metadata(&mut r, Some(self.keys), &self.opts.limits)?;
        self.run(&mut r, &meta, slots, 0)
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
        let bad = |s: &str| Err(PayloadError::CheckpointMismatch(s.into()));
        if hex::encode(meta.metadata_hash) != cp.metadata_hash {
            return bad("metadata hash differs");
        }
        if meta.header.data_start() != cp.data_start || cp.next_op > meta.plan.op_count() {
            return bad("offsets do not fit the manifest");
        }
        let signed_len = cp.next_data_offset.checked_add(meta.header.metadata_size());
        if !cp.file_hash.is_consistent()
            || !cp.signed_hash.is_consistent()
            || cp.file_hash.len() != cp.resume_offset()
            || Some(cp.signed_hash.len()) != signed_len
        {
            return bad("hasher states do not fit the offsets");
        }
        let mut r = HashingReader::resume(
            rest,
            cp.resume_offset(),
            cp.file_hash.clone(),
            cp.signed_hash.clone(),
        );
        self.run_checked(&mut r, &meta, slots, cp.next_op, cp.next_data_offset)
    }

    fn run<R: Read>(
        &mut self,
        r: &mut HashingReader<R>,
        meta: &Metadata,
        slots: &mut Slots,
        start: usize,
    ) -> Result<ApplyReport> {
        self.run_checked(r, meta, slots, start, 0)
    }

    fn run_checked<R: Read>(
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
        self.check_release(plan)?;
        // Every slot is found and sized before the first write.
        let mut skipped = Vec::new();
        for p in &plan.partitions {
            match slots.map.get_mut(&p.name) {
                None if slots.skip_missing => skipped.push(p.name.clone()),
                None => return Err(PayloadError::UnknownPartition(p.name.clone())),
                Some(slot) => {
                    let cap = slot
                        .target
                        .capacity()
                        .map_err(|e| target_err(&p.name, 0, e))?;
                    if cap.is_some_and(|c| c < p.new_size) {
                        return Err(PayloadError::InvalidManifest(format!(
                            "partition {}: target holds {} bytes, the image needs {}",
                            p.name,
                            cap.unwrap_or(0),
                            p.new_size
                        )));
                    }
                    if p.old.is_some() && slot.source.is_none() && p.ops.iter().any(needs_source) {
                        return Err(PayloadError::InvalidManifest(format!(
                            "partition {}: delta payload but no source slot given",
                            p.name
                        )));
                    }
                }
            }
        }
        let ops_total = plan.op_count();
        self.run_ops(r, meta, slots, start_op, start_data, total, ops_total)?;
        // Payload signature over header + manifest + blobs.
        let signed = r.signed_hash.digest();
        r.set_signed(false);
        let mut sig = Vec::new();
        r.read_vec(&mut sig, sig_size as usize, "payload signature")?;
        let payload_signed_by = self.keys.verify_blob(&signed, &sig).map_err(|e| match e {
            SigCheck::Keyring(e) => e,
            SigCheck::Parse(s) => PayloadError::PayloadSignatureInvalid(s),
            SigCheck::Mismatch => PayloadError::PayloadSignatureMismatch,
        })?;
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
        let mut written = Vec::new();
        for p in &plan.partitions {
            let Some(slot) = slots.map.get_mut(&p.name) else {
                continue;
            };
            if slot.truncate {
                slot.target
                    .truncate(p.new_size)
                    .map_err(|e| target_err(&p.name, p.new_size, e))?;
            }
            slot.target.sync().map_err(|e| target_err(&p.name, 0, e))?;
            if hash_storage(slot.target.as_mut(), p.new_size)
                .map_err(|e| target_err(&p.name, 0, e))?
                != p.new_hash
            {
                return Err(PayloadError::PartitionHashMismatch {
                    partition: p.name.clone(),
                });
            }
            written.push((p.name.clone(), p.new_size));
        }
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

    /// Run the operations from `start_op` on, as a pipeline:
    ///
    /// - this thread reads the blobs in order (the stream hashes are updated
    ///   as it reads) and queues them, as long as the bytes in flight stay
    ///   under [`IN_FLIGHT`] (or a single operation is in flight);
    /// - decompression workers check each blob's SHA-256 and only then
    ///   decompress it (REPLACE_BZ/XZ/ZSTD) into memory, several at a time;
    /// - one writer thread takes the results strictly in operation order
    ///   and writes them with positioned writes (delta operations run there,
    ///   with their source hash checks); after each write this thread gets
    ///   the checkpoint, so a checkpoint never runs ahead of the target.
    ///
    /// The first failing operation (bad hash, bad data, I/O error) stops the
    /// pipeline: operations before it are written, it and every later one
    /// are not. A read error stops the reading; what was queued before it is
    /// still written, as the sequential applier did.
    #[allow(clippy::too_many_arguments)]
    fn run_ops<R: Read>(
        &mut self,
        r: &mut HashingReader<R>,
        meta: &Metadata,
        slots: &mut Slots,
        start_op: usize,
        start_data: u64,
        total: u64,
        ops_total: usize,
    ) -> Result<()> {
        let plan = &meta.plan;
        let data_start = meta.header.data_start();
        let limit = self.opts.limits.max_op_size;
        let bs = plan.block_size;
        let budget = &Budget::new(IN_FLIGHT);
        let pool = &BufPool::new(IN_FLIGHT / 2);
        let has_slot: Vec<bool> = plan
            .partitions
            .iter()
            .map(|p| slots.map.contains_key(&p.name))
            .collect();
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let job_rx = &Mutex::new(job_rx);
        let (res_tx, res_rx) = mpsc::channel::<(Job, Result<Ready>)>();
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 16);
        std::thread::scope(|sc| {
            for _ in 0..workers {
                let res_tx = res_tx.clone();
                sc.spawn(move || decompress_worker(job_rx, res_tx, plan, pool));
            }
            drop(res_tx);
            let writer = sc.spawn(move || {
                let res = write_in_order(res_rx, &done_tx, plan, slots, budget, pool);
                budget.close();
                res
            });
            let mut data_off = start_data;
            let mut seq = 0usize;
            let read: Result<()> = 'ops: {
                for (pi, p) in plan.partitions.iter().enumerate() {
                    for (k, op) in p.ops.iter().enumerate() {
                        let index = p.first_op + k;
                        if index < start_op {
                            continue;
                        }
                        while let Ok(d) = done_rx.try_recv() {
                            self.done(&d, data_start, meta, total, ops_total);
                        }
                        let ty = OpType::try_from(op.r#type).unwrap_or(OpType::Replace);
                        let len = op.data_length.unwrap_or(0);
                        let has_data = !matches!(
                            ty,
                            OpType::Zero | OpType::Discard | OpType::SourceCopy | OpType::Move
                        );
                        if has_data && op.data_offset.unwrap_or(0) != data_off {
                            break 'ops Err(PayloadError::DataOffsetMismatch {
                                index,
                                partition: p.name.clone(),
                                found: op.data_offset.unwrap_or(0),
                                expected: data_off,
                            });
                        }
                        let dst_bytes: u64 = op
                            .dst_extents
                            .iter()
                            .map(|x| x.num().saturating_mul(bs))
                            .sum();
                        let decompress = matches!(
                            ty,
                            OpType::ReplaceBz | OpType::ReplaceXz | OpType::ReplaceZstd
                        ) && dst_bytes <= limit
                            && has_slot[pi];
                        let cost = 4096
                            + if has_data { len } else { 0 }
                            + if decompress { dst_bytes } else { 0 };
                        if !budget.acquire(cost) {
                            // The writer stopped at a failing operation.
                            break 'ops Ok(());
                        }
                        let at = r.offset();
                        let mut blob = Vec::new();
                        if has_data {
                            blob = pool.take();
                            if let Err(e) = r.read_vec(&mut blob, len as usize, "operation data") {
                                budget.release(cost);
                                break 'ops Err(e);
                            }
                            data_off += len;
                        }
                        let job = Job {
                            seq,
                            part: pi,
                            op: k,
                            ty,
                            has_data,
                            decompress,
                            blob,
                            at,
                            cost,
                            done: Done {
                                index,
                                next_data_offset: data_off,
                                file_hash: r.file_hash.clone(),
                                signed_hash: r.signed_hash.clone(),
                                offset: r.offset(),
                            },
                        };
                        seq += 1;
                        if job_tx.send(job).is_err() {
                            break 'ops Ok(());
                        }
                    }
                }
                Ok(())
            };
            drop(job_tx);
            for d in done_rx.iter() {
                self.done(&d, data_start, meta, total, ops_total);
            }
            let written = writer.join().unwrap_or_else(|_| {
                Err(PayloadError::OperationFailed {
                    index: 0,
                    partition: String::new(),
                    what: "the writer thread panicked".into(),
                })
            });
            written.and(read)
        })
    }

    fn check_release(&self, plan: &Plan) -> Result<()> {
        let e = &self.opts.expect;
        let rel = plan.release.clone().unwrap_or_default();
        for (what, want, got) in [
            ("version", &e.version, &rel.version),
            ("app id", &e.app_id, &rel.app_id),
            ("board", &e.board, &rel.board),
        ] {
            if let Some(want) = want
                && Some(want) != got.as_ref()
            {
                return Err(PayloadError::ReleaseMismatch(format!(
                    "{what} {:?} in the payload, {want:?} expected",
                    got.as_deref().unwrap_or("")
                )));
            }
        }
        if let Some(min) = e.min_timestamp
            && plan.timestamp.unwrap_or(i64::MIN) < min
        {
            return Err(PayloadError::ReleaseMismatch(format!(
                "payload timestamp {} is older than {min} (downgrade)",
                plan.timestamp.unwrap_or(0)
            )));
        }
        Ok(())
    }
}

fn needs_source(op: &crate::proto::InstallOperation) -> bool {
    matches!(
        OpType::try_from(op.r#type),
        Ok(OpType::SourceCopy | OpType::SourceBsdiff | OpType::BrotliBsdiff)
    )
}

/// Bytes of blobs and decompressed data the apply pipeline holds at once
/// (an operation bigger than this runs alone). With the blob buffers kept
/// for reuse, the pipeline's memory is about twice this, or two operations
/// of `Limits::max_op_size` when those are bigger.
pub const IN_FLIGHT: u64 = 16 << 20;

/// One operation on its way through the pipeline.
struct Job {
    /// Position in this run (the writer's order).
    seq: usize,
    part: usize,
    op: usize,
    ty: OpType,
    has_data: bool,
    /// Decompress on a worker (compressed REPLACE into a slot).
    decompress: bool,
    blob: Vec<u8>,
    /// File offset of the blob, for errors.
    at: u64,
    /// Budget taken, given back once written.
    cost: u64,
    done: Done,
}

/// A written operation, reported to the thread that owns the callbacks.
struct Done {
    index: usize,
    next_data_offset: u64,
    file_hash: ResumableSha256,
    signed_hash: ResumableSha256,
    offset: u64,
}

/// What a worker hands the writer.
enum Ready {
    /// Decompressed REPLACE data.
    Data(Vec<u8>),
    /// The verified blob, for an operation the writer runs itself.
    Blob,
}

/// Worker: blob hash first, then (for compressed REPLACE) decompression.
fn decompress_worker(
    jobs: &Mutex<mpsc::Receiver<Job>>,
    results: mpsc::Sender<(Job, Result<Ready>)>,
    plan: &Plan,
    pool: &BufPool,
) {
    let mut zstd_ctx = zstd::bulk::Decompressor::new().ok();
    loop {
        let job = match jobs.lock().map(|rx| rx.recv()) {
            Ok(Ok(job)) => job,
            _ => return,
        };
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            prepare(&job, plan, pool, zstd_ctx.as_mut())
        }))
        .unwrap_or_else(|_| {
            zstd_ctx = None;
            Err(op_err(
                OpFailure::Data("decoder panicked".into()),
                job.done.index,
                &plan.partitions[job.part].name,
            ))
        });
        if results.send((job, out)).is_err() {
            return;
        }
    }
}

fn prepare(
    job: &Job,
    plan: &Plan,
    pool: &BufPool,
    zstd_ctx: Option<&mut zstd::bulk::Decompressor<'static>>,
) -> Result<Ready> {
    let part = &plan.partitions[job.part];
    let op = &part.ops[job.op];
    if job.has_data && op.data_sha256_hash.as_deref() != Some(&sha256(&job.blob)[..]) {
        return Err(PayloadError::OperationHashMismatch {
            index: job.done.index,
            partition: part.name.clone(),
            offset: job.at,
        });
    }
    if !job.decompress {
        return Ok(Ready::Blob);
    }
    let cap: u64 = op
        .dst_extents
        .iter()
        .map(|x| x.num() * plan.block_size)
        .sum();
    let mut out = pool.take();
    match ops::decompress_into(job.ty, &job.blob, cap, &mut out, zstd_ctx) {
        Ok(()) => Ok(Ready::Data(out)),
        Err(f) => {
            pool.put(out);
            Err(op_err(f, job.done.index, &part.name))
        }
    }
}

/// Writer: results in operation order, written with positioned writes; stops
/// at the first failure.
fn write_in_order(
    results: mpsc::Receiver<(Job, Result<Ready>)>,
    done: &mpsc::Sender<Done>,
    plan: &Plan,
    slots: &mut Slots,
    budget: &Budget,
    pool: &BufPool,
) -> Result<()> {
    let bs = plan.block_size;
    let mut waiting: BTreeMap<usize, (Job, Result<Ready>)> = BTreeMap::new();
    let mut next = 0usize;
    let mut scratch = Scratch::default();
    for (job, out) in results.iter() {
        waiting.insert(job.seq, (job, out));
        while let Some((job, out)) = waiting.remove(&next) {
            next += 1;
            let part = &plan.partitions[job.part];
            let op = &part.ops[job.op];
            let ready = out?;
            if let Some(slot) = slots.map.get_mut(&part.name) {
                match &ready {
                    Ready::Data(d) => {
                        ops::write_padded(d, &op.dst_extents, bs, slot.target.as_mut())
                    }
                    Ready::Blob => {
                        let source = slot.source.as_mut().map(|b| &mut **b as &mut dyn Storage);
                        ops::execute(
                            job.ty,
                            op,
                            &job.blob,
                            bs,
                            slot.target.as_mut(),
                            source,
                            &mut scratch,
                        )
                    }
                }
                .map_err(|f| op_err(f, job.done.index, &part.name))?;
            }
            if let Ready::Data(d) = ready {
                pool.put(d);
            }
            pool.put(job.blob);
            budget.release(job.cost);
            let _ = done.send(job.done);
        }
    }
    Ok(())
}

/// Bytes in flight between the reader and the writer.
struct Budget {
    state: Mutex<(u64, bool)>,
    cv: Condvar,
    max: u64,
}

impl Budget {
    fn new(max: u64) -> Self {
        Budget {
            state: Mutex::new((0, false)),
            cv: Condvar::new(),
            max,
        }
    }

    /// Wait until `n` more bytes fit (always when nothing is in flight);
    /// false once the writer has stopped.
    fn acquire(&self, n: u64) -> bool {
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

    fn release(&self, n: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.0 = s.0.saturating_sub(n);
        }
        self.cv.notify_all();
    }

    fn close(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.1 = true;
        }
        self.cv.notify_all();
    }
}

/// Buffers for blobs and decompressed data, reused so that the pipeline
/// does not fault in fresh pages for every operation. Holds at most `max`
/// bytes of capacity.
struct BufPool {
    bufs: Mutex<(Vec<Vec<u8>>, u64)>,
    max: u64,
}

impl BufPool {
    fn new(max: u64) -> Self {
        BufPool {
            bufs: Mutex::new((Vec::new(), 0)),
            max,
        }
    }

    fn take(&self) -> Vec<u8> {
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

    fn put(&self, mut v: Vec<u8>) {
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

/// SHA-256 of `[0, len)` of a storage, read back from it. A helper thread
/// reads the next 4 MiB while this one hashes the last (two buffers).
pub fn hash_storage(s: &mut dyn Storage, len: u64) -> std::io::Result<[u8; 32]> {
    const CHUNK: u64 = 4 << 20;
    if len <= CHUNK {
        let mut buf = vec![0u8; len as usize];
        s.read_exact_at(&mut buf, 0)?;
        return Ok(sha256(&buf));
    }
    let (full_tx, full_rx) = mpsc::sync_channel::<std::io::Result<Vec<u8>>>(1);
    let (empty_tx, empty_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..2 {
        let _ = empty_tx.send(vec![0u8; CHUNK as usize]);
    }
    std::thread::scope(|sc| {
        sc.spawn(move || {
            let mut off = 0u64;
            while off < len {
                let Ok(mut buf) = empty_rx.recv() else {
                    return;
                };
                let n = (len - off).min(CHUNK) as usize;
                buf.resize(n, 0);
                let r = s.read_exact_at(&mut buf, off).map(|()| buf);
                let failed = r.is_err();
                if full_tx.send(r).is_err() || failed {
                    return;
                }
                off += n as u64;
            }
        });
        let mut h = ResumableSha256::new();
        let mut got = 0u64;
        while got < len {
            let buf = full_rx
                .recv()
                .map_err(|_| std::io::Error::other("read-back thread stopped"))??;
            h.update(&buf);
            got += buf.len() as u64;
            let _ = empty_tx.send(buf);
        }
        Ok(h.digest())
    })
}

fn target_err(partition: &str, offset: u64, source: std::io::Error) -> PayloadError {
    PayloadError::TargetIo {
        partition: partition.into(),
        offset,
        source,
    }
}

fn op_err(f: OpFailure, index: usize, partition: &str) -> PayloadError {
    let partition = partition.to_string();
    match f {
        OpFailure::SourceHash => PayloadError::SourceHashMismatch { index, partition },
        OpFailure::SourceIo(e) => PayloadError::OperationFailed {
            index,
            partition,
            what: format!("reading the source: {e}"),
        },
        OpFailure::TargetIo(offset, source) => PayloadError::TargetIo {
            partition,
            offset,
            source,
        },
        OpFailure::Data(what) => PayloadError::OperationFailed {
            index,
            partition,
            what,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_storage_reads_back_any_length() {
        let data: Vec<u8> = (0..(9 << 20) + 123u32).map(|i| (i % 251) as u8).collect();
        for len in [0usize, 1, 4 << 20, (4 << 20) + 1, data.len()] {
            let mut v = data.clone();
            assert_eq!(
                hash_storage(&mut v, len as u64).unwrap(),
                sha256(&data[..len])
            );
        }
        let mut short = vec![0u8; 5 << 20];
        assert!(hash_storage(&mut short, 9 << 20).is_err());
    }

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
