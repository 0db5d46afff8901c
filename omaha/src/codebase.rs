//! Where a package may be downloaded from: codebases must be absolute
//! http(s) URLs, package names plain file names, and the two are joined as a
//! URL path segment, never by string concatenation.
//!
//! update_engine appends the name to the codebase as text. A hostile (or
//! broken) server could then walk out of the codebase with `../`, add a query
//! with `?`, or point the agent at `file:` or `ftp:` URLs that only fail,
//! after retries, at download time. Here all of that is refused while
//! parsing, so the downloader only ever sees URLs it can use.

use url::Url;

use crate::error::{ResponseError, quote_cut};

/// Parses `codebase`, refusing anything but an absolute `http`/`https` URL
/// with a host.
pub(crate) fn parse_codebase(codebase: &str) -> Result<Url, ResponseError> {
    let refuse = |reason: String| ResponseError::UnsupportedCodebase {
        codebase: quote_cut(codebase),
        reason,
    };
    // The URL parser silently drops tabs and newlines: refuse them instead
    // of downloading from a URL other than the one the server wrote.
    if codebase.chars().any(char::is_control) {
        return Err(refuse("contains control characters".into()));
    }
    let url = Url::parse(codebase).map_err(|e| refuse(format!("not an absolute URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refuse(format!(
            "scheme {:?} is not http or https",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(refuse("no host".into()));
    }
    Ok(url)
}

/// Refuses package names that are not plain file names: empty, `.`, `..`,
/// or containing `/` or `\` (which URL parsers treat as `/` in http URLs),
/// or control characters.
pub(crate) fn check_package_name(name: &str) -> Result<(), ResponseError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name == "." || name == ".." {
        "it is a relative path component"
    } else if name.contains(['/', '\\']) {
        "it contains a path separator"
    } else if name.chars().any(char::is_control) {
        "it contains control characters"
    } else {
        return Ok(());
    };
    Err(ResponseError::UnsafePackageName {
        name: quote_cut(name),
        reason,
    })
}

/// The download URL of package `name` under `codebase`: the name becomes one
/// percent-encoded path segment appended to the codebase's path (a `/` is
/// added if the path lacks one), so it can neither leave the codebase nor
/// add a query or fragment. The codebase's own query is kept; its fragment
/// (never sent to a server) is dropped.
///
/// Errors are those of parsing: [`ResponseError::UnsupportedCodebase`] and
/// [`ResponseError::UnsafePackageName`].
pub fn join_url(codebase: &str, name: &str) -> Result<String, ResponseError> {
    check_package_name(name)?;
    let mut url = parse_codebase(codebase)?;
    url.set_fragment(None);
    // Built by hand rather than with `path_segments_mut`: popping the empty
    // last segment of a `//` path leaves `/`, and the name would land one
    // directory up (found by fuzzing).
    let mut path = url.path().to_string();
    if !path.ends_with('/') {
        path.push('/');
    }
    encode_segment(name, &mut path);
    url.set_path(&path);
    Ok(url.into())
}

/// Appends `segment` percent-encoded, keeping only RFC 3986 unreserved
/// characters: nothing in it can act as a separator, query, fragment or
/// (since `%` is encoded) a pre-encoded dot segment.
fn encode_segment(segment: &str, out: &mut String) {
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_as_one_encoded_segment() {
        let cases = [
            ("http://a/b/", "p.gz", "http://a/b/p.gz"),
            ("http://a/b", "p.gz", "http://a/b/p.gz"),
            ("http://a", "p.gz", "http://a/p.gz"),
            ("https://a/b/?sig=1#frag", "p.gz", "https://a/b/p.gz?sig=1"),
            ("http://a/b/", "p?x=1#y", "http://a/b/p%3Fx%3D1%23y"),
            ("http://a//", "p.gz", "http://a//p.gz"),
            ("http://a/b//", "p.gz", "http://a/b//p.gz"),
            ("http://a/b/", "\u{e9}+", "http://a/b/%C3%A9%2B"),
            ("http://a/b/", "a b%2e%2e", "http://a/b/a%20b%252e%252e"),
            ("http://a/b/", ".%2e", "http://a/b/.%252e"),
            ("http://a/b/", "...", "http://a/b/..."),
            ("HTTP://A/b/", "p.gz", "http://a/b/p.gz"),
        ];
        for (base, name, want) in cases {
            assert_eq!(join_url(base, name).unwrap(), want, "{base} + {name}");
        }
    }

    #[test]
    fn refuses_names_and_codebases() {
        for name in ["", ".", "..", "../p.gz", "a/b", "a\\b", "/p", "p\n"] {
            let err = join_url("http://a/b/", name).unwrap_err();
            assert_eq!(err.error_kind(), "unsafe_package_name", "{name:?}");
            assert!(err.is_permanent());
        }
        for base in [
            "ftp://a/b/",
            "file:///etc/",
            "data:text/plain,x",
            "/relative/",
            "http://a/b\n/",
            "javascript:alert(1)",
        ] {
            let err = join_url(base, "p.gz").unwrap_err();
            assert_eq!(err.error_kind(), "unsupported_codebase", "{base:?}");
            assert!(err.is_permanent());
        }
    }
}
