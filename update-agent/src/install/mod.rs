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
//! 5. the new USR image is mounted read-only when there is something to
//!    read in it (a v1 payload's release file, the OEM list and default
//!    extensions) and the OEM hook runs (`postinst`); the node's OEM and
//!    enabled extension images are fetched, verified and placed
//!    (`sysext`); the kernel file is fsynced and renamed over `vmlinuz-X`,
//!    the target synced;
//! 6. the commit point: `cgpt::slot::set_next` (S0 T1, prioritized);
//! 7. the reboot marker, then the prefs Flatcar's tools read
//!    (`previous-version`, `aleph-version`, `full-response`); if recording
//!    fails, the switch is undone (`commit.rs`); then older extension
//!    images are pruned and `/run/reboot-required` is created.
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
pub mod postinst;
mod stream;
pub mod sysext;

use omaha::{ErrorCode, UpdateInfo};
use payload::{Keyring, PayloadError};
use std::cell::Cell;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::config::Root;
use crate::config::settings::Settings;
use crate::download::DownloadError;
use crate::fsm::Event;
use crate::slots::{self, BootDiskError, SlotError, SlotPlan};
use image::ImageError;
use postinst::PostinstError;
use sysext::plan::{ImageFacts, NodeFacts, PlanError};
use sysext::{OemDir, Placed, SysextError};

pub use commit::revert_staged;
pub use policy::{PolicyRefusal, check_policy, compare_versions};
pub use stream::{Net, Reporter};

/// Logged once USR and every extension image are verified and placed,
/// before the kernel rename and the commit point.
pub const RELEASE_VERIFIED_LOG: &str = "release verified";
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
    #[error("trusted keys in {}", dir.display())]
    Keys {
        /// The directory.
        dir: PathBuf,
        /// The error.
        #[source]
        source: Box<PayloadError>,
    },
    /// A GPT attribute change failed.
    #[error("{step} on {}", disk.display())]
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
    #[error("payload rejected")]
    Payload(#[source] Box<PayloadError>),
    /// The target partition could not be opened or synced.
    #[error("target partition on {}", disk.display())]
    Target {
        /// The disk.
        disk: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Writing the kernel file failed.
    #[error("kernel file {}", path.display())]
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
    /// An extension package failed to download or verify.
    #[error("extension package {package}")]
    Extension {
        /// The package name.
        package: String,
        /// What went wrong (a download or payload error).
        #[source]
        source: Box<InstallError>,
    },
    /// The extension images could not be planned or placed.
    #[error(transparent)]
    Sysext(#[from] SysextError),
    /// A post-install duty failed.
    #[error(transparent)]
    Postinst(#[from] PostinstError),
    /// Prefs or state could not be written.
    #[error("state in {}", path.display())]
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
            Self::Extension { source, .. } => source.counts_against_payload(),
            Self::Sysext(SysextError::Plan(e)) => {
                matches!(e, PlanError::Missing { .. } | PlanError::Unhashed { .. })
            }
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
            Self::Payload(e) => e.error_code(),
            Self::Kernel { .. } | Self::NoSpace { .. } => ErrorCode::KernelDeviceOpenError,
            Self::Image(ImageError::NoRelease(_) | ImageError::Mismatch { .. }) => {
                ErrorCode::NewRootfsVerificationError
            }
            Self::Image(_) | Self::Sysext(_) | Self::Postinst(_) => {
                ErrorCode::PostinstallRunnerError
            }
            Self::Extension { source, .. } => source.error_code(),
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
            Self::Extension { source, .. } => source.error_kind(),
            Self::Sysext(SysextError::Plan(PlanError::Missing { .. })) => "sysext_missing",
            Self::Sysext(SysextError::Plan(PlanError::Unhashed { .. })) => "sysext_unhashed",
            Self::Sysext(SysextError::Plan(PlanError::BadName { .. })) => "sysext_name",
            Self::Sysext(SysextError::Read { .. }) => "sysext_read",
            Self::Sysext(SysextError::Place { .. }) => "sysext_place",
            Self::Postinst(PostinstError::CgroupV1) => "cgroup_v1",
            Self::Postinst(PostinstError::Hook { .. }) => "oem_postinst",
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

/// Runs the pipeline. Blocking: call it from `spawn_blocking`; `net.rt`
/// runs the download tasks. Reports `DownloadProgress`,
/// `DownloadComplete` and `Verified` through `report`; the caller sends
/// `InstallComplete` or `Failed`.
pub fn run(job: &InstallJob, net: &Net, report: Reporter<'_>) -> Result<SlotPlan, InstallError> {
    let s = &job.settings;
    postinst::check_host(&job.root)?;
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
    let files = Files::prepare(job, &plan)?;
    let saved = stream::load_checkpoint(&files.checkpoint)
        .filter(|c| c.is_for(job, &plan) && files.partial_kernel.exists());
    if saved.is_none() {
        files.discard();
    }
    // Before the first byte is written: the target must not boot.
    let mut disk = cgpt::FileDisk::open_rw(&plan.disk).map_err(|source| InstallError::Target {
        disk: plan.disk.clone(),
        source,
    })?;
    cgpt::slot::mark_unbootable(&mut disk, plan.target).map_err(|source| InstallError::Gpt {
        step: "marking the target unbootable",
        disk: plan.disk.clone(),
        source: Box::new(source),
    })?;
    drop(disk);
    let stream = stream::Stream {
        job,
        plan: &plan,
        keys: &keys,
        net,
        report,
        checkpoint: &files.checkpoint,
        partial_kernel: &files.partial_kernel,
    };
    // Any failure before the commit point leaves no checkpoint or partial
    // kernel behind (only a killed daemon does, to resume from).
    let release = stream.apply(saved).and_then(|report_| {
        tracing::info!(
            "payload verified: {} bytes, sha256 {}, signed by {}",
            report_.payload_size,
            report_.payload_sha256,
            report_.payload_signed_by
        );
        report(Event::DownloadProgress {
            bytes: job.info.payload.size,
        });
        let ctx = Finish {
            job,
            plan: &plan,
            files: &files,
            keys: &keys,
            net,
            report,
        };
        ctx.finish(report_.major)
    });
    let release = match release {
        Ok(r) => r,
        Err(e) => {
            files.discard();
            return Err(e);
        }
    };
    if let Err(e) = commit::commit(job, &plan, &files.checkpoint) {
        release.placed.undo();
        return Err(e);
    }
    sysext::prune(
        &job.root,
        &OemDir(s.oem_dir.clone()),
        &release.node,
        &release.image,
        &job.running_version,
        &job.info.version,
    );
    postinst::note_reboot_required(&job.root);
    Ok(plan)
}

/// The install's own files: the download checkpoint in the state
/// directory and the hidden partial kernel next to its final name.
struct Files {
    state_dir: PathBuf,
    checkpoint: PathBuf,
    partial_kernel: PathBuf,
}

impl Files {
    /// Creates the directories, removes a killed agent's mounts and
    /// checks the ESP's free space.
    fn prepare(job: &InstallJob, plan: &SlotPlan) -> Result<Self, InstallError> {
        let s = &job.settings;
        let state_dir = job.root.join(&s.state_dir);
        fs::create_dir_all(&state_dir).map_err(|source| InstallError::State {
            path: state_dir.clone(),
            source,
        })?;
        image::remove_stale_mounts(&state_dir, &s.umount_command);
        fs::create_dir_all(&plan.kernel_dir).map_err(|source| InstallError::Kernel {
            path: plan.kernel_dir.clone(),
            source,
        })?;
        kernel::check_space(plan)?;
        Ok(Self {
            checkpoint: state_dir.join(CHECKPOINT_FILE),
            partial_kernel: plan
                .kernel_dir
                .join(format!(".{}.partial", plan.target.kernel_name())),
            state_dir,
        })
    }

    fn discard(&self) {
        remove_quietly(&self.checkpoint);
        remove_quietly(&self.partial_kernel);
    }
}

/// What the release placed next to USR, and the facts it was planned on
/// (pruning after the commit uses them).
struct Release {
    node: NodeFacts,
    image: ImageFacts,
    placed: Placed,
}

/// The steps after USR verified, before the commit point.
struct Finish<'a> {
    job: &'a InstallJob,
    plan: &'a SlotPlan,
    files: &'a Files,
    keys: &'a Keyring,
    net: &'a Net,
    report: Reporter<'a>,
}

impl Finish<'_> {
    /// The new image checked and read, the extension images placed, the
    /// kernel in place, the slot synced.
    fn finish(&self, major: u64) -> Result<Release, InstallError> {
        let (job, plan, s) = (self.job, self.plan, &self.job.settings);
        let oem = OemDir(s.oem_dir.clone());
        let node = sysext::node_facts(&job.root, &oem)?;
        let image = self.inspect_image(major, &node, &oem)?;
        let chosen = sysext::plan::wanted(&node, &image)
            .and_then(|wanted| sysext::plan::choose(&wanted, &job.info.extra_packages))
            .map_err(SysextError::from)?;
        let extra: u64 = chosen.iter().map(|(_, p)| p.size).sum();
        if extra > 0 {
            (self.report)(Event::DownloadSize {
                bytes: job.info.payload.size + extra,
            });
        }
        let fetcher = sysext::Fetcher {
            job,
            keys: self.keys,
            net: self.net,
            report: self.report,
            oem,
            done: Cell::new(job.info.payload.size),
        };
        let placed = sysext::install(&fetcher, &chosen, &image)?;
        tracing::info!(
            "{RELEASE_VERIFIED_LOG}: USR and {} extension image(s)",
            placed.files.len()
        );
        (self.report)(Event::DownloadComplete);
        (self.report)(Event::Verified);
        let installed = kernel::install_kernel(
            &self.files.partial_kernel,
            &plan.target_kernel(),
            &plan.kernel_dir,
        )
        .and_then(|()| {
            // The USR image.
            File::open(&plan.disk)
                .and_then(|d| d.sync_all())
                .map_err(|source| InstallError::Target {
                    disk: plan.disk.clone(),
                    source,
                })
        });
        if let Err(e) = installed {
            placed.undo();
            return Err(e);
        }
        Ok(Release {
            node,
            image,
            placed,
        })
    }

    /// Mounts the new USR image read-only when there is something to read
    /// in it: a v1 payload's release file (v1 has no signed release info,
    /// `image.rs`), the OEM list and default extensions, or an OEM hook to
    /// run against it.
    fn inspect_image(
        &self,
        major: u64,
        node: &NodeFacts,
        oem: &OemDir,
    ) -> Result<ImageFacts, InstallError> {
        let (job, s) = (self.job, &self.job.settings);
        let hook = job.root.join(oem.hook());
        if major != 1 && !sysext::relevant(node, &job.info.extra_packages) && !hook.exists() {
            return Ok(ImageFacts::default());
        }
        let usr = image::ReadOnlyMount::target(
            self.plan,
            &s.mount_command,
            &s.umount_command,
            &self.files.state_dir,
        )?;
        if major == 1 {
            image::check_release(usr.path(), &job.info.version, &job.board)?;
            tracing::info!("the new USR image names {} itself", job.info.version);
        }
        let facts = sysext::image_facts(usr.path(), node.oem_id.as_deref())?;
        postinst::run_oem_hook(&hook, self.plan, usr.path())?;
        Ok(facts)
    }
}

fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!("cannot remove {}: {e}", path.display());
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
