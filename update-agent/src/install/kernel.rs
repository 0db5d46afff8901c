//! The kernel on the ESP: room for it before the download, and the
//! partial file made durable and renamed over `vmlinuz-X` after it.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use super::InstallError;
use crate::slots::SlotPlan;

/// fsyncs `partial`, renames it over `kernel`, fsyncs the renamed file and
/// then `dir`.
pub(super) fn install_kernel(
    partial: &Path,
    kernel: &Path,
    dir: &Path,
) -> Result<(), InstallError> {
    let kernel_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InstallError::Kernel { path, source }
    };
    let f = File::open(partial).map_err(kernel_err(partial))?;
    f.sync_all().map_err(kernel_err(partial))?;
    fs::rename(partial, kernel).map_err(kernel_err(kernel))?;
    // vfat (the ESP) keeps a file's size in its directory entry, and a
    // rename writes a new entry that gets the size only when the inode is
    // written back: without this second fsync a power cut right after the
    // commit left a 0-byte vmlinuz-X behind a committed GPT (tests/vm).
    f.sync_all().map_err(kernel_err(kernel))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(kernel_err(dir))?;
    Ok(())
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
