//! When to check and when to back off: update_engine's
//! `update_check_scheduler.cc` and `payload_state.cc`, as pure functions of
//! the configuration, the current time and an RNG passed in by the caller.

use std::time::{Duration, SystemTime};

use omaha::{ErrorCode, UpdateInfo};
use rand::Rng;

/// Scheduling constants; the defaults are update_engine's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleConfig {
    /// Periodic checks enabled (off on dev images in update_engine).
    pub enabled: bool,
    /// First check base delay: 7 min.
    pub first_check: Duration,
    /// First check fuzz: 10 min (so 2–12 min).
    pub first_check_fuzz: Duration,
    /// Periodic interval: 45 min.
    pub periodic: Duration,
    /// Periodic fuzz: 10 min (so 40–50 min).
    pub periodic_fuzz: Duration,
    /// Upper bound of the interval: 4 h.
    pub max_backoff: Duration,
    /// Payload backoff enabled.
    pub payload_backoff: bool,
    /// Payload backoff cap: 16 days.
    pub payload_backoff_max_days: u32,
    /// Payload backoff fuzz range: 12 h (±6 h).
    pub payload_backoff_fuzz: Duration,
    /// Delay before marking the booted slot good (`flatcar-setgoodroot`):
    /// 45 s.
    pub mark_good_delay: Duration,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            first_check: Duration::from_secs(7 * 60),
            first_check_fuzz: Duration::from_secs(10 * 60),
            periodic: Duration::from_secs(45 * 60),
            periodic_fuzz: Duration::from_secs(10 * 60),
            max_backoff: Duration::from_secs(4 * 3600),
            payload_backoff: true,
            payload_backoff_max_days: 16,
            payload_backoff_fuzz: Duration::from_secs(720 * 60),
            mark_good_delay: Duration::from_secs(45),
        }
    }
}

/// update_engine's `FuzzInt(value, range)`: uniform in
/// `[value - range/2, value + range - range/2]`, floored at zero. In whole
/// seconds (exactly `FuzzInt`) when both are whole seconds, otherwise in
/// milliseconds (the `_ms` settings).
pub fn fuzz(value: Duration, range: Duration, rng: &mut impl Rng) -> Duration {
    let whole_secs = value.subsec_nanos() == 0 && range.subsec_nanos() == 0;
    let unit: i128 = if whole_secs { 1000 } else { 1 };
    let v = value.as_millis() as i128 / unit;
    let r = range.as_millis() as i128 / unit;
    let lo = v - r / 2;
    let hi = v + r - r / 2;
    let units = rng.gen_range(lo..=hi).max(0) * unit;
    Duration::from_millis(u64::try_from(units).unwrap_or(u64::MAX))
}

/// Delay of the first check after the agent starts.
pub fn first_check_delay(cfg: &ScheduleConfig, rng: &mut impl Rng) -> Duration {
    fuzz(cfg.first_check, cfg.first_check_fuzz, rng)
}

/// The next periodic check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextCheck {
    /// The base interval; pass it back as `last_interval` next time (the
    /// 500/503 backoff doubles it).
    pub interval: Duration,
    /// The fuzzed delay to actually wait.
    pub delay: Duration,
}

/// Whether an HTTP status of the update check doubles the interval.
pub fn is_backoff_status(status: u16) -> bool {
    matches!(status, 500 | 503)
}

/// `ComputeNextIntervalAndFuzz`: a server `PollInterval` wins; otherwise a
/// 500/503 doubles `last_interval`; the result is capped at `max_backoff`;
/// below `periodic` it becomes `periodic` with `periodic_fuzz`, otherwise the
/// fuzz is the interval itself (±50 %).
pub fn next_check(
    cfg: &ScheduleConfig,
    last_interval: Duration,
    poll_interval: Option<u32>,
    last_http_status: Option<u16>,
    rng: &mut impl Rng,
) -> NextCheck {
    let mut interval = Duration::ZERO;
    if let Some(poll) = poll_interval.filter(|&p| p > 0) {
        interval = Duration::from_secs(poll.into());
    } else if last_http_status.is_some_and(is_backoff_status) {
        interval = last_interval.saturating_mul(2);
    }
    interval = interval.min(cfg.max_backoff);
    let range = if interval < cfg.periodic {
        interval = cfg.periodic;
        cfg.periodic_fuzz
    } else {
        interval
    };
    NextCheck {
        interval,
        delay: fuzz(interval, range, rng),
    }
}

/// Whether payload backoff applies to an update: not when disabled in the
/// settings, when the server sends `DisablePayloadBackoff="true"` (the public
/// server does), for delta payloads, or on dev images.
pub fn payload_backoff_applies(cfg: &ScheduleConfig, info: &UpdateInfo, dev_image: bool) -> bool {
    cfg.payload_backoff
        && !info.postinstall.disable_payload_backoff
        && !info.postinstall.is_delta_payload
        && !dev_image
}

/// `UpdateBackoffExpiryTime`: `now + min(2^(attempt-1), max_days) days`
/// fuzzed by `payload_backoff_fuzz` around zero; `None` (no backoff) for
/// attempt 0.
pub fn payload_backoff_expiry(
    cfg: &ScheduleConfig,
    attempt_number: u32,
    now: SystemTime,
    rng: &mut impl Rng,
) -> Option<SystemTime> {
    if attempt_number == 0 {
        return None;
    }
    let days = 1u64
        .checked_shl(attempt_number - 1)
        .unwrap_or(u64::MAX)
        .min(cfg.payload_backoff_max_days.into());
    let base = Duration::from_secs(days.saturating_mul(86_400));
    let half = cfg.payload_backoff_fuzz.as_secs() as i128 / 2;
    let range = cfg.payload_backoff_fuzz.as_secs() as i128;
    let offset = rng.gen_range(-half..=range - half);
    let base = base.as_secs() as i128 + offset;
    let base = Duration::from_secs(u64::try_from(base.max(0)).unwrap_or(u64::MAX));
    now.checked_add(base)
}

/// How a failed attempt moves through the URL list (`UpdateFailed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureAction {
    /// Count a failure against the current URL.
    CountFailure,
    /// Move straight to the next URL (payload or verification error).
    NextUrl,
    /// Nothing to do with the URL (e.g. a local error).
    Ignore,
}

/// Classifies an error code as update_engine's payload state does.
pub fn classify_failure(code: ErrorCode) -> FailureAction {
    use ErrorCode as E;
    match code {
        E::Error
        | E::DownloadTransferError
        | E::DownloadWriteError
        | E::DownloadStateInitializationError
        | E::OmahaErrorInHttpResponse => FailureAction::CountFailure,
        E::PayloadHashMismatchError
        | E::PayloadSizeMismatchError
        | E::DownloadPayloadVerificationError
        | E::DownloadPayloadPubKeyVerificationError
        | E::SignedDeltaPayloadExpectedError
        | E::DownloadInvalidMetadataMagicString
        | E::DownloadSignatureMissingInManifest
        | E::DownloadManifestParseError
        | E::DownloadMetadataSignatureError
        | E::DownloadMetadataSignatureVerificationError
        | E::DownloadMetadataSignatureMismatch
        | E::DownloadOperationHashVerificationError
        | E::DownloadOperationExecutionError
        | E::DownloadOperationHashMismatch
        | E::DownloadInvalidMetadataSize
        | E::DownloadInvalidMetadataSignature
        | E::DownloadOperationHashMissingError
        | E::DownloadMetadataSignatureMissingError => FailureAction::NextUrl,
        _ => FailureAction::Ignore,
    }
}

/// Payload attempt state (`payload_state.cc`), persisted in the prefs of
/// the same names ([`crate::prefs::Prefs::save_payload_state`]); the daemon
/// saves it after every change, so a restart keeps the backoff and the URL
/// position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayloadState {
    /// `current-response-signature`.
    pub response_signature: String,
    /// `payload-attempt-number`.
    pub attempt_number: u32,
    /// `current-url-index`.
    pub url_index: usize,
    /// `current-url-failure-count`.
    pub url_failure_count: u32,
    /// `backoff-expiry-time`.
    pub backoff_expiry: Option<SystemTime>,
}

/// The text digest of everything in a response that identifies the payload.
pub fn response_signature(info: &UpdateInfo) -> String {
    use std::fmt::Write;
    let mut s = format!("NumURLs = {}\n", info.urls.len());
    for (i, url) in info.payload_urls().iter().enumerate() {
        let _ = writeln!(s, "Url{i} = {url}");
    }
    let pi = &info.postinstall;
    let _ = write!(
        s,
        "Payload Size = {}\nPayload Sha256 Hash = {}\nIs Delta Payload = {}\nMax Failure Count Per Url = {}\nDisable Payload Backoff = {}\n",
        info.payload.size,
        pi.sha256
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        pi.is_delta_payload,
        pi.max_failure_count_per_url,
        pi.disable_payload_backoff,
    );
    s
}

impl PayloadState {
    /// A new update-check response: everything resets when its signature
    /// differs from the stored one; a URL index past the response's URLs
    /// (a damaged pref) goes back to the first URL.
    pub fn set_response(&mut self, info: &UpdateInfo) {
        let sig = response_signature(info);
        if sig != self.response_signature {
            *self = Self {
                response_signature: sig,
                ..Self::default()
            };
        }
        if self.url_index >= info.urls.len().max(1) {
            tracing::warn!(
                "payload URL index {} out of range; starting at the first URL",
                self.url_index
            );
            self.url_index = 0;
            self.url_failure_count = 0;
        }
    }

    /// Drops a backoff expiry further away than the longest backoff can
    /// reach (`payload_backoff_max_days` plus the whole fuzz range, a
    /// margin over the ±half a real expiry can carry), as
    /// update_engine does: a clock that went backwards or a damaged pref
    /// must not block updates for months. Returns whether it did.
    pub fn sanitize_backoff(&mut self, cfg: &ScheduleConfig, now: SystemTime) -> bool {
        // Saturating: the settings may hold absurd values; this is a sanity
        // check, it must not panic (release builds keep overflow checks).
        let longest = Duration::from_secs(u64::from(cfg.payload_backoff_max_days) * 86_400)
            .saturating_add(cfg.payload_backoff_fuzz);
        match self.backoff_expiry {
            Some(t) if now.checked_add(longest).is_some_and(|limit| t > limit) => {
                tracing::warn!(
                    "payload backoff expiry {t:?} is more than {longest:?} away; dropping it"
                );
                self.backoff_expiry = None;
                true
            }
            _ => false,
        }
    }

    /// The URL to download from next.
    pub fn current_url(&self, info: &UpdateInfo) -> Option<String> {
        info.payload_urls().get(self.url_index).cloned()
    }

    /// Whether the update must be deferred (error 40) at `now`.
    pub fn in_backoff(&self, now: SystemTime) -> bool {
        self.backoff_expiry.is_some_and(|t| now < t)
    }

    fn increment_attempt(
        &mut self,
        cfg: &ScheduleConfig,
        backoff: bool,
        now: SystemTime,
        rng: &mut impl Rng,
    ) {
        self.attempt_number = self.attempt_number.saturating_add(1);
        self.backoff_expiry = if backoff {
            payload_backoff_expiry(cfg, self.attempt_number, now, rng)
        } else {
            None
        };
    }

    fn next_url(
        &mut self,
        info: &UpdateInfo,
        cfg: &ScheduleConfig,
        backoff: bool,
        now: SystemTime,
        rng: &mut impl Rng,
    ) {
        self.url_failure_count = 0;
        self.url_index = self.url_index.saturating_add(1);
        if self.url_index >= info.urls.len() {
            self.url_index = 0;
            self.increment_attempt(cfg, backoff, now, rng);
        }
    }

    /// An attempt failed with `code`. `backoff` is
    /// [`payload_backoff_applies`].
    pub fn on_failure(
        &mut self,
        code: ErrorCode,
        info: &UpdateInfo,
        cfg: &ScheduleConfig,
        backoff: bool,
        now: SystemTime,
        rng: &mut impl Rng,
    ) {
        match classify_failure(code) {
            FailureAction::CountFailure => {
                // Saturating: the count comes from a pref file, which may hold
                // anything up to u32::MAX.
                self.url_failure_count = self.url_failure_count.saturating_add(1);
                if self.url_failure_count >= info.postinstall.max_failure_count_per_url {
                    self.next_url(info, cfg, backoff, now, rng);
                }
            }
            FailureAction::NextUrl => self.next_url(info, cfg, backoff, now, rng),
            FailureAction::Ignore => {}
        }
    }

    /// The payload downloaded completely (update_engine counts this as an
    /// attempt too, so a re-offered payload that fails later backs off).
    pub fn on_download_complete(
        &mut self,
        cfg: &ScheduleConfig,
        backoff: bool,
        now: SystemTime,
        rng: &mut impl Rng,
    ) {
        self.increment_attempt(cfg, backoff, now, rng);
    }
}

#[cfg(test)]
mod tests;
