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

use serde::Deserialize;

use super::Root;
use crate::fsutil;
use crate::health::HealthConfig;
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
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file is not valid TOML or has unknown or mistyped fields.
    #[error("invalid configuration in {}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// The merged values are inconsistent.
    #[error("invalid setting {field}: {reason}")]
    Invalid {
        /// `section.field`.
        field: &'static str,
        /// Why.
        reason: String,
    },
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

macro_rules! fragment {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name { $($(#[$fm])* pub $field: Option<$ty>,)* }

        impl $name {
            fn merge(&mut self, other: Self) {
                $(if other.$field.is_some() { self.$field = other.$field; })*
            }
        }
    };
}

fragment!(
    /// `[omaha]`
    OmahaFragment {
        /// Extra PEM CA bundle trusted besides the system roots.
        ca_bundle: PathBuf,
        /// TCP+TLS connect timeout.
        connect_timeout_secs: u64,
        /// Whole-request timeout for update checks and events.
        request_timeout_secs: u64,
    }
);

fragment!(
    /// `[schedule]`. The check timers also take milliseconds
    /// (`first_check_ms`, `first_check_fuzz_ms`, `periodic_ms`,
    /// `periodic_fuzz_ms`, `max_backoff_ms`), for tests and fast test
    /// fleets. A later layer's form replaces an earlier layer's other form;
    /// both forms of one timer in the same file are an error.
    ScheduleFragment {
        /// Periodic checks on/off (manual checks always work).
        enabled: bool,
        /// Base delay of the first check after start.
        first_check_secs: u64,
        /// Fuzz range of the first check.
        first_check_fuzz_secs: u64,
        /// Base periodic interval.
        periodic_secs: u64,
        /// Fuzz range of the periodic interval.
        periodic_fuzz_secs: u64,
        /// Upper bound of the 500/503 backoff and of `PollInterval`.
        max_backoff_secs: u64,
        /// `first_check_secs` in milliseconds.
        first_check_ms: u64,
        /// `first_check_fuzz_secs` in milliseconds.
        first_check_fuzz_ms: u64,
        /// `periodic_secs` in milliseconds.
        periodic_ms: u64,
        /// `periodic_fuzz_secs` in milliseconds.
        periodic_fuzz_ms: u64,
        /// `max_backoff_secs` in milliseconds.
        max_backoff_ms: u64,
        /// Payload backoff after failed attempts (unless the server
        /// disables it).
        payload_backoff: bool,
        /// Cap of the payload backoff, in days.
        payload_backoff_max_days: u64,
        /// Fuzz range of the payload backoff.
        payload_backoff_fuzz_secs: u64,
        /// Delay before marking the booted slot good.
        mark_good_delay_secs: u64,
    }
);

fragment!(
    /// `[download]`
    DownloadFragment {
        /// Bandwidth cap in bytes per second; 0 means unlimited.
        bandwidth_limit: u64,
        /// Restarts of an interrupted transfer (update_engine: 20).
        retries: u32,
        /// Wait before a restart, in milliseconds (update_engine: 20 s).
        retry_delay_ms: u64,
        /// Abort when the speed stays below this many bytes/s…
        low_speed_limit: u64,
        /// …for this long (update_engine: 10 B/s for 90 s).
        low_speed_time_secs: u64,
    }
);

fragment!(
    /// `[install]`
    InstallFragment {
        /// Use this disk (or disk image) instead of the one backing `/usr`.
        slot_device: PathBuf,
        /// With `slot_device`: the slot that is booted (`A` or `B`).
        booted_slot: String,
        /// Directory of `vmlinuz-a`/`vmlinuz-b` on the ESP.
        kernel_dir: PathBuf,
        /// Directory of trusted payload signing keys.
        trusted_keys_dir: PathBuf,
        /// Flatcar's payload key file, trusted too when it exists (an empty
        /// path turns it off).
        flatcar_payload_key: PathBuf,
        /// Accept an offered version lower than the running one.
        allow_downgrade: bool,
        /// Command to reboot after an update; unset leaves the reboot to
        /// locksmithd/FLUO as on Flatcar.
        reboot_command: Vec<String>,
        /// Mounts the new USR image read-only before the commit; called
        /// as `CMD -o ro,loop,offset=N,sizelimit=N DISK DIR`.
        mount_command: Vec<String>,
        /// Unmounts it: `CMD DIR`.
        umount_command: Vec<String>,
    }
);

fragment!(
    /// `[state]`
    StateFragment {
        /// State directory (prefs live in `<state_dir>/prefs`).
        state_dir: PathBuf,
        /// The reboot-pending marker (on tmpfs).
        reboot_marker: PathBuf,
    }
);

fragment!(
    /// `[health]`: the post-boot health gate (see [`crate::health`]).
    HealthFragment {
        /// Units whose activation means the boot settled.
        settle_units: Vec<String>,
        /// Deadline for the boot to settle.
        settle_timeout_secs: u64,
        /// Units that must be active for a new slot to pass.
        required_units: Vec<String>,
        /// Units whose failure is only logged.
        wanted_units: Vec<String>,
        /// Deadline of each check executable.
        check_timeout_secs: u64,
        /// The `systemctl` command (tests substitute a stand-in).
        systemctl: Vec<String>,
        /// Reboot after a failed gate (default: `install.reboot_command`,
        /// else logind's Reboot).
        reboot_command: Vec<String>,
        /// At most this many gate reboots...
        max_reboots: u32,
        /// ...within this many seconds.
        reboot_window_secs: u64,
        /// Who marks a booted slot good: `auto` (the gate when its unit is
        /// enabled, else the daemon), `gate`, or `daemon`.
        slot_verdict: crate::health::SlotVerdict,
        /// The gate's unit name, asked with `systemctl is-enabled`.
        gate_unit: String,
    }
);

/// One configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fragment {
    /// `[omaha]`
    #[serde(default)]
    pub omaha: OmahaFragment,
    /// `[schedule]`
    #[serde(default)]
    pub schedule: ScheduleFragment,
    /// `[download]`
    #[serde(default)]
    pub download: DownloadFragment,
    /// `[install]`
    #[serde(default)]
    pub install: InstallFragment,
    /// `[state]`
    #[serde(default)]
    pub state: StateFragment,
    /// `[health]`
    #[serde(default)]
    pub health: HealthFragment,
}

impl Fragment {
    /// Parses one file's text.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Overrides fields set in `other`.
    pub fn merge(&mut self, other: Self) {
        self.omaha.merge(other.omaha);
        self.schedule.drop_overridden_units(&other.schedule);
        self.schedule.merge(other.schedule);
        self.download.merge(other.download);
        self.install.merge(other.install);
        self.state.merge(other.state);
        self.health.merge(other.health);
    }
}

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
    /// State directory.
    pub state_dir: PathBuf,
    /// Reboot-pending marker.
    pub reboot_marker: PathBuf,
    /// The post-boot health gate.
    pub health: HealthConfig,
}

impl Default for Settings {
    fn default() -> Self {
        Self::from_fragment(Fragment::default()).expect("defaults are valid")
    }
}

impl ScheduleFragment {
    /// Before `later` is merged in: a timer it sets in one unit replaces
    /// this layer's value in the other unit, so a drop-in in `/etc` can
    /// override `/usr/lib`'s `periodic_secs` with `periodic_ms`.
    fn drop_overridden_units(&mut self, later: &Self) {
        macro_rules! pair {
            ($secs:ident, $ms:ident) => {
                if later.$secs.is_some() {
                    self.$ms = None;
                }
                if later.$ms.is_some() {
                    self.$secs = None;
                }
            };
        }
        pair!(first_check_secs, first_check_ms);
        pair!(first_check_fuzz_secs, first_check_fuzz_ms);
        pair!(periodic_secs, periodic_ms);
        pair!(periodic_fuzz_secs, periodic_fuzz_ms);
        pair!(max_backoff_secs, max_backoff_ms);
    }
}

fn secs(v: Option<u64>, default: Duration) -> Duration {
    v.map(Duration::from_secs).unwrap_or(default)
}

/// A timer given in seconds or in milliseconds (not both).
fn secs_or_ms(
    field: &'static str,
    secs_value: Option<u64>,
    ms_value: Option<u64>,
    default: Duration,
) -> Result<Duration, SettingsError> {
    match (secs_value, ms_value) {
        (Some(_), Some(_)) => Err(SettingsError::Invalid {
            field,
            reason: "set either the _secs or the _ms form, not both".into(),
        }),
        (Some(v), None) => Ok(Duration::from_secs(v)),
        (None, Some(v)) => Ok(Duration::from_millis(v)),
        (None, None) => Ok(default),
    }
}

fn absolute(field: &'static str, p: PathBuf) -> Result<PathBuf, SettingsError> {
    if p.is_absolute() {
        Ok(p)
    } else {
        Err(SettingsError::Invalid {
            field,
            reason: format!("{} is not an absolute path", p.display()),
        })
    }
}

fn nonzero(field: &'static str, d: Duration) -> Result<Duration, SettingsError> {
    if d.is_zero() {
        Err(SettingsError::Invalid {
            field,
            reason: "must be greater than 0".into(),
        })
    } else {
        Ok(d)
    }
}

fn command(
    field: &'static str,
    cmd: Option<Vec<String>>,
) -> Result<Option<Vec<String>>, SettingsError> {
    match cmd {
        Some(c) if c.is_empty() || c[0].is_empty() => Err(SettingsError::Invalid {
            field,
            reason: "must name a program".into(),
        }),
        other => Ok(other),
    }
}

fn health_config(
    h: HealthFragment,
    install_reboot: Option<&Vec<String>>,
) -> Result<HealthConfig, SettingsError> {
    let d = HealthConfig::default();
    let reboot_command = command("health.reboot_command", h.reboot_command)?
        .or_else(|| install_reboot.cloned())
        .unwrap_or(d.reboot_command);
    Ok(HealthConfig {
        settle_units: h.settle_units.unwrap_or(d.settle_units),
        settle_timeout_secs: h.settle_timeout_secs.unwrap_or(d.settle_timeout_secs),
        required_units: h.required_units.unwrap_or(d.required_units),
        wanted_units: h.wanted_units.unwrap_or(d.wanted_units),
        check_timeout_secs: nonzero(
            "health.check_timeout_secs",
            secs(
                h.check_timeout_secs,
                Duration::from_secs(d.check_timeout_secs),
            ),
        )?
        .as_secs(),
        systemctl: command("health.systemctl", h.systemctl)?.unwrap_or(d.systemctl),
        reboot_command,
        max_reboots: h.max_reboots.unwrap_or(d.max_reboots),
        reboot_window_secs: h.reboot_window_secs.unwrap_or(d.reboot_window_secs),
        poll_interval_ms: d.poll_interval_ms,
        slot_verdict: h.slot_verdict.unwrap_or(d.slot_verdict),
        gate_unit: h.gate_unit.unwrap_or(d.gate_unit),
    })
}

impl Settings {
    /// Default state directory (update_engine's, for prefs compatibility).
    pub const DEFAULT_STATE_DIR: &'static str = "/var/lib/update_engine";
    /// Default reboot marker (`/var/run` is `/run` on Flatcar).
    pub const DEFAULT_REBOOT_MARKER: &'static str = "/run/update_engine_autoupdate_completed";
    /// Default kernel directory on the ESP.
    pub const DEFAULT_KERNEL_DIR: &'static str = "/boot/flatcar";
    /// Default trusted key directory.
    pub const DEFAULT_TRUSTED_KEYS_DIR: &'static str = "/usr/share/update-agent/trusted-keys.d";
    /// Where Flatcar installs its payload key (and where admins bind-mount
    /// another one to switch update servers): trusted by default so a
    /// stock node keeps accepting Flatcar's payloads.
    pub const DEFAULT_FLATCAR_PAYLOAD_KEY: &'static str =
        "/usr/share/update_engine/update-payload-key.pub.pem";

    /// Loads and validates the layered files under `root`.
    pub fn load(root: &Root) -> Result<Self, SettingsError> {
        Self::load_with(root, None)
    }

    /// Like [`Settings::load`], with `extra` (a host path, e.g. from
    /// `--config`) applied last.
    pub fn load_with(root: &Root, extra: Option<&Path>) -> Result<Self, SettingsError> {
        let mut merged = Fragment::default();
        let mut files = config_files(root)?;
        files.extend(extra.map(Path::to_path_buf));
        for path in files {
            let text = fsutil::read_optional(&path)
                .map_err(|source| SettingsError::Read {
                    path: path.clone(),
                    source,
                })?
                .unwrap_or_default();
            let fragment = Fragment::parse(&text).map_err(|e| SettingsError::Parse {
                path: path.clone(),
                source: Box::new(e),
            })?;
            merged.merge(fragment);
        }
        Self::from_fragment(merged)
    }

    /// Applies defaults and validates.
    pub fn from_fragment(f: Fragment) -> Result<Self, SettingsError> {
        let d = ScheduleConfig::default();
        let s = f.schedule;
        let schedule = ScheduleConfig {
            enabled: s.enabled.unwrap_or(d.enabled),
            first_check: nonzero(
                "schedule.first_check_secs",
                secs_or_ms(
                    "schedule.first_check_secs",
                    s.first_check_secs,
                    s.first_check_ms,
                    d.first_check,
                )?,
            )?,
            first_check_fuzz: secs_or_ms(
                "schedule.first_check_fuzz_secs",
                s.first_check_fuzz_secs,
                s.first_check_fuzz_ms,
                d.first_check_fuzz,
            )?,
            periodic: nonzero(
                "schedule.periodic_secs",
                secs_or_ms(
                    "schedule.periodic_secs",
                    s.periodic_secs,
                    s.periodic_ms,
                    d.periodic,
                )?,
            )?,
            periodic_fuzz: secs_or_ms(
                "schedule.periodic_fuzz_secs",
                s.periodic_fuzz_secs,
                s.periodic_fuzz_ms,
                d.periodic_fuzz,
            )?,
            max_backoff: secs_or_ms(
                "schedule.max_backoff_secs",
                s.max_backoff_secs,
                s.max_backoff_ms,
                d.max_backoff,
            )?,
            payload_backoff: s.payload_backoff.unwrap_or(d.payload_backoff),
            payload_backoff_max_days: s
                .payload_backoff_max_days
                .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
                .unwrap_or(d.payload_backoff_max_days),
            payload_backoff_fuzz: secs(s.payload_backoff_fuzz_secs, d.payload_backoff_fuzz),
            mark_good_delay: secs(s.mark_good_delay_secs, d.mark_good_delay),
        };
        if schedule.max_backoff < schedule.periodic {
            return Err(SettingsError::Invalid {
                field: "schedule.max_backoff_secs",
                reason: format!(
                    "{:?} is shorter than schedule.periodic_secs ({:?})",
                    schedule.max_backoff, schedule.periodic
                ),
            });
        }
        let reboot_command = match f.install.reboot_command {
            Some(cmd) if cmd.is_empty() || cmd[0].is_empty() => {
                return Err(SettingsError::Invalid {
                    field: "install.reboot_command",
                    reason: "must name a program".into(),
                });
            }
            other => other,
        };
        let health = health_config(f.health, reboot_command.as_ref())?;
        Ok(Self {
            health,
            ca_bundle: f
                .omaha
                .ca_bundle
                .map(|p| absolute("omaha.ca_bundle", p))
                .transpose()?,
            connect_timeout: nonzero(
                "omaha.connect_timeout_secs",
                secs(f.omaha.connect_timeout_secs, Duration::from_secs(30)),
            )?,
            request_timeout: nonzero(
                "omaha.request_timeout_secs",
                secs(f.omaha.request_timeout_secs, Duration::from_secs(120)),
            )?,
            schedule,
            bandwidth_limit: f.download.bandwidth_limit.filter(|&b| b > 0),
            download_retries: f.download.retries.unwrap_or(20),
            download_retry_delay: Duration::from_millis(
                f.download.retry_delay_ms.unwrap_or(20_000),
            ),
            low_speed_limit: f.download.low_speed_limit.unwrap_or(10),
            low_speed_time: nonzero(
                "download.low_speed_time_secs",
                secs(f.download.low_speed_time_secs, Duration::from_secs(90)),
            )?,
            booted_slot: f
                .install
                .booted_slot
                .map(|s| {
                    s.parse::<cgpt::Slot>()
                        .map_err(|reason| SettingsError::Invalid {
                            field: "install.booted_slot",
                            reason,
                        })
                })
                .transpose()?,
            slot_device: f
                .install
                .slot_device
                .map(|p| absolute("install.slot_device", p))
                .transpose()?,
            kernel_dir: absolute(
                "install.kernel_dir",
                f.install
                    .kernel_dir
                    .unwrap_or_else(|| Self::DEFAULT_KERNEL_DIR.into()),
            )?,
            trusted_keys_dir: absolute(
                "install.trusted_keys_dir",
                f.install
                    .trusted_keys_dir
                    .unwrap_or_else(|| Self::DEFAULT_TRUSTED_KEYS_DIR.into()),
            )?,
            flatcar_payload_key: match f.install.flatcar_payload_key {
                Some(p) if p.as_os_str().is_empty() => None,
                p => Some(absolute(
                    "install.flatcar_payload_key",
                    p.unwrap_or_else(|| Self::DEFAULT_FLATCAR_PAYLOAD_KEY.into()),
                )?),
            },
            allow_downgrade: f.install.allow_downgrade.unwrap_or(false),
            reboot_command,
            mount_command: command("install.mount_command", f.install.mount_command)?
                .unwrap_or_else(|| vec!["mount".into()]),
            umount_command: command("install.umount_command", f.install.umount_command)?
                .unwrap_or_else(|| vec!["umount".into()]),
            state_dir: absolute(
                "state.state_dir",
                f.state
                    .state_dir
                    .unwrap_or_else(|| Self::DEFAULT_STATE_DIR.into()),
            )?,
            reboot_marker: absolute(
                "state.reboot_marker",
                f.state
                    .reboot_marker
                    .unwrap_or_else(|| Self::DEFAULT_REBOOT_MARKER.into()),
            )?,
        })
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

#[cfg(test)]
mod tests;
