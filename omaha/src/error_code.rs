//! Reported error codes: base code plus flag bits, as sent in an event's
//! `errorcode` attribute, and [`NamedErrorCode`] to show one by name.

use std::fmt;
use std::str::FromStr;

use crate::event::{ErrorCode, UnknownValue, parse_decimal};

/// Flag bits OR'ed into the reported error code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ErrorFlags {
    /// Bit 31: defined but never set by update_engine.
    pub dev_mode: bool,
    /// Bit 30: the install plan was a resume.
    pub resumed: bool,
    /// Bit 29: `/root/.dev_mode` exists.
    pub test_image: bool,
    /// Bit 28: `SERVER` is not the public Flatcar update server. Every private
    /// Nebraska user reports codes with this bit set.
    pub test_omaha_url: bool,
}

impl ErrorFlags {
    /// Bit 31.
    pub const DEV_MODE: u32 = 1 << 31;
    /// Bit 30.
    pub const RESUMED: u32 = 1 << 30;
    /// Bit 29.
    pub const TEST_IMAGE: u32 = 1 << 29;
    /// Bit 28.
    pub const TEST_OMAHA_URL: u32 = 1 << 28;
    /// All four flag bits.
    pub const MASK: u32 = Self::DEV_MODE | Self::RESUMED | Self::TEST_IMAGE | Self::TEST_OMAHA_URL;

    /// No flag set.
    pub const NONE: Self = Self {
        dev_mode: false,
        resumed: false,
        test_image: false,
        test_omaha_url: false,
    };

    /// The flags as bits.
    pub const fn bits(self) -> u32 {
        (if self.dev_mode { Self::DEV_MODE } else { 0 })
            | (if self.resumed { Self::RESUMED } else { 0 })
            | (if self.test_image { Self::TEST_IMAGE } else { 0 })
            | (if self.test_omaha_url {
                Self::TEST_OMAHA_URL
            } else {
                0
            })
    }

    /// The flag names, highest bit first, as update_engine names them
    /// without the `kActionCode` prefix and `Flag` suffix.
    pub const NAMES: [(u32, &'static str); 4] = [
        (Self::DEV_MODE, "DevMode"),
        (Self::RESUMED, "Resumed"),
        (Self::TEST_IMAGE, "TestImage"),
        (Self::TEST_OMAHA_URL, "TestOmahaUrl"),
    ];

    /// The names of the flags that are set, highest bit first.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        let bits = self.bits();
        Self::NAMES
            .into_iter()
            .filter(move |(bit, _)| bits & bit != 0)
            .map(|(_, name)| name)
    }

    /// The flags present in `bits` (other bits are ignored).
    pub const fn from_bits(bits: u32) -> Self {
        Self {
            dev_mode: bits & Self::DEV_MODE != 0,
            resumed: bits & Self::RESUMED != 0,
            test_image: bits & Self::TEST_IMAGE != 0,
            test_omaha_url: bits & Self::TEST_OMAHA_URL != 0,
        }
    }
}

/// Base code of a reported error: a known [`ErrorCode`] or
/// `2000 + N` for an HTTP failure of the Omaha POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BaseCode {
    /// A code from `action_processor.h`.
    Known(ErrorCode),
    /// `2000 + status`: the Omaha POST failed with this HTTP status (0 means
    /// no response at all). Clamped to 999 when encoded.
    OmahaHttpStatus(u16),
}

impl BaseCode {
    /// The numeric base code.
    pub const fn code(self) -> u32 {
        match self {
            Self::Known(c) => c.code(),
            Self::OmahaHttpStatus(n) => 2000 + if n > 999 { 999 } else { n as u32 },
        }
    }

    /// The base code for a number without flag bits.
    pub const fn from_code(code: u32) -> Option<Self> {
        match ErrorCode::from_code(code) {
            Some(c) => Some(Self::Known(c)),
            None if code >= 2000 && code <= 2999 => {
                Some(Self::OmahaHttpStatus((code - 2000) as u16))
            }
            None => None,
        }
    }
}

impl BaseCode {
    /// update_engine's name: `DownloadTransferError`, `OmahaHttpStatus(503)`.
    pub fn name(self) -> String {
        match self {
            Self::Known(c) => c.name().to_string(),
            Self::OmahaHttpStatus(_) => format!("OmahaHttpStatus({})", self.code() - 2000),
        }
    }
}

impl fmt::Display for BaseCode {
    /// The code and its name: `9 DownloadTransferError`,
    /// `2503 OmahaHttpStatus(503)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.name())
    }
}

impl From<ErrorCode> for BaseCode {
    fn from(code: ErrorCode) -> Self {
        Self::Known(code)
    }
}

/// The value of an event's `errorcode` attribute: base code plus flag bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventErrorCode {
    /// The base code.
    pub base: BaseCode,
    /// The flag bits.
    pub flags: ErrorFlags,
}

impl EventErrorCode {
    /// `0`, as update_engine sends when a non-success event carries no error.
    pub const SUCCESS: Self = Self::new(ErrorCode::Success, ErrorFlags::NONE);

    /// A known code with flags.
    pub const fn new(code: ErrorCode, flags: ErrorFlags) -> Self {
        Self {
            base: BaseCode::Known(code),
            flags,
        }
    }

    /// `2000 + status` for a failed Omaha POST (status 0 = no response).
    pub const fn omaha_http_status(status: u16, flags: ErrorFlags) -> Self {
        Self {
            base: BaseCode::OmahaHttpStatus(status),
            flags,
        }
    }

    /// The value sent on the wire.
    pub const fn to_u32(self) -> u32 {
        self.base.code() | self.flags.bits()
    }

    /// Splits a wire value into base code and flags; `None` if the base code
    /// is unknown.
    pub const fn from_u32(value: u32) -> Option<Self> {
        match BaseCode::from_code(value & !ErrorFlags::MASK) {
            Some(base) => Some(Self {
                base,
                flags: ErrorFlags::from_bits(value),
            }),
            None => None,
        }
    }
}

impl EventErrorCode {
    /// This code for logs and status output:
    /// `9 DownloadTransferError [TestOmahaUrl]`.
    pub const fn named(self) -> NamedErrorCode {
        NamedErrorCode(self.to_u32())
    }
}

/// An error code as reported (base code with flag bits OR'ed in), shown by
/// name: `9 DownloadTransferError [TestOmahaUrl]` rather than `268435465`.
/// For logs, `-status`, `-json` and D-Bus `LastError` texts; the wire keeps
/// the number ([`EventErrorCode`]'s `Display`).
///
/// Any `u32` can be shown, so a stored code from an older or newer version
/// still prints: an unknown base code is named `Unknown`.
///
/// ```
/// use omaha::{ErrorCode, ErrorFlags, EventErrorCode, NamedErrorCode};
///
/// assert_eq!(
///     NamedErrorCode(268_435_465).to_string(),
///     "9 DownloadTransferError [TestOmahaUrl]"
/// );
/// let resumed = ErrorFlags { resumed: true, test_omaha_url: true, ..ErrorFlags::NONE };
/// assert_eq!(
///     EventErrorCode::new(ErrorCode::PayloadHashMismatchError, resumed).named().to_string(),
///     "10 PayloadHashMismatchError [Resumed, TestOmahaUrl]"
/// );
/// assert_eq!(NamedErrorCode(2503).to_string(), "2503 OmahaHttpStatus(503)");
/// assert_eq!(NamedErrorCode(0).to_string(), "0 Success");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NamedErrorCode(pub u32);

impl NamedErrorCode {
    /// The code without flag bits.
    pub const fn base_code(self) -> u32 {
        self.0 & !ErrorFlags::MASK
    }

    /// The base code, if known.
    pub const fn base(self) -> Option<BaseCode> {
        BaseCode::from_code(self.base_code())
    }

    /// The flag bits.
    pub const fn flags(self) -> ErrorFlags {
        ErrorFlags::from_bits(self.0)
    }
}

impl From<EventErrorCode> for NamedErrorCode {
    fn from(code: EventErrorCode) -> Self {
        code.named()
    }
}

impl fmt::Display for NamedErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.base() {
            Some(base) => write!(f, "{base}")?,
            None => write!(f, "{} Unknown", self.base_code())?,
        }
        let mut names = self.flags().names();
        if let Some(first) = names.next() {
            write!(f, " [{first}")?;
            for name in names {
                write!(f, ", {name}")?;
            }
            write!(f, "]")?;
        }
        Ok(())
    }
}

impl fmt::Display for EventErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_u32())
    }
}

impl FromStr for EventErrorCode {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_decimal(s)
            .and_then(Self::from_u32)
            .ok_or_else(|| UnknownValue::new("error code", s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_with_flags_round_trips() {
        let flags = ErrorFlags {
            test_omaha_url: true,
            ..ErrorFlags::NONE
        };
        let code = EventErrorCode::new(ErrorCode::PayloadHashMismatchError, flags);
        assert_eq!(code.to_u32(), 268_435_466);
        assert_eq!(code.to_string(), "268435466");
        assert_eq!("268435466".parse::<EventErrorCode>(), Ok(code));
    }

    #[test]
    fn http_status_codes() {
        let c = EventErrorCode::omaha_http_status(503, ErrorFlags::NONE);
        assert_eq!(c.to_u32(), 2503);
        assert_eq!(EventErrorCode::from_u32(2503), Some(c));
        let clamped = EventErrorCode::omaha_http_status(1234, ErrorFlags::NONE);
        assert_eq!(clamped.to_u32(), 2999);
    }

    #[test]
    fn all_flags() {
        let all = ErrorFlags {
            dev_mode: true,
            resumed: true,
            test_image: true,
            test_omaha_url: true,
        };
        assert_eq!(all.bits(), 0xf000_0000);
        assert_eq!(ErrorFlags::from_bits(0xf000_0000), all);
        assert_eq!(ErrorFlags::from_bits(0), ErrorFlags::NONE);
    }

    #[test]
    fn named_codes() {
        let cases = [
            (9, "9 DownloadTransferError"),
            (
                9 | ErrorFlags::TEST_OMAHA_URL,
                "9 DownloadTransferError [TestOmahaUrl]",
            ),
            (
                44 | ErrorFlags::MASK,
                "44 RollbackError [DevMode, Resumed, TestImage, TestOmahaUrl]",
            ),
            (
                2000 | ErrorFlags::TEST_IMAGE,
                "2000 OmahaHttpStatus(0) [TestImage]",
            ),
            (2999, "2999 OmahaHttpStatus(999)"),
            (45, "45 Unknown"),
            (
                0x0fff_ffff | ErrorFlags::RESUMED,
                "268435455 Unknown [Resumed]",
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(NamedErrorCode(raw).to_string(), want, "{raw:#x}");
        }
        let code = EventErrorCode::from_u32(268_435_465).unwrap();
        assert_eq!(code.named(), NamedErrorCode(268_435_465));
        assert_eq!(
            code.named().base(),
            Some(BaseCode::Known(ErrorCode::DownloadTransferError))
        );
        assert!(code.named().flags().test_omaha_url);
        // The wire form stays the number.
        assert_eq!(code.to_string(), "268435465");
    }
}
