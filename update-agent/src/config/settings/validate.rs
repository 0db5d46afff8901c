//! From the merged [`Fragment`] to validated [`Settings`]: defaults for a
//! Flatcar node with no configuration, and every value checked. No side
//! effects.

use std::path::PathBuf;
use std::time::Duration;

use super::fragment::Dur;
use super::{Fragment, HealthFragment, MetricsFragment, ScheduleFragment, Settings, SettingsError};
use crate::config::health::HealthConfig;
use crate::schedule::ScheduleConfig;

/// Applies defaults and validates.
pub(super) fn settings(f: Fragment) -> Result<Settings, SettingsError> {
    let schedule = schedule(f.schedule)?;
    let (i, dl) = (f.install, f.download);
    let reboot_command = command("install.reboot_command", i.reboot_command)?;
    let health = health_config(f.health, reboot_command.as_ref())?;
    let booted_slot = booted_slot(i.booted_slot)?;
    let flatcar_payload_key = flatcar_key(i.flatcar_payload_key)?;
    let timeout = |field, d: Option<Dur>, v: Option<u64>, default| {
        nonzero(
            field,
            timer(field, d, v, None, Duration::from_secs(default))?,
        )
    };
    Ok(Settings {
        health,
        ca_bundle: opt_path("omaha.ca_bundle", f.omaha.ca_bundle)?,
        connect_timeout: timeout(
            "omaha.connect_timeout_secs",
            f.omaha.connect_timeout,
            f.omaha.connect_timeout_secs,
            30,
        )?,
        request_timeout: timeout(
            "omaha.request_timeout_secs",
            f.omaha.request_timeout,
            f.omaha.request_timeout_secs,
            120,
        )?,
        schedule,
        bandwidth_limit: dl.bandwidth_limit.filter(|&b| b > 0),
        download_retries: dl.retries.unwrap_or(20),
        download_retry_delay: timer(
            "download.retry_delay_ms",
            dl.retry_delay,
            None,
            dl.retry_delay_ms,
            Duration::from_secs(20),
        )?,
        low_speed_limit: dl.low_speed_limit.unwrap_or(10),
        deltas: dl.deltas.unwrap_or(true),
        low_speed_time: timeout(
            "download.low_speed_time_secs",
            dl.low_speed_time,
            dl.low_speed_time_secs,
            90,
        )?,
        booted_slot,
        slot_device: opt_path("install.slot_device", i.slot_device)?,
        kernel_dir: path_or(
            "install.kernel_dir",
            i.kernel_dir,
            Settings::DEFAULT_KERNEL_DIR,
        )?,
        trusted_keys_dir: path_or(
            "install.trusted_keys_dir",
            i.trusted_keys_dir,
            Settings::DEFAULT_TRUSTED_KEYS_DIR,
        )?,
        flatcar_payload_key,
        allow_downgrade: i.allow_downgrade.unwrap_or(false),
        reboot_command,
        mount_command: command("install.mount_command", i.mount_command)?
            .unwrap_or_else(|| vec!["mount".into()]),
        umount_command: command("install.umount_command", i.umount_command)?
            .unwrap_or_else(|| vec!["umount".into()]),
        oem_dir: path_or("install.oem_dir", i.oem_dir, Settings::DEFAULT_OEM_DIR)?,
        state_dir: path_or(
            "state.state_dir",
            f.state.state_dir,
            Settings::DEFAULT_STATE_DIR,
        )?,
        reboot_marker: path_or(
            "state.reboot_marker",
            f.state.reboot_marker,
            Settings::DEFAULT_REBOOT_MARKER,
        )?,
        metrics_socket: metrics_socket(f.metrics)?,
    })
}

/// `[metrics]`: the socket, or `None` when turned off.
fn metrics_socket(m: MetricsFragment) -> Result<Option<PathBuf>, SettingsError> {
    if m.enabled == Some(false) {
        return Ok(None);
    }
    path_or("metrics.socket", m.socket, Settings::DEFAULT_METRICS_SOCKET).map(Some)
}

/// `install.booted_slot`: `A` or `B`.
fn booted_slot(v: Option<String>) -> Result<Option<cgpt::Slot>, SettingsError> {
    v.map(|s| {
        s.parse::<cgpt::Slot>()
            .map_err(|reason| SettingsError::Invalid {
                origin: None,
                field: "install.booted_slot",
                reason,
            })
    })
    .transpose()
}

/// `install.flatcar_payload_key`: Flatcar's path by default, off when empty.
fn flatcar_key(p: Option<PathBuf>) -> Result<Option<PathBuf>, SettingsError> {
    match p {
        Some(p) if p.as_os_str().is_empty() => Ok(None),
        p => path_or(
            "install.flatcar_payload_key",
            p,
            Settings::DEFAULT_FLATCAR_PAYLOAD_KEY,
        )
        .map(Some),
    }
}

/// An absolute path, or `default`.
fn path_or(
    field: &'static str,
    p: Option<PathBuf>,
    default: &str,
) -> Result<PathBuf, SettingsError> {
    absolute(field, p.unwrap_or_else(|| default.into()))
}

/// An optional absolute path.
fn opt_path(field: &'static str, p: Option<PathBuf>) -> Result<Option<PathBuf>, SettingsError> {
    p.map(|p| absolute(field, p)).transpose()
}

/// `[schedule]`.
fn schedule(s: ScheduleFragment) -> Result<ScheduleConfig, SettingsError> {
    let d = ScheduleConfig::default();
    let schedule = ScheduleConfig {
        enabled: s.enabled.unwrap_or(d.enabled),
        first_check: nonzero(
            "schedule.first_check_secs",
            timer(
                "schedule.first_check_secs",
                s.first_check,
                s.first_check_secs,
                s.first_check_ms,
                d.first_check,
            )?,
        )?,
        first_check_fuzz: timer(
            "schedule.first_check_fuzz_secs",
            s.first_check_fuzz,
            s.first_check_fuzz_secs,
            s.first_check_fuzz_ms,
            d.first_check_fuzz,
        )?,
        periodic: nonzero(
            "schedule.periodic_secs",
            timer(
                "schedule.periodic_secs",
                s.periodic,
                s.periodic_secs,
                s.periodic_ms,
                d.periodic,
            )?,
        )?,
        periodic_fuzz: timer(
            "schedule.periodic_fuzz_secs",
            s.periodic_fuzz,
            s.periodic_fuzz_secs,
            s.periodic_fuzz_ms,
            d.periodic_fuzz,
        )?,
        max_backoff: timer(
            "schedule.max_backoff_secs",
            s.max_backoff,
            s.max_backoff_secs,
            s.max_backoff_ms,
            d.max_backoff,
        )?,
        payload_backoff: s.payload_backoff.unwrap_or(d.payload_backoff),
        payload_backoff_max_days: s
            .payload_backoff_max_days
            .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
            .unwrap_or(d.payload_backoff_max_days),
        payload_backoff_fuzz: timer(
            "schedule.payload_backoff_fuzz_secs",
            s.payload_backoff_fuzz,
            s.payload_backoff_fuzz_secs,
            None,
            d.payload_backoff_fuzz,
        )?,
        mark_good_delay: timer(
            "schedule.mark_good_delay_secs",
            s.mark_good_delay,
            s.mark_good_delay_secs,
            None,
            d.mark_good_delay,
        )?,
    };
    if schedule.max_backoff < schedule.periodic {
        return Err(SettingsError::Invalid {
            origin: None,
            field: "schedule.max_backoff_secs",
            reason: format!(
                "{:?} is shorter than schedule.periodic_secs ({:?})",
                schedule.max_backoff, schedule.periodic
            ),
        });
    }
    Ok(schedule)
}

/// A timer given in one of its forms: with its unit in the value
/// (`x = "45s"`), in seconds (`x_secs`) or in milliseconds (`x_ms`). Two
/// forms left after merging were set in the same file: an error.
fn timer(
    field: &'static str,
    value: Option<Dur>,
    secs_value: Option<u64>,
    ms_value: Option<u64>,
    default: Duration,
) -> Result<Duration, SettingsError> {
    let forms = [
        value.map(|d| d.0),
        secs_value.map(Duration::from_secs),
        ms_value.map(Duration::from_millis),
    ];
    let mut set = forms.into_iter().flatten();
    match (set.next(), set.next()) {
        (Some(_), Some(_)) => Err(SettingsError::Invalid {
            origin: None,
            field,
            reason: "set one form of this timer (unit-less, _secs or _ms), not several".into(),
        }),
        (Some(d), None) => Ok(d),
        _ => Ok(default),
    }
}

fn absolute(field: &'static str, p: PathBuf) -> Result<PathBuf, SettingsError> {
    if p.is_absolute() {
        Ok(p)
    } else {
        Err(SettingsError::Invalid {
            origin: None,
            field,
            reason: format!("{} is not an absolute path", p.display()),
        })
    }
}

fn nonzero(field: &'static str, d: Duration) -> Result<Duration, SettingsError> {
    if d.is_zero() {
        Err(SettingsError::Invalid {
            origin: None,
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
            origin: None,
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
        settle_timeout_secs: timer(
            "health.settle_timeout_secs",
            h.settle_timeout,
            h.settle_timeout_secs,
            None,
            Duration::from_secs(d.settle_timeout_secs),
        )?
        .as_secs(),
        required_units: h.required_units.unwrap_or(d.required_units),
        wanted_units: h.wanted_units.unwrap_or(d.wanted_units),
        check_timeout_secs: nonzero(
            "health.check_timeout_secs",
            timer(
                "health.check_timeout_secs",
                h.check_timeout,
                h.check_timeout_secs,
                None,
                Duration::from_secs(d.check_timeout_secs),
            )?,
        )?
        .as_secs(),
        systemctl: command("health.systemctl", h.systemctl)?.unwrap_or(d.systemctl),
        reboot_command,
        max_reboots: h.max_reboots.unwrap_or(d.max_reboots),
        reboot_window_secs: timer(
            "health.reboot_window_secs",
            h.reboot_window,
            h.reboot_window_secs,
            None,
            Duration::from_secs(d.reboot_window_secs),
        )?
        .as_secs(),
        poll_interval_ms: d.poll_interval_ms,
        slot_verdict: h.slot_verdict.unwrap_or(d.slot_verdict),
        gate_unit: h.gate_unit.unwrap_or(d.gate_unit),
    })
}
