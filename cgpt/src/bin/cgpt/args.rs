//! getopt-style option parsing with vboot cgpt's messages.
//!
//! lexopt gives us getopt's syntax (`-S1`, `-i 3`, clustered flags); the messages
//! are cgpt's own, which clap's would not match.

use std::ffi::OsString;
use std::fmt;

/// A command-line mistake: cgpt prints `ERROR: ...` and then the usage.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

impl From<lexopt::Error> for UsageError {
    fn from(e: lexopt::Error) -> Self {
        UsageError(match e {
            lexopt::Error::UnexpectedOption(o) => format!("unrecognized option: {o}"),
            lexopt::Error::MissingValue { option: Some(o) } => format!("missing argument to {o}"),
            other => other.to_string(),
        })
    }
}

/// Parses like C's `strtoul(s, NULL, 0)` but rejects trailing junk and signs.
pub fn parse_num(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8).ok()
    } else {
        s.parse().ok()
    }
}

/// The value of option `-c` as a number within `min..=max`.
pub fn num_in(flag: char, value: OsString, min: u64, max: u64) -> Result<u64, UsageError> {
    let v = string(value)?;
    let n =
        parse_num(&v).ok_or_else(|| UsageError(format!("invalid argument to -{flag}: \"{v}\"")))?;
    if n < min || n > max {
        return Err(UsageError(format!(
            "value for -{flag} must be between {min} and {max}"
        )));
    }
    Ok(n)
}

/// The value as UTF-8.
pub fn string(value: OsString) -> Result<String, UsageError> {
    value
        .into_string()
        .map_err(|v| UsageError(format!("argument is not UTF-8: {v:?}")))
}

/// The value of `-t`: a GUID or a type alias.
pub fn type_guid(value: OsString) -> Result<uuid::Uuid, UsageError> {
    let v = string(value)?;
    cgpt::guid::parse_type(&v).ok_or_else(|| UsageError(format!("invalid argument to -t: {v}")))
}

/// The value of `-u`: a GUID.
pub fn unique_guid(value: OsString) -> Result<uuid::Uuid, UsageError> {
    let v = string(value)?;
    cgpt::guid::parse_guid(&v).ok_or_else(|| UsageError(format!("invalid argument to -u: {v}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtoul_forms() {
        assert_eq!(parse_num("15"), Some(15));
        assert_eq!(parse_num("0x1f"), Some(31));
        assert_eq!(parse_num("017"), Some(15));
        assert_eq!(parse_num("0"), Some(0));
        assert_eq!(parse_num("abc"), None);
        assert_eq!(parse_num("-1"), None);
    }

    #[test]
    fn range_messages() {
        let e = num_in('P', "16".into(), 0, 15).unwrap_err();
        assert_eq!(e.0, "value for -P must be between 0 and 15");
        let e = num_in('P', "abc".into(), 0, 15).unwrap_err();
        assert_eq!(e.0, "invalid argument to -P: \"abc\"");
    }
}
