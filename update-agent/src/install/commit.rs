//! The commit point and what follows it: the one GPT flag flip
//! (`cgpt::slot::set_next`), the reboot marker, and the prefs Flatcar's
//! tools read (`previous-version`, `aleph-version`, `full-response`) plus
//! the version this agent installed.

use std::fs;
use std::path::Path;

use super::{
    INSTALLED_BOOT_ID_PREF, INSTALLED_VERSION_PREF, InstallError, InstallJob, remove_quietly,
};
use crate::config::Root;
use crate::config::settings::Settings;
use crate::prefs;
use crate::slots::{self, SlotPlan};

/// Switches to the verified target, then records it. `cp_path` (the
/// download checkpoint) is removed once the switch is done.
pub(super) fn commit(
    job: &InstallJob,
    plan: &SlotPlan,
    cp_path: &Path,
) -> Result<(), InstallError> {
    let s = &job.settings;
    // The commit point.
    cgpt::slot::set_next(&mut super::open_disk(plan)?, plan.target).map_err(|source| {
        InstallError::Gpt {
            step: "switching to the new slot",
            disk: plan.disk.clone(),
            source: Box::new(source),
        }
    })?;
    remove_quietly(cp_path);
    let prefs = s.prefs(&job.root);
    let previous = prefs.get(prefs::PREVIOUS_VERSION).ok().flatten();
    if let Err(e) = record(job) {
        // A switched slot with no marker or prefs is a staged update the
        // daemon cannot account for (and would report as failed while the
        // next boot takes it): undo it, so a failure leaves the booted slot
        // as the next boot and the state as before, as every other failure
        // does.
        if let Err(revert) = revert_staged(&job.root, s, previous.as_deref().unwrap_or("")) {
            tracing::error!(
                "cannot undo the slot switch after {}: {}",
                crate::error_chain(&e),
                crate::error_chain(&revert)
            );
        }
        return Err(e);
    }
    Ok(())
}

/// Forgets a staged update: the target made unbootable again
/// ([`slots::BootDisk::revert_staged`]), the reboot marker removed, and what
/// marks the update as installed cleared (`previous-version` set back to
/// `previous`, the agent's installed-version and boot-id prefs deleted), so
/// the next check neither reports nor deny-lists a rollback. The one revert
/// path: ResetStatus and a failed commit.
pub fn revert_staged(root: &Root, s: &Settings, previous: &str) -> Result<(), InstallError> {
    let plan = slots::detect(root, s)?;
    plan.boot_disk().revert_staged()?;
    remove_quietly(&root.join(&s.reboot_marker));
    super::postinst::clear_reboot_required(root);
    let prefs = s.prefs(root);
    let state_err = |key: &str| {
        let path = prefs.dir().join(key);
        move |source| InstallError::State { path, source }
    };
    prefs
        .set(prefs::PREVIOUS_VERSION, previous)
        .map_err(state_err(prefs::PREVIOUS_VERSION))?;
    for key in [INSTALLED_VERSION_PREF, INSTALLED_BOOT_ID_PREF] {
        prefs.delete(key).map_err(state_err(key))?;
    }
    Ok(())
}

/// Records the staged update: the reboot marker, then the prefs.
fn record(job: &InstallJob) -> Result<(), InstallError> {
    let s = &job.settings;
    let state_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InstallError::State { path, source }
    };
    // The reboot marker goes before the prefs: a daemon restarted (without
    // a reboot) that finds `previous-version` equal to the running version
    // must also find the marker, or it takes the staged update for a
    // rollback and deny-lists it.
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
        .set(INSTALLED_BOOT_ID_PREF, &job.boot_id)
        .map_err(pref_err(INSTALLED_BOOT_ID_PREF))?;
    prefs
        .set(INSTALLED_VERSION_PREF, &job.info.version)
        .map_err(pref_err(INSTALLED_VERSION_PREF))?;
    Ok(())
}
