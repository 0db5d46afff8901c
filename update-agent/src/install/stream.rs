//! The streaming step, as one chain of readers and writers:
//!
//! ```text
//! HTTP body (download::spawn: Range-resumable, size-capped, low-speed rule)
//!   → ChannelReader           blocking Read over the async body
//!   → Progress                DownloadProgress / DownloadComplete events
//!   → payload::Applier        signatures, hashes, decompression
//!   → Slots                   target partition + hidden partial kernel
//! ```
//!
//! Checkpoints go to the state directory so a restarted daemon resumes with
//! HTTP Range: it re-reads the signed metadata from byte 0 and the rest
//! from the checkpoint.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use payload::{
    Applier, ApplyOptions, ApplyReport, Checkpoint, Expectations, Keyring, PayloadError,
};
use serde::{Deserialize, Serialize};

use super::delta::PayloadChoice;
use super::sysext::OemDir;
use super::sysext::manifest::{self, Written};
use super::sysext::plan::{self, NodeFacts};
use super::{InstallError, InstallJob};
use crate::download::{self, ChannelReader, DownloadError, DownloadOptions, Source};
use crate::fsm::Event;
use crate::metrics::{ByteCounter, Image, Metrics};
use crate::slots::{PartitionStorage, SlotPlan};

/// The apply pipeline's in-flight budget in the daemon: half the payload
/// tool's default. On 1 GiB installs from 127.0.0.1 it kept the same wall
/// time (2.5-2.7 s) and lowered peak RSS from 55-66 MiB to 44-49 MiB
/// (`update-agent/bench/install.sh`), which leaves the daemon room under
/// its 64 MiB goal for the HTTP side and the final re-hash.
const APPLY_IN_FLIGHT: u64 = 8 << 20;
/// Progress events at most every this many bytes.
const PROGRESS_STEP: u64 = 256 * 1024;

/// Where the install reports its progress (the daemon's queue).
pub type Reporter<'a> = &'a (dyn Fn(Event) + Sync);

/// The network side of an install.
#[derive(Debug, Clone)]
pub struct Net {
    /// Runs the download tasks (the install itself is on a blocking thread).
    pub rt: tokio::runtime::Handle,
    /// The HTTP client.
    pub client: reqwest::Client,
    /// Set to abort.
    pub cancel: Arc<AtomicBool>,
    /// Received bytes are counted here.
    pub metrics: Metrics,
}

/// A checkpoint tied to the payload and the target slot it belongs to.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SavedCheckpoint {
    version: String,
    sha256: String,
    size: u64,
    target: String,
    checkpoint: Checkpoint,
}

impl SavedCheckpoint {
    fn new(
        job: &InstallJob,
        plan: &SlotPlan,
        payload: &PayloadChoice,
        checkpoint: Checkpoint,
    ) -> Self {
        Self {
            version: job.info.version.clone(),
            sha256: hex::encode(payload.sha256),
            size: payload.size,
            target: plan.target.label().to_string(),
            checkpoint,
        }
    }

    /// Whether this checkpoint belongs to `payload` (the full one or a
    /// delta) of `job`'s release and `plan`'s target slot.
    pub(super) fn is_for(
        &self,
        job: &InstallJob,
        plan: &SlotPlan,
        payload: &PayloadChoice,
    ) -> bool {
        self.sha256 == hex::encode(payload.sha256)
            && self.size == payload.size
            && self.version == job.info.version
            && self.target == plan.target.label()
    }
}

/// Everything the streaming step works with.
pub(super) struct Stream<'a> {
    pub(super) job: &'a InstallJob,
    pub(super) plan: &'a SlotPlan,
    pub(super) keys: &'a Keyring,
    pub(super) net: &'a Net,
    pub(super) report: Reporter<'a>,
    pub(super) checkpoint: &'a Path,
    pub(super) partial_kernel: &'a Path,
    /// What the node says of its extensions: which of the payload's own
    /// extension partitions are worth writing.
    pub(super) node: &'a NodeFacts,
    /// The payload this attempt streams (full, or a delta against the
    /// booted slot).
    pub(super) payload: &'a PayloadChoice,
    pub(super) oem: &'a OemDir,
}

impl Stream<'_> {
    /// Downloads and applies the payload, from `saved` when resuming;
    /// returns the extension partitions it wrote to hidden files.
    pub(super) fn apply(
        &self,
        saved: Option<SavedCheckpoint>,
    ) -> Result<(ApplyReport, Vec<Written>), InstallError> {
        let size = self.payload.size;
        let fresh = saved.is_none();
        let mut slots = self.open_slots(fresh)?;
        let mut applier = Applier::new(self.keys)
            .options(self.options())
            .on_checkpoint(self.checkpointer());
        let (result, written) = match saved {
            None => {
                let body = self.progress(self.download(0, size)?, 0);
                let (body, names) = manifest::peek_partitions(body)?;
                let written = self.extension_slots(&mut slots, &names, fresh)?;
                (applier.apply(body, &mut slots), written)
            }
            Some(saved) => {
                let cp = saved.checkpoint;
                let at = cp.resume_offset();
                tracing::info!("resuming the payload at byte {at}");
                let metadata = self.download(0, cp.data_start)?;
                let (metadata, names) = manifest::peek_partitions(metadata)?;
                let written = self.extension_slots(&mut slots, &names, fresh)?;
                let rest = self.progress(self.download(at, size)?, at);
                (applier.resume(metadata, rest, &mut slots, &cp), written)
            }
        };
        Ok((result.map_err(payload_error)?, written))
    }

    /// Adds a hidden file slot for each extension partition of the
    /// manifest (`names`) this node may need; lets the applier verify the
    /// other extension partitions without writing them. Any other unknown
    /// partition stays an error.
    fn extension_slots(
        &self,
        slots: &mut payload::Slots,
        names: &[String],
        fresh: bool,
    ) -> Result<Vec<Written>, InstallError> {
        let candidates = plan::manifest_candidates(self.node, names);
        let opened = manifest::open(
            &self.job.root,
            self.oem,
            &self.job.info.version,
            &candidates,
            fresh,
        )?;
        let mut written = Vec::new();
        for (w, file) in opened {
            let mut slot = payload::Slot::new(file);
            slot.truncate = true;
            slots.insert(w.wanted.stem(), slot);
            written.push(w);
        }
        slots.skip_missing = names
            .iter()
            .filter(|n| slots.get_mut(n.as_str()).is_none())
            .all(|n| plan::is_extension_partition(n));
        Ok(written)
    }

    /// `[start, end)` of the payload from the answer's URLs.
    fn download(&self, start: u64, end: u64) -> Result<ChannelReader, InstallError> {
        let p = self.payload;
        let counter = self.net.metrics.download_counter(Image::Usr, p.delta);
        Ok(download(
            self.net,
            self.job,
            (&p.urls, counter),
            p.size,
            start,
            end,
        ))
    }

    fn progress<R: Read>(&self, inner: R, pos: u64) -> Progress<'_, R> {
        Progress::new(inner, pos, self.report)
    }

    /// The target partition and the hidden partial kernel file.
    fn open_slots(&self, fresh: bool) -> Result<payload::Slots, InstallError> {
        let plan = self.plan;
        let usr = PartitionStorage::open(&plan.disk, plan.target_offset, plan.target_len).map_err(
            |source| InstallError::Target {
                disk: plan.disk.clone(),
                source,
            },
        )?;
        let kernel = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(fresh)
            .open(self.partial_kernel)
            .and_then(|f| {
                // The directory entry made durable: a checkpoint that
                // outlives a power cut is only used if this file does.
                let dir = self.partial_kernel.parent().unwrap_or(Path::new("."));
                File::open(dir).and_then(|d| d.sync_all())?;
                Ok(f)
            })
            .map_err(|source| InstallError::Kernel {
                path: self.partial_kernel.to_path_buf(),
                source,
            })?;
        let mut slots = payload::Slots::new();
        let mut uslot = payload::Slot::new(usr);
        let mut kslot = payload::Slot::new(kernel);
        kslot.truncate = true;
        if self.payload.delta {
            // The booted slot and kernel, read-only: the delta's source.
            let (offset, len) = plan.booted_extent;
            let source = PartitionStorage::open_ro(&plan.disk, offset, len).map_err(|source| {
                InstallError::Target {
                    disk: plan.disk.clone(),
                    source,
                }
            })?;
            uslot = uslot.with_source(source);
            let booted_kernel = plan.booted_kernel();
            let kernel = File::open(&booted_kernel).map_err(|source| InstallError::Kernel {
                path: booted_kernel,
                source,
            })?;
            kslot = kslot.with_source(kernel);
        }
        slots.insert("usr", uslot);
        slots.insert("kernel", kslot);
        Ok(slots)
    }

    fn options(&self) -> ApplyOptions {
        let info = &self.job.info;
        ApplyOptions {
            expected_size: Some(self.payload.size),
            expected_sha256: Some(self.payload.sha256),
            expect: Expectations {
                version: Some(info.version.clone()),
                board: Some(self.job.board.clone()).filter(|b| !b.is_empty()),
                // A full v1 payload is bound after the apply through the
                // image's release file; a delta must carry signed release
                // info naming the announced release.
                v1_unbound: !self.payload.delta,
                ..Expectations::default()
            },
            in_flight: Some(APPLY_IN_FLIGHT),
            ..ApplyOptions::default()
        }
    }

    /// Saves checkpoints, at most once a second, each after the bytes it
    /// covers are on disk: a checkpoint names operations as written, and
    /// after a power cut (not only a killed daemon) the resume must find
    /// them in the slot and the partial kernel, not in a lost page cache.
    fn checkpointer(&self) -> impl FnMut(&Checkpoint) + Send + 'static {
        let path = self.checkpoint.to_path_buf();
        let (job, plan, payload) = (self.job.clone(), self.plan.clone(), self.payload.clone());
        let written = [plan.disk.clone(), self.partial_kernel.to_path_buf()];
        // Opened at the first save and kept: fdatasync through a second
        // descriptor flushes the file's (or block device's) dirty pages
        // all the same.
        let mut synced_files: Vec<File> = Vec::new();
        let mut last_save: Option<Instant> = None;
        move |cp: &Checkpoint| {
            if last_save.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return;
            }
            last_save = Some(Instant::now());
            if synced_files.is_empty() {
                match written.iter().map(File::open).collect() {
                    Ok(files) => synced_files = files,
                    Err(e) => {
                        tracing::warn!("checkpoint not saved: cannot open the written data: {e}");
                        return;
                    }
                }
            }
            let synced = synced_files.iter().try_for_each(File::sync_data);
            if let Err(e) = synced {
                tracing::warn!("checkpoint not saved: cannot sync the written data: {e}");
                return;
            }
            let saved = SavedCheckpoint::new(&job, &plan, &payload, cp.clone());
            let written = serde_json::to_vec(&saved)
                .map_err(io::Error::other)
                .and_then(|json| crate::write_atomic(&path, &json, 0o600));
            if let Err(e) = written {
                tracing::warn!("cannot save checkpoint {}: {e}", path.display());
            }
        }
    }
}

/// `[start, end)` of a file of `size` bytes from `urls`, with the install's
/// client, credentials, download settings and cancel flag; the bytes
/// received are counted in `received`.
pub(super) fn download(
    net: &Net,
    job: &InstallJob,
    (urls, received): (&[String], ByteCounter),
    size: u64,
    start: u64,
    end: u64,
) -> ChannelReader {
    let source = Arc::new(Source {
        client: net.client.clone(),
        // The answer's URLs were checked when it was parsed.
        urls: urls
            .iter()
            .filter_map(|u| reqwest::Url::parse(u).ok())
            .collect(),
        credentials: job.credentials.clone(),
        size,
        received: Some(received),
    });
    let opts = DownloadOptions::from_settings(&job.settings);
    download::spawn(&net.rt, source, start, end, opts, net.cancel.clone())
}

/// A read error that came from the download is the download's (typed)
/// error; everything else is the payload's.
pub(super) fn payload_error(e: PayloadError) -> InstallError {
    match e {
        PayloadError::Read { offset, source } => match DownloadError::from_io(source) {
            Ok(download) => InstallError::Download(download),
            Err(source) => InstallError::Payload(Box::new(PayloadError::Read { offset, source })),
        },
        e => InstallError::Payload(Box::new(e)),
    }
}

/// Counts bytes read and reports the release's download progress to the
/// state machine (`pos` counts every image of the release, so the
/// extension images continue where USR ended).
pub(super) struct Progress<'a, R> {
    inner: R,
    pos: u64,
    last_sent: u64,
    report: Reporter<'a>,
}

impl<'a, R> Progress<'a, R> {
    /// Reports from `pos` on.
    pub(super) fn new(inner: R, pos: u64, report: Reporter<'a>) -> Self {
        Self {
            inner,
            pos,
            last_sent: pos,
            report,
        }
    }
}

impl<R: Read> Read for Progress<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        if self.pos - self.last_sent >= PROGRESS_STEP || (n == 0 && self.pos > self.last_sent) {
            self.last_sent = self.pos;
            (self.report)(Event::DownloadProgress { bytes: self.pos });
        }
        Ok(n)
    }
}

pub(super) fn load_checkpoint(path: &Path) -> Option<SavedCheckpoint> {
    let bytes = fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!("ignoring unreadable checkpoint {}: {e}", path.display());
            None
        }
    }
}
