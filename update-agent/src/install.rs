//! The install pipeline, run on a blocking thread by the daemon:
//!
//! 1. policies ([`check_policy`]): no downgrade unless allowed, nothing from
//!    the local deny list (run by the daemon before UPDATE_AVAILABLE);
//! 2. slots ([`slots::detect`]) and the trusted keyring;
//! 3. the target is made unbootable (P0 T0 S0) before its first byte is
//!    written;
//! 4. the payload streams from the network ([`download`]) through
//!    `payload::Applier` straight into the target partition, the kernel into
//!    a hidden `.vmlinuz-X.partial` next to `vmlinuz-X`; the applier binds the
//!    signed release metadata to the announced version and our board and
//!    checks the whole-file size and SHA-256 from the response;
//!    checkpoints go to the state directory so a restarted daemon resumes
//!    with HTTP Range;
//! 5. the kernel file is fsynced and renamed over `vmlinuz-X`, the target
//!    synced;
//! 6. the commit point: `cgpt::slot::set_next` (S0 T1, prioritized);
//! 7. prefs Flatcar's tools read (`previous-version`, `aleph-version`,
//!    `full-response`). The daemon then writes the reboot marker.
//!
//! Any failure before 6 leaves the target unbootable, the booted slot
//! untouched and no partial kernel behind; only a killed daemon leaves the
//! checkpoint and the partial kernel, which the next attempt at the same
//! payload resumes from.

use std::cmp::Ordering as CmpOrdering;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use omaha::{ErrorCode, UpdateInfo};
use payload::{Applier, ApplyOptions, Checkpoint, Expectations, Keyring, PayloadError, Slots};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;

use crate::config::Root;
use crate::config::settings::Settings;
use crate::denylist::Denied;
use crate::download::{self, DownloadError, DownloadOptions, ErrorSlot, Source};
use crate::fsm::Event;
use crate::prefs;
use crate::slots::{self, PartitionStorage, SlotError, SlotPlan};

/// Checkpoint file name in the state directory.
pub const CHECKPOINT_FILE: &str = "install-checkpoint.json";
/// Pref naming the version this agent last committed (for rollback
/// detection and the deny list).
pub const INSTALLED_VERSION_PREF: &str = "update-agent-installed-version";

/// Why an offered update is not installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyRefusal {
    /// Lower than the running version.
    #[error(
        "refusing downgrade from {running} to {offered} (set install.allow_downgrade = true to allow)"
    )]
    Downgrade {
        /// Offered.
        offered: String,
        /// Running.
        running: String,
    },
    /// On the local deny list.
    #[error(
        "version {version} is on the local deny list ({reason}); clear it with update_engine_client to allow it again"
    )]
    Denied {
        /// The version.
        version: String,
        /// Why it was denied.
        reason: String,
    },
}

/// Compares dotted versions numerically (`3510.10.0 > 3510.9.1`); a part
/// that is not a number compares as text; build metadata after `+` is
/// ignored.
pub fn compare_versions(a: &str, b: &str) -> CmpOrdering {
    let strip = |v: &str| v.split('+').next().unwrap_or("").to_string();
    let (a, b) = (strip(a), strip(b));
    let mut pa = a.split('.');
    let mut pb = b.split('.');
    loop {
        match (pa.next(), pb.next()) {
            (None, None) => return CmpOrdering::Equal,
            (Some(x), None) => {
                return if x.is_empty() {
                    CmpOrdering::Equal
                } else {
                    CmpOrdering::Greater
                };
            }
            (None, Some(y)) => {
                return if y.is_empty() {
                    CmpOrdering::Equal
                } else {
                    CmpOrdering::Less
                };
            }
            (Some(x), Some(y)) => {
                let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => x.cmp(y),
                };
                if ord != CmpOrdering::Equal {
                    return ord;
                }
            }
        }
    }
}

/// The local policies Flatcar lacks.
pub fn check_policy(
    offered: &str,
    running: &str,
    allow_downgrade: bool,
    denied: Option<&Denied>,
) -> Result<(), PolicyRefusal> {
    if let Some(d) = denied {
        return Err(PolicyRefusal::Denied {
            version: d.version.clone(),
            reason: d.reason.clone(),
        });
    }
    if !allow_downgrade
        && !running.is_empty()
        && compare_versions(offered, running) == CmpOrdering::Less
    {
        return Err(PolicyRefusal::Downgrade {
            offered: offered.into(),
            running: running.into(),
        });
    }
    Ok(())
}

/// A failed install.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A local policy refused the update.
    #[error(transparent)]
    Refused(#[from] PolicyRefusal),
    /// Booted/target slot not found.
    #[error(transparent)]
    Slots(#[from] SlotError),
    /// The trusted keyring could not be loaded.
    #[error("trusted keys in {}: {source}", dir.display())]
    Keys {
        /// The directory.
        dir: PathBuf,
        /// The error.
        #[source]
        source: Box<PayloadError>,
    },
    /// A GPT attribute change failed.
    #[error("{step} on {}: {source}", disk.display())]
    Gpt {
        /// What was being done.
        step: &'static str,
        /// The disk.
        disk: PathBuf,
        /// cgpt's error.
        #[source]
        source: Box<cgpt::Error>,
    },
    /// The download failed.
    #[error(transparent)]
    Download(#[from] DownloadError),
    /// The payload was rejected or could not be applied.
    #[error("payload: {0}")]
    Payload(#[source] Box<PayloadError>),
    /// The target partition could not be opened or synced.
    #[error("target partition on {}: {source}", disk.display())]
    Target {
        /// The disk.
        disk: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Writing the kernel file failed.
    #[error("kernel file {}: {source}", path.display())]
    Kernel {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Not enough room on the ESP.
    #[error("not enough space in {} for the kernel: need {need} bytes, {free} free", dir.display())]
    NoSpace {
        /// The kernel directory.
        dir: PathBuf,
        /// Bytes needed.
        need: u64,
        /// Bytes free.
        free: u64,
    },
    /// Prefs or state could not be written.
    #[error("state in {}: {source}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl InstallError {
    /// update_engine's code for the error event.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::Refused(_) => ErrorCode::OmahaUpdateIgnoredPerPolicy,
            Self::Slots(_) | Self::Target { .. } => ErrorCode::InstallDeviceOpenError,
            Self::Keys { .. } => ErrorCode::DownloadPayloadPubKeyVerificationError,
            Self::Gpt { .. } => ErrorCode::SetBootableFlagError,
            Self::Download(e) => e.error_code(),
            Self::Payload(e) => ErrorCode::from_code(e.flatcar_code()).unwrap_or(ErrorCode::Error),
            Self::Kernel { .. } | Self::NoSpace { .. } => ErrorCode::KernelDeviceOpenError,
            Self::State { .. } => ErrorCode::Error,
        }
    }

    /// A stable name for logs and `LastError`.
    pub fn error_kind(&self) -> &'static str {
        match self {
            Self::Refused(PolicyRefusal::Downgrade { .. }) => "downgrade_refused",
            Self::Refused(PolicyRefusal::Denied { .. }) => "deny_listed",
            Self::Slots(e) => e.error_kind(),
            Self::Keys { .. } => "keyring",
            Self::Gpt { .. } => "gpt_write",
            Self::Download(e) => e.error_kind(),
            Self::Payload(e) => e.error_kind(),
            Self::Target { .. } => "target_io",
            Self::Kernel { .. } => "kernel_write",
            Self::NoSpace { .. } => "esp_full",
            Self::State { .. } => "state_write",
        }
    }
}

/// Everything the pipeline needs.
#[derive(Debug, Clone)]
pub struct InstallJob {
    /// The node root.
    pub root: Root,
    /// Settings.
    pub settings: Settings,
    /// The accepted update.
    pub info: UpdateInfo,
    /// The raw response (pref `full-response`).
    pub response_body: Vec<u8>,
    /// The running version.
    pub running_version: String,
    /// Our board (`FLATCAR_RELEASE_BOARD`), bound to the payload's signed
    /// release metadata.
    pub board: String,
    /// `DOWNLOAD_USER`/`DOWNLOAD_PASSWORD`.
    pub credentials: Option<(String, String)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedCheckpoint {
    version: String,
    sha256: String,
    size: u64,
    target: String,
    checkpoint: Checkpoint,
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

/// Runs the pipeline. Blocking: call it from `spawn_blocking`; `rt` runs
/// the download tasks. Sends `DownloadProgress`, `DownloadComplete` and
/// `Verified` on `events`; the caller sends `InstallComplete` or `Failed`.
pub fn run(
    job: &InstallJob,
    rt: &tokio::runtime::Handle,
    client: reqwest::Client,
    events: &UnboundedSender<Event>,
    cancel: Arc<AtomicBool>,
) -> Result<SlotPlan, InstallError> {
    let s = &job.settings;
    let plan = slots::detect(&job.root, s)?;
    tracing::info!(
        "booted {} on {}; installing {} into {} ({} bytes at offset {})",
        plan.booted,
        plan.disk.display(),
        job.info.version,
        plan.target,
        plan.target_len,
        plan.target_offset
    );
    let keys_dir = job.root.join(&s.trusted_keys_dir);
    let keys = Keyring::load_dir(&keys_dir).map_err(|source| InstallError::Keys {
        dir: keys_dir.clone(),
        source: Box::new(source),
    })?;
    let state_dir = job.root.join(&s.state_dir);
    let cp_path = state_dir.join(CHECKPOINT_FILE);
    let partial = plan
        .kernel_dir
        .join(format!(".{}.partial", plan.target.kernel_name()));
    let state_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InstallError::State { path, source }
    };
    fs::create_dir_all(&state_dir).map_err(state_err(&state_dir))?;
    let kernel_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InstallError::Kernel { path, source }
    };
    fs::create_dir_all(&plan.kernel_dir).map_err(kernel_err(&plan.kernel_dir))?;
    check_space(&plan)?;

    let sha_hex = hex::encode(job.info.postinstall.sha256);
    let saved = load_checkpoint(&cp_path).filter(|c| {
        c.sha256 == sha_hex
            && c.size == job.info.payload.size
            && c.version == job.info.version
            && c.target == plan.target.label()
            && partial.exists()
    });
    if saved.is_none() {
        remove_quietly(&cp_path);
        remove_quietly(&partial);
    }

    // Before the first byte is written: the target must not boot.
    let gpt = |step: &'static str| {
        let disk = plan.disk.clone();
        move |source| InstallError::Gpt {
            step,
            disk,
            source: Box::new(source),
        }
    };
    let mut disk = cgpt::FileDisk::open_rw(&plan.disk).map_err(|source| InstallError::Target {
        disk: plan.disk.clone(),
        source,
    })?;
    cgpt::slot::mark_unbootable(&mut disk, plan.target)
        .map_err(gpt("marking the target unbootable"))?;
    drop(disk);

    let result = apply(
        job, rt, client, events, cancel, &plan, &keys, &cp_path, &partial, saved,
    );
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            remove_quietly(&cp_path);
            remove_quietly(&partial);
            return Err(e);
        }
    };
    tracing::info!(
        "payload verified: {} bytes, sha256 {}, signed by {}",
        report.payload_size,
        report.payload_sha256,
        report.payload_signed_by
    );
    let _ = events.send(Event::Verified);

    let finish = || -> Result<(), InstallError> {
        // The kernel: fsync, rename over vmlinuz-X, fsync the directory.
        let kernel = plan.target_kernel();
        let f = File::open(&partial).map_err(kernel_err(&partial))?;
        f.sync_all().map_err(kernel_err(&partial))?;
        fs::rename(&partial, &kernel).map_err(kernel_err(&kernel))?;
        File::open(&plan.kernel_dir)
            .and_then(|d| d.sync_all())
            .map_err(kernel_err(&plan.kernel_dir))?;
        // The USR image.
        File::open(&plan.disk)
            .and_then(|d| d.sync_all())
            .map_err(|source| InstallError::Target {
                disk: plan.disk.clone(),
                source,
            })?;
        Ok(())
    };
    if let Err(e) = finish() {
        remove_quietly(&cp_path);
        remove_quietly(&partial);
        return Err(e);
    }
    // The commit point.
    let mut disk = cgpt::FileDisk::open_rw(&plan.disk).map_err(|source| InstallError::Target {
        disk: plan.disk.clone(),
        source,
    })?;
    cgpt::slot::set_next(&mut disk, plan.target).map_err(gpt("switching to the new slot"))?;
    drop(disk);
    remove_quietly(&cp_path);
    // Staged from here on. The reboot marker goes before the prefs: a
    // daemon restarted (without a reboot) that finds `previous-version`
    // equal to the running version must also find the marker, or it takes
    // the staged update for a rollback and deny-lists it.
    let marker = job.root.join(&s.reboot_marker);
    if let Some(dir) = marker.parent() {
        fs::create_dir_all(dir).map_err(state_err(dir))?;
    }
    fs::write(&marker, b"").map_err(state_err(&marker))?;

    let prefs = s.prefs(&job.root);
    let pref_err = |key: &str| {
        let path = prefs.dir().join(key);
        move |source| InstallError::State { path, source }
    };
    prefs
        .set(prefs::PREVIOUS_VERSION, &job.running_version)
        .map_err(pref_err(prefs::PREVIOUS_VERSION))?;
    if prefs
        .get(prefs::ALEPH_VERSION)
        .ok()
        .flatten()
        .is_none_or(|v| v.is_empty())
        && !job.running_version.is_empty()
    {
        prefs
            .set(prefs::ALEPH_VERSION, &job.running_version)
            .map_err(pref_err(prefs::ALEPH_VERSION))?;
    }
    prefs
        .set(
            prefs::FULL_RESPONSE,
            &String::from_utf8_lossy(&job.response_body),
        )
        .map_err(pref_err(prefs::FULL_RESPONSE))?;
    prefs
        .set(INSTALLED_VERSION_PREF, &job.info.version)
        .map_err(pref_err(INSTALLED_VERSION_PREF))?;
    Ok(plan)
}

#[allow(clippy::too_many_arguments)]
fn apply(
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
            ..Expectations::default()
        },
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

fn load_checkpoint(path: &Path) -> Option<SavedCheckpoint> {
    let bytes = fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!("ignoring unreadable checkpoint {}: {e}", path.display());
            None
        }
    }
}

fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!("cannot remove {}: {e}", path.display());
        }
    }
}

/// The ESP must hold another kernel about the size of the running one.
fn check_space(plan: &SlotPlan) -> Result<(), InstallError> {
    let running = fs::metadata(plan.booted_kernel())
        .map(|m| m.len())
        .unwrap_or(0);
    let replaced = fs::metadata(plan.target_kernel())
        .map(|m| m.len())
        .unwrap_or(0);
    let need = running.saturating_sub(replaced);
    if need == 0 {
        return Ok(());
    }
    let st = nix::sys::statvfs::statvfs(&plan.kernel_dir).map_err(|e| InstallError::Kernel {
        path: plan.kernel_dir.clone(),
        source: io::Error::from(e),
    })?;
    let free = st.blocks_available() * st.fragment_size();
    if free < need {
        return Err(InstallError::NoSpace {
            dir: plan.kernel_dir.clone(),
            need,
            free,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_order() {
        use CmpOrdering::*;
        let rows = [
            ("3510.2.0", "3510.2.0", Equal),
            ("3510.10.0", "3510.9.1", Greater),
            ("3510.2", "3510.2.0", Less),
            ("3600.0.0", "3510.2.1", Greater),
            ("3510.2.0+dev", "3510.2.0", Equal),
            ("1.0.0", "1.0.0-beta", Less),
        ];
        for (a, b, want) in rows {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
        }
    }

    #[test]
    fn policy_table() {
        let denied = Denied {
            version: "3600.0.0".into(),
            since: 0,
            reason: "rolled back".into(),
        };
        type Row<'a> = (
            &'a str,
            &'a str,
            bool,
            Option<&'a Denied>,
            Result<(), &'a str>,
        );
        let rows: [Row; 5] = [
            ("3600.0.0", "3510.2.0", false, None, Ok(())),
            (
                "3400.0.0",
                "3510.2.0",
                false,
                None,
                Err(
                    "refusing downgrade from 3510.2.0 to 3400.0.0 (set install.allow_downgrade = true to allow)",
                ),
            ),
            ("3400.0.0", "3510.2.0", true, None, Ok(())),
            ("3510.2.0", "3510.2.0", false, None, Ok(())),
            (
                "3600.0.0",
                "3510.2.0",
                true,
                Some(&denied),
                Err(
                    "version 3600.0.0 is on the local deny list (rolled back); clear it with update_engine_client to allow it again",
                ),
            ),
        ];
        for (offered, running, allow, d, want) in rows {
            let got = check_policy(offered, running, allow, d).map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(String::from), "{offered} on {running}");
        }
        let e = InstallError::Refused(check_policy("1", "2", false, None).unwrap_err());
        assert_eq!(e.error_code(), ErrorCode::OmahaUpdateIgnoredPerPolicy);
        assert_eq!(e.error_kind(), "downgrade_refused");
    }
}
