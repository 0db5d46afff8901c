//! The file form of the settings: every field optional, unknown fields
//! rejected, merged layer by layer (a later layer's value wins; a timer set
//! in one unit drops the other unit's earlier value).

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::health::SlotVerdict;

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
        slot_verdict: SlotVerdict,
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
