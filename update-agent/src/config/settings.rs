//! The agent's own settings: TOML in three layers, zincati-style.
//!
//! 1. Fragments: every field optional, unknown fields rejected.
//! 2. Merged in order: `/usr/lib/update-agent/config.d/*.toml`,
//!    `/run/update-agent/config.d/*.toml`, `/etc/update-agent/config.toml`,
//!    `/etc/update-agent/config.d/*.toml` (files sorted by name within a
//!    directory; a drop-in masks one of the same name in an earlier
//!    directory, so an admin can override a vendor file; an empty file
//!    disables it).
//! 3. Validated [`Settings`] with defaults for a Flatcar node with no
//!    configuration at all. Validation has no side effects.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Root;
use super::health::HealthConfig;
use crate::prefs::Prefs;
use crate::schedule::ScheduleConfig;

/// Drop-in directories, lowest priority first.
pub const DROPIN_DIRS: [&str; 3] = [
    "/usr/lib/update-agent/config.d",
    "/run/update-agent/config.d",
    "/etc/update-agent/config.d",
];
/// The admin's main file, applied before `/etc` drop-ins.
pub const MAIN_FILE: &str = "/etc/update-agent/config.toml";

/// Why the settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A file or directory exists but cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file is not valid TOML or has unknown or mistyped fields.
    #[error("invalid configuration in {}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// The merged values are inconsistent.
    #[error("invalid setting {field}{}: {reason}", in_file(origin.as_deref()))]
    Invalid {
        /// The file that set the value (none when a default is involved).
        origin: Option<PathBuf>,
        /// `section.field`.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

fn in_file(origin: Option<&Path>) -> String {
    origin.map_or_else(String::new, |p| format!(" (set in {})", p.display()))
}

impl SettingsError {
    /// A stable, machine-readable name for the failure class.
    pub fn error_kind(&self) -> &'static str {
        match self {
            Self::Read { .. } => "settings_read",
            Self::Parse { .. } => "settings_parse",
            Self::Invalid { .. } => "settings_invalid",
        }
    }
}

pub use fragment::{
    DownloadFragment, Fragment, HealthFragment, InstallFragment, KeyDoc, MetricsFragment,
    OmahaFragment, SECTIONS, ScheduleFragment, StateFragment,
};

/// Validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Extra CA bundle (node path).
    pub ca_bundle: Option<PathBuf>,
    /// Connect timeout (update_engine: 30 s).
    pub connect_timeout: Duration,
    /// Whole-request timeout for Omaha POSTs.
    pub request_timeout: Duration,
    /// Check scheduling and backoff.
    pub schedule: ScheduleConfig,
    /// Bytes per second; `None` is unlimited.
    pub bandwidth_limit: Option<u64>,
    /// Restarts of an interrupted payload transfer.
    pub download_retries: u32,
    /// Wait before restarting a transfer.
    pub download_retry_delay: Duration,
    /// Low-speed abort threshold (bytes/s) …
    pub low_speed_limit: u64,
    /// … sustained for this long.
    pub low_speed_time: Duration,
    /// Take delta packages (`delta-<running version>.gz`).
    pub deltas: bool,
    /// Disk override.
    pub slot_device: Option<PathBuf>,
    /// The booted slot when `slot_device` is set.
    pub booted_slot: Option<cgpt::Slot>,
    /// Kernel directory on the ESP (node path).
    pub kernel_dir: PathBuf,
    /// Trusted payload keys.
    pub trusted_keys_dir: PathBuf,
    /// Flatcar's payload key file, also trusted when present; `None` when
    /// turned off.
    pub flatcar_payload_key: Option<PathBuf>,
    /// Accept downgrades.
    pub allow_downgrade: bool,
    /// Reboot command, `None` to leave rebooting to others.
    pub reboot_command: Option<Vec<String>>,
    /// Read-only mount of the new USR image (default `mount`).
    pub mount_command: Vec<String>,
    /// Its unmount (default `umount`).
    pub umount_command: Vec<String>,
    /// Flatcar's OEM directory (node path; `/usr/share/oem`, a link to
    /// `/oem` on current releases).
    pub oem_dir: PathBuf,
    /// State directory.
    pub state_dir: PathBuf,
    /// Reboot-pending marker.
    pub reboot_marker: PathBuf,
    /// The post-boot health gate.
    pub health: HealthConfig,
    /// The metrics socket (node path); `None`: no metrics.
    pub metrics_socket: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self::from_fragment(Fragment::default()).expect("defaults are valid")
    }
}

impl Settings {
    /// Default state directory (update_engine's, for prefs compatibility).
    pub const DEFAULT_STATE_DIR: &'static str = "/var/lib/update_engine";
    /// Default reboot marker (`/var/run` is `/run` on Flatcar).
    pub const DEFAULT_REBOOT_MARKER: &'static str = "/run/update_engine_autoupdate_completed";
    /// Default metrics socket, in a directory unprivileged scrapers may
    /// enter.
    pub const DEFAULT_METRICS_SOCKET: &'static str = "/run/update-agent/public/metrics.sock";
    /// Default kernel directory on the ESP.
    pub const DEFAULT_KERNEL_DIR: &'static str = "/boot/flatcar";
    /// Flatcar's OEM directory.
    pub const DEFAULT_OEM_DIR: &'static str = "/usr/share/oem";
    /// Default trusted key directory.
    pub const DEFAULT_TRUSTED_KEYS_DIR: &'static str = "/usr/share/update-agent/trusted-keys.d";
    /// Where Flatcar installs its payload key (and where admins bind-mount
    /// another one to switch update servers): trusted by default so a
    /// stock node keeps accepting Flatcar's payloads.
    pub const DEFAULT_FLATCAR_PAYLOAD_KEY: &'static str =
        "/usr/share/update_engine/update-payload-key.pub.pem";

    /// Applies defaults and validates (`validate.rs`).
    pub fn from_fragment(f: Fragment) -> Result<Self, SettingsError> {
        validate::settings(f)
    }

    /// Loads and validates the layered files under `root`.
    pub fn load(root: &Root) -> Result<Self, SettingsError> {
        Self::load_with(root, None)
    }

    /// Like [`Settings::load`], with `extra` (a host path, e.g. from
    /// `--config`) applied last.
    pub fn load_with(root: &Root, extra: Option<&Path>) -> Result<Self, SettingsError> {
        Layers::load(root, extra)?.settings()
    }

    /// The prefs store under `root`.
    pub fn prefs(&self, root: &Root) -> Prefs {
        Prefs::new(root.join(&self.state_dir).join("prefs"))
    }
}

/// The files to merge, in order (see the module docs).
pub fn config_files(root: &Root) -> Result<Vec<PathBuf>, SettingsError> {
    // name -> (layer, path); a later layer masks an earlier one.
    let mut dropins: Vec<BTreeMap<String, PathBuf>> = Vec::new();
    for dir in DROPIN_DIRS {
        dropins.push(list_toml(&root.join(dir))?);
    }
    for later in 1..dropins.len() {
        let names: Vec<String> = dropins[later].keys().cloned().collect();
        for earlier in dropins.iter_mut().take(later) {
            for name in &names {
                earlier.remove(name);
            }
        }
    }
    let mut files = Vec::new();
    let etc = dropins.pop().unwrap_or_default();
    for layer in dropins {
        files.extend(layer.into_values());
    }
    let main = root.join(MAIN_FILE);
    if main.exists() {
        files.push(main);
    }
    files.extend(etc.into_values());
    Ok(files)
}

fn list_toml(dir: &Path) -> Result<BTreeMap<String, PathBuf>, SettingsError> {
    let read_err = |source| SettingsError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(read_err(e)),
    };
    let mut out = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(read_err)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".toml") && !name.starts_with('.') {
            out.insert(name, entry.path());
        }
    }
    Ok(out)
}

mod fragment;
mod layers;
mod validate;

pub use layers::{Layers, Shown};

#[cfg(test)]
mod tests;
