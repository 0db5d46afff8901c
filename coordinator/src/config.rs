//! locksmithd's configuration, read from Flatcar's update.conf files.
//!
//! Three layers, no side effects until the last one: [`KeyValues`] (raw `KEY=VALUE` pairs,
//! `/etc/flatcar/update.conf` over `/usr/share/flatcar/update.conf`) → [`Config::from_values`]
//! (defaults, validation, TLS files read and checked) → the coordinator.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::window::{Window, WindowError, parse_go_duration};

/// Where Flatcar keeps update.conf, most important first (the first file holding a key wins).
pub const UPDATE_CONF_PATHS: [&str; 2] =
    ["etc/flatcar/update.conf", "usr/share/flatcar/update.conf"];

/// locksmithd's default etcd endpoints.
pub const DEFAULT_ENDPOINTS: [&str; 2] = ["http://127.0.0.1:2379", "http://127.0.0.1:4001"];

/// Raw configuration pairs; the first layer that holds a key wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyValues(HashMap<String, String>);

impl KeyValues {
    /// Parses one update.conf: `KEY=VALUE` lines split on the first `=`, blank lines and `#`
    /// comments skipped, one pair of surrounding `"…"` or `'…'` stripped (as systemd's
    /// `EnvironmentFile=` does for locksmithd).
    pub fn parse(text: &str) -> Self {
        let mut map = HashMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim();
            let value = strip_quotes(value);
            map.insert(key.trim().to_owned(), value.to_owned());
        }
        KeyValues(map)
    }

    /// Reads the update.conf files under `root` (`/` on a real node); missing files are fine.
    pub fn load(root: &Path) -> Result<Self, ConfigError> {
        let mut merged = KeyValues::default();
        for rel in UPDATE_CONF_PATHS {
            let path = root.join(rel);
            match std::fs::read_to_string(&path) {
                Ok(text) => merged.fill_from(KeyValues::parse(&text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(ConfigError::Read { path, source }),
            }
        }
        Ok(merged)
    }

    /// Adds the keys of `lower` that this map does not have yet.
    pub fn fill_from(&mut self, lower: KeyValues) {
        for (k, v) in lower.0 {
            self.0.entry(k).or_insert(v);
        }
    }

    /// Sets a key (highest precedence), e.g. from the process environment.
    pub fn set(&mut self, key: &str, value: &str) {
        self.0.insert(key.to_owned(), value.to_owned());
    }

    /// The value of `key`, `None` when absent or empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for KeyValues {
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        KeyValues(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

fn strip_quotes(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

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
    pub username: String,
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
    pub min: Duration,
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
    pub strategy: Strategy,
    pub window: Option<Window>,
    /// etcd endpoints, or the FleetLock base URL (first entry) for `fleet-lock`.
    pub endpoints: Vec<String>,
    pub tls: Tls,
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
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("REBOOT_STRATEGY={0:?} is not one of reboot, etcd-lock, fleet-lock, off")]
    UnknownStrategy(String),
    #[error("reboot window: {0}")]
    Window(#[from] WindowError),
    #[error("{key}={value:?}: {reason}")]
    BadValue {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("LOCKSMITHD_ENDPOINT: {value:?} is not an http:// or https:// URL")]
    BadEndpoint { value: String },
    #[error("{key}={path:?}: {source}")]
    TlsFile {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{key}={path:?}: no PEM {what} in the file")]
    TlsPem {
        key: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    #[error("LOCKSMITHD_ETCD_CERTFILE and LOCKSMITHD_ETCD_KEYFILE must be set together")]
    CertWithoutKey,
    #[error("LOCKSMITHD_ETCD_USERNAME and LOCKSMITHD_ETCD_PASSWORD must be set together")]
    UserWithoutPassword,
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
            ConfigError::BadValue { .. } => "config_value",
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
        Some(v) => parse_go_duration(v).map_err(|e| ConfigError::BadValue {
            key,
            value: v.to_owned(),
            reason: e.to_string(),
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

        // locksmithd: REBOOT_WINDOW_* first, the older LOCKSMITHD_REBOOT_WINDOW_* when both are unset.
        let (mut start, mut length) = (
            kv.get("REBOOT_WINDOW_START"),
            kv.get("REBOOT_WINDOW_LENGTH"),
        );
        if start.is_none() && length.is_none() {
            start = kv.get("LOCKSMITHD_REBOOT_WINDOW_START");
            length = kv.get("LOCKSMITHD_REBOOT_WINDOW_LENGTH");
        }
        let window = match (start, length) {
            (None, None) => None,
            (Some(s), Some(l)) => Some(Window::parse(s, l)?),
            _ => return Err(WindowError::HalfSet.into()),
        };

        let explicit_endpoints = kv.get("LOCKSMITHD_ENDPOINT");
        let endpoints: Vec<String> = match explicit_endpoints {
            Some(v) => v
                .split(',')
                .map(|e| e.trim().trim_end_matches('/').to_owned())
                .collect(),
            None => DEFAULT_ENDPOINTS.iter().map(|e| e.to_string()).collect(),
        };
        for e in &endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://"))
                || e.len() < "http://x".len()
            {
                return Err(ConfigError::BadEndpoint { value: e.clone() });
            }
        }
        if strategy == Strategy::FleetLock && explicit_endpoints.is_none() {
            return Err(ConfigError::FleetLockWithoutEndpoint);
        }

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

        let auth = match (
            kv.get("LOCKSMITHD_ETCD_USERNAME"),
            kv.get("LOCKSMITHD_ETCD_PASSWORD"),
        ) {
            (None, None) => None,
            (Some(u), Some(p)) => Some(Auth {
                username: u.to_owned(),
                password: p.to_owned(),
            }),
            _ => return Err(ConfigError::UserWithoutPassword),
        };

        let backoff = Backoff {
            min: duration_key(kv, "COORDINATOR_BACKOFF_MIN", Duration::from_secs(5))?,
            max: duration_key(kv, "COORDINATOR_BACKOFF_MAX", Duration::from_secs(300))?,
        };
        if backoff.min.is_zero() || backoff.max < backoff.min {
            return Err(ConfigError::BadValue {
                key: "COORDINATOR_BACKOFF_MAX",
                value: format!("{:?}", backoff.max),
                reason: "backoff bounds must satisfy 0 < min <= max".into(),
            });
        }
        let poll_interval = duration_key(kv, "COORDINATOR_POLL_INTERVAL", Duration::from_secs(5))?;
        if poll_interval.is_zero() {
            return Err(ConfigError::BadValue {
                key: "COORDINATOR_POLL_INTERVAL",
                value: "0".into(),
                reason: "must be positive".into(),
            });
        }
        let health_gate = match kv.get("COORDINATOR_HEALTH_GATE").unwrap_or("marker") {
            "marker" => true,
            "none" => false,
            other => {
                return Err(ConfigError::BadValue {
                    key: "COORDINATOR_HEALTH_GATE",
                    value: other.to_owned(),
                    reason: "expected `marker` or `none`".into(),
                });
            }
        };

        Ok(Config {
            strategy,
            window,
            endpoints,
            tls: Tls {
                ca_pem,
                identity_pem,
            },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_values(&pairs.iter().copied().collect())
    }

    #[test]
    fn parse_quotes_comments_first_equals() {
        let kv =
            KeyValues::parse("# c\nGROUP=\"beta\"\n\nREBOOT_STRATEGY='etcd-lock'\nX=a=b\nnoeq\n");
        assert_eq!(kv.get("GROUP"), Some("beta"));
        assert_eq!(kv.get("REBOOT_STRATEGY"), Some("etcd-lock"));
        assert_eq!(kv.get("X"), Some("a=b"));
        assert_eq!(kv.get("noeq"), None);
    }

    #[test]
    fn etc_wins_over_usr_share() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/flatcar")).unwrap();
        std::fs::create_dir_all(dir.path().join("usr/share/flatcar")).unwrap();
        std::fs::write(
            dir.path().join("etc/flatcar/update.conf"),
            "REBOOT_STRATEGY=off\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("usr/share/flatcar/update.conf"),
            "REBOOT_STRATEGY=reboot\nGROUP=stable\n",
        )
        .unwrap();
        let kv = KeyValues::load(dir.path()).unwrap();
        assert_eq!(kv.get("REBOOT_STRATEGY"), Some("off"));
        assert_eq!(kv.get("GROUP"), Some("stable"));
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
            let err = cfg(pairs).unwrap_err().to_string();
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
