//! locksmithd's configuration, read from Flatcar's update.conf files.
//!
//! Three layers, no side effects until the last one: [`KeyValues`] (raw `KEY=VALUE` pairs,
//! `/etc/flatcar/update.conf` over `/usr/share/flatcar/update.conf`) → [`Config::from_values`]
//! (defaults, validation, TLS files read and checked) → the coordinator.

mod key_values;

use std::path::PathBuf;
use std::time::Duration;

use crate::window::{DurationError, Window, WindowError, parse_go_duration};

pub use key_values::{KeyValues, UPDATE_CONF_PATHS};

/// locksmithd's default etcd endpoints.
pub const DEFAULT_ENDPOINTS: [&str; 2] = ["http://127.0.0.1:2379", "http://127.0.0.1:4001"];

/// `REBOOT_STRATEGY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Reboot as soon as the window allows (the default).
    Reboot,
    /// Take locksmith's semaphore in etcd (v3 API) first.
    EtcdLock,
    /// Take a FleetLock slot (Zincati's protocol, served by Airlock) first.
    FleetLock,
    /// Never reboot; FLUO or kured drive reboots.
    Off,
}

impl Strategy {
    /// The name written to coordinator.conf and accepted in `REBOOT_STRATEGY`.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Reboot => "reboot",
            Strategy::EtcdLock => "etcd-lock",
            Strategy::FleetLock => "fleet-lock",
            Strategy::Off => "off",
        }
    }

    /// Whether this strategy takes a cluster-wide lock.
    pub fn uses_lock(self) -> bool {
        matches!(self, Strategy::EtcdLock | Strategy::FleetLock)
    }
}

impl std::str::FromStr for Strategy {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "reboot" => Ok(Strategy::Reboot),
            "etcd-lock" => Ok(Strategy::EtcdLock),
            "fleet-lock" => Ok(Strategy::FleetLock),
            "off" => Ok(Strategy::Off),
            other => Err(ConfigError::UnknownStrategy(other.to_owned())),
        }
    }
}

/// TLS material for the lock endpoint, read and checked at start.
#[derive(Clone, Default)]
pub struct Tls {
    /// PEM CA bundle (`LOCKSMITHD_ETCD_CAFILE`).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM client certificate followed by its key (`_CERTFILE` + `_KEYFILE`).
    pub identity_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("ca", &self.ca_pem.is_some())
            .field("client_identity", &self.identity_pem.is_some())
            .finish()
    }
}

/// etcd user and password (`LOCKSMITHD_ETCD_USERNAME` / `_PASSWORD`).
#[derive(Clone)]
pub struct Auth {
    /// The etcd user.
    pub username: String,
    /// Its password (never logged).
    pub password: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Exponential backoff bounds while the lock is busy or unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub min: Duration,
    /// The cap.
    pub max: Duration,
}

impl Backoff {
    /// Delay before retry number `attempt` (0-based): `min * 2^attempt`, capped at `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(30)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `REBOOT_STRATEGY`.
    pub strategy: Strategy,
    /// The reboot window; `None`: any time.
    pub window: Option<Window>,
    /// etcd endpoints, or the FleetLock base URL (first entry) for `fleet-lock`.
    pub endpoints: Vec<String>,
    /// TLS material for the endpoints.
    pub tls: Tls,
    /// etcd credentials, if any.
    pub auth: Option<Auth>,
    /// `LOCKSMITHD_GROUP`; FleetLock uses `default` when unset.
    pub group: Option<String>,
    /// Shell command run instead of logind's `Reboot(false)` (`COORDINATOR_REBOOT_COMMAND`).
    pub reboot_command: Option<String>,
    /// `COORDINATOR_BACKOFF_MIN` / `_MAX` (Go durations; default 5s / 5m as locksmithd).
    pub backoff: Backoff,
    /// How often the reboot-needed and steady markers are looked at (`COORDINATOR_POLL_INTERVAL`, 5s).
    pub poll_interval: Duration,
    /// How long a reboot is postponed when users are logged in (`COORDINATOR_USER_DELAY`, 5m).
    pub user_delay: Duration,
    /// Whether the lock waits for the health gate's steady marker (`COORDINATOR_HEALTH_GATE`,
    /// `marker` (default) or `none` for nodes without our health gate).
    pub health_gate: bool,
}

/// Configuration errors, each naming the key and the offending value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// An update.conf file exists but cannot be read.
    #[error("reading {path}")]
    Read {
        /// The file's path.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `REBOOT_STRATEGY` names no strategy.
    #[error("REBOOT_STRATEGY={0:?} is not one of reboot, etcd-lock, fleet-lock, off")]
    UnknownStrategy(String),
    /// The reboot window keys are invalid.
    #[error("reboot window")]
    Window(#[from] WindowError),
    /// A value is out of range or not one of the allowed words.
    #[error("{key}={value:?}: {reason}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A duration key does not hold a Go duration.
    #[error("{key}={value:?}")]
    BadDuration {
        /// The key.
        key: &'static str,
        /// Its value.
        value: String,
        #[source]
        source: DurationError,
    },
    /// An endpoint is not an HTTP(S) URL.
    #[error("LOCKSMITHD_ENDPOINT: {value:?} is not an http:// or https:// URL")]
    BadEndpoint {
        /// The offending endpoint.
        value: String,
    },
    /// A TLS file cannot be read.
    #[error("{key}={path:?}")]
    TlsFile {
        /// The key naming the file.
        key: &'static str,
        /// The file's path.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A TLS file holds no PEM block of the expected kind.
    #[error("{key}={path:?}: no PEM {what} in the file")]
    TlsPem {
        /// The key naming the file.
        key: &'static str,
        /// The file's path.
        path: PathBuf,
        /// What was expected ("certificate", "private key").
        what: &'static str,
    },
    /// Only one of the client certificate and its key is set.
    #[error("LOCKSMITHD_ETCD_CERTFILE and LOCKSMITHD_ETCD_KEYFILE must be set together")]
    CertWithoutKey,
    /// Only one of the etcd user and password is set.
    #[error("LOCKSMITHD_ETCD_USERNAME and LOCKSMITHD_ETCD_PASSWORD must be set together")]
    UserWithoutPassword,
    /// FleetLock has no default server.
    #[error(
        "REBOOT_STRATEGY=fleet-lock needs LOCKSMITHD_ENDPOINT (the FleetLock server's base URL)"
    )]
    FleetLockWithoutEndpoint,
}

impl ConfigError {
    /// A stable name for metrics and logs.
    pub fn error_kind(&self) -> &'static str {
        match self {
            ConfigError::Read { .. } => "config_read",
            ConfigError::UnknownStrategy(_) => "config_strategy",
            ConfigError::Window(_) => "config_window",
            ConfigError::BadValue { .. } | ConfigError::BadDuration { .. } => "config_value",
            ConfigError::BadEndpoint { .. } | ConfigError::FleetLockWithoutEndpoint => {
                "config_endpoint"
            }
            ConfigError::TlsFile { .. }
            | ConfigError::TlsPem { .. }
            | ConfigError::CertWithoutKey => "config_tls",
            ConfigError::UserWithoutPassword => "config_auth",
        }
    }
}

fn duration_key(
    kv: &KeyValues,
    key: &'static str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match kv.get(key) {
        None => Ok(default),
        Some(v) => parse_go_duration(v).map_err(|source| ConfigError::BadDuration {
            key,
            value: v.to_owned(),
            source,
        }),
    }
}

fn read_pem(
    key: &'static str,
    path: &str,
    marker: &str,
    what: &'static str,
) -> Result<Vec<u8>, ConfigError> {
    let path = PathBuf::from(path);
    let bytes = std::fs::read(&path).map_err(|source| ConfigError::TlsFile {
        key,
        path: path.clone(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    if !text.contains("-----BEGIN ") || !text.contains(marker) {
        return Err(ConfigError::TlsPem { key, path, what });
    }
    Ok(bytes)
}

impl Config {
    /// Validates raw values. Reads the TLS files named in them (paths are taken as given).
    pub fn from_values(kv: &KeyValues) -> Result<Self, ConfigError> {
        let strategy = kv.get("REBOOT_STRATEGY").unwrap_or("reboot").parse()?;
        let window = reboot_window(kv)?;
        let endpoints = endpoints(kv, strategy)?;
        let tls = tls(kv)?;
        let auth = auth(kv)?;
        let backoff = backoff(kv)?;
        let poll_interval = poll_interval(kv)?;
        let health_gate = health_gate(kv)?;
        Ok(Config {
            strategy,
            window,
            endpoints,
            tls,
            auth,
            group: kv.get("LOCKSMITHD_GROUP").map(str::to_owned),
            reboot_command: kv.get("COORDINATOR_REBOOT_COMMAND").map(str::to_owned),
            backoff,
            poll_interval,
            user_delay: duration_key(kv, "COORDINATOR_USER_DELAY", Duration::from_secs(300))?,
            health_gate,
        })
    }
}

/// `REBOOT_WINDOW_START` + `_LENGTH`; like locksmithd, the older
/// `LOCKSMITHD_REBOOT_WINDOW_*` pair counts only when both new keys are unset.
fn reboot_window(kv: &KeyValues) -> Result<Option<Window>, ConfigError> {
    let (mut start, mut length) = (
        kv.get("REBOOT_WINDOW_START"),
        kv.get("REBOOT_WINDOW_LENGTH"),
    );
    if start.is_none() && length.is_none() {
        start = kv.get("LOCKSMITHD_REBOOT_WINDOW_START");
        length = kv.get("LOCKSMITHD_REBOOT_WINDOW_LENGTH");
    }
    match (start, length) {
        (None, None) => Ok(None),
        (Some(s), Some(l)) => Ok(Some(Window::parse(s, l)?)),
        _ => Err(WindowError::HalfSet.into()),
    }
}

/// `LOCKSMITHD_ENDPOINT` (comma separated, trailing `/` dropped) or locksmithd's defaults;
/// FleetLock has no default server.
fn endpoints(kv: &KeyValues, strategy: Strategy) -> Result<Vec<String>, ConfigError> {
    let explicit = kv.get("LOCKSMITHD_ENDPOINT");
    let endpoints: Vec<String> = match explicit {
        Some(v) => v
            .split(',')
            .map(|e| e.trim().trim_end_matches('/').to_owned())
            .collect(),
        None => DEFAULT_ENDPOINTS.iter().map(|e| e.to_string()).collect(),
    };
    for e in &endpoints {
        if !(e.starts_with("http://") || e.starts_with("https://")) || e.len() < "http://x".len() {
            return Err(ConfigError::BadEndpoint { value: e.clone() });
        }
    }
    if strategy == Strategy::FleetLock && explicit.is_none() {
        return Err(ConfigError::FleetLockWithoutEndpoint);
    }
    Ok(endpoints)
}

/// The CA bundle and the client identity (certificate, then key), read and checked now so a
/// bad file stops the start instead of the first lock attempt.
fn tls(kv: &KeyValues) -> Result<Tls, ConfigError> {
    let ca_pem = match kv.get("LOCKSMITHD_ETCD_CAFILE") {
        Some(p) => Some(read_pem(
            "LOCKSMITHD_ETCD_CAFILE",
            p,
            "CERTIFICATE-----",
            "certificate",
        )?),
        None => None,
    };
    let identity_pem = match (
        kv.get("LOCKSMITHD_ETCD_CERTFILE"),
        kv.get("LOCKSMITHD_ETCD_KEYFILE"),
    ) {
        (None, None) => None,
        (Some(c), Some(k)) => {
            let mut pem = read_pem(
                "LOCKSMITHD_ETCD_CERTFILE",
                c,
                "CERTIFICATE-----",
                "certificate",
            )?;
            pem.push(b'\n');
            pem.extend(read_pem(
                "LOCKSMITHD_ETCD_KEYFILE",
                k,
                "PRIVATE KEY-----",
                "private key",
            )?);
            Some(pem)
        }
        _ => return Err(ConfigError::CertWithoutKey),
    };
    Ok(Tls {
        ca_pem,
        identity_pem,
    })
}

/// `LOCKSMITHD_ETCD_USERNAME` + `_PASSWORD`, both or neither.
fn auth(kv: &KeyValues) -> Result<Option<Auth>, ConfigError> {
    match (
        kv.get("LOCKSMITHD_ETCD_USERNAME"),
        kv.get("LOCKSMITHD_ETCD_PASSWORD"),
    ) {
        (None, None) => Ok(None),
        (Some(u), Some(p)) => Ok(Some(Auth {
            username: u.to_owned(),
            password: p.to_owned(),
        })),
        _ => Err(ConfigError::UserWithoutPassword),
    }
}

/// `COORDINATOR_BACKOFF_MIN` / `_MAX`: 0 < min <= max.
fn backoff(kv: &KeyValues) -> Result<Backoff, ConfigError> {
    let backoff = Backoff {
        min: duration_key(kv, "COORDINATOR_BACKOFF_MIN", Duration::from_secs(5))?,
        max: duration_key(kv, "COORDINATOR_BACKOFF_MAX", Duration::from_secs(300))?,
    };
    if backoff.min.is_zero() || backoff.max < backoff.min {
        return Err(ConfigError::BadValue {
            key: "COORDINATOR_BACKOFF_MAX",
            value: format!("{:?}", backoff.max),
            reason: "backoff bounds must satisfy 0 < min <= max",
        });
    }
    Ok(backoff)
}

/// `COORDINATOR_POLL_INTERVAL`, positive (a zero interval would spin).
fn poll_interval(kv: &KeyValues) -> Result<Duration, ConfigError> {
    let poll_interval = duration_key(kv, "COORDINATOR_POLL_INTERVAL", Duration::from_secs(5))?;
    if poll_interval.is_zero() {
        return Err(ConfigError::BadValue {
            key: "COORDINATOR_POLL_INTERVAL",
            value: "0".into(),
            reason: "must be positive",
        });
    }
    Ok(poll_interval)
}

/// `COORDINATOR_HEALTH_GATE`: `marker` (the default) or `none`.
fn health_gate(kv: &KeyValues) -> Result<bool, ConfigError> {
    match kv.get("COORDINATOR_HEALTH_GATE").unwrap_or("marker") {
        "marker" => Ok(true),
        "none" => Ok(false),
        other => Err(ConfigError::BadValue {
            key: "COORDINATOR_HEALTH_GATE",
            value: other.to_owned(),
            reason: "expected `marker` or `none`",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_values(&pairs.iter().copied().collect())
    }

    #[test]
    fn defaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.strategy, Strategy::Reboot);
        assert!(c.window.is_none());
        assert_eq!(c.endpoints, DEFAULT_ENDPOINTS);
        assert_eq!(
            c.backoff,
            Backoff {
                min: Duration::from_secs(5),
                max: Duration::from_secs(300)
            }
        );
        assert!(c.health_gate);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff {
            min: Duration::from_secs(5),
            max: Duration::from_secs(300),
        };
        let got: Vec<u64> = (0..8).map(|a| b.delay(a).as_secs()).collect();
        assert_eq!(got, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn window_keys_prefer_unprefixed() {
        let c = cfg(&[
            ("REBOOT_WINDOW_START", "Thu 04:00"),
            ("REBOOT_WINDOW_LENGTH", "1h"),
            ("LOCKSMITHD_REBOOT_WINDOW_START", "garbage"),
        ])
        .unwrap();
        assert_eq!(c.window.unwrap().length, Duration::from_secs(3600));
        let c = cfg(&[
            ("LOCKSMITHD_REBOOT_WINDOW_START", "04:00"),
            ("LOCKSMITHD_REBOOT_WINDOW_LENGTH", "30m"),
        ])
        .unwrap();
        assert_eq!(c.window.unwrap().length, Duration::from_secs(1800));
    }

    #[test]
    fn errors_name_the_key() {
        let rows: &[(&[(&str, &str)], &str)] = &[
            (
                &[("REBOOT_STRATEGY", "best-effort")],
                "REBOOT_STRATEGY=\"best-effort\" is not one of",
            ),
            (&[("REBOOT_WINDOW_START", "Thu 04:00")], "both or neither"),
            (
                &[
                    ("REBOOT_WINDOW_START", "Thu 4h"),
                    ("REBOOT_WINDOW_LENGTH", "1h"),
                ],
                "\"Thu 4h\"",
            ),
            (
                &[
                    ("REBOOT_WINDOW_START", "04:00"),
                    ("REBOOT_WINDOW_LENGTH", "25h"),
                ],
                "under 24h",
            ),
            (
                &[("LOCKSMITHD_ENDPOINT", "127.0.0.1:2379")],
                "not an http:// or https:// URL",
            ),
            (
                &[("REBOOT_STRATEGY", "fleet-lock")],
                "needs LOCKSMITHD_ENDPOINT",
            ),
            (
                &[("LOCKSMITHD_ETCD_CAFILE", "/nonexistent/ca.pem")],
                "LOCKSMITHD_ETCD_CAFILE=\"/nonexistent/ca.pem\"",
            ),
            (
                &[("LOCKSMITHD_ETCD_CERTFILE", "/x")],
                "must be set together",
            ),
            (
                &[("LOCKSMITHD_ETCD_USERNAME", "root")],
                "must be set together",
            ),
            (
                &[("COORDINATOR_BACKOFF_MIN", "soon")],
                "COORDINATOR_BACKOFF_MIN=\"soon\"",
            ),
            (
                &[("COORDINATOR_HEALTH_GATE", "maybe")],
                "expected `marker` or `none`",
            ),
        ];
        for (pairs, want) in rows {
            let err = crate::error_chain(&cfg(pairs).unwrap_err());
            assert!(err.contains(want), "{pairs:?}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn tls_file_without_pem_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let err = cfg(&[("LOCKSMITHD_ETCD_CAFILE", ca.to_str().unwrap())]).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        assert_eq!(err.error_kind(), "config_tls");
    }
}
