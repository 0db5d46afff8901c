//! Reboot windows (`[Day] HH:MM` plus a Go duration, local time) and pure window math.
//!
//! Semantics follow locksmith's `pkg/timeutil/periodic.go`: without a weekday the window recurs
//! daily and its length must be under 24 h; with one it recurs weekly and must be under 7 days.
//! The clock is always passed in ([`Window::status`] takes `now`), never read here.

use std::time::Duration;

use jiff::civil::{Date, Weekday};
use jiff::{SignedDuration, ToSpan, Zoned};

/// A recurring reboot window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// `None`: every day.
    pub weekday: Option<Weekday>,
    pub hour: i8,
    pub minute: i8,
    pub length: Duration,
}

/// Where `now` is relative to the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowStatus {
    /// Inside a window that closes after `closes_in`.
    Open { closes_in: Duration },
    /// Outside; the next window opens after `opens_in`.
    Closed { opens_in: Duration },
}

/// Why a reboot window is refused or cannot be placed.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    /// Only one of start and length is set.
    #[error("REBOOT_WINDOW_START and REBOOT_WINDOW_LENGTH must be set both or neither")]
    HalfSet,
    /// The start is not `[Day] HH:MM`.
    #[error("start {0:?} is not \"[Day] HH:MM\"")]
    BadStart(String),
    /// The length is not a Go duration.
    #[error("length {value:?}")]
    BadLength {
        /// The configured length.
        value: String,
        #[source]
        source: DurationError,
    },
    /// The length is zero.
    #[error("length {value:?}: must be positive")]
    ZeroLength {
        /// The configured length.
        value: String,
    },
    /// The window would overlap its next occurrence.
    #[error("length {value:?} must be under {limit} (the window would overlap itself)")]
    TooLong {
        /// The configured length.
        value: String,
        /// The period, as the message names it.
        limit: &'static str,
    },
    /// The window's times fall outside what the calendar can represent.
    #[error("window for {0} cannot be placed in the local time zone")]
    Unrepresentable(String),
    /// The calendar refused a date or time computed for the window.
    #[error("the window cannot be placed in the local time zone")]
    Calendar(#[source] jiff::Error),
}

/// A Go `time.ParseDuration` string error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Go duration such as 1h30m or 45s")]
pub struct DurationError;

/// Parses a Go duration (`1h30m`, `1.5h`, `300ms`, `0`); negative values are refused.
pub fn parse_go_duration(s: &str) -> Result<Duration, DurationError> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(DurationError);
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or(DurationError)?;
        let number: f64 = rest[..num_len].parse().map_err(|_| DurationError)?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(DurationError),
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    Duration::try_from_secs_f64(total).map_err(|_| DurationError)
}

fn parse_weekday(s: &str) -> Option<Weekday> {
    let s = s.to_ascii_lowercase();
    let days = [
        ("sun", "sunday", Weekday::Sunday),
        ("mon", "monday", Weekday::Monday),
        ("tue", "tuesday", Weekday::Tuesday),
        ("wed", "wednesday", Weekday::Wednesday),
        ("thu", "thursday", Weekday::Thursday),
        ("fri", "friday", Weekday::Friday),
        ("sat", "saturday", Weekday::Saturday),
    ];
    days.iter()
        .find(|(short, long, _)| s == *short || s == *long)
        .map(|d| d.2)
}

fn parse_hh_mm(s: &str) -> Option<(i8, i8)> {
    let (h, m) = s.split_once(':')?;
    if h.is_empty()
        || h.len() > 2
        || m.len() != 2
        || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some((h, m))
}

impl Window {
    /// Parses locksmith's `REBOOT_WINDOW_START` and `REBOOT_WINDOW_LENGTH`.
    pub fn parse(start: &str, length: &str) -> Result<Self, WindowError> {
        let bad_start = || WindowError::BadStart(start.to_owned());
        let parts: Vec<&str> = start.split_whitespace().collect();
        let (weekday, hm) = match parts.as_slice() {
            [hm] => (None, *hm),
            [day, hm] => (Some(parse_weekday(day).ok_or_else(bad_start)?), *hm),
            _ => return Err(bad_start()),
        };
        let (hour, minute) = parse_hh_mm(hm).ok_or_else(bad_start)?;
        let len = parse_go_duration(length).map_err(|source| WindowError::BadLength {
            value: length.to_owned(),
            source,
        })?;
        if len.is_zero() {
            return Err(WindowError::ZeroLength {
                value: length.to_owned(),
            });
        }
        let (limit, limit_name) = match weekday {
            None => (Duration::from_secs(24 * 3600), "24h"),
            Some(_) => (Duration::from_secs(7 * 24 * 3600), "7 days (168h)"),
        };
        if len >= limit {
            return Err(WindowError::TooLong {
                value: length.to_owned(),
                limit: limit_name,
            });
        }
        Ok(Window {
            weekday,
            hour,
            minute,
            length: len,
        })
    }

    /// The date of the occurrence that starts in the period holding `today`.
    fn anchor(&self, today: Date) -> Date {
        match self.weekday {
            None => today,
            Some(wd) => {
                let back = today.weekday().since(wd); // 0..=6 days since the last `wd`
                today.checked_sub(i64::from(back).days()).unwrap_or(today)
            }
        }
    }

    /// Where `now` (in its own time zone, normally the system's local zone) stands.
    pub fn status(&self, now: &Zoned) -> Result<WindowStatus, WindowError> {
        let period_days: i64 = if self.weekday.is_some() { 7 } else { 1 };
        let length = SignedDuration::try_from(self.length)
            .map_err(|_| WindowError::Unrepresentable(format!("{:?}", self.length)))?;
        let anchor = self.anchor(now.date());
        let mut next_open: Option<SignedDuration> = None;
        for k in [-1i64, 0, 1] {
            let date = anchor
                .checked_add((k * period_days).days())
                .map_err(WindowError::Calendar)?;
            // DST gaps move the start forward, folds take the earlier instant ("compatible").
            let start = date
                .at(self.hour, self.minute, 0, 0)
                .to_zoned(now.time_zone().clone())
                .map_err(WindowError::Calendar)?;
            let since_start = now.timestamp().duration_since(start.timestamp());
            if since_start >= SignedDuration::ZERO && since_start < length {
                let closes_in = Duration::try_from(length - since_start).unwrap_or_default();
                return Ok(WindowStatus::Open { closes_in });
            }
            if since_start < SignedDuration::ZERO {
                let until = -since_start;
                next_open = Some(next_open.map_or(until, |n| n.min(until)));
            }
        }
        let opens_in = next_open.ok_or_else(|| WindowError::Unrepresentable(now.to_string()))?;
        Ok(WindowStatus::Closed {
            opens_in: Duration::try_from(opens_in).unwrap_or_default(),
        })
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(wd) = self.weekday {
            write!(f, "{} ", &format!("{wd:?}")[..3])?;
        }
        write!(
            f,
            "{:02}:{:02} for {:?}",
            self.hour, self.minute, self.length
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::TimeZone;

    fn at(s: &str, tz: &TimeZone) -> Zoned {
        s.parse::<jiff::civil::DateTime>()
            .unwrap()
            .to_zoned(tz.clone())
            .unwrap()
    }

    fn mins(m: u64) -> Duration {
        Duration::from_secs(m * 60)
    }

    #[test]
    fn go_durations() {
        let ok = [
            ("1h30m", 5400.0),
            ("90m", 5400.0),
            ("1.5h", 5400.0),
            ("300ms", 0.3),
            ("2h45m30s", 9930.0),
            ("0", 0.0),
        ];
        for (s, secs) in ok {
            assert_eq!(
                parse_go_duration(s).unwrap(),
                Duration::from_secs_f64(secs),
                "{s}"
            );
        }
        for bad in ["", "1d", "h", "-1h", "1h30", "one hour", "1 h"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn parse_errors() {
        let rows = [
            ("Thu", "1h", "is not \"[Day] HH:MM\""),
            ("Thx 04:00", "1h", "is not"),
            ("24:00", "1h", "is not"),
            ("04:60", "1h", "is not"),
            ("Thu 04:00 extra", "1h", "is not"),
            ("04:00", "1x", "not a Go duration"),
            ("04:00", "0s", "must be positive"),
            ("04:00", "24h", "under 24h"),
            ("Thu 04:00", "168h", "under 7 days"),
        ];
        for (start, len, want) in rows {
            let err = crate::error_chain(&Window::parse(start, len).unwrap_err());
            assert!(err.contains(want), "{start:?} {len:?}: {err}");
        }
        let w = Window::parse("thursday 4:05", "167h").unwrap();
        assert_eq!(
            (w.weekday, w.hour, w.minute),
            (Some(Weekday::Thursday), 4, 5)
        );
    }

    #[test]
    fn daily_window() {
        let tz = TimeZone::fixed(jiff::tz::offset(2));
        let w = Window::parse("04:00", "1h").unwrap();
        let s = |t| w.status(&at(t, &tz)).unwrap();
        assert_eq!(
            s("2024-05-02T03:30"),
            WindowStatus::Closed { opens_in: mins(30) }
        );
        assert_eq!(
            s("2024-05-02T04:00"),
            WindowStatus::Open {
                closes_in: mins(60)
            }
        );
        assert_eq!(
            s("2024-05-02T04:59"),
            WindowStatus::Open { closes_in: mins(1) }
        );
        assert_eq!(
            s("2024-05-02T05:00"),
            WindowStatus::Closed {
                opens_in: mins(23 * 60)
            }
        );
    }

    #[test]
    fn daily_window_across_midnight() {
        let tz = TimeZone::UTC;
        let w = Window::parse("23:30", "1h").unwrap();
        assert_eq!(
            w.status(&at("2024-05-03T00:10", &tz)).unwrap(),
            WindowStatus::Open {
                closes_in: mins(20)
            }
        );
        assert_eq!(
            w.status(&at("2024-05-03T00:30", &tz)).unwrap(),
            WindowStatus::Closed {
                opens_in: mins(23 * 60)
            }
        );
    }

    #[test]
    fn weekly_window() {
        let tz = TimeZone::UTC;
        // 2024-05-02 is a Thursday.
        let w = Window::parse("Thu 04:00", "1h30m").unwrap();
        let s = |t| w.status(&at(t, &tz)).unwrap();
        assert_eq!(
            s("2024-05-02T05:00"),
            WindowStatus::Open {
                closes_in: mins(30)
            }
        );
        assert_eq!(
            s("2024-05-02T05:30"),
            WindowStatus::Closed {
                opens_in: mins(7 * 24 * 60 - 90)
            }
        );
        assert_eq!(
            s("2024-05-01T04:00"),
            WindowStatus::Closed {
                opens_in: mins(24 * 60)
            }
        );
        // A Sunday window that runs into Monday.
        let w = Window::parse("Sun 23:00", "3h").unwrap();
        assert_eq!(
            w.status(&at("2024-05-06T01:00", &tz)).unwrap(),
            WindowStatus::Open {
                closes_in: mins(60)
            }
        );
    }

    #[test]
    fn dst_spring_forward_uses_real_elapsed_time() {
        // Central Europe: 2024-03-31 02:00 does not exist (clocks jump to 03:00).
        let tz = TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        let w = Window::parse("01:30", "1h").unwrap();
        // 01:30 CET + 1h of real time = 03:30 CEST.
        assert_eq!(
            w.status(&at("2024-03-31T03:15", &tz)).unwrap(),
            WindowStatus::Open {
                closes_in: mins(15)
            }
        );
        let w = Window::parse("02:30", "1h").unwrap();
        // 02:30 does not exist that day; the window starts at 03:30 CEST (compatible rule).
        assert_eq!(
            w.status(&at("2024-03-31T03:00", &tz)).unwrap(),
            WindowStatus::Closed { opens_in: mins(30) }
        );
    }
}
