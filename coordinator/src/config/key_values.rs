//! The first layer: raw `KEY=VALUE` pairs from update.conf files, no validation.

use std::collections::HashMap;
use std::path::Path;

use super::ConfigError;

/// Where Flatcar keeps update.conf, most important first (the first file holding a key wins).
pub const UPDATE_CONF_PATHS: [&str; 2] =
    ["etc/flatcar/update.conf", "usr/share/flatcar/update.conf"];

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
