//! The post-install duties of Flatcar's `flatcar-postinst` that do not need
//! the script (`flatcar-compat.md` §6.3): the cgroup-v1 refusal, the OEM
//! hook and `/run/reboot-required`. The image's own `postinst` is not run:
//! its other steps are the extension downloads (native here, see
//! `sysext`), the GPT bits (our commit point) and work-arounds for
//! versions older than this agent.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::Root;
use crate::slots::SlotPlan;

/// The cgroup v2 marker Flatcar's postinst tests.
pub const CGROUP_V2_MARKER: &str = "/sys/fs/cgroup/cgroup.controllers";
/// Read by kured and similar reboot managers.
pub const REBOOT_REQUIRED: &str = "/run/reboot-required";

/// A post-install duty failed (Flatcar's postinst exits non-zero: code 5).
#[derive(Debug, thiserror::Error)]
pub enum PostinstError {
    /// The host still runs cgroup v1, which new Flatcar releases cannot
    /// boot with.
    #[error(
        "the host runs cgroup v1 (no {CGROUP_V2_MARKER}); current releases boot only with cgroup v2"
    )]
    CgroupV1,
    /// The OEM hook could not run or failed.
    #[error("OEM hook {}: {reason}", hook.display())]
    Hook {
        /// The hook.
        hook: PathBuf,
        /// What happened.
        reason: String,
    },
}

/// Refuses on a cgroup-v1 host, before anything is downloaded (Flatcar
/// notices only in its postinst, after the whole download).
pub fn check_host(root: &Root) -> Result<(), PostinstError> {
    if root.join(CGROUP_V2_MARKER).exists() {
        Ok(())
    } else {
        Err(PostinstError::CgroupV1)
    }
}

/// Runs `hook SLOT MOUNT` when it exists and is executable, as Flatcar's
/// postinst runs `/usr/share/oem/bin/oem-postinst`.
pub fn run_oem_hook(hook: &Path, plan: &SlotPlan, usr: &Path) -> Result<(), PostinstError> {
    use std::os::unix::fs::PermissionsExt;
    let executable = hook
        .metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if !executable {
        return Ok(());
    }
    let fail = |reason: String| PostinstError::Hook {
        hook: hook.to_path_buf(),
        reason,
    };
    let slot = match plan.target {
        cgpt::Slot::A => "A",
        cgpt::Slot::B => "B",
    };
    tracing::info!("running the OEM hook {} {slot}", hook.display());
    let out = Command::new(hook)
        .arg(slot)
        .arg(usr)
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(format!(
            "exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Creates `/run/reboot-required` (failures are logged: the update is
/// staged either way).
pub fn note_reboot_required(root: &Root) {
    let path = root.join(REBOOT_REQUIRED);
    let made = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::File::create(&path).map(drop));
    if let Err(e) = made {
        tracing::warn!("cannot create {}: {e}", path.display());
    }
}

/// Removes it again when a staged update is reverted.
pub fn clear_reboot_required(root: &Root) {
    let _ = std::fs::remove_file(root.join(REBOOT_REQUIRED));
}
