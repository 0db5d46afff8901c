//! The file form of the settings: every field optional, unknown fields
//! rejected, merged layer by layer (a later layer's value wins; a timer set
//! in one unit drops the other unit's earlier value).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::health::SlotVerdict;

/// A duration with its unit in the value: `"45s"`, `"500ms"`, `"1h 30m"`
/// (humantime's syntax), or a bare number of seconds. Every timer takes
/// this unit-less key; the older `_secs`/`_ms` keys stay readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Self(Duration::from_secs(s))),
            Raw::Text(t) => humantime::parse_duration(&t)
                .map(Self)
                .map_err(|e| serde::de::Error::custom(format!("{t:?} is not a duration ({e})"))),
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
        connect_timeout: Dur,
        /// `connect_timeout` in seconds.
        connect_timeout_secs: u64,
        /// Whole-request timeout for update checks and events.
        request_timeout: Dur,
        /// `request_timeout` in seconds.
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
        first_check: Dur,
        /// `first_check` in seconds.
        first_check_secs: u64,
        /// Fuzz range of the first check.
        first_check_fuzz: Dur,
        /// `first_check_fuzz` in seconds.
        first_check_fuzz_secs: u64,
        /// Base periodic interval.
        periodic: Dur,
        /// `periodic` in seconds.
        periodic_secs: u64,
        /// Fuzz range of the periodic interval.
        periodic_fuzz: Dur,
        /// `periodic_fuzz` in seconds.
        periodic_fuzz_secs: u64,
        /// Upper bound of the 500/503 backoff and of `PollInterval`.
        max_backoff: Dur,
        /// `max_backoff` in seconds.
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
        payload_backoff_fuzz: Dur,
        /// Fuzz range of the payload backoff.
        payload_backoff_fuzz_secs: u64,
        /// Delay before the daemon marks the booted slot good.
        mark_good_delay: Dur,
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
        /// Wait before a restart (update_engine: 20 s).
        retry_delay: Dur,
        /// Wait before a restart, in milliseconds (update_engine: 20 s).
        retry_delay_ms: u64,
        /// Abort when the speed stays below this many bytes/s…
        low_speed_limit: u64,
        /// Low-speed window (update_engine: 90 s).
        low_speed_time: Dur,
        /// …for this long (update_engine: 10 B/s for 90 s).
        low_speed_time_secs: u64,
        /// Take a `delta-<running version>.gz` package when the answer
        /// offers one (default true); the full payload is the fallback.
        deltas: bool,
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
        /// Flatcar's OEM directory (`oem-release`, `sysext/`,
        /// `bin/oem-postinst`).
        oem_dir: PathBuf,
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
        settle_timeout: Dur,
        /// Deadline for the boot to settle.
        settle_timeout_secs: u64,
        /// Units that must be active for a new slot to pass.
        required_units: Vec<String>,
        /// Units whose failure is only logged.
        wanted_units: Vec<String>,
        /// Deadline of each check executable.
        check_timeout: Dur,
        /// Deadline of each check executable.
        check_timeout_secs: u64,
        /// The `systemctl` command (tests substitute a stand-in).
        systemctl: Vec<String>,
        /// Reboot after a failed gate (default: `install.reboot_command`,
        /// else logind's Reboot).
        reboot_command: Vec<String>,
        /// At most this many gate reboots...
        max_reboots: u32,
        /// The window of `max_reboots`.
        reboot_window: Dur,
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
        self.omaha.drop_overridden_units(&other.omaha);
        self.omaha.merge(other.omaha);
        self.schedule.drop_overridden_units(&other.schedule);
        self.schedule.merge(other.schedule);
        self.download.drop_overridden_units(&other.download);
        self.download.merge(other.download);
        self.health.drop_overridden_units(&other.health);
        self.install.merge(other.install);
        self.state.merge(other.state);
        self.health.merge(other.health);
    }
}

/// Before `later` is merged in: a timer it sets in one form (`x`,
/// `x_secs`, `x_ms`) replaces this layer's value in every form, so a
/// drop-in in `/etc` can override `/usr/lib`'s `periodic_secs` with
/// `periodic = "30m"`.
macro_rules! forms {
    ($self:ident, $later:ident, $($f:ident)|+) => {
        if false $(|| $later.$f.is_some())+ {
            $($self.$f = None;)+
        }
    };
}

impl ScheduleFragment {
    fn drop_overridden_units(&mut self, later: &Self) {
        forms!(self, later, first_check | first_check_secs | first_check_ms);
        forms!(
            self,
            later,
            first_check_fuzz | first_check_fuzz_secs | first_check_fuzz_ms
        );
        forms!(self, later, periodic | periodic_secs | periodic_ms);
        forms!(
            self,
            later,
            periodic_fuzz | periodic_fuzz_secs | periodic_fuzz_ms
        );
        forms!(self, later, max_backoff | max_backoff_secs | max_backoff_ms);
        forms!(
            self,
            later,
            payload_backoff_fuzz | payload_backoff_fuzz_secs
        );
        forms!(self, later, mark_good_delay | mark_good_delay_secs);
    }
}

impl OmahaFragment {
    fn drop_overridden_units(&mut self, later: &Self) {
        forms!(self, later, connect_timeout | connect_timeout_secs);
        forms!(self, later, request_timeout | request_timeout_secs);
    }
}

impl DownloadFragment {
    fn drop_overridden_units(&mut self, later: &Self) {
        forms!(self, later, retry_delay | retry_delay_ms);
        forms!(self, later, low_speed_time | low_speed_time_secs);
    }
}

impl HealthFragment {
    fn drop_overridden_units(&mut self, later: &Self) {
        forms!(self, later, settle_timeout | settle_timeout_secs);
        forms!(self, later, check_timeout | check_timeout_secs);
        forms!(self, later, reboot_window | reboot_window_secs);
    }
}
