//! Why an install failed, with update_engine's code for the error event and
//! a stable kind for logs and `LastError`.

use std::io;
use std::path::PathBuf;

use omaha::ErrorCode;
use payload::PayloadError;

use super::image::ImageError;
use super::policy::PolicyRefusal;
use super::postinst::PostinstError;
use super::sysext::SysextError;
use super::sysext::plan::PlanError;
use crate::download::DownloadError;
use crate::slots::{BootDiskError, SlotError};

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
            Self::Refused(r) => r.error_kind(),
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
