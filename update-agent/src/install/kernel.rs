//! The kernel on the ESP: room for it before the download, and the
//! partial file made durable and renamed over `vmlinuz-X` after it.

use std::fs;
use std::io;
use std::path::Path;

use super::InstallError;
use crate::fsutil;
use crate::slots::SlotPlan;

/// Gives the verified partial kernel its final name (see
/// [`fsutil::durable_rename`]).
pub(super) fn install_kernel(partial: &Path, kernel: &Path) -> Result<(), InstallError> {
    fsutil::durable_rename(partial, kernel).map_err(|e| InstallError::Kernel {
        path: e.path,
        source: e.source,
    })
}

/// The ESP must hold another kernel about the size of the running one.
pub(super) fn check_space(plan: &SlotPlan) -> Result<(), InstallError> {
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
