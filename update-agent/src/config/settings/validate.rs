//! From the merged [`Fragment`] to validated [`Settings`]: defaults for a
//! Flatcar node with no configuration, and every value checked. No side
//! effects.

use std::path::PathBuf;
use std::time::Duration;

use super::{Fragment, HealthFragment, ScheduleFragment, Settings, SettingsError};
use crate::config::health::HealthConfig;
use crate::schedule::ScheduleConfig;

/// Applies defaults and validates.
pub(super) fn settings(f: Fragment) -> Result<Settings, SettingsError> {
    let schedule = schedule(f.schedule)?;
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
    Ok(Settings {
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
        download_retry_delay: Duration::from_millis(f.download.retry_delay_ms.unwrap_or(20_000)),
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
                .unwrap_or_else(|| Settings::DEFAULT_KERNEL_DIR.into()),
        )?,
        trusted_keys_dir: absolute(
            "install.trusted_keys_dir",
            f.install
                .trusted_keys_dir
                .unwrap_or_else(|| Settings::DEFAULT_TRUSTED_KEYS_DIR.into()),
        )?,
        flatcar_payload_key: match f.install.flatcar_payload_key {
            Some(p) if p.as_os_str().is_empty() => None,
            p => Some(absolute(
                "install.flatcar_payload_key",
                p.unwrap_or_else(|| Settings::DEFAULT_FLATCAR_PAYLOAD_KEY.into()),
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
                .unwrap_or_else(|| Settings::DEFAULT_STATE_DIR.into()),
        )?,
        reboot_marker: absolute(
            "state.reboot_marker",
            f.state
                .reboot_marker
                .unwrap_or_else(|| Settings::DEFAULT_REBOOT_MARKER.into()),
        )?,
    })
}

/// `[schedule]`.
fn schedule(s: ScheduleFragment) -> Result<ScheduleConfig, SettingsError> {
    let d = ScheduleConfig::default();
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
    Ok(schedule)
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
