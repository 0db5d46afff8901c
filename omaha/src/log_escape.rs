//! Escaping server-controlled bytes for logs.

use std::fmt;

/// Shows untrusted bytes (a response body) on one log line: printable
/// characters as they are, backslash, quotes aside, and everything else as
/// Rust escapes (`\n`, `\u{1b}`, `\u{202e}`), invalid UTF-8 as `\xNN`.
///
/// A raw body in the log would let a server forge log lines with newlines,
/// drive the terminal of whoever reads the log with escape sequences, or
/// reorder text with bidi overrides.
///
/// ```
/// let body = b"<a>\x1b[2J\nFAKE: ok\xff</a>";
/// assert_eq!(
///     omaha::LogEscaped(body).to_string(),
///     r"<a>\u{1b}[2J\nFAKE: ok\xff</a>"
/// );
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LogEscaped<'a>(pub &'a [u8]);

impl fmt::Display for LogEscaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            for c in chunk.valid().chars() {
                match c {
                    // escape_debug would write \" and \': XML is full of
                    // quotes, and they cannot break a log line.
                    '"' | '\'' => f.write_fmt(format_args!("{c}"))?,
                    _ => f.write_fmt(format_args!("{}", c.escape_debug()))?,
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_could_forge_or_hide_log_text() {
        let cases: &[(&[u8], &str)] = &[
            (b"<a x=\"1\" y='2'>t</a>", "<a x=\"1\" y='2'>t</a>"),
            (b"a\r\nb\tc", r"a\r\nb\tc"),
            (b"\x00\x01\x7f", r"\0\u{1}\u{7f}"),
            (
                "\u{85}\u{9b}\u{202e}\u{2028}".as_bytes(),
                r"\u{85}\u{9b}\u{202e}\u{2028}",
            ),
            (b"back\\slash", r"back\\slash"),
            (b"\xc3\xa9\xc3", r"é\xc3"),
        ];
        for (input, want) in cases {
            assert_eq!(LogEscaped(input).to_string(), *want, "{input:?}");
        }
    }
}
