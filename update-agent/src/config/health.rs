//! The validated `[health]` settings, used by the health gate
//! ([`crate::health`]) and the daemon (who marks a slot good). They live
//! with the other settings so that `config` does not depend on `health`.

/// The `[health]` settings (validated; see `config::settings` for the file form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// Units whose activation means "the boot has settled".
    pub settle_units: Vec<String>,
    /// How long to wait for them before declaring the boot failed.
    pub settle_timeout_secs: u64,
    /// Units that must be active for the slot to pass.
    pub required_units: Vec<String>,
    /// Units whose failure is only logged.
    pub wanted_units: Vec<String>,
    /// Deadline for each check executable.
    pub check_timeout_secs: u64,
    /// How to ask systemd about units (`is-active --quiet UNIT` is appended).
    pub systemctl: Vec<String>,
    /// How to reboot after a failure (logind's Reboot by default).
    pub reboot_command: Vec<String>,
    /// At most this many gate-initiated reboots...
    pub max_reboots: u32,
    /// ...within this many seconds.
    pub reboot_window_secs: u64,
    /// How often to poll the settle units.
    pub poll_interval_ms: u64,
    /// Who marks a booted slot good (see [`SlotVerdict`]).
    pub slot_verdict: SlotVerdict,
    /// The gate's unit, for [`SlotVerdict::Auto`].
    pub gate_unit: String,
}

/// Who marks the booted slot good. Without anyone, a new slot is never
/// blessed and GRUB falls back to the old one at the second reboot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlotVerdict {
    /// The gate when its unit is enabled, else the daemon (the default).
    Auto,
    /// Only the health gate (`update-agent health-gate`).
    Gate,
    /// The daemon, `schedule.mark_good_delay_secs` after it starts, with no
    /// checks: Flatcar's update_engine behaviour.
    Daemon,
}

impl SlotVerdict {
    /// Whether the daemon marks the slot good, given whether the gate's
    /// unit is enabled (`None`: unknown, e.g. no systemctl). An unknown
    /// answer picks the daemon: a slot nobody blesses falls back.
    pub fn daemon_marks_good(self, gate_enabled: Option<bool>) -> bool {
        match self {
            Self::Gate => false,
            Self::Daemon => true,
            Self::Auto => gate_enabled != Some(true),
        }
    }
}

impl Default for HealthConfig {
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        HealthConfig {
            settle_units: s(&["boot-complete.target"]),
            settle_timeout_secs: 300,
            required_units: Vec::new(),
            wanted_units: Vec::new(),
            check_timeout_secs: 120,
            systemctl: s(&["systemctl"]),
            reboot_command: ab_node::logind_command(),
            max_reboots: 2,
            reboot_window_secs: 3600,
            poll_interval_ms: 1000,
            slot_verdict: SlotVerdict::Auto,
            gate_unit: "update-agent-health-gate.service".into(),
        }
    }
}
