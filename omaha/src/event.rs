//! Omaha `<event>` types: event type, result, update_engine error codes and
//! flag bits, exactly as Flatcar's update_engine 0.4.10 reports them.

use std::fmt;
use std::str::FromStr;

/// A string attribute that did not name a known value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownValue {
    /// Which kind of value was expected (`event type`, `error code`, ...).
    pub what: &'static str,
    /// The offending text (cut after 64 characters).
    pub value: String,
}

impl UnknownValue {
    pub(crate) fn new(what: &'static str, value: &str) -> Self {
        Self {
            what,
            value: crate::error::quote_cut(value),
        }
    }
}

/// Defines a fieldless enum with numeric wire values, plus `code`,
/// `from_code`, `name`, `Display` (the number) and `FromStr` (the number).
macro_rules! numeric_enum {
    (
        $(#[$meta:meta])*
        pub enum $ty:ident ($what:literal) {
            $($(#[$vmeta:meta])* $name:ident = $code:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $ty {
            $($(#[$vmeta])* $name,)*
        }

        impl $ty {
            /// The numeric value sent on the wire.
            pub const fn code(self) -> u32 {
                match self {
                    $(Self::$name => $code,)*
                }
            }

            /// The variant for a numeric wire value.
            pub const fn from_code(code: u32) -> Option<Self> {
                match code {
                    $($code => Some(Self::$name),)*
                    _ => None,
                }
            }

            /// The variant's name, for logs.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$name => stringify!($name),)*
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.code())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_decimal(s)
                    .and_then(Self::from_code)
                    .ok_or_else(|| UnknownValue::new($what, s))
            }
        }
    };
}

pub use crate::error_code::{BaseCode, ErrorFlags, EventErrorCode, NamedErrorCode};

/// Parses a plain decimal number (ASCII digits only, no sign or spaces).
pub(crate) fn parse_decimal<T: FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

numeric_enum! {
    /// `eventtype` (`omaha_request_action.h` `OmahaEvent::Type`).
    pub enum EventType ("event type") {
        /// 0
        Unknown = 0,
        /// 1
        DownloadComplete = 1,
        /// 2
        InstallComplete = 2,
        /// 3: sent piggy-backed on every update check (3/2), on success (3/1)
        /// and on failure (3/0, 3/9).
        UpdateComplete = 3,
        /// 13: the payload download starts.
        UpdateDownloadStarted = 13,
        /// 14: the payload was downloaded and its signature verified.
        UpdateDownloadFinished = 14,
    }
}

numeric_enum! {
    /// `eventresult` (`OmahaEvent::Result`).
    pub enum EventResult ("event result") {
        /// 0
        Error = 0,
        /// 1
        Success = 1,
        /// 2: sent with `previousversion` on every update check.
        SuccessReboot = 2,
        /// 9: sent for error codes 35, 36 and 40.
        UpdateDeferred = 9,
    }
}

numeric_enum! {
    /// update_engine's base error codes (`action_processor.h`), without flag
    /// bits. `2000 + N` (HTTP status N of the Omaha POST) is not a variant:
    /// see [`EventErrorCode::omaha_http_status`].
    pub enum ErrorCode ("error code") {
        /// 0
        Success = 0,
        /// 1
        Error = 1,
        /// 2
        OmahaRequestError = 2,
        /// 3
        OmahaResponseHandlerError = 3,
        /// 4
        FilesystemCopierError = 4,
        /// 5
        PostinstallRunnerError = 5,
        /// 6
        SetBootableFlagError = 6,
        /// 7
        InstallDeviceOpenError = 7,
        /// 8
        KernelDeviceOpenError = 8,
        /// 9
        DownloadTransferError = 9,
        /// 10
        PayloadHashMismatchError = 10,
        /// 11
        PayloadSizeMismatchError = 11,
        /// 12
        DownloadPayloadVerificationError = 12,
        /// 13
        DownloadNewPartitionInfoError = 13,
        /// 14
        DownloadWriteError = 14,
        /// 15
        NewRootfsVerificationError = 15,
        /// 16
        NewKernelVerificationError = 16,
        /// 17
        SignedDeltaPayloadExpectedError = 17,
        /// 18
        DownloadPayloadPubKeyVerificationError = 18,
        /// 19: postinst exited with 3.
        PostinstallBootedFromFirmwareB = 19,
        /// 20
        DownloadStateInitializationError = 20,
        /// 21
        DownloadInvalidMetadataMagicString = 21,
        /// 22
        DownloadSignatureMissingInManifest = 22,
        /// 23
        DownloadManifestParseError = 23,
        /// 24
        DownloadMetadataSignatureError = 24,
        /// 25
        DownloadMetadataSignatureVerificationError = 25,
        /// 26
        DownloadMetadataSignatureMismatch = 26,
        /// 27
        DownloadOperationHashVerificationError = 27,
        /// 28
        DownloadOperationExecutionError = 28,
        /// 29
        DownloadOperationHashMismatch = 29,
        /// 30
        OmahaRequestEmptyResponse = 30,
        /// 31
        OmahaRequestXmlParseError = 31,
        /// 32
        DownloadInvalidMetadataSize = 32,
        /// 33
        DownloadInvalidMetadataSignature = 33,
        /// 34
        OmahaResponseInvalid = 34,
        /// 35: reported with result 9.
        OmahaUpdateIgnoredPerPolicy = 35,
        /// 36: reported with result 9.
        OmahaUpdateDeferredPerPolicy = 36,
        /// 37
        OmahaErrorInHttpResponse = 37,
        /// 38
        DownloadOperationHashMissingError = 38,
        /// 39
        DownloadMetadataSignatureMissingError = 39,
        /// 40: reported with result 9.
        OmahaUpdateDeferredForBackoff = 40,
        /// 41
        PostinstallPowerwashError = 41,
        /// 42
        NewPcrPolicyVerificationError = 42,
        /// 43
        NewPcrPolicyHttpError = 43,
        /// 44: the previous update was rolled back (reported as 3/0/44).
        RollbackError = 44,
        /// 100: internal, never sent by update_engine.
        DownloadIncomplete = 100,
    }
}

impl ErrorCode {
    /// The event result update_engine pairs with this code in a failure
    /// event: [`EventResult::UpdateDeferred`] for 35, 36 and 40, otherwise
    /// [`EventResult::Error`].
    pub const fn failure_result(self) -> EventResult {
        match self {
            Self::OmahaUpdateIgnoredPerPolicy
            | Self::OmahaUpdateDeferredPerPolicy
            | Self::OmahaUpdateDeferredForBackoff => EventResult::UpdateDeferred,
            _ => EventResult::Error,
        }
    }
}

/// One `<event>` of a request.
///
/// Serialisation follows update_engine's `GetAppBody`: an event with a
/// `previous_version` is the piggy-backed update-check event and is written as
/// `eventtype eventresult previousversion`; any other event gets an
/// `errorcode` attribute exactly when its result is not
/// [`EventResult::Success`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `eventtype`.
    pub event_type: EventType,
    /// `eventresult`.
    pub result: EventResult,
    /// `errorcode` (written only when `result` is not success).
    pub error_code: EventErrorCode,
    /// `previousversion` (only on the piggy-backed 3/2 event).
    pub previous_version: Option<String>,
}

impl Event {
    /// The version reported when the `previous-version` pref is missing.
    pub const MISSING_PREVIOUS_VERSION: &'static str = "0.0.0.0";

    /// 3/2 with `previousversion`: piggy-backed on every update check.
    pub fn update_check_reboot(previous_version: impl Into<String>) -> Self {
        Self {
            event_type: EventType::UpdateComplete,
            result: EventResult::SuccessReboot,
            error_code: EventErrorCode::SUCCESS,
            previous_version: Some(previous_version.into()),
        }
    }

    /// 3/0/44: the previous update was rolled back.
    pub fn rollback() -> Self {
        Self::failure(ErrorCode::RollbackError, ErrorFlags::NONE)
    }

    /// The event update_engine piggy-backs on an update check, from the
    /// `previous-version` pref (`None` when the pref file is missing) and the
    /// running version:
    /// - pref missing: 3/2 with `previousversion="0.0.0.0"`;
    /// - pref non-empty and equal to the running version: rollback, 3/0/44;
    /// - otherwise 3/2 with `previousversion` set to the pref (often `""`).
    pub fn for_update_check(previous_version_pref: Option<&str>, current_version: &str) -> Self {
        match previous_version_pref {
            None => Self::update_check_reboot(Self::MISSING_PREVIOUS_VERSION),
            Some(prev) if !prev.is_empty() && prev == current_version => Self::rollback(),
            Some(prev) => Self::update_check_reboot(prev),
        }
    }

    /// 13/1: the payload download starts.
    pub fn download_started() -> Self {
        Self::success(EventType::UpdateDownloadStarted)
    }

    /// 14/1: the payload was downloaded and verified.
    pub fn download_finished() -> Self {
        Self::success(EventType::UpdateDownloadFinished)
    }

    /// 3/1: postinstall succeeded; the update is complete.
    pub fn update_complete() -> Self {
        Self::success(EventType::UpdateComplete)
    }

    /// 3/0 (or 3/9 for codes 35, 36 and 40) with `errorcode = code | flags`.
    pub fn failure(code: ErrorCode, flags: ErrorFlags) -> Self {
        Self {
            event_type: EventType::UpdateComplete,
            result: code.failure_result(),
            error_code: EventErrorCode::new(code, flags),
            previous_version: None,
        }
    }

    /// 3/0 with `errorcode = (2000 + status) | flags`: the Omaha POST failed.
    pub fn omaha_http_failure(status: u16, flags: ErrorFlags) -> Self {
        Self {
            event_type: EventType::UpdateComplete,
            result: EventResult::Error,
            error_code: EventErrorCode::omaha_http_status(status, flags),
            previous_version: None,
        }
    }

    fn success(event_type: EventType) -> Self {
        Self {
            event_type,
            result: EventResult::Success,
            error_code: EventErrorCode::SUCCESS,
            previous_version: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_str_rejects() {
        let cases: &[(&str, &str)] = &[
            ("", "unknown error code \"\""),
            ("+1", "unknown error code \"+1\""),
            (" 1", "unknown error code \" 1\""),
            ("45", "unknown error code \"45\""),
            ("99999999999", "unknown error code \"99999999999\""),
        ];
        for (input, want) in cases {
            let err = input.parse::<EventErrorCode>().unwrap_err();
            assert_eq!(err.to_string(), *want, "input {input:?}");
        }
        assert_eq!(
            "4".parse::<EventType>().unwrap_err().to_string(),
            "unknown event type \"4\""
        );
        assert_eq!(
            "3".parse::<EventResult>().unwrap_err().to_string(),
            "unknown event result \"3\""
        );
    }

    #[test]
    fn enum_display_from_str_pairs() {
        for code in 0..=3000 {
            if let Some(c) = ErrorCode::from_code(code) {
                assert_eq!(c.to_string().parse::<ErrorCode>(), Ok(c));
            }
            if let Some(t) = EventType::from_code(code) {
                assert_eq!(t.to_string().parse::<EventType>(), Ok(t));
            }
            if let Some(r) = EventResult::from_code(code) {
                assert_eq!(r.to_string().parse::<EventResult>(), Ok(r));
            }
        }
        assert_eq!(ErrorCode::RollbackError.name(), "RollbackError");
    }

    #[test]
    fn deferred_codes_use_result_9() {
        for code in [
            ErrorCode::OmahaUpdateIgnoredPerPolicy,
            ErrorCode::OmahaUpdateDeferredPerPolicy,
            ErrorCode::OmahaUpdateDeferredForBackoff,
        ] {
            assert_eq!(
                Event::failure(code, ErrorFlags::NONE).result,
                EventResult::UpdateDeferred
            );
        }
        assert_eq!(
            Event::failure(ErrorCode::DownloadTransferError, ErrorFlags::NONE).result,
            EventResult::Error
        );
    }

    #[test]
    fn update_check_event_rules() {
        assert_eq!(
            Event::for_update_check(None, "3510.2.0"),
            Event::update_check_reboot("0.0.0.0")
        );
        assert_eq!(
            Event::for_update_check(Some(""), "3510.2.0"),
            Event::update_check_reboot("")
        );
        assert_eq!(
            Event::for_update_check(Some("3510.2.0"), "9999.0.0"),
            Event::update_check_reboot("3510.2.0")
        );
        assert_eq!(
            Event::for_update_check(Some("3510.2.0"), "3510.2.0"),
            Event::rollback()
        );
        let rb = Event::rollback();
        assert_eq!(rb.error_code.to_u32(), 44);
        assert_eq!(rb.result, EventResult::Error);
    }
}
