//! Which system extensions a release needs on this node, where they go and
//! what is pruned afterwards: pure functions over what the node's and the
//! new image's files say (Flatcar's `flatcar-postinst` rules,
//! `flatcar-compat.md` §5.6).

use std::collections::BTreeSet;

use omaha::response::Package;

/// Why the extension plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A name that cannot be a file name part (from `oem-release` or an
    /// `enabled-sysext.conf`).
    #[error("{source_file}: {name:?} is not a valid extension name")]
    BadName {
        /// The file it came from.
        source_file: &'static str,
        /// The name.
        name: String,
    },
    /// The answer does not offer an image this node needs (Flatcar's
    /// postinst fails the update then, code 5).
    #[error("the update offers no {package}, which this node needs")]
    Missing {
        /// The package name looked for.
        package: String,
    },
    /// The answer offers it without a SHA-256 to check the download by.
    #[error("package {package} has no hash_sha256")]
    Unhashed {
        /// The package name.
        package: String,
    },
}

/// What the node's own files say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// `ID` of `<oem>/oem-release`.
    pub oem_id: Option<String>,
    /// `<oem>/sysext/active-oem-<ID>` exists.
    pub oem_active: bool,
    /// `/etc/flatcar/enabled-sysext.conf` (empty when absent).
    pub etc_enabled: String,
}

/// What the new USR image says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFacts {
    /// `share/flatcar/oems/<ID>` exists in the new image.
    pub lists_oem: bool,
    /// The new image's `share/flatcar/enabled-sysext.conf`.
    pub default_enabled: String,
}

/// The two kinds of images placed next to USR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// The node's OEM image `oem-<ID>`.
    Oem,
    /// An official extension `flatcar-<NAME>`.
    Extension,
}

/// One image this node needs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wanted {
    /// OEM or extension.
    pub kind: Kind,
    /// The OEM `ID` or the extension's `NAME`.
    pub name: String,
}

impl Wanted {
    /// `oem-<ID>` or `flatcar-<NAME>`.
    pub fn stem(&self) -> String {
        match self.kind {
            Kind::Oem => format!("oem-{}", self.name),
            Kind::Extension => format!("flatcar-{}", self.name),
        }
    }

    /// The package in the Omaha answer: `<stem>.gz`.
    pub fn package_name(&self) -> String {
        format!("{}.gz", self.stem())
    }

    /// The placed file: `<stem>-<VERSION>.raw`.
    pub fn file_name(&self, version: &str) -> String {
        format!("{}-{version}.raw", self.stem())
    }
}

/// Whether `name` can go into a file name: what Flatcar's extension and
/// OEM names look like (`azure`, `zfs`, `python3.11`), and never `/`, `..`
/// or a leading dot.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
        && !name.contains("..")
}

fn checked(name: &str, source_file: &'static str) -> Result<String, PlanError> {
    if valid_name(name) {
        Ok(name.to_string())
    } else {
        Err(PlanError::BadName {
            source_file,
            name: name.to_string(),
        })
    }
}

/// The names of one `enabled-sysext.conf`: text before `#`, trimmed, one
/// per line.
fn entries(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
}

/// The enabled extensions: the names in `/etc`'s and the image's
/// `enabled-sysext.conf`, minus those a `-NAME` line in `/etc` disables
/// (as Flatcar's postinst and initrd read them).
pub fn enabled_extensions(etc: &str, image: &str) -> Result<BTreeSet<String>, PlanError> {
    const ETC: &str = "/etc/flatcar/enabled-sysext.conf";
    const IMAGE: &str = "share/flatcar/enabled-sysext.conf in the new image";
    let disabled: BTreeSet<&str> = entries(etc).filter_map(|l| l.strip_prefix('-')).collect();
    let mut enabled = BTreeSet::new();
    for (text, file) in [(etc, ETC), (image, IMAGE)] {
        for name in entries(text).filter(|l| !l.starts_with('-')) {
            if !disabled.contains(name) {
                enabled.insert(checked(name, file)?);
            }
        }
    }
    Ok(enabled)
}

/// `ID` of an `oem-release` file (quotes removed), if any.
pub fn oem_id(oem_release: &str) -> Result<Option<String>, PlanError> {
    let Some(value) = oem_release.lines().find_map(|l| l.strip_prefix("ID=")) else {
        return Ok(None);
    };
    let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
    if value.is_empty() {
        return Ok(None);
    }
    checked(value, "oem-release").map(Some)
}

/// Every image the new release needs on this node: the OEM image when the
/// node has an OEM `ID` that the new image lists or that is already active
/// as a sysext, and each enabled extension.
pub fn wanted(node: &NodeFacts, image: &ImageFacts) -> Result<Vec<Wanted>, PlanError> {
    let mut out = Vec::new();
    if let Some(id) = &node.oem_id
        && (image.lists_oem || node.oem_active)
    {
        out.push(Wanted {
            kind: Kind::Oem,
            name: id.clone(),
        });
    }
    for name in enabled_extensions(&node.etc_enabled, &image.default_enabled)? {
        out.push(Wanted {
            kind: Kind::Extension,
            name,
        });
    }
    Ok(out)
}

/// The answer's package for each wanted image. A missing one is an error;
/// packages nobody wants are never chosen (so never downloaded).
pub fn choose(wanted: &[Wanted], offered: &[Package]) -> Result<Vec<(Wanted, Package)>, PlanError> {
    wanted
        .iter()
        .map(|w| {
            let package = w.package_name();
            let p =
                offered
                    .iter()
                    .find(|p| p.name == package)
                    .ok_or_else(|| PlanError::Missing {
                        package: package.clone(),
                    })?;
            if p.sha256.is_none() {
                return Err(PlanError::Unhashed { package });
            }
            Ok((w.clone(), p.clone()))
        })
        .collect()
}

/// Whether the answer offers any extension image at all (`oem-*.gz`,
/// `flatcar-*.gz`): a node without extension settings still looks at the
/// new image's defaults then.
pub fn offers_extensions(offered: &[Package]) -> bool {
    offered.iter().any(|p| {
        p.name.ends_with(".gz") && (p.name.starts_with("oem-") || p.name.starts_with("flatcar-"))
    })
}

/// The OEM flag files to create after the new OEM image is placed, as
/// Flatcar's postinst does when a node moves to OEM sysexts: only when
/// the running version's image (or the `-initial` one) exists and the
/// node is not marked active yet; `migrate-oem-<ID>` when the new image
/// lists the OEM.
pub fn oem_flags(id: &str, keep_exists: bool, active: bool, lists_oem: bool) -> Vec<String> {
    if !keep_exists || active {
        return Vec::new();
    }
    let mut flags = Vec::new();
    if lists_oem {
        flags.push(format!("migrate-oem-{id}"));
    }
    flags.push(format!("active-oem-{id}"));
    flags
}

/// Of the file names in an OEM sysext directory, those to prune after the
/// commit: every `oem*.raw` but the running version's, the new one and the
/// `-initial` image (both slots' images stay bootable).
pub fn oem_prunable<'a>(names: &'a [String], id: &str, running: &str, new: &str) -> Vec<&'a str> {
    let keep = [
        format!("oem-{id}-{running}.raw"),
        format!("oem-{id}-{new}.raw"),
        format!("oem-{id}-initial.raw"),
    ];
    names
        .iter()
        .map(String::as_str)
        .filter(|n| n.starts_with("oem") && n.ends_with(".raw") && !keep.iter().any(|k| k == n))
        .collect()
}

/// Of the file names in `/etc/flatcar/sysext`, those to prune after the
/// commit: `flatcar*.raw` that are not an enabled extension's image for
/// the running or the new version.
pub fn extensions_prunable<'a>(
    names: &'a [String],
    enabled: &BTreeSet<String>,
    running: &str,
    new: &str,
) -> Vec<&'a str> {
    let keep: BTreeSet<String> = enabled
        .iter()
        .flat_map(|n| [running, new].map(|v| format!("flatcar-{n}-{v}.raw")))
        .collect();
    names
        .iter()
        .map(String::as_str)
        .filter(|n| n.starts_with("flatcar") && n.ends_with(".raw") && !keep.contains(*n))
        .collect()
}

/// The partitions of a (v2) release's own manifest worth writing to
/// files while USR streams in: the node's OEM image and every extension
/// `/etc` does not disable (the new image's defaults are not known before
/// it is written). Other partitions are verified but not written.
pub fn manifest_candidates(node: &NodeFacts, partitions: &[String]) -> Vec<Wanted> {
    let disabled: BTreeSet<&str> = entries(&node.etc_enabled)
        .filter_map(|l| l.strip_prefix('-'))
        .collect();
    partitions
        .iter()
        .filter_map(|p| {
            if let Some(id) = p.strip_prefix("oem-") {
                (node.oem_id.as_deref() == Some(id)).then(|| Wanted {
                    kind: Kind::Oem,
                    name: id.to_string(),
                })
            } else {
                let name = p.strip_prefix("flatcar-")?;
                (valid_name(name) && !disabled.contains(name)).then(|| Wanted {
                    kind: Kind::Extension,
                    name: name.to_string(),
                })
            }
        })
        .collect()
}

/// Whether a partition of a release's manifest may go unwritten: only
/// extension images (anything else is an unknown partition).
pub fn is_extension_partition(name: &str) -> bool {
    name.starts_with("oem-") || name.starts_with("flatcar-")
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
