//! The daemon's decisions as pure functions: whether an offered update is
//! taken (deny list, downgrade policy, payload backoff), and whether this
//! boot is a rollback from an update this agent installed. The daemon
//! gathers the inputs (prefs, files, the server's answer, the clock) and
//! executes what these return; the tables in the tests are the spec.

use std::time::{Duration, SystemTime};

use omaha::{ErrorCode, UpdateInfo};

use crate::denylist::Denied;
use crate::fsm::Target;
use crate::install::{PolicyRefusal, check_policy};
use crate::schedule::{PayloadState, ScheduleConfig, payload_backoff_applies};

/// Everything [`decide_offer`] looks at.
#[derive(Debug)]
pub struct Offer<'a> {
    /// The server's update.
    pub info: &'a UpdateInfo,
    /// `SERVER` is https: then every payload URL must be too.
    pub server_https: bool,
    /// The running version.
    pub running: &'a str,
    /// The node's board (`FLATCAR_RELEASE_BOARD`); empty when unknown.
    pub board: &'a str,
    /// The offered version's deny-list entry; `Err` (why) when the deny list
    /// cannot be read, which refuses every update.
    pub denied: Result<Option<&'a Denied>, &'a str>,
    /// `install.allow_downgrade`.
    pub allow_downgrade: bool,
    /// The payload state as saved in the prefs.
    pub payload_state: PayloadState,
    /// The schedule settings (payload backoff).
    pub schedule: &'a ScheduleConfig,
    /// The wall clock.
    pub now: SystemTime,
}

/// An offer the agent takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// What the status reports.
    pub target: Target,
    /// Whether payload backoff applies to this update.
    pub backoff_applies: bool,
}

/// Why an offer is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Deny list or downgrade policy.
    #[error(transparent)]
    Policy(#[from] PolicyRefusal),
    /// An https server's answer sends the payload over plain http.
    #[error("refusing the payload URL {url}: the update server is https, the payload must be too")]
    InsecureUrl {
        /// The offending URL.
        url: String,
    },
    /// Earlier attempts at this payload failed; wait.
    #[error(
        "update to {version} deferred: payload backoff after attempt {attempt} for another {} s",
        remaining.as_secs()
    )]
    Backoff {
        /// The offered version.
        version: String,
        /// Attempts so far.
        attempt: u32,
        /// Until the backoff expires.
        remaining: Duration,
    },
}

impl Refusal {
    /// update_engine's code for the error event.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::Policy(_) => ErrorCode::OmahaUpdateIgnoredPerPolicy,
            Self::InsecureUrl { .. } => ErrorCode::OmahaResponseInvalid,
            Self::Backoff { .. } => ErrorCode::OmahaUpdateDeferredForBackoff,
        }
    }

    /// A stable name for logs and `LastError`.
    pub fn error_kind(&self) -> &'static str {
        match self {
            Self::Policy(r) => r.error_kind(),
            Self::InsecureUrl { .. } => "insecure_payload_url",
            Self::Backoff { .. } => "payload_backoff",
        }
    }
}

/// What to do with an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The payload state to save, when it changed (a policy refusal leaves
    /// it alone: the payload was never considered).
    pub save: Option<PayloadState>,
    /// Take it or not.
    pub result: Result<Accepted, Refusal>,
}

/// Decides whether to install `offer.info`: an https server's payload
/// over https only, the deny list, then the downgrade policy, then
/// update_engine's payload backoff for a payload that failed before.
pub fn decide_offer(offer: Offer<'_>) -> Verdict {
    let info = offer.info;
    let insecure = info
        .payload_urls()
        .into_iter()
        .find(|u| offer.server_https && !u.starts_with("https://"));
    if let Some(url) = insecure {
        return Verdict {
            save: None,
            result: Err(Refusal::InsecureUrl { url }),
        };
    }
    let unreadable;
    let denied = match offer.denied {
        Ok(d) => d,
        Err(why) => {
            unreadable = Denied {
                version: info.version.clone(),
                since: 0,
                reason: format!("deny list unreadable: {why}"),
            };
            Some(&unreadable)
        }
    };
    let node = (offer.running, offer.board);
    if let Err(refusal) = check_policy(&info.version, node, offer.allow_downgrade, denied) {
        return Verdict {
            save: None,
            result: Err(refusal.into()),
        };
    }
    let mut state = offer.payload_state;
    state.set_response(info);
    state.sanitize_backoff(offer.schedule, offer.now);
    let backoff_applies = payload_backoff_applies(offer.schedule, info, false);
    let result = if backoff_applies && state.in_backoff(offer.now) {
        Err(Refusal::Backoff {
            version: info.version.clone(),
            attempt: state.attempt_number,
            remaining: state
                .backoff_expiry
                .and_then(|t| t.duration_since(offer.now).ok())
                .unwrap_or_default(),
        })
    } else {
        Ok(Accepted {
            target: Target {
                version: info.version.clone(),
                size: info.payload.size,
            },
            backoff_applies,
        })
    };
    Verdict {
        save: Some(state),
        result,
    }
}

/// What the prefs and the kernel say about the running boot.
#[derive(Debug, Clone, Copy, Default)]
pub struct BootRecord<'a> {
    /// The running version.
    pub running: &'a str,
    /// Pref `previous-version` (the version that staged the update).
    pub previous_version: Option<&'a str>,
    /// The version this agent staged (`update-agent-installed-version`).
    pub installed: Option<&'a str>,
    /// The boot id when it was staged (`update-agent-installed-boot-id`).
    pub installed_boot_id: Option<&'a str>,
    /// This boot's id.
    pub boot_id: &'a str,
}

/// The version this boot rolled back from, if any: update_engine's rule
/// (the running version equals `previous-version`) plus evidence that the
/// new slot was tried, i.e. the machine rebooted since the update was
/// staged (another boot id). A staged update that was reverted without a
/// reboot (ResetStatus, a failed commit) is not a rollback; nor is one
/// staged by an agent that did not record its boot id.
pub fn rolled_back_from(r: BootRecord<'_>) -> Option<String> {
    fn non_empty(v: Option<&str>) -> Option<&str> {
        v.filter(|v| !v.is_empty())
    }
    let previous = non_empty(r.previous_version)?;
    let installed = non_empty(r.installed)?;
    let staged_boot = non_empty(r.installed_boot_id)?;
    let rebooted = !r.boot_id.is_empty() && staged_boot != r.boot_id;
    (previous == r.running && installed != r.running && rebooted).then(|| installed.to_string())
}

#[cfg(test)]
mod tests;
