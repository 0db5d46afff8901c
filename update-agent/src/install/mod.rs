//! The install pipeline, run on a blocking thread by the daemon:
//!
//! 1. policies ([`check_policy`]): no downgrade unless allowed, nothing from
//!    the local deny list (run by the daemon before UPDATE_AVAILABLE);
//! 2. slots ([`slots::detect`]) and the trusted keyring;
//! 3. the target is made unbootable (P0 T0 S0) before its first byte is
//!    written;
//! 4. the payload streams from the network ([`crate::download`]) through
//!    `payload::Applier` straight into the target partition, the kernel into
//!    a hidden `.vmlinuz-X.partial` next to `vmlinuz-X`; the applier binds the
//!    signed release metadata to the announced version and our board and
//!    checks the whole-file size and SHA-256 from the response;
//!    checkpoints go to the state directory so a restarted daemon resumes
//!    with HTTP Range;
//! 5. the kernel file is fsynced and renamed over `vmlinuz-X`, the target
//!    synced;
//! 6. the commit point: `cgpt::slot::set_next` (S0 T1, prioritized);
//! 7. the reboot marker, then the prefs Flatcar's tools read
//!    (`previous-version`, `aleph-version`, `full-response`); if recording
//!    fails, the switch is undone (`commit.rs`).
//!
//! Any failure leaves the target unbootable, the booted slot untouched and
//! no partial kernel behind; only a killed daemon leaves the checkpoint and
//! the partial kernel, which the next attempt at the same payload resumes
//! from.

//!
//! The steps live in submodules: `policy` (1), `stream` (4: download,
//! apply, checkpoints), `kernel` (the ESP: space check and the kernel
//! file's fsync/rename) and `commit` (6 and 7).

mod commit;
pub mod image;
mod kernel;
mod policy;
mod stream;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use omaha::{ErrorCode, UpdateInfo};
use payload::{Keyring, PayloadError};
use tokio::sync::mpsc::UnboundedSender;

use crate::config::Root;
use crate::config::settings::Settings;
use crate::download::DownloadError;
use crate::fsm::Event;
use crate::slots::{self, BootDiskError, SlotError, SlotPlan};
use image::ImageError;

pub use commit::revert_staged;
pub use policy::{PolicyRefusal, check_policy, compare_versions};

/// Checkpoint file name in the state directory.
pub const CHECKPOINT_FILE: &str = "install-checkpoint.json";
/// Pref naming the version this agent last committed (for rollback
/// detection and the deny list).
pub const INSTALLED_VERSION_PREF: &str = "update-agent-installed-version";
/// Pref naming the boot id under which it was committed: a rollback is
/// inferred only after a reboot (`crate::decide::rolled_back_from`).
pub const INSTALLED_BOOT_ID_PREF: &str = "update-agent-installed-boot-id";

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
    /// Undoing a slot switch failed.
    #[error("cannot undo the slot switch")]
    Revert(#[from] BootDiskError),
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
    /// The written image could not be checked or names another release
    /// (CrAU v1 payloads, which carry no signed release info).
    #[error(transparent)]
    Image(#[from] ImageError),
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
    /// Whether the failure says something about the payload or the server
    /// that served it, so it moves the payload state (URL failures,
    /// attempts, backoff). Local trouble (keys, disk, kernel directory,
    /// state files, a policy refusal, a cancel) must not: once an admin
    /// fixes it, the next check installs instead of waiting out a backoff.
    pub fn counts_against_payload(&self) -> bool {
        match self {
            Self::Download(e) => !matches!(e, DownloadError::Cancelled),
            Self::Image(e) => matches!(e, ImageError::NoRelease(_) | ImageError::Mismatch { .. }),
            Self::Payload(e) => !matches!(
                **e,
                PayloadError::Keyring(_)
                    | PayloadError::TargetIo { .. }
                    | PayloadError::Io { .. }
                    | PayloadError::CheckpointMismatch(_)
            ),
            _ => false,
        }
    }

    /// update_engine's code for the error event.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::Refused(_) => ErrorCode::OmahaUpdateIgnoredPerPolicy,
            Self::Slots(_) | Self::Target { .. } => ErrorCode::InstallDeviceOpenError,
            Self::Keys { .. } => ErrorCode::DownloadPayloadPubKeyVerificationError,
            Self::Gpt { .. } | Self::Revert(_) => ErrorCode::SetBootableFlagError,
            Self::Download(e) => e.error_code(),
            Self::Payload(e) => ErrorCode::from_code(e.flatcar_code()).unwrap_or(ErrorCode::Error),
            Self::Kernel { .. } | Self::NoSpace { .. } => ErrorCode::KernelDeviceOpenError,
            Self::Image(ImageError::NoRelease(_) | ImageError::Mismatch { .. }) => {
                ErrorCode::NewRootfsVerificationError
            }
            Self::Image(_) => ErrorCode::PostinstallRunnerError,
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
            Self::Gpt { .. } | Self::Revert(_) => "gpt_write",
            Self::Download(e) => e.error_kind(),
            Self::Payload(e) => e.error_kind(),
            Self::Target { .. } => "target_io",
            Self::Kernel { .. } => "kernel_write",
            Self::NoSpace { .. } => "esp_full",
            Self::Image(ImageError::NoRelease(_) | ImageError::Mismatch { .. }) => {
                "image_release_mismatch"
            }
            Self::Image(_) => "image_mount",
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
    /// This boot's id, recorded with the commit.
    pub boot_id: String,
    /// `DOWNLOAD_USER`/`DOWNLOAD_PASSWORD`.
    pub credentials: Option<(String, String)>,
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
    let keys = load_keyring(job, s)?;
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
    image::remove_stale_mounts(&state_dir, &s.umount_command);
    let kernel_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InstallError::Kernel { path, source }
    };
    fs::create_dir_all(&plan.kernel_dir).map_err(kernel_err(&plan.kernel_dir))?;
    kernel::check_space(&plan)?;

    let saved =
        stream::load_checkpoint(&cp_path).filter(|c| c.is_for(job, &plan) && partial.exists());
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

    let result = stream::apply(
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
        if report.major == 1 {
            // v1 has no signed release info: bind the version through the
            // verified image's own release file (`image.rs`).
            let usr = image::ReadOnlyMount::target(
                &plan,
                &s.mount_command,
                &s.umount_command,
                &state_dir,
            )?;
            image::check_release(usr.path(), &job.info.version, &job.board)?;
            tracing::info!("the new USR image names {} itself", job.info.version);
        }
        kernel::install_kernel(&partial, &plan.target_kernel(), &plan.kernel_dir)?;
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
    commit::commit(job, &plan, &cp_path)?;
    Ok(plan)
}

fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!("cannot remove {}: {e}", path.display());
        }
    }
}

/// The trusted keys: the key directory plus Flatcar's payload key file
/// when it exists. Either may be missing, not both: an empty keyring is an
/// error, never "signature checks skipped" (what update_engine does when
/// its key file is absent).
fn load_keyring(job: &InstallJob, s: &Settings) -> Result<Keyring, InstallError> {
    let dir = job.root.join(&s.trusted_keys_dir);
    let flatcar_key = s
        .flatcar_payload_key
        .as_ref()
        .map(|f| job.root.join(f))
        .filter(|f| f.exists());
    let keys_err = |source| InstallError::Keys {
        dir: dir.clone(),
        source: Box::new(source),
    };
    let mut ring = match Keyring::load_dir(&dir) {
        Ok(ring) => ring,
        // A missing directory is fine on its own; `active` below refuses
        // an empty result.
        Err(_) if !dir.exists() => Keyring::new(),
        Err(e) => return Err(keys_err(e)),
    };
    if let Some(file) = &flatcar_key {
        ring.add_file(file).map_err(keys_err)?;
    }
    ring.active().map_err(keys_err)?;
    Ok(ring)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_payload_and_server_failures_move_the_payload_state() {
        let payload = |e| InstallError::Payload(Box::new(e));
        let counted = [
            InstallError::Download(DownloadError::NoUrls),
            payload(PayloadError::PayloadHashMismatch {
                expected: "a".into(),
                actual: "b".into(),
            }),
            payload(PayloadError::PayloadSignatureMismatch),
        ];
        for e in &counted {
            assert!(e.counts_against_payload(), "{e}");
        }
        let local = [
            InstallError::Download(DownloadError::Cancelled),
            InstallError::Keys {
                dir: "/k".into(),
                source: Box::new(PayloadError::Keyring("empty".into())),
            },
            payload(PayloadError::Keyring("empty".into())),
            payload(PayloadError::TargetIo {
                partition: "usr".into(),
                offset: 0,
                source: io::Error::other("EIO"),
            }),
            InstallError::State {
                path: "/s".into(),
                source: io::Error::other("ENOSPC"),
            },
        ];
        for e in &local {
            assert!(!e.counts_against_payload(), "{e}");
        }
    }
}
