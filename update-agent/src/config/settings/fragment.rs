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

/// One key of the settings files, as the reference
/// (`docs/configuration.md`) and `update-agent config show` present it.
/// Recorded by `fragment!` from the declaration itself, so it cannot drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDoc {
    /// The table, e.g. `schedule`.
    pub section: &'static str,
    /// The key within it, e.g. `periodic`.
    pub key: &'static str,
    /// The TOML type the key takes.
    pub ty: &'static str,
    /// The unit of a number, when the key's type does not say it.
    pub unit: Option<&'static str>,
    /// The default as TOML text; `None` when unset by default (the doc says
    /// what that means) or when the key is another form of a timer.
    pub default: Option<&'static str>,
    /// The doc comment, one line per `///` line.
    pub doc: &'static str,
}

/// The TOML type a settings field takes, in words.
pub trait TomlType {
    /// E.g. `integer`, `path`, `array of strings`.
    const NAME: &'static str;
}

macro_rules! toml_type {
    ($($ty:ty => $name:literal),* $(,)?) => {
        $(impl TomlType for $ty { const NAME: &'static str = $name; })*
    };
}

toml_type!(
    bool => "boolean",
    u32 => "integer",
    u64 => "integer",
    String => "string",
    PathBuf => "path (absolute, as on the node)",
    Vec<String> => "array of strings",
    Dur => "duration",
    SlotVerdict => "`\"auto\"`, `\"gate\"` or `\"daemon\"`",
);

macro_rules! opt {
    () => {
        None
    };
    ($v:expr) => {
        Some($v)
    };
}

/// Declares one `[section]` of the file form: every field optional, and
/// the section's [`KeyDoc`]s from the same lines. A field reads
/// `/// doc` `#[unit = "…"]`(optional) `name: Type = default`(optional),
/// the default written as the TOML value it stands for.
macro_rules! fragment {
    (
        $(#[doc = $d:literal])* $name:ident [$section:literal] {
            $(
                $(#[doc = $fd:literal])*
                $(#[unit = $unit:literal])?
                $field:ident : $ty:ty $(= $default:tt)?
            ),* $(,)?
        }
    ) => {
        $(#[doc = $d])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name { $($(#[doc = $fd])* pub $field: Option<$ty>,)* }

        impl $name {
            /// The table's name in the files.
            pub const SECTION: &'static str = $section;
            /// The table's doc comment.
            pub const DOC: &'static str = concat!($($d, "\n",)*);

            /// Every key of the table, in declaration order.
            pub const KEYS: &'static [KeyDoc] = &[$(KeyDoc {
                section: $section,
                key: stringify!($field),
                ty: <$ty as TomlType>::NAME,
                unit: opt!($($unit)?),
                default: opt!($(stringify!($default))?),
                doc: concat!($($fd, "\n",)*),
            },)*];

            fn merge(&mut self, other: Self) {
                $(if other.$field.is_some() { self.$field = other.$field; })*
            }

            /// The keys this fragment sets.
            pub fn set_keys(&self) -> Vec<&'static str> {
                let mut keys = Vec::new();
                $(if self.$field.is_some() { keys.push(stringify!($field)); })*
                keys
            }
        }
    };
}

fragment!(
    /// `[omaha]`: talking to the update server (whose address is `SERVER`
    /// in update.conf).
    OmahaFragment ["omaha"] {
        /// Extra PEM CA bundle trusted besides the system roots (for a
        /// server with a private CA). Unset: the system roots only.
        ca_bundle: PathBuf,
        /// TCP+TLS connect timeout.
        connect_timeout: Dur = "30s",
        /// `connect_timeout` in seconds.
        #[unit = "seconds"]
        connect_timeout_secs: u64,
        /// Whole-request timeout for update checks and events.
        request_timeout: Dur = "120s",
        /// `request_timeout` in seconds.
        #[unit = "seconds"]
        request_timeout_secs: u64,
    }
);

fragment!(
    /// `[schedule]`. The check timers also take milliseconds
    /// (`first_check_ms`, `first_check_fuzz_ms`, `periodic_ms`,
    /// `periodic_fuzz_ms`, `max_backoff_ms`), for tests and fast test
    /// fleets. A later layer's form replaces an earlier layer's other form;
    /// both forms of one timer in the same file are an error.
    ScheduleFragment ["schedule"] {
        /// Periodic checks on/off (manual checks always work).
        enabled: bool = true,
        /// Base delay of the first check after start.
        first_check: Dur = "7m",
        /// `first_check` in seconds.
        #[unit = "seconds"]
        first_check_secs: u64,
        /// Fuzz range of the first check (the delay is the base ± half of it).
        first_check_fuzz: Dur = "10m",
        /// `first_check_fuzz` in seconds.
        #[unit = "seconds"]
        first_check_fuzz_secs: u64,
        /// Base periodic interval.
        periodic: Dur = "45m",
        /// `periodic` in seconds.
        #[unit = "seconds"]
        periodic_secs: u64,
        /// Fuzz range of the periodic interval.
        periodic_fuzz: Dur = "10m",
        /// `periodic_fuzz` in seconds.
        #[unit = "seconds"]
        periodic_fuzz_secs: u64,
        /// Upper bound of the 500/503 backoff and of `PollInterval`; at
        /// least `periodic`.
        max_backoff: Dur = "4h",
        /// `max_backoff` in seconds.
        #[unit = "seconds"]
        max_backoff_secs: u64,
        /// `first_check` in milliseconds.
        #[unit = "milliseconds"]
        first_check_ms: u64,
        /// `first_check_fuzz` in milliseconds.
        #[unit = "milliseconds"]
        first_check_fuzz_ms: u64,
        /// `periodic` in milliseconds.
        #[unit = "milliseconds"]
        periodic_ms: u64,
        /// `periodic_fuzz` in milliseconds.
        #[unit = "milliseconds"]
        periodic_fuzz_ms: u64,
        /// `max_backoff` in milliseconds.
        #[unit = "milliseconds"]
        max_backoff_ms: u64,
        /// Payload backoff after failed attempts (unless the server
        /// disables it).
        payload_backoff: bool = true,
        /// Cap of the payload backoff.
        #[unit = "days"]
        payload_backoff_max_days: u64 = 16,
        /// Fuzz range of the payload backoff.
        payload_backoff_fuzz: Dur = "12h",
        /// `payload_backoff_fuzz` in seconds.
        #[unit = "seconds"]
        payload_backoff_fuzz_secs: u64,
        /// Delay before the daemon marks the booted slot good (when it,
        /// not the health gate, does: `health.slot_verdict`).
        mark_good_delay: Dur = "45s",
        /// `mark_good_delay` in seconds.
        #[unit = "seconds"]
        mark_good_delay_secs: u64,
    }
);

fragment!(
    /// `[download]`
    DownloadFragment ["download"] {
        /// Bandwidth cap; 0 means unlimited.
        #[unit = "bytes per second"]
        bandwidth_limit: u64 = 0,
        /// Restarts of an interrupted transfer (update_engine: 20).
        retries: u32 = 20,
        /// Wait before a restart (update_engine: 20 s).
        retry_delay: Dur = "20s",
        /// `retry_delay` in milliseconds.
        #[unit = "milliseconds"]
        retry_delay_ms: u64,
        /// Abort when the speed stays below this for `low_speed_time`
        /// (update_engine: 10 B/s for 90 s).
        #[unit = "bytes per second"]
        low_speed_limit: u64 = 10,
        /// Low-speed window.
        low_speed_time: Dur = "90s",
        /// `low_speed_time` in seconds.
        #[unit = "seconds"]
        low_speed_time_secs: u64,
        /// Take a `delta-<running version>.gz` package when the answer
        /// offers one; the full payload is the fallback.
        deltas: bool = true,
    }
);

fragment!(
    /// `[install]`
    InstallFragment ["install"] {
        /// Use this disk (or disk image) instead of the one backing `/usr`.
        /// Unset: found through dm-verity and sysfs.
        slot_device: PathBuf,
        /// With `slot_device`: the slot that is booted (`"A"` or `"B"`).
        booted_slot: String,
        /// Directory of `vmlinuz-a`/`vmlinuz-b` on the ESP.
        kernel_dir: PathBuf = "/boot/flatcar",
        /// Directory of trusted payload signing keys (`*.pub`, `*.pem`) and
        /// a `revoked` list.
        trusted_keys_dir: PathBuf = "/usr/share/update-agent/trusted-keys.d",
        /// Flatcar's payload key file, trusted too when it exists (an empty
        /// string turns it off).
        flatcar_payload_key: PathBuf = "/usr/share/update_engine/update-payload-key.pub.pem",
        /// Accept an offered version lower than the running one.
        allow_downgrade: bool = false,
        /// Command to reboot after an update. Unset: the reboot is left to
        /// locksmithd/FLUO/update-coordinator, as on Flatcar.
        reboot_command: Vec<String>,
        /// Mounts the new USR image read-only before the commit; called
        /// as `CMD -o ro,loop,offset=N,sizelimit=N DISK DIR`.
        mount_command: Vec<String> = ["mount"],
        /// Unmounts it: `CMD DIR`.
        umount_command: Vec<String> = ["umount"],
        /// Flatcar's OEM directory (`oem-release`, `sysext/`,
        /// `bin/oem-postinst`).
        oem_dir: PathBuf = "/usr/share/oem",
    }
);

fragment!(
    /// `[state]`
    StateFragment ["state"] {
        /// State directory (prefs live in `<state_dir>/prefs`, as
        /// update_engine's).
        state_dir: PathBuf = "/var/lib/update_engine",
        /// The reboot-pending marker (on tmpfs).
        reboot_marker: PathBuf = "/run/update_engine_autoupdate_completed",
    }
);

fragment!(
    /// `[metrics]`: Prometheus metrics on a unix socket
    /// (`update-agent --metrics-socket`/`--no-metrics` override it).
    MetricsFragment ["metrics"] {
        /// Serve metrics (any local user may read them).
        enabled: bool = true,
        /// The unix socket: `curl --unix-socket PATH http://localhost/metrics`.
        socket: PathBuf = "/run/update-agent/public/metrics.sock",
    }
);

fragment!(
    /// `[health]`: the post-boot health gate (`update-agent health-gate`,
    /// `crate::health`).
    HealthFragment ["health"] {
        /// Units whose activation means the boot settled.
        settle_units: Vec<String> = ["boot-complete.target"],
        /// Deadline for the boot to settle.
        settle_timeout: Dur = "5m",
        /// `settle_timeout` in seconds.
        #[unit = "seconds"]
        settle_timeout_secs: u64,
        /// Units that must be active for a new slot to pass.
        required_units: Vec<String> = [],
        /// Units whose failure is only logged.
        wanted_units: Vec<String> = [],
        /// Deadline of each check executable.
        check_timeout: Dur = "2m",
        /// `check_timeout` in seconds.
        #[unit = "seconds"]
        check_timeout_secs: u64,
        /// The `systemctl` command (tests substitute a stand-in).
        systemctl: Vec<String> = ["systemctl"],
        /// Reboot after a failed gate. Unset: `install.reboot_command`, else
        /// logind's Reboot.
        reboot_command: Vec<String>,
        /// At most this many gate reboots within `reboot_window`.
        max_reboots: u32 = 2,
        /// The window of `max_reboots`.
        reboot_window: Dur = "1h",
        /// `reboot_window` in seconds.
        #[unit = "seconds"]
        reboot_window_secs: u64,
        /// Who marks a booted slot good: `auto` (the gate when its unit is
        /// enabled, else the daemon), `gate`, or `daemon`.
        slot_verdict: SlotVerdict = "auto",
        /// The gate's unit name, asked with `systemctl is-enabled`.
        gate_unit: String = "update-agent-health-gate.service",
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
    /// `[metrics]`
    #[serde(default)]
    pub metrics: MetricsFragment,
}

/// Every table: its name, doc comment and keys, in file order.
pub const SECTIONS: [(&str, &str, &[KeyDoc]); 7] = [
    (
        OmahaFragment::SECTION,
        OmahaFragment::DOC,
        OmahaFragment::KEYS,
    ),
    (
        ScheduleFragment::SECTION,
        ScheduleFragment::DOC,
        ScheduleFragment::KEYS,
    ),
    (
        DownloadFragment::SECTION,
        DownloadFragment::DOC,
        DownloadFragment::KEYS,
    ),
    (
        InstallFragment::SECTION,
        InstallFragment::DOC,
        InstallFragment::KEYS,
    ),
    (
        StateFragment::SECTION,
        StateFragment::DOC,
        StateFragment::KEYS,
    ),
    (
        HealthFragment::SECTION,
        HealthFragment::DOC,
        HealthFragment::KEYS,
    ),
    (
        MetricsFragment::SECTION,
        MetricsFragment::DOC,
        MetricsFragment::KEYS,
    ),
];

impl Fragment {
    /// The `section.key`s this file sets.
    pub fn set_keys(&self) -> Vec<String> {
        let tables = [
            (OmahaFragment::SECTION, self.omaha.set_keys()),
            (ScheduleFragment::SECTION, self.schedule.set_keys()),
            (DownloadFragment::SECTION, self.download.set_keys()),
            (InstallFragment::SECTION, self.install.set_keys()),
            (StateFragment::SECTION, self.state.set_keys()),
            (HealthFragment::SECTION, self.health.set_keys()),
            (MetricsFragment::SECTION, self.metrics.set_keys()),
        ];
        tables
            .into_iter()
            .flat_map(|(section, keys)| keys.into_iter().map(move |k| format!("{section}.{k}")))
            .collect()
    }

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
        self.metrics.merge(other.metrics);
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
