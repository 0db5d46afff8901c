//! Local policies Flatcar lacks: no downgrade unless allowed, nothing from
//! the deny list.

use std::cmp::Ordering as CmpOrdering;

use crate::denylist::Denied;

/// Why an offered update is not installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyRefusal {
    /// Lower than the running version.
    #[error(
        "refusing downgrade from {running} to {offered} (set install.allow_downgrade = true to allow)"
    )]
    Downgrade {
        /// Offered.
        offered: String,
        /// Running.
        running: String,
    },
    /// The running version is unknown (no `FLATCAR_RELEASE_VERSION`), so a
    /// downgrade cannot be ruled out.
    #[error(
        "refusing {offered}: the running version is unknown (no FLATCAR_RELEASE_VERSION in /usr/share/flatcar/release); set install.allow_downgrade = true to install anyway"
    )]
    UnknownRunning {
        /// Offered.
        offered: String,
    },
    /// The node's board is unknown (no `FLATCAR_RELEASE_BOARD`), so another
    /// board's release cannot be told apart.
    #[error(
        "refusing {offered}: this node's board is unknown (no FLATCAR_RELEASE_BOARD in /usr/share/flatcar/release); set it in /etc/flatcar/update.conf"
    )]
    UnknownBoard {
        /// Offered.
        offered: String,
    },
    /// On the local deny list.
    #[error(
        "version {version} is on the local deny list ({reason}); allow it again with `update_engine_client -undeny {version}` (or -clear_deny_list)"
    )]
    Denied {
        /// The version.
        version: String,
        /// Why it was denied.
        reason: String,
    },
}

impl PolicyRefusal {
    /// A stable name for logs, `LastError` and the metrics.
    pub fn error_kind(&self) -> &'static str {
        match self {
            Self::Downgrade { .. } => "downgrade_refused",
            Self::UnknownRunning { .. } => "running_version_unknown",
            Self::UnknownBoard { .. } => "board_unknown",
            Self::Denied { .. } => "deny_listed",
        }
    }
}

/// Compares dotted versions numerically (`3510.10.0 > 3510.9.1`); a part
/// that is not a number compares as text; build metadata after `+` is
/// ignored.
pub fn compare_versions(a: &str, b: &str) -> CmpOrdering {
    let strip = |v: &str| v.split('+').next().unwrap_or("").to_string();
    let (a, b) = (strip(a), strip(b));
    let mut pa = a.split('.');
    let mut pb = b.split('.');
    loop {
        match (pa.next(), pb.next()) {
            (None, None) => return CmpOrdering::Equal,
            (Some(x), None) => {
                return if x.is_empty() {
                    CmpOrdering::Equal
                } else {
                    CmpOrdering::Greater
                };
            }
            (None, Some(y)) => {
                return if y.is_empty() {
                    CmpOrdering::Equal
                } else {
                    CmpOrdering::Less
                };
            }
            (Some(x), Some(y)) => {
                let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => x.cmp(y),
                };
                if ord != CmpOrdering::Equal {
                    return ord;
                }
            }
        }
    }
}

/// The local policies Flatcar lacks. `running` and `board` are the node's
/// (`FLATCAR_RELEASE_*`, empty when unknown); a node that does not know its
/// board cannot tell another board's release from its own, whatever
/// `allow_downgrade` says.
pub fn check_policy(
    offered: &str,
    (running, board): (&str, &str),
    allow_downgrade: bool,
    denied: Option<&Denied>,
) -> Result<(), PolicyRefusal> {
    if let Some(d) = denied {
        return Err(PolicyRefusal::Denied {
            version: d.version.clone(),
            reason: d.reason.clone(),
        });
    }
    if board.is_empty() {
        return Err(PolicyRefusal::UnknownBoard {
            offered: offered.into(),
        });
    }
    if allow_downgrade {
        return Ok(());
    }
    if running.is_empty() {
        return Err(PolicyRefusal::UnknownRunning {
            offered: offered.into(),
        });
    }
    if compare_versions(offered, running) == CmpOrdering::Less {
        return Err(PolicyRefusal::Downgrade {
            offered: offered.into(),
            running: running.into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::InstallError;
    use omaha::ErrorCode;

    #[test]
    fn version_order() {
        use CmpOrdering::*;
        let rows = [
            ("3510.2.0", "3510.2.0", Equal),
            ("3510.10.0", "3510.9.1", Greater),
            ("3510.2", "3510.2.0", Less),
            ("3600.0.0", "3510.2.1", Greater),
            ("3510.2.0+dev", "3510.2.0", Equal),
            ("1.0.0", "1.0.0-beta", Less),
        ];
        for (a, b, want) in rows {
            assert_eq!(compare_versions(a, b), want, "{a} vs {b}");
        }
    }

    #[test]
    fn policy_table() {
        let denied = Denied {
            version: "3600.0.0".into(),
            since: 0,
            reason: "rolled back".into(),
        };
        type Row<'a> = (
            &'a str,
            &'a str,
            bool,
            Option<&'a Denied>,
            Result<(), &'a str>,
        );
        let rows: [Row; 7] = [
            ("3600.0.0", "3510.2.0", false, None, Ok(())),
            (
                "3400.0.0",
                "3510.2.0",
                false,
                None,
                Err(
                    "refusing downgrade from 3510.2.0 to 3400.0.0 (set install.allow_downgrade = true to allow)",
                ),
            ),
            ("3400.0.0", "3510.2.0", true, None, Ok(())),
            ("3510.2.0", "3510.2.0", false, None, Ok(())),
            (
                "3600.0.0",
                "",
                false,
                None,
                Err(
                    "refusing 3600.0.0: the running version is unknown (no FLATCAR_RELEASE_VERSION in /usr/share/flatcar/release); set install.allow_downgrade = true to install anyway",
                ),
            ),
            ("3600.0.0", "", true, None, Ok(())),
            (
                "3600.0.0",
                "3510.2.0",
                true,
                Some(&denied),
                Err(
                    "version 3600.0.0 is on the local deny list (rolled back); allow it again with `update_engine_client -undeny 3600.0.0` (or -clear_deny_list)",
                ),
            ),
        ];
        for (offered, running, allow, d, want) in rows {
            let got =
                check_policy(offered, (running, "amd64-usr"), allow, d).map_err(|e| e.to_string());
            assert_eq!(got, want.map_err(String::from), "{offered} on {running}");
        }
        let e =
            InstallError::Refused(check_policy("1", ("2", "amd64-usr"), false, None).unwrap_err());
        assert_eq!(e.error_code(), ErrorCode::OmahaUpdateIgnoredPerPolicy);
        assert_eq!(e.error_kind(), "downgrade_refused");
    }
}
