//! Flatcar's configuration lookup and node identity, read the way
//! update_engine reads them (`omaha_request_params.cc`), re-read on every
//! check so edits apply without a restart.

use std::io;
use std::path::{Path, PathBuf};

use super::Root;
use crate::fsutil;
use crate::prefs::{self, Prefs};

/// Admin override, searched first.
pub const ETC_UPDATE_CONF: &str = "/etc/flatcar/update.conf";
/// Image-provided `SERVER`/`GROUP`, searched second.
pub const USR_UPDATE_CONF: &str = "/usr/share/flatcar/update.conf";
/// Image release file (`FLATCAR_RELEASE_*`), searched last.
pub const RELEASE_FILE: &str = "/usr/share/flatcar/release";
/// The files searched for a key, in order; the first file holding the key
/// wins.
pub const CONF_FILES: [&str; 3] = [ETC_UPDATE_CONF, USR_UPDATE_CONF, RELEASE_FILE];
/// OEM release files, in order. update_engine reads the first two; current
/// Flatcar mounts the OEM partition at `/oem` (with `/usr/share/oem` pointing
/// there), so `/oem/oem-release` is tried last as well.
pub const OEM_RELEASE_FILES: [&str; 3] = [
    "/etc/oem-release",
    "/usr/share/oem/oem-release",
    "/oem/oem-release",
];
/// systemd machine id.
pub const MACHINE_ID_FILE: &str = "/etc/machine-id";
/// Kernel boot id.
pub const BOOT_ID_FILE: &str = "/proc/sys/kernel/random/boot_id";
/// The public update server, used when `SERVER` is not set.
pub const DEFAULT_SERVER: &str = "https://public.update.flatcar-linux.net/v1/update/";
/// `SERVER=disabled` is the documented way to turn updates off.
pub const SERVER_DISABLED: &str = "disabled";

/// A key of the update.conf files the agent reads (for the configuration
/// reference and `update-agent config show`; the accessors of
/// [`FlatcarConfig`] look the keys up by these names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfKey {
    /// The key, e.g. `SERVER`.
    pub name: &'static str,
    /// The value used when no file sets it (or sets it empty, where noted).
    pub default: &'static str,
    /// What it does.
    pub doc: &'static str,
}

/// `GROUP`: the release channel.
pub const GROUP: ConfKey = ConfKey {
    name: "GROUP",
    default: omaha::DEFAULT_TRACK,
    doc: "Release channel (Omaha track), e.g. `stable`, `beta`, `alpha`, or a Nebraska group id; \
          empty counts as unset. `update_engine_client -channel NAME` writes it to /etc/flatcar/update.conf.",
};
/// `SERVER`: the Omaha endpoint.
pub const SERVER: ConfKey = ConfKey {
    name: "SERVER",
    default: DEFAULT_SERVER,
    doc: "The Omaha server's update URL (`http://127.0.0.1:8080/v1/update/` for a local test server); \
          `disabled` (Flatcar's documented off switch) is no URL: no server is \
          contacted, scheduled checks are skipped and an explicit check fails; empty counts as unset.",
};
/// `MACHINE_ALIAS`.
pub const MACHINE_ALIAS: ConfKey = ConfKey {
    name: "MACHINE_ALIAS",
    default: "",
    doc: "A name for this node that the server shows (Nebraska's alias).",
};
/// `DOWNLOAD_USER`.
pub const DOWNLOAD_USER: ConfKey = ConfKey {
    name: "DOWNLOAD_USER",
    default: "",
    doc: "HTTP basic-auth user for payload downloads (sent over HTTPS only).",
};
/// `DOWNLOAD_PASSWORD`.
pub const DOWNLOAD_PASSWORD: ConfKey = ConfKey {
    name: "DOWNLOAD_PASSWORD",
    default: "",
    doc: "Its password.",
};
/// `FLATCAR_RELEASE_VERSION`.
pub const RELEASE_VERSION: ConfKey = ConfKey {
    name: "FLATCAR_RELEASE_VERSION",
    default: "",
    doc: "The running version, normally from /usr/share/flatcar/release; the server compares offers with it. \
          Unknown (empty): no update is taken unless `install.allow_downgrade` is set.",
};
/// `FLATCAR_RELEASE_BOARD`.
pub const RELEASE_BOARD: ConfKey = ConfKey {
    name: "FLATCAR_RELEASE_BOARD",
    default: "",
    doc: "The board (`amd64-usr`, `arm64-usr`); signed payloads must name the same. \
          Unknown (empty): no update is taken.",
};
/// `FLATCAR_RELEASE_APPID`.
pub const RELEASE_APPID: ConfKey = ConfKey {
    name: "FLATCAR_RELEASE_APPID",
    default: omaha::FLATCAR_APP_ID,
    doc: "The Omaha app id; empty counts as unset.",
};
/// Every update.conf key the agent reads, in the reference's order.
pub const CONF_KEYS: [ConfKey; 8] = [
    SERVER,
    GROUP,
    MACHINE_ALIAS,
    DOWNLOAD_USER,
    DOWNLOAD_PASSWORD,
    RELEASE_VERSION,
    RELEASE_BOARD,
    RELEASE_APPID,
];

/// Why reading the Flatcar configuration failed.
#[derive(Debug, thiserror::Error)]
pub enum FlatcarConfigError {
    /// A file exists but cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Writing `/etc/flatcar/update.conf` failed.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A value cannot be written to update.conf.
    #[error("invalid {key} value {value:?}: {reason}")]
    InvalidValue {
        /// The key.
        key: &'static str,
        /// The rejected value.
        value: String,
        /// Why.
        reason: &'static str,
    },
}

impl FlatcarConfigError {
    /// A stable, machine-readable name for the failure class.
    pub fn error_kind(&self) -> &'static str {
        match self {
            Self::Read { .. } => "config_read",
            Self::Write { .. } => "config_write",
            Self::InvalidValue { .. } => "config_invalid_value",
        }
    }
}

/// Parses update_engine's key-value format (`simple_key_value_store.cc`):
/// lines split on `\n` and the first `=`; no trimming and no comments; lines
/// without `=` are skipped; one pair of surrounding `"…"` or `'…'` is
/// stripped from the value (Flatcar#1209). Later duplicates win within a file.
pub fn parse_key_values(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(value);
        if let Some(slot) = out.iter_mut().find(|(k, _)| k == key) {
            slot.1 = value.to_string();
        } else {
            out.push((key.to_string(), value.to_string()));
        }
    }
    out
}

fn unquote(value: &str) -> &str {
    for q in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(q) && value.ends_with(q) {
            return &value[1..value.len() - 1];
        }
    }
    value
}

fn read_file(path: &Path) -> Result<Option<String>, FlatcarConfigError> {
    fsutil::read_optional(path).map_err(|source| FlatcarConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The three-file lookup of `update.conf` keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlatcarConfig {
    /// Each file that exists, in search order, with its pairs.
    files: Vec<(PathBuf, Vec<(String, String)>)>,
}

impl FlatcarConfig {
    /// Reads [`CONF_FILES`] under `root`. Missing files are skipped; a file
    /// that exists but cannot be read is an error (silently falling back to
    /// the public server would be worse).
    pub fn load(root: &Root) -> Result<Self, FlatcarConfigError> {
        let mut files = Vec::new();
        for name in CONF_FILES {
            let path = root.join(name);
            if let Some(text) = read_file(&path)? {
                files.push((path, parse_key_values(&text)));
            }
        }
        Ok(Self { files })
    }

    /// Builds a lookup from in-memory file contents, in search order.
    pub fn from_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            files: texts
                .into_iter()
                .map(|t| (PathBuf::new(), parse_key_values(t)))
                .collect(),
        }
    }

    /// The value of `key` from the first file that has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.files.iter().find_map(|(_, pairs)| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        })
    }

    /// The file `key` was taken from (for logs).
    pub fn source_of(&self, key: &str) -> Option<&Path> {
        self.files
            .iter()
            .find(|(_, pairs)| pairs.iter().any(|(k, _)| k == key))
            .map(|(p, _)| p.as_path())
    }

    fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// `GROUP`, default `stable`. An empty value counts as unset.
    pub fn group(&self) -> &str {
        match self.get(GROUP.name) {
            Some(g) if !g.is_empty() => g,
            _ => GROUP.default,
        }
    }

    /// `SERVER`, default [`DEFAULT_SERVER`]. An empty value counts as unset.
    pub fn server(&self) -> &str {
        match self.get(SERVER.name) {
            Some(s) if !s.is_empty() => s,
            _ => SERVER.default,
        }
    }

    /// Whether `SERVER=disabled`.
    pub fn updates_disabled(&self) -> bool {
        self.server() == SERVER_DISABLED
    }

    /// `MACHINE_ALIAS`, default "".
    pub fn machine_alias(&self) -> &str {
        self.get_or(MACHINE_ALIAS.name, MACHINE_ALIAS.default)
    }

    /// `DOWNLOAD_USER`/`DOWNLOAD_PASSWORD` when the user is set. Callers
    /// must only send them over HTTPS.
    pub fn download_credentials(&self) -> Option<(&str, &str)> {
        match self.get(DOWNLOAD_USER.name) {
            Some(user) if !user.is_empty() => Some((
                user,
                self.get_or(DOWNLOAD_PASSWORD.name, DOWNLOAD_PASSWORD.default),
            )),
            _ => None,
        }
    }

    /// `FLATCAR_RELEASE_VERSION`, default "".
    pub fn version(&self) -> &str {
        self.get_or(RELEASE_VERSION.name, RELEASE_VERSION.default)
    }

    /// `FLATCAR_RELEASE_BOARD`, default "".
    pub fn board(&self) -> &str {
        self.get_or(RELEASE_BOARD.name, RELEASE_BOARD.default)
    }

    /// `FLATCAR_RELEASE_APPID`, default [`omaha::FLATCAR_APP_ID`].
    pub fn app_id(&self) -> &str {
        match self.get(RELEASE_APPID.name) {
            Some(a) if !a.is_empty() => a,
            _ => RELEASE_APPID.default,
        }
    }
}

/// Everything the Omaha request says about this node, read fresh for each
/// check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// The `update.conf` lookup the values came from.
    pub config: FlatcarConfig,
    /// `/etc/machine-id`, trimmed.
    pub machine_id: String,
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: omaha::BootId,
    /// `ID` from oem-release.
    pub oem_id: String,
    /// `VERSION_ID` from oem-release.
    pub oem_version: String,
    /// Pref `aleph-version`, `None` when not recorded yet.
    pub aleph_version: Option<String>,
    /// `uname -m`.
    pub arch: String,
}

/// Omaha servers tell nodes apart by the machine id: say so once per run
/// when it (or the boot id) is missing instead of sending empty values
/// silently.
fn warn_missing_once(machine_id: &str, boot_id: &omaha::BootId) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    if machine_id.is_empty() || boot_id.as_str().is_empty() {
        WARNED.call_once(|| {
            tracing::warn!(
                "{} or {} is missing or empty: the update server sees an empty id \
                 (every such node looks the same to it)",
                MACHINE_ID_FILE,
                BOOT_ID_FILE
            )
        });
    }
}

impl NodeIdentity {
    /// Reads the configuration and identity files under `root` and the
    /// `aleph-version` pref. Missing identity files give empty values, as in
    /// update_engine.
    pub fn load(root: &Root, prefs: &Prefs) -> Result<Self, FlatcarConfigError> {
        let config = FlatcarConfig::load(root)?;
        let machine_id = read_file(&root.join(MACHINE_ID_FILE))?
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let boot_id: omaha::BootId = read_file(&root.join(BOOT_ID_FILE))?
            .unwrap_or_default()
            .parse()
            .unwrap_or_default();
        warn_missing_once(&machine_id, &boot_id);
        let mut oem = None;
        for name in OEM_RELEASE_FILES {
            if let Some(text) = read_file(&root.join(name))? {
                oem = Some(parse_key_values(&text));
                break;
            }
        }
        let oem = oem.unwrap_or_default();
        let oem_value = |key: &str| {
            oem.iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let aleph_version = prefs
            .get(prefs::ALEPH_VERSION)
            .map_err(|source| FlatcarConfigError::Read {
                path: prefs.dir().join(prefs::ALEPH_VERSION),
                source,
            })?
            .filter(|v| !v.is_empty());
        Ok(Self {
            machine_id,
            boot_id,
            oem_id: oem_value("ID"),
            oem_version: oem_value("VERSION_ID"),
            aleph_version,
            arch: std::env::consts::ARCH.to_string(),
            config,
        })
    }

    /// Records the running version as `aleph-version` if none is recorded
    /// yet (update_engine does this on the first check).
    pub fn ensure_aleph_version(&mut self, prefs: &Prefs) -> io::Result<()> {
        if self.aleph_version.is_none() && !self.config.version().is_empty() {
            let version = self.config.version().to_string();
            prefs.set(prefs::ALEPH_VERSION, &version)?;
            self.aleph_version = Some(version);
        }
        Ok(())
    }

    /// The Omaha request attributes.
    pub fn client_info(&self) -> omaha::ClientInfo {
        let c = &self.config;
        omaha::ClientInfo {
            app_id: c.app_id().to_string(),
            version: c.version().to_string(),
            arch: self.arch.clone(),
            track: c.group().to_string(),
            boot_id: self.boot_id.clone(),
            oem: self.oem_id.clone(),
            oem_version: self.oem_version.clone(),
            aleph_version: self
                .aleph_version
                .clone()
                .unwrap_or_else(|| c.version().to_string()),
            machine_id: self.machine_id.clone(),
            machine_alias: c.machine_alias().to_string(),
            board: c.board().to_string(),
            ..Default::default()
        }
    }

    /// The `TestOmahaUrl` error flag: set when `SERVER` is not the public
    /// server (every private Nebraska user reports it).
    pub fn error_flags(&self) -> omaha::ErrorFlags {
        omaha::ErrorFlags {
            test_omaha_url: self.config.server() != DEFAULT_SERVER,
            ..omaha::ErrorFlags::NONE
        }
    }
}

/// Switches the release channel: sets `GROUP=<group>` in
/// `/etc/flatcar/update.conf` (created if missing), keeping every other line.
/// The first `GROUP=` line is replaced and later ones are dropped (a later
/// one would win). The file is replaced atomically.
pub fn set_group(root: &Root, group: &str) -> Result<(), FlatcarConfigError> {
    let invalid = |reason| FlatcarConfigError::InvalidValue {
        key: "GROUP",
        value: group.to_string(),
        reason,
    };
    if group.is_empty() {
        return Err(invalid("empty"));
    }
    if group.chars().any(|c| c.is_control()) {
        return Err(invalid("contains a control character"));
    }
    let path = root.join(ETC_UPDATE_CONF);
    let old = read_file(&path)?.unwrap_or_default();
    let mut out = String::with_capacity(old.len() + group.len() + 8);
    let mut replaced = false;
    let mut lines: Vec<&str> = old.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    for line in lines {
        if line.starts_with("GROUP=") {
            if replaced {
                continue;
            }
            replaced = true;
            out.push_str("GROUP=");
            out.push_str(group);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !replaced {
        out.push_str("GROUP=");
        out.push_str(group);
        out.push('\n');
    }
    let write_err = |source| FlatcarConfigError::Write {
        path: path.clone(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    fsutil::write_atomic(&path, out.as_bytes(), 0o644).map_err(write_err)
}

#[cfg(test)]
mod tests;
