//! The streaming step: the payload from the network ([`download`]) through
//! `payload::Applier` straight into the target partition and the partial
//! kernel file, with progress events and checkpoints for a resume with
//! HTTP Range.

use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use payload::{Applier, ApplyOptions, Checkpoint, Expectations, Keyring, PayloadError, Slots};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;

use super::{InstallError, InstallJob};

/// The apply pipeline's in-flight budget in the daemon: half the payload
/// tool's default. On 1 GiB installs from 127.0.0.1 it kept the same wall
/// time (2.5-2.7 s) and lowered peak RSS from 55-66 MiB to 44-49 MiB
/// (`update-agent/bench/install.sh`), which leaves the daemon room under
/// its 64 MiB goal for the HTTP side and the final re-hash.
const APPLY_IN_FLIGHT: u64 = 8 << 20;
use crate::download::{self, DownloadOptions, ErrorSlot, Source};
use crate::fsm::Event;
use crate::slots::{PartitionStorage, SlotPlan};

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SavedCheckpoint {
    version: String,
    sha256: String,
    size: u64,
    target: String,
    checkpoint: Checkpoint,
}

impl SavedCheckpoint {
    /// Whether this checkpoint belongs to `job`'s payload and `plan`'s
    /// target slot.
    pub(super) fn is_for(&self, job: &InstallJob, plan: &SlotPlan) -> bool {
        self.sha256 == hex::encode(job.info.postinstall.sha256)
            && self.size == job.info.payload.size
            && self.version == job.info.version
            && self.target == plan.target.label()
    }
}

/// Counts bytes read and reports progress to the state machine.
struct ProgressReader<R> {
    inner: R,
    pos: u64,
    total: u64,
    last_sent: u64,
    events: Option<UnboundedSender<Event>>,
    done: bool,
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        if let Some(tx) = &self.events {
            if self.pos - self.last_sent >= 256 * 1024 || (self.pos >= self.total && !self.done) {
                self.last_sent = self.pos;
                let _ = tx.send(Event::DownloadProgress { bytes: self.pos });
            }
            if self.pos >= self.total && !self.done {
                self.done = true;
                let _ = tx.send(Event::DownloadComplete);
            }
        }
        Ok(n)
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn apply(
    job: &InstallJob,
    rt: &tokio::runtime::Handle,
    client: reqwest::Client,
    events: &UnboundedSender<Event>,
    cancel: Arc<AtomicBool>,
    plan: &SlotPlan,
    keys: &Keyring,
    cp_path: &Path,
    partial: &Path,
    saved: Option<SavedCheckpoint>,
) -> Result<payload::ApplyReport, InstallError> {
    let s = &job.settings;
    let size = job.info.payload.size;
    let urls = job
        .info
        .payload_urls()
        .iter()
        .filter_map(|u| reqwest::Url::parse(u).ok())
        .collect();
    let source = Arc::new(Source {
        client,
        urls,
        credentials: job.credentials.clone(),
        size,
    });
    let opts = DownloadOptions {
        retries: s.download_retries,
        retry_delay: s.download_retry_delay,
        low_speed_limit: s.low_speed_limit,
        low_speed_time: s.low_speed_time,
        bandwidth_limit: s.bandwidth_limit,
    };
    let target_err = |source| InstallError::Target {
        disk: plan.disk.clone(),
        source,
    };
    let usr = PartitionStorage::open(&plan.disk, plan.target_offset, plan.target_len)
        .map_err(target_err)?;
    let kernel = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(saved.is_none())
        .open(partial)
        .map_err(|source| InstallError::Kernel {
            path: partial.to_path_buf(),
            source,
        })?;
    let mut slots = Slots::new();
    slots.insert("usr", payload::Slot::new(usr));
    let mut kslot = payload::Slot::new(kernel);
    kslot.truncate = true;
    slots.insert("kernel", kslot);

    let meta = SavedMeta {
        version: job.info.version.clone(),
        sha256: hex::encode(job.info.postinstall.sha256),
        size,
        target: plan.target.label().to_string(),
    };
    let mut last_save: Option<Instant> = None;
    let save = |cp: &Checkpoint| {
        if last_save.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        last_save = Some(Instant::now());
        let saved = SavedCheckpoint {
            version: meta.version.clone(),
            sha256: meta.sha256.clone(),
            size: meta.size,
            target: meta.target.clone(),
            checkpoint: cp.clone(),
        };
        match serde_json::to_vec(&saved) {
            Ok(json) => {
                if let Err(e) = crate::write_atomic(cp_path, &json, 0o600) {
                    tracing::warn!("cannot save checkpoint {}: {e}", cp_path.display());
                }
            }
            Err(e) => tracing::warn!("cannot encode checkpoint: {e}"),
        }
    };
    let options = ApplyOptions {
        expected_size: Some(size),
        expected_sha256: Some(job.info.postinstall.sha256),
        expect: Expectations {
            version: Some(job.info.version.clone()),
            board: Some(job.board.clone()).filter(|b| !b.is_empty()),
            // Bound after the apply through the image's release file.
            v1_unbound: true,
            ..Expectations::default()
        },
        in_flight: Some(APPLY_IN_FLIGHT),
        ..ApplyOptions::default()
    };
    let mut applier = Applier::new(keys).options(options).on_checkpoint(save);
    let mut slots_ref = slots;
    let (result, errors): (Result<_, PayloadError>, Vec<ErrorSlot>) = match saved {
        Some(saved) => {
            let cp = saved.checkpoint;
            tracing::info!("resuming the payload at byte {}", cp.resume_offset());
            let meta_reader = download::spawn(
                rt,
                source.clone(),
                0,
                cp.data_start,
                opts.clone(),
                cancel.clone(),
            );
            let rest = download::spawn(
                rt,
                source.clone(),
                cp.resume_offset(),
                size,
                opts.clone(),
                cancel.clone(),
            );
            let errors = vec![meta_reader.error_slot(), rest.error_slot()];
            let rest = ProgressReader {
                inner: rest,
                pos: cp.resume_offset(),
                total: size,
                last_sent: 0,
                events: Some(events.clone()),
                done: false,
            };
            let r = applier.resume(meta_reader, rest, &mut slots_ref, &cp);
            (r, errors)
        }
        None => {
            let reader = download::spawn(rt, source.clone(), 0, size, opts.clone(), cancel.clone());
            let errors = vec![reader.error_slot()];
            let reader = ProgressReader {
                inner: reader,
                pos: 0,
                total: size,
                last_sent: 0,
                events: Some(events.clone()),
                done: false,
            };
            (applier.apply(reader, &mut slots_ref), errors)
        }
    };
    result.map_err(|e| {
        // A read error is the download's: report the typed one.
        if matches!(e, PayloadError::Read { .. }) {
            for slot in &errors {
                if let Some(d) = slot.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    return InstallError::Download(d);
                }
            }
        }
        InstallError::Payload(Box::new(e))
    })
}

struct SavedMeta {
    version: String,
    sha256: String,
    size: u64,
    target: String,
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
