//! How many verdicts of each kind the gate has given on this node, kept in
//! the prefs: the gate runs once per boot and exits, so the daemon reads
//! the counts for its metrics (`update_agent_health_gate_verdicts_total`).

use tracing::warn;

use super::Outcome;
use crate::prefs::Prefs;

/// The counted verdicts and their pref keys (an already good slot is not
/// a verdict: nothing was judged).
const VERDICTS: [(&str, &str); 4] = [
    ("blessed", "update-agent-gate-blessed"),
    ("fell_back", "update-agent-gate-fell-back"),
    ("no_fallback", "update-agent-gate-no-fallback"),
    ("rolled_back", "update-agent-gate-rolled-back"),
];

/// The metric label of `outcome`, if it is a verdict.
pub fn verdict_label(outcome: &Outcome) -> Option<&'static str> {
    match outcome {
        Outcome::AlreadyGood => None,
        Outcome::Blessed => Some("blessed"),
        Outcome::FellBack { .. } => Some("fell_back"),
        Outcome::NoFallback { .. } => Some("no_fallback"),
        Outcome::RolledBack { .. } => Some("rolled_back"),
    }
}

/// Adds `outcome` to its count (a failure to count is logged, never fatal).
pub(super) fn count(prefs: &Prefs, outcome: &Outcome) {
    let Some(label) = verdict_label(outcome) else {
        return;
    };
    let Some((_, key)) = VERDICTS.iter().find(|(l, _)| *l == label) else {
        return;
    };
    let n = prefs.get_i64(key).ok().flatten().unwrap_or(0);
    if let Err(e) = prefs.set_i64(key, n.saturating_add(1)) {
        warn!(error = %e, "could not count the gate's verdict");
    }
}

/// Every verdict with its count so far (0 when never given).
pub fn verdict_counts(prefs: &Prefs) -> Vec<(&'static str, u64)> {
    VERDICTS
        .iter()
        .map(|(label, key)| {
            let n = prefs.get_i64(key).ok().flatten().unwrap_or(0);
            (*label, u64::try_from(n).unwrap_or(0))
        })
        .collect()
}
