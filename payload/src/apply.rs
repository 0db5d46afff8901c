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
        let mut scratch = Scratch::default();
        let mut data_off = start_data;
        // Compressed REPLACE ops are decompressed in parallel, a small batch
        // at a time, and written in order; everything else runs inline.
        let mut batch: Vec<Pending> = Vec::new();
        let batch_max = 2 * rayon::current_num_threads().max(1);
        let limit = self.opts.limits.max_op_size;
        let bs = plan.block_size;
        for (pi, p) in plan.partitions.iter().enumerate() {
            for (k, op) in p.ops.iter().enumerate() {
                let index = p.first_op + k;
                if index < start_op {
                    continue;
                }
                let ty = OpType::try_from(op.r#type).unwrap_or(OpType::Replace);
                let len = op.data_length.unwrap_or(0);
                let has_data = !matches!(
                    ty,
                    OpType::Zero | OpType::Discard | OpType::SourceCopy | OpType::Move
                );
                let mut blob = Vec::new();
                if has_data {
                    if op.data_offset.unwrap_or(0) != data_off {
                        self.flush(&mut batch, plan, slots, data_start, meta, total, ops_total)?;
                        return Err(PayloadError::DataOffsetMismatch {
                            index,
                            partition: p.name.clone(),
                            found: op.data_offset.unwrap_or(0),
                            expected: data_off,
                        });
                    }
                    let at = r.offset();
                    if let Err(e) = r.read_vec(&mut blob, len as usize, "operation data") {
                        self.flush(&mut batch, plan, slots, data_start, meta, total, ops_total)?;
                        return Err(e);
                    }
                    if op.data_sha256_hash.as_deref() != Some(&sha256(&blob)[..]) {
                        self.flush(&mut batch, plan, slots, data_start, meta, total, ops_total)?;
                        return Err(PayloadError::OperationHashMismatch {
                            index,
                            partition: p.name.clone(),
                            offset: at,
                        });
                    }
                    data_off += len;
                }
                let dst_bytes: u64 = op
                    .dst_extents
                    .iter()
                    .map(|x| x.num().saturating_mul(bs))
                    .sum();
                let parallel = matches!(
                    ty,
                    OpType::ReplaceBz | OpType::ReplaceXz | OpType::ReplaceZstd
                ) && dst_bytes <= limit
                    && slots.map.contains_key(&p.name);
                let pending = Pending {
                    part: pi,
                    index,
                    ty,
                    blob,
                    next_data_offset: data_off,
                    file_hash: r.file_hash.clone(),
                    signed_hash: r.signed_hash.clone(),
                    offset: r.offset(),
                };
                if parallel {
                    batch.push(pending);
                    if batch.len() >= batch_max {
                        self.flush(&mut batch, plan, slots, data_start, meta, total, ops_total)?;
                    }
                    continue;
                }
                self.flush(&mut batch, plan, slots, data_start, meta, total, ops_total)?;
                if let Some(slot) = slots.map.get_mut(&p.name) {
                    let source = slot.source.as_mut().map(|b| &mut **b as &mut dyn Storage);
                    ops::execute(
                        ty,
                        op,
                        &pending.blob,
                        bs,
                        slot.target.as_mut(),
                        source,
                        &mut scratch,
                    )
                    .map_err(|f| op_err(f, index, &p.name))?;
                }
                self.done(&pending, data_start, meta, total, ops_total);
            }
        }
        self.flush(&mut batch, plan, slots, data_start, meta, total, ops_total)?;
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

    /// Report a finished operation: checkpoint and progress.
    fn done(
        &mut self,
        p: &Pending,
        data_start: u64,
        meta: &Metadata,
        total: u64,
        ops_total: usize,
    ) {
        if let Some(cb) = self.on_checkpoint.as_mut() {
            cb(&Checkpoint {
                metadata_hash: hex::encode(meta.metadata_hash),
                data_start,
                next_op: p.index + 1,
                next_data_offset: p.next_data_offset,
                file_hash: p.file_hash.clone(),
                signed_hash: p.signed_hash.clone(),
            });
        }
        if let Some(cb) = self.on_progress.as_mut() {
            cb(Progress {
                bytes_read: p.offset,
                bytes_total: total,
                ops_done: p.index + 1,
                ops_total,
            });
        }
    }

    /// Decompress the batch in parallel, then write it in order; on the
    /// first failure, earlier ops are written and later ones are not.
    #[allow(clippy::too_many_arguments)]
    fn flush(
        &mut self,
        batch: &mut Vec<Pending>,
        plan: &Plan,
        slots: &mut Slots,
        data_start: u64,
        meta: &Metadata,
        total: u64,
        ops_total: usize,
    ) -> Result<()> {
        use rayon::prelude::*;
        if batch.is_empty() {
            return Ok(());
        }
        let bs = plan.block_size;
        let outs: Vec<_> = batch
            .par_iter()
            .map(|p| {
                let part = &plan.partitions[p.part];
                let op = &part.ops[p.index - part.first_op];
                let cap: u64 = op.dst_extents.iter().map(|x| x.num() * bs).sum();
                ops::decompress(p.ty, &p.blob, cap)
            })
            .collect();
        for (p, out) in std::mem::take(batch).into_iter().zip(outs) {
            let part = &plan.partitions[p.part];
            let op = &part.ops[p.index - part.first_op];
            let out = out.map_err(|f| op_err(f, p.index, &part.name))?;
            if let Some(slot) = slots.map.get_mut(&part.name) {
                ops::write_padded(&out, &op.dst_extents, bs, slot.target.as_mut())
                    .map_err(|f| op_err(f, p.index, &part.name))?;
            }
            self.done(&p, data_start, meta, total, ops_total);
        }
        Ok(())
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

/// An operation whose blob is verified and waiting in a parallel batch.
struct Pending {
    part: usize,
    index: usize,
    ty: OpType,
    blob: Vec<u8>,
    next_data_offset: u64,
    file_hash: ResumableSha256,
    signed_hash: ResumableSha256,
    offset: u64,
}

/// SHA-256 of `[0, len)` of a storage.
pub fn hash_storage(s: &mut dyn Storage, len: u64) -> std::io::Result<[u8; 32]> {
    let mut h = ResumableSha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        s.read_exact_at(&mut buf[..n], off)?;
        h.update(&buf[..n]);
        off += n as u64;
    }
    Ok(h.digest())
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
