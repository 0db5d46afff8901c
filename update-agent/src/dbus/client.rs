//! Client side: proxies for both interfaces and update_engine_client's
//! output formats (pure functions, unit-tested here).

use zbus::proxy;

use super::throttle::StatusTuple;
use crate::fsm::Operation;

/// `com.coreos.update1.Manager`.
#[proxy(
    interface = "com.coreos.update1.Manager",
    default_service = "com.coreos.update1",
    default_path = "/com/coreos/update1",
    gen_blocking = false
)]
pub trait Manager {
    /// Starts a check when idle.
    fn attempt_update(&self) -> zbus::Result<()>;
    /// Forgets a staged update.
    fn reset_status(&self) -> zbus::Result<()>;
    /// `(last_checked_time, progress, current_operation, new_version, new_size)`.
    fn get_status(&self) -> zbus::Result<(i64, f64, String, String, i64)>;
    /// The status broadcast.
    #[zbus(signal)]
    fn status_update(
        &self,
        last_checked_time: i64,
        progress: f64,
        current_operation: String,
        new_version: String,
        new_size: i64,
    ) -> zbus::Result<()>;
}

/// `org.ab_update_engine.Agent1`.
#[proxy(
    interface = "org.ab_update_engine.Agent1",
    default_service = "com.coreos.update1",
    default_path = "/com/coreos/update1",
    gen_blocking = false
)]
pub trait Agent {
    /// Switches the release channel.
    fn set_channel(&self, channel: &str) -> zbus::Result<()>;
    /// Boots the previous slot next.
    fn rollback(&self) -> zbus::Result<()>;
    /// Stops a running update.
    fn cancel(&self) -> zbus::Result<()>;
    /// Adds a version to the deny list.
    fn deny(&self, version: &str, reason: &str) -> zbus::Result<()>;
    /// Removes a version from the deny list.
    fn undeny(&self, version: &str) -> zbus::Result<bool>;
    /// Empties the deny list.
    fn clear_deny_list(&self) -> zbus::Result<()>;
    /// The channel.
    #[zbus(property)]
    fn channel(&self) -> zbus::Result<String>;
    /// The running version.
    #[zbus(property)]
    fn current_version(&self) -> zbus::Result<String>;
    /// `USR-A`/`USR-B`.
    #[zbus(property)]
    fn booted_slot(&self) -> zbus::Result<String>;
    /// The last failure's stable name.
    #[zbus(property)]
    fn last_error_kind(&self) -> zbus::Result<String>;
    /// The last failure in words.
    #[zbus(property)]
    fn last_error_message(&self) -> zbus::Result<String>;
    /// The last failure's update_engine code.
    #[zbus(property)]
    fn last_error_code(&self) -> zbus::Result<u32>;
    /// `(version, since, reason)`.
    #[zbus(property)]
    fn deny_list(&self) -> zbus::Result<Vec<(String, u64, String)>>;

    #[zbus(property(emits_changed_signal = "false"))]
    fn next_check_time(&self) -> zbus::Result<i64>;

    #[zbus(property(emits_changed_signal = "false"))]
    fn slots(&self) -> zbus::Result<Vec<(String, u8, u8, bool, String)>>;
}

/// A status tuple as received (the operation string kept as sent).
#[derive(Debug, Clone, PartialEq)]
pub struct WireStatus {
    pub last_checked_time: i64,
    pub progress: f64,
    pub current_operation: String,
    pub new_version: String,
    pub new_size: i64,
}

impl From<(i64, f64, String, String, i64)> for WireStatus {
    fn from(
        (last_checked_time, progress, current_operation, new_version, new_size): (
            i64,
            f64,
            String,
            String,
            i64,
        ),
    ) -> Self {
        Self {
            last_checked_time,
            progress,
            current_operation,
            new_version,
            new_size,
        }
    }
}

impl From<&StatusTuple> for WireStatus {
    fn from(t: &StatusTuple) -> Self {
        t.to_wire().into()
    }
}

impl WireStatus {
    /// The operation, if it is one of update_engine's.
    pub fn operation(&self) -> Option<Operation> {
        self.current_operation.parse().ok()
    }
}

/// C's `printf("%f")`: six decimals, `nan`/`inf` spelled as glibc does.
pub fn printf_f(v: f64) -> String {
    if v.is_nan() {
        if v.is_sign_negative() {
            "-nan".into()
        } else {
            "nan".into()
        }
    } else if v.is_infinite() {
        if v < 0.0 { "-inf".into() } else { "inf".into() }
    } else {
        format!("{v:.6}")
    }
}

/// C++'s `ostream << double` with the default precision: `%g` with 6
/// significant digits (`0.5`, `1`, `1e-05`, `0.160216`).
pub fn ostream_g(v: f64) -> String {
    if !v.is_finite() || v == 0.0 {
        return if v == 0.0 {
            if v.is_sign_negative() {
                "-0".into()
            } else {
                "0".into()
            }
        } else {
            printf_f(v)
        };
    }
    let exp = format!("{v:.5e}");
    let (mantissa, e) = exp.split_once('e').unwrap_or((&exp, "0"));
    let e: i32 = e.parse().unwrap_or(0);
    if !(-4..6).contains(&e) {
        let m = trim_zeros(mantissa);
        format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
    } else {
        let decimals = usize::try_from(5 - e).unwrap_or(0);
        trim_zeros(&format!("{v:.decimals$}")).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// update_engine_client `-status`: the five `KEY=VALUE` lines.
pub fn status_block(s: &WireStatus) -> String {
    format!(
        "LAST_CHECKED_TIME={}\nPROGRESS={}\nCURRENT_OP={}\nNEW_VERSION={}\nNEW_SIZE={}\n",
        s.last_checked_time,
        printf_f(s.progress),
        s.current_operation,
        s.new_version,
        s.new_size
    )
}

/// update_engine_client `-watch_for_updates`: the messages logged for one
/// signal (each becomes one log line).
pub fn watch_lines(s: &WireStatus) -> [String; 6] {
    [
        "Got status update:".to_string(),
        format!("  last_checked_time: {}", s.last_checked_time),
        format!("  progress: {}", ostream_g(s.progress)),
        format!("  current_operation: {}", s.current_operation),
        format!("  new_version: {}", s.new_version),
        format!("  new_size: {}", s.new_size),
    ]
}

/// glog's line prefix (`I0412 10:00:00.123456 12345 file:line] `), UTC.
pub fn glog_prefix(
    severity: char,
    unix: std::time::Duration,
    tid: u32,
    file: &str,
    line: u32,
) -> String {
    let secs = unix.as_secs();
    let (days, sod) = (secs / 86_400, secs % 86_400);
    let (_, month, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{severity}{month:02}{day:02} {:02}:{:02}:{:02}.{:06} {tid:>5} {file}:{line}] ",
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        unix.subsec_micros()
    )
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(progress: f64) -> WireStatus {
        WireStatus {
            last_checked_time: 1712854417,
            progress,
            current_operation: "UPDATE_STATUS_DOWNLOADING".into(),
            new_version: "3815.2.1".into(),
            new_size: 458234665,
        }
    }

    #[test]
    fn status_block_is_flatcars() {
        assert_eq!(
            status_block(&status(0.160216)),
            "LAST_CHECKED_TIME=1712854417\nPROGRESS=0.160216\nCURRENT_OP=UPDATE_STATUS_DOWNLOADING\nNEW_VERSION=3815.2.1\nNEW_SIZE=458234665\n"
        );
        let idle = WireStatus {
            last_checked_time: 0,
            progress: 0.0,
            current_operation: "UPDATE_STATUS_IDLE".into(),
            new_version: "0.0.0".into(),
            new_size: 0,
        };
        assert_eq!(
            status_block(&idle),
            "LAST_CHECKED_TIME=0\nPROGRESS=0.000000\nCURRENT_OP=UPDATE_STATUS_IDLE\nNEW_VERSION=0.0.0\nNEW_SIZE=0\n"
        );
    }

    #[test]
    fn printf_f_matches_c() {
        // Values checked against glibc printf("%f").
        for (v, want) in [
            (0.0, "0.000000"),
            (1.0, "1.000000"),
            (0.1234565, "0.123456"),
            (0.0000004, "0.000000"),
            (0.0000005, "0.000000"),
            (0.0000015, "0.000002"),
            (2.0 / 3.0, "0.666667"),
            (f64::NAN, "nan"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(printf_f(v), want, "{v}");
        }
    }

    #[test]
    fn ostream_g_matches_cpp() {
        for (v, want) in [
            (0.0, "0"),
            (1.0, "1"),
            (0.5, "0.5"),
            (0.160216, "0.160216"),
            (0.1602164, "0.160216"),
            (0.00001, "1e-05"),
            (0.0001, "0.0001"),
            (123456.0, "123456"),
            (1234567.0, "1.23457e+06"),
            (2.0 / 3.0, "0.666667"),
        ] {
            assert_eq!(ostream_g(v), want, "{v}");
        }
    }

    #[test]
    fn watch_lines_name_every_field() {
        let lines = watch_lines(&status(0.5));
        assert_eq!(
            lines.join("\n"),
            "Got status update:\n  last_checked_time: 1712854417\n  progress: 0.5\n  current_operation: UPDATE_STATUS_DOWNLOADING\n  new_version: 3815.2.1\n  new_size: 458234665"
        );
    }

    #[test]
    fn glog_prefix_layout() {
        // 2024-04-11 16:53:37.000042 UTC
        let t = std::time::Duration::new(1712854417, 42_000);
        assert_eq!(
            glog_prefix('I', t, 77, "update_engine_client.cc", 12),
            "I0411 16:53:37.000042    77 update_engine_client.cc:12] "
        );
    }
}
