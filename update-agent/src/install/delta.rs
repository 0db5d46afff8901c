//! Deltas through an unmodified Omaha server: a delta from version F is an
//! extra `<package>` named `delta-<F>.gz` in the same answer as the full
//! payload. When the node runs F and takes deltas, the agent applies it
//! with the booted slot (and kernel) as its read-only source; any failure
//! falls back to the full payload in the same attempt, and that delta is
//! not tried again for that version.

use omaha::UpdateInfo;
use omaha::response::Package;

use super::InstallError;

/// Pref listing the deltas that failed, one `<new version> <from version>`
/// per line: they are not tried again.
pub const FAILED_DELTAS_PREF: &str = "update-agent-failed-deltas";

/// The package name of a delta from `from`.
pub fn package_name(from: &str) -> String {
    format!("delta-{from}.gz")
}

/// The pref line recording that the delta to `new` from `from` failed.
pub fn failed_entry(new: &str, from: &str) -> String {
    format!("{new} {from}")
}

/// The delta package to try first: `delta-<running>.gz` when deltas are
/// on, it has a SHA-256 to check it by, and it has not failed before for
/// this version (`failed`: the pref's text).
pub fn choose<'a>(
    info: &'a UpdateInfo,
    running: &str,
    enabled: bool,
    failed: &str,
) -> Option<&'a Package> {
    if !enabled || running.is_empty() {
        return None;
    }
    let name = package_name(running);
    let entry = failed_entry(&info.version, running);
    if failed.lines().any(|l| l.trim() == entry) {
        tracing::info!(
            "not trying {name} again: it failed before for {}",
            info.version
        );
        return None;
    }
    info.extra_packages
        .iter()
        .find(|p| p.name == name && p.sha256.is_some())
}

/// Whether a failed delta attempt goes on with the full payload: anything
/// about the delta or its server does (a modified booted slot shows as a
/// source hash mismatch); a cancel or local trouble that would fail the
/// full payload too does not.
pub fn falls_back(e: &InstallError) -> bool {
    e.counts_against_payload()
}

/// Which payload an attempt streams: the full one or a delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadChoice {
    /// Package name (for logs).
    pub name: String,
    /// Its URLs, in order.
    pub urls: Vec<String>,
    /// Its size.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
    /// A delta against the booted slot.
    pub delta: bool,
}

impl PayloadChoice {
    /// The answer's full payload.
    pub fn full(info: &UpdateInfo) -> Self {
        Self {
            name: info.payload.name.clone(),
            urls: info.payload_urls(),
            size: info.payload.size,
            sha256: info.postinstall.sha256,
            delta: false,
        }
    }

    /// A delta package of the answer (`choose` made sure it is hashed).
    pub fn delta(info: &UpdateInfo, p: &Package) -> Self {
        Self {
            name: p.name.clone(),
            urls: info.package_urls(p),
            size: p.size,
            sha256: p.sha256.unwrap_or_default(),
            delta: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omaha::response::{DEFAULT_MAX_FAILURE_COUNT_PER_URL, PostinstallAction};

    fn info(packages: &[&str]) -> UpdateInfo {
        let pkg = |name: &str| Package {
            name: name.into(),
            size: 1,
            sha1: None,
            sha256: Some([2; 32]),
            required: false,
        };
        UpdateInfo {
            version: "3600.0.0".into(),
            urls: vec!["http://127.0.0.1/".into()],
            payload: pkg("flatcar_production_update.gz"),
            extra_packages: packages.iter().map(|n| pkg(n)).collect(),
            postinstall: PostinstallAction {
                sha256: [1; 32],
                disable_payload_backoff: false,
                is_delta_payload: false,
                max_failure_count_per_url: DEFAULT_MAX_FAILURE_COUNT_PER_URL,
                needs_admin: None,
                other_attributes: Default::default(),
            },
            is_floor: false,
            floor_reason: None,
            is_target: false,
            ignored_manifests: 0,
        }
    }

    #[test]
    fn only_the_delta_from_the_running_version_and_only_once() {
        let i = info(&["delta-3400.0.0.gz", "delta-3510.2.0.gz", "oem-azure.gz"]);
        let got = choose(&i, "3510.2.0", true, "").map(|p| p.name.as_str());
        assert_eq!(got, Some("delta-3510.2.0.gz"));
        assert_eq!(choose(&i, "3510.2.0", false, ""), None, "deltas off");
        assert_eq!(choose(&i, "3500.0.0", true, ""), None, "no delta from 3500");
        let failed = format!(
            "3599.0.0 3510.2.0\n{}\n",
            failed_entry("3600.0.0", "3510.2.0")
        );
        assert_eq!(choose(&i, "3510.2.0", true, &failed), None, "failed before");
        let mut unhashed = info(&["delta-3510.2.0.gz"]);
        unhashed.extra_packages[0].sha256 = None;
        assert_eq!(choose(&unhashed, "3510.2.0", true, ""), None);
        let d = PayloadChoice::delta(&i, &i.extra_packages[1]);
        assert_eq!(d.urls, ["http://127.0.0.1/delta-3510.2.0.gz"]);
        assert!(d.delta && !PayloadChoice::full(&i).delta);
    }
}
