//! The operations as a pipeline: the calling thread reads the blobs, workers
//! check and decompress them, one writer writes them in operation order.

use super::budget::{Budget, BufPool};
use super::slots::Slots;
use crate::error::{PayloadError, Result};
use crate::hashing_reader::HashingReader;
use crate::ops::{self, OpFailure, Scratch};
use crate::plan::Plan;
use crate::proto::OpType;
use crate::sha::{ResumableSha256, sha256};
use crate::storage::Storage;
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Mutex, mpsc};

/// Bytes of blobs and decompressed data the apply pipeline holds at once
/// (an operation bigger than this runs alone). With the blob buffers kept
/// for reuse, the pipeline's memory is about twice this, or two operations
/// of `Limits::max_op_size` when those are bigger.
pub const IN_FLIGHT: u64 = 16 << 20;

/// A written operation, reported to the thread that owns the callbacks.
pub(super) struct Done {
    pub(super) index: usize,
    pub(super) next_data_offset: u64,
    pub(super) file_hash: ResumableSha256,
    pub(super) signed_hash: ResumableSha256,
    pub(super) offset: u64,
}

/// Where a run starts (0, 0 for a fresh apply; a checkpoint's position on
/// resume) and the per-operation size cap.
pub(super) struct Start {
    pub(super) op: usize,
    pub(super) data_offset: u64,
    pub(super) max_op_size: u64,
    /// The in-flight byte budget ([`IN_FLIGHT`] unless the caller chose).
    pub(super) in_flight: u64,
}

/// Run the operations from `start.op` on, as a pipeline:
///
/// - this thread reads the blobs in order (the stream hashes are updated
///   as it reads) and queues them, as long as the bytes in flight stay
///   under the in-flight budget (`start.in_flight`, [`IN_FLIGHT`] by
///   default; or a single operation is in flight);
/// - decompression workers check each blob's SHA-256 and only then
///   decompress it (REPLACE_BZ/XZ/ZSTD) into memory, several at a time;
/// - one writer thread takes the results strictly in operation order
///   and writes them with positioned writes (delta operations run there,
///   with their source hash checks); after each write a reporter thread
///   gets the checkpoint (`on_done`), so a checkpoint never runs ahead of
///   the target, and never lags behind it while the reader waits.
///
/// The first failing operation (bad hash, bad data, I/O error) stops the
/// pipeline: operations before it are written, it and every later one
/// are not. A read error stops the reading; what was queued before it is
/// still written, as the sequential applier did.
pub(super) fn run_ops<R: Read>(
    r: &mut HashingReader<R>,
    plan: &Plan,
    slots: &mut Slots,
    start: Start,
    mut on_done: impl FnMut(&Done) + Send,
) -> Result<()> {
    let budget = &Budget::new(start.in_flight);
    let pool = &BufPool::new(start.in_flight / 2);
    let has_slot: Vec<bool> = plan
        .partitions
        .iter()
        .map(|p| slots.contains(&p.name))
        .collect();
    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let job_rx = &Mutex::new(job_rx);
    let (res_tx, res_rx) = mpsc::channel::<(Job, Result<Ready>)>();
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    std::thread::scope(|sc| {
        for _ in 0..worker_count() {
            let res_tx = res_tx.clone();
            sc.spawn(move || decompress_worker(job_rx, res_tx, plan, pool));
        }
        drop(res_tx);
        let writer = sc.spawn(move || {
            let res = write_in_order(res_rx, &done_tx, plan, slots, budget, pool);
            budget.close();
            res
        });
        // Written operations are reported on their own thread, as the
        // writer finishes them: a reader blocked on a stalled stream must
        // not hold back the checkpoint of what is already on disk.
        let reporter = sc.spawn(move || {
            for d in done_rx.iter() {
                on_done(&d);
            }
        });
        let feeder = Feeder {
            r,
            plan,
            has_slot: &has_slot,
            budget,
            pool,
            max_op_size: start.max_op_size,
            data_off: start.data_offset,
            seq: 0,
        };
        // Dropping the sender (when `feed` returns) lets the workers finish.
        let read = feeder.feed(start.op, job_tx);
        let written = writer.join().unwrap_or_else(|_| {
            Err(PayloadError::OperationFailed {
                index: 0,
                partition: String::new(),
                what: "the writer thread panicked".into(),
            })
        });
        // The writer is done, so the reporter's channel is closed: every
        // checkpoint is reported before this returns.
        if let Err(panic) = reporter.join() {
            std::panic::resume_unwind(panic);
        }
        written.and(read)
    })
}

/// Decompression workers: one per core, at most 16.
fn worker_count() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 16)
}

/// The reading end of the pipeline: reads each operation's blob in order and
/// queues it once the budget has room for it.
struct Feeder<'a, R> {
    r: &'a mut HashingReader<R>,
    plan: &'a Plan,
    /// Per partition: whether it is written (else only verified).
    has_slot: &'a [bool],
    budget: &'a Budget,
    pool: &'a BufPool,
    max_op_size: u64,
    /// Where the next blob must start in the data section.
    data_off: u64,
    /// The next job's position in this run.
    seq: usize,
}

impl<R: Read> Feeder<'_, R> {
    /// Queues the operations from `first_op` on; returns early (`Ok`) when the
    /// writer stopped, so its error is the one reported.
    fn feed(mut self, first_op: usize, jobs: mpsc::Sender<Job>) -> Result<()> {
        let plan = self.plan;
        for (pi, p) in plan.partitions.iter().enumerate() {
            for k in 0..p.ops.len() {
                if p.first_op + k < first_op {
                    continue;
                }
                let Some(job) = self.next_job(pi, k)? else {
                    return Ok(());
                };
                if jobs.send(job).is_err() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Operation `k` of partition `pi`: its data offset checked, its budget
    /// taken and its blob read. `None`: the writer stopped at a failing
    /// operation.
    fn next_job(&mut self, pi: usize, k: usize) -> Result<Option<Job>> {
        let plan = self.plan;
        let p = &plan.partitions[pi];
        let op = &p.ops[k];
        let index = p.first_op + k;
        let ty = OpType::try_from(op.r#type).unwrap_or(OpType::Replace);
        let len = op.data_length.unwrap_or(0);
        let has_data = !matches!(
            ty,
            OpType::Zero | OpType::Discard | OpType::SourceCopy | OpType::Move
        );
        if has_data && op.data_offset.unwrap_or(0) != self.data_off {
            return Err(PayloadError::DataOffsetMismatch {
                index,
                partition: p.name.clone(),
                found: op.data_offset.unwrap_or(0),
                expected: self.data_off,
            });
        }
        let dst_bytes: u64 = op
            .dst_extents
            .iter()
            .map(|x| x.num().saturating_mul(plan.block_size))
            .sum();
        let decompress = matches!(
            ty,
            OpType::ReplaceBz | OpType::ReplaceXz | OpType::ReplaceZstd
        ) && dst_bytes <= self.max_op_size
            && self.has_slot[pi];
        let cost = 4096 + if has_data { len } else { 0 } + if decompress { dst_bytes } else { 0 };
        if !self.budget.acquire(cost) {
            return Ok(None);
        }
        let at = self.r.offset();
        let mut blob = Vec::new();
        if has_data {
            blob = self.pool.take();
            if let Err(e) = self.r.read_vec(&mut blob, len as usize, "operation data") {
                self.budget.release(cost);
                return Err(e);
            }
            self.data_off += len;
        }
        let seq = self.seq;
        self.seq += 1;
        Ok(Some(Job {
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
                next_data_offset: self.data_off,
                file_hash: self.r.file_hash.clone(),
                signed_hash: self.r.signed_hash.clone(),
                offset: self.r.offset(),
            },
        }))
    }
}

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
            if let Some(slot) = slots.get_mut(&part.name) {
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
