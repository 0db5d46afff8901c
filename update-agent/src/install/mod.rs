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
pub mod delta;
mod error;
pub mod image;
mod kernel;
mod policy;
pub mod postinst;
mod stream;
pub mod sysext;

use omaha::UpdateInfo;
use payload::Keyring;
use std::cell::Cell;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::config::Root;
use crate::config::settings::Settings;
use crate::fsm::Event;
use crate::slots::{self, SlotPlan};
use delta::PayloadChoice;
use sysext::manifest::Written;
use sysext::plan::{ImageFacts, NodeFacts};
use sysext::{OemDir, Placed, SysextError};

pub use commit::revert_staged;
pub use error::InstallError;
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
    /// The flags of error events (a failed delta is reported from here).
    pub error_flags: omaha::ErrorFlags,
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
    let oem = OemDir(s.oem_dir.clone());
    let node = sysext::node_facts(&job.root, &oem)?;
    let files = Files::prepare(job, &plan, &oem)?;
    let full = PayloadChoice::full(&job.info);
    let first = first_choice(job, &full);
    let saved = stream::load_checkpoint(&files.checkpoint)
        .filter(|c| c.is_for(job, &plan, &first) && files.partial_kernel.exists());
    if saved.is_none() {
        files.discard();
    }
    // Before the first byte is written: the target must not boot.
    mark_target_unbootable(&plan)?;
    let stream = |payload| stream::Stream {
        job,
        plan: &plan,
        keys: &keys,
        net,
        report,
        checkpoint: &files.checkpoint,
        partial_kernel: &files.partial_kernel,
        node: &node,
        oem: &oem,
        payload,
    };
    // Any failure before the commit point leaves no checkpoint or partial
    // kernel behind (only a killed daemon does, to resume from).
    let mut applied = stream(&first).apply(saved).map(|r| (r, &first));
    if let Err(e) = &applied
        && first.delta
        && delta::falls_back(e)
    {
        fall_back_from_delta(job, &first, e, report);
        files.discard();
        applied = stream(&full).apply(None).map(|r| (r, &full));
    }
    let release = applied.and_then(|((applied, written), used)| {
        let ctx = Finish {
            job,
            plan: &plan,
            files: &files,
            keys: &keys,
            net,
            report,
            oem: &oem,
            payload_size: used.size,
        };
        ctx.verified(used, &applied, node, &written)
    });
    let release = match release {
        Ok(r) => r,
        Err(e) => {
            files.discard();
            return Err(e);
        }
    };
    commit_release(job, &plan, &files, &oem, release)?;
    Ok(plan)
}

/// The commit point; after it, the old extension images pruned and the
/// reboot noted. A failed commit takes the placed images back.
fn commit_release(
    job: &InstallJob,
    plan: &SlotPlan,
    files: &Files,
    oem: &OemDir,
    release: Release,
) -> Result<(), InstallError> {
    if let Err(e) = commit::commit(job, plan, &files.checkpoint) {
        release.placed.undo();
        return Err(e);
    }
    sysext::prune(
        &job.root,
        oem,
        &release.node,
        &release.image,
        &job.running_version,
        &job.info.version,
    );
    postinst::note_reboot_required(&job.root);
    Ok(())
}

/// The payload to stream first: `delta-<running>.gz` when the answer
/// offers it and deltas are on (and it did not fail before for this
/// version), else the full payload.
fn first_choice(job: &InstallJob, full: &PayloadChoice) -> PayloadChoice {
    let failed = job
        .settings
        .prefs(&job.root)
        .get(delta::FAILED_DELTAS_PREF)
        .ok()
        .flatten()
        .unwrap_or_default();
    let s = &job.settings;
    match delta::choose(&job.info, &job.running_version, s.deltas, &failed) {
        Some(p) => {
            let choice = PayloadChoice::delta(&job.info, p);
            tracing::info!(
                "taking {} ({} bytes) instead of the full payload ({} bytes)",
                choice.name,
                choice.size,
                full.size
            );
            choice
        }
        None => full.clone(),
    }
}

/// A delta failed: the same attempt goes on with the full payload, the
/// delta is not tried again for this version, and the server hears of the
/// failure (as update_engine's failed delta).
fn fall_back_from_delta(
    job: &InstallJob,
    delta: &PayloadChoice,
    e: &InstallError,
    report: Reporter<'_>,
) {
    tracing::warn!(
        "{} failed, going on with the full payload: {}",
        delta.name,
        crate::error_chain(e)
    );
    let prefs = job.settings.prefs(&job.root);
    let mut failed = prefs
        .get(delta::FAILED_DELTAS_PREF)
        .ok()
        .flatten()
        .unwrap_or_default();
    failed.push_str(&delta::failed_entry(
        &job.info.version,
        &job.running_version,
    ));
    failed.push('\n');
    if let Err(err) = prefs.set(delta::FAILED_DELTAS_PREF, &failed) {
        tracing::warn!(
            "cannot record the failed delta: {}",
            crate::error_chain(&err)
        );
    }
    report(Event::DeltaFailed {
        code: omaha::EventErrorCode::new(e.error_code(), job.error_flags),
        full_size: job.info.payload.size,
    });
}

/// The install's own files: the download checkpoint in the state
/// directory and the hidden partial kernel next to its final name.
struct Files {
    state_dir: PathBuf,
    checkpoint: PathBuf,
    partial_kernel: PathBuf,
    root: Root,
    oem: OemDir,
}

impl Files {
    /// Creates the directories, removes a killed agent's mounts and
    /// checks the ESP's free space.
    fn prepare(job: &InstallJob, plan: &SlotPlan, oem: &OemDir) -> Result<Self, InstallError> {
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
            root: job.root.clone(),
            oem: oem.clone(),
        })
    }

    fn discard(&self) {
        remove_quietly(&self.checkpoint);
        remove_quietly(&self.partial_kernel);
        sysext::remove_partials(&self.root, &self.oem);
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
    oem: &'a OemDir,
    /// Bytes of the payload streamed (full or delta): the extension
    /// images' progress goes on from here.
    payload_size: u64,
}

/// The boot disk, opened for a slot table write.
fn open_disk(plan: &SlotPlan) -> Result<cgpt::FileDisk, InstallError> {
    cgpt::FileDisk::open_rw(&plan.disk).map_err(|source| InstallError::Target {
        disk: plan.disk.clone(),
        source,
    })
}

/// Marks the target slot unbootable (priority 0, not successful).
fn mark_target_unbootable(plan: &SlotPlan) -> Result<(), InstallError> {
    cgpt::slot::mark_unbootable(&mut open_disk(plan)?, plan.target).map_err(|source| {
        InstallError::Gpt {
            step: "marking the target unbootable",
            disk: plan.disk.clone(),
            source: Box::new(source),
        }
    })?;
    Ok(())
}

impl Finish<'_> {
    /// `used` streamed and verified (`applied`): the rest of the release.
    fn verified(
        &self,
        used: &PayloadChoice,
        applied: &payload::ApplyReport,
        node: NodeFacts,
        written: &[Written],
    ) -> Result<Release, InstallError> {
        tracing::info!(
            "payload verified: {} {} bytes, sha256 {}, signed by {}",
            used.name,
            applied.payload_size,
            applied.payload_sha256,
            applied.payload_signed_by
        );
        (self.report)(Event::DownloadProgress { bytes: used.size });
        // The payload's own extension partitions, written or not: the new
        // image's defaults may need them.
        let carries = (applied.written.iter().map(|(n, _)| n))
            .chain(&applied.skipped)
            .any(|n| sysext::plan::is_extension_partition(n));
        self.finish(applied.major, node, written, carries)
    }

    /// The new image checked and read, the extension images placed, the
    /// kernel in place, the slot synced.
    fn finish(
        &self,
        major: u64,
        node: NodeFacts,
        written: &[Written],
        carries_extensions: bool,
    ) -> Result<Release, InstallError> {
        let job = self.job;
        let image = self.inspect_image(major, &node, carries_extensions)?;
        let wanted = sysext::plan::wanted(&node, &image).map_err(SysextError::from)?;
        let (from_payload, rest) = sysext::manifest::place(written, &wanted, &job.info.version)?;
        let chosen = match sysext::plan::choose(&rest, &job.info.extra_packages) {
            Ok(c) => c,
            Err(e) => {
                from_payload.undo();
                return Err(SysextError::from(e).into());
            }
        };
        let extra: u64 = chosen.iter().map(|(_, p)| p.size).sum();
        if extra > 0 {
            (self.report)(Event::DownloadSize {
                bytes: self.payload_size + extra,
            });
        }
        let fetcher = sysext::Fetcher {
            job,
            keys: self.keys,
            net: self.net,
            report: self.report,
            oem: self.oem.clone(),
            done: Cell::new(self.payload_size),
        };
        let oem_id = wanted
            .iter()
            .find(|w| w.kind == sysext::plan::Kind::Oem)
            .map(|w| w.name.as_str());
        let placed = sysext::install(&fetcher, &chosen, &image, from_payload, oem_id)?;
        tracing::info!(
            "{RELEASE_VERIFIED_LOG}: USR and {} extension image(s)",
            placed.files.len()
        );
        (self.report)(Event::DownloadComplete);
        (self.report)(Event::Verified);
        let plan = self.plan;
        let installed = kernel::install_kernel(&self.files.partial_kernel, &plan.target_kernel())
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
        carries_extensions: bool,
    ) -> Result<ImageFacts, InstallError> {
        let (job, s) = (self.job, &self.job.settings);
        let hook = job.root.join(self.oem.hook());
        let relevant = carries_extensions || sysext::relevant(node, &job.info.extra_packages);
        if major != 1 && !relevant && !hook.exists() {
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
