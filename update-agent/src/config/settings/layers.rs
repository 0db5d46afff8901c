//! The settings files as read, layer by layer: the merged values for the
//! daemon, and where each value came from for `update-agent config show`
//! and for naming the file in a validation error.

use std::path::{Path, PathBuf};

use super::fragment::{KeyDoc, SECTIONS};
use super::{Fragment, Settings, SettingsError, config_files};
use crate::config::Root;
use crate::fsutil;

/// One file that was read.
#[derive(Debug, Clone)]
struct Layer {
    /// Host path.
    path: PathBuf,
    /// The `section.key`s it sets.
    keys: Vec<String>,
    /// Its text as a TOML table, to show values as the admin wrote them.
    raw: toml::Table,
}

/// Every settings file under a root (plus `--config`), merged.
#[derive(Debug, Clone)]
pub struct Layers {
    root: Root,
    /// The `--config` file, shown as given.
    extra: Option<PathBuf>,
    files: Vec<Layer>,
    merged: Fragment,
}

/// One key of `config show`: its merged value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Shown {
    /// `section.key` (settings) or the update.conf key.
    pub key: String,
    /// TOML text (settings) or the raw value (update.conf); `None` when
    /// unset.
    pub value: Option<String>,
    /// The file, as a node path (a `--config` file as given); `None` for a
    /// default.
    pub origin: Option<PathBuf>,
}

impl Layers {
    /// Reads the layered files under `root`, then `extra` (a host path).
    pub fn load(root: &Root, extra: Option<&Path>) -> Result<Self, SettingsError> {
        let mut files = config_files(root)?;
        files.extend(extra.map(Path::to_path_buf));
        let mut merged = Fragment::default();
        let mut layers = Vec::with_capacity(files.len());
        for path in files {
            let text = fsutil::read_optional(&path)
                .map_err(|source| SettingsError::Read {
                    path: path.clone(),
                    source,
                })?
                .unwrap_or_default();
            let parse_err = |e| SettingsError::Parse {
                path: path.clone(),
                source: Box::new(e),
            };
            let fragment = Fragment::parse(&text).map_err(parse_err)?;
            let raw: toml::Table = toml::from_str(&text).map_err(parse_err)?;
            layers.push(Layer {
                path,
                keys: fragment.set_keys(),
                raw,
            });
            merged.merge(fragment);
        }
        Ok(Self {
            root: root.clone(),
            extra: extra.map(Path::to_path_buf),
            files: layers,
            merged,
        })
    }

    /// The validated settings; a value error names the file that set it.
    pub fn settings(&self) -> Result<Settings, SettingsError> {
        Settings::from_fragment(self.merged.clone()).map_err(|e| match e {
            SettingsError::Invalid { field, reason, .. } => SettingsError::Invalid {
                origin: self.origin_of_any(&timer_forms(field)),
                field,
                reason,
            },
            other => other,
        })
    }

    /// The last file that set one of `keys` (node path).
    fn origin_of_any(&self, keys: &[String]) -> Option<PathBuf> {
        self.files
            .iter()
            .rev()
            .find(|l| keys.iter().any(|k| l.keys.contains(k)))
            .map(|l| self.node_path(&l.path))
    }

    fn node_path(&self, path: &Path) -> PathBuf {
        if self.extra.as_deref() == Some(path) {
            return path.to_path_buf();
        }
        self.root.node_path(path)
    }

    /// The files read, in order, as node paths (`--config` as given).
    pub fn node_files(&self) -> Vec<PathBuf> {
        self.files.iter().map(|l| self.node_path(&l.path)).collect()
    }

    /// Every key with its merged value and origin. A timer shows the form
    /// that is set (or its unit-less form with the default).
    pub fn shown(&self) -> Vec<Shown> {
        let set = self.merged.set_keys();
        let mut out = Vec::new();
        for (section, _, keys) in SECTIONS {
            for doc in keys {
                let name = format!("{section}.{}", doc.key);
                let is_set = set.contains(&name);
                let other_form_set = || {
                    timer_forms_of(section, doc.key, keys)
                        .iter()
                        .any(|k| *k != name && set.contains(k))
                };
                let shown_unset = doc.form_of(keys).is_none() && !other_form_set();
                if is_set {
                    let layer = self.files.iter().rev().find(|l| l.keys.contains(&name));
                    out.push(Shown {
                        value: layer.and_then(|l| raw_value(&l.raw, section, doc.key)),
                        origin: layer.map(|l| self.node_path(&l.path)),
                        key: name,
                    });
                } else if shown_unset {
                    out.push(Shown {
                        key: name,
                        value: doc.default.map(str::to_string),
                        origin: None,
                    });
                }
            }
        }
        out
    }
}

/// A value from a file's table as TOML text (JSON's syntax for strings,
/// numbers, booleans and arrays is TOML's too).
fn raw_value(raw: &toml::Table, section: &str, key: &str) -> Option<String> {
    let value = raw.get(section)?.get(key)?;
    serde_json::to_string(value).ok()
}

impl KeyDoc {
    /// When this key is the `_secs`/`_ms` form of a duration key of the
    /// same table: that key.
    pub fn form_of(&self, table: &[KeyDoc]) -> Option<&'static str> {
        let base = self
            .key
            .strip_suffix("_secs")
            .or_else(|| self.key.strip_suffix("_ms"))?;
        table
            .iter()
            .find(|k| {
                k.key == base && k.ty == <super::fragment::Dur as super::fragment::TomlType>::NAME
            })
            .map(|k| k.key)
    }
}

/// Every form of the timer `section.key` names (itself when not a timer).
fn timer_forms_of(section: &str, key: &str, table: &[KeyDoc]) -> Vec<String> {
    let base = table
        .iter()
        .find(|k| k.key == key)
        .and_then(|k| k.form_of(table))
        .unwrap_or(key);
    table
        .iter()
        .filter(|k| k.key == base || k.form_of(table) == Some(base))
        .map(|k| format!("{section}.{}", k.key))
        .collect()
}

/// [`timer_forms_of`] for a `section.key` from an error.
fn timer_forms(field: &str) -> Vec<String> {
    let Some((section, key)) = field.split_once('.') else {
        return vec![field.to_string()];
    };
    SECTIONS
        .iter()
        .find(|(s, _, _)| *s == section)
        .map(|(_, _, table)| timer_forms_of(section, key, table))
        .filter(|forms| !forms.is_empty())
        .unwrap_or_else(|| vec![field.to_string()])
}
