//! Typed errors for response parsing.

use crate::event::ErrorCode;

/// Longest attribute value quoted verbatim in an error message; longer values
/// are cut so a hostile response cannot blow up logs.
const MAX_QUOTED_VALUE: usize = 64;

/// Why an Omaha response body was rejected.
///
/// Every variant names the failing step; [`ResponseError::error_kind`] gives a
/// stable string for metrics and the D-Bus `LastError`, and
/// [`ResponseError::error_code`] the update_engine error code to report in a
/// `3/0` event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// The body was empty (or only whitespace).
    #[error("empty Omaha response")]
    Empty,

    /// The body is larger than [`crate::MAX_RESPONSE_SIZE`].
    #[error("Omaha response too large: {size} bytes (limit {max})")]
    TooLarge {
        /// Size of the body that was offered.
        size: usize,
        /// The limit.
        max: usize,
    },

    /// The body is not valid UTF-8.
    #[error("Omaha response is not valid UTF-8 at byte {offset}")]
    NotUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },

    /// The XML tokenizer rejected the document.
    #[error("malformed XML at byte {offset}: {reason}")]
    Xml {
        /// Byte offset where the tokenizer stopped.
        offset: u64,
        /// The tokenizer's message, escaped and cut (see [`describe`]): it
        /// quotes the document, which is the server's text.
        reason: String,
    },

    /// The document ended while elements were still open.
    #[error("truncated XML: <{open_element}> is not closed")]
    Truncated {
        /// Innermost element that was still open.
        open_element: String,
    },

    /// The document has no root element, more than one, or text outside it.
    #[error("malformed XML: {reason}")]
    BadStructure {
        /// What is wrong.
        reason: &'static str,
    },

    /// A `<!DOCTYPE>` was present. DTDs (and the entity definitions they may
    /// carry) are never processed.
    #[error("DOCTYPE is not allowed in an Omaha response (entities are never expanded)")]
    Doctype,

    /// An entity or character reference could not be resolved (only the five
    /// predefined XML entities and numeric references are accepted).
    #[error("bad escape in {context}: {reason}")]
    BadEscape {
        /// Where the escape was found, e.g. `attribute codebase of <url>`.
        context: String,
        /// The unescaper's message, escaped and cut (see [`describe`]).
        reason: String,
    },

    /// A character XML 1.0 forbids (a control character other than tab, CR
    /// and LF, U+FFFE or U+FFFF), raw or as a character reference.
    #[error("character U+{code_point:04X} {location} is not allowed in XML 1.0")]
    ForbiddenChar {
        /// The character.
        code_point: u32,
        /// Where: `at byte N` for a raw one, `in attribute A of <E>` or
        /// `in text` for a reference.
        location: String,
    },

    /// An element or attribute name is not an XML name.
    #[error("malformed XML at byte {offset}: {name:?} is not an XML name")]
    BadName {
        /// The name (cut after 64 characters).
        name: String,
        /// Byte offset of the tag.
        offset: u64,
    },

    /// Elements are nested deeper than [`crate::response::MAX_DEPTH`].
    #[error("XML nested deeper than {max} elements")]
    TooDeep {
        /// The limit.
        max: usize,
    },

    /// More elements than [`crate::response::MAX_ELEMENTS`].
    #[error("XML has more than {max} elements")]
    TooManyElements {
        /// The limit.
        max: usize,
    },

    /// The root element is not `<response>`.
    #[error("not an Omaha response: root element is <{root}>")]
    NotAResponse {
        /// The root element's name.
        root: String,
    },

    /// `response@protocol` is missing or not 3.x.
    #[error("unsupported Omaha protocol {}, expected 3.0", match found { Some(v) => format!("{v:?}"), None => "(missing)".to_string() })]
    UnsupportedProtocol {
        /// The protocol attribute, if present.
        found: Option<String>,
    },

    /// A required element is missing.
    #[error("missing element {path}")]
    MissingElement {
        /// Path of the missing element, e.g. `response/app/updatecheck`.
        path: &'static str,
    },

    /// A required attribute is missing.
    #[error("missing attribute {attribute} on <{element}>")]
    MissingAttribute {
        /// Element name.
        element: &'static str,
        /// Attribute name.
        attribute: &'static str,
    },

    /// An attribute has a value that cannot be used.
    #[error("invalid {attribute} attribute {value:?} on <{element}>: {reason}")]
    InvalidAttribute {
        /// Element name.
        element: &'static str,
        /// Attribute name.
        attribute: &'static str,
        /// The value (cut after 64 characters).
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// No `<app>` carries our appid: the answer is for another product (or
    /// for nobody), and nothing in it may be installed. Permanent: see
    /// [`ResponseError::is_permanent`].
    #[error("Omaha response has no <app> for appid {want:?} (found {found:?}); not retryable")]
    AppNotFound {
        /// Our appid, as sent in the request.
        want: String,
        /// The appids the response carries (at most 4, each cut after 64
        /// characters; an `<app>` without appid counts as `""`).
        found: Vec<String>,
    },

    /// A package name that is not a plain file name: it could leave the
    /// codebase (`..`, `/`, `\`) or is empty. Permanent: see
    /// [`ResponseError::is_permanent`].
    #[error("refusing package name {name:?}: {reason}; not retryable")]
    UnsafePackageName {
        /// The name (cut after 64 characters).
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// A codebase that is not an absolute `http` or `https` URL with a host.
    /// Refused before any download: no retry or fallback can fix it.
    /// Permanent: see [`ResponseError::is_permanent`].
    #[error("refusing codebase {codebase:?}: {reason}; not retryable")]
    UnsupportedCodebase {
        /// The codebase (cut after 64 characters).
        codebase: String,
        /// Why it was refused.
        reason: String,
    },

    /// The server answered (with HTTP 200) but reported an error status, e.g.
    /// Nebraska's `app status="error-noPackageFound"`.
    #[error("Omaha server reported {status:?} on <{element}>")]
    ServerError {
        /// `app` or `updatecheck`.
        element: &'static str,
        /// The status string as sent by the server.
        status: String,
    },
}

impl ResponseError {
    /// A stable, machine-readable name for the failure class.
    pub fn error_kind(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLarge { .. } => "too_large",
            Self::NotUtf8 { .. } => "not_utf8",
            Self::Xml { .. } => "malformed_xml",
            Self::Truncated { .. } => "truncated",
            Self::BadStructure { .. } => "bad_structure",
            Self::Doctype => "doctype",
            Self::BadEscape { .. } => "bad_escape",
            Self::ForbiddenChar { .. } => "forbidden_char",
            Self::BadName { .. } => "bad_name",
            Self::TooDeep { .. } => "too_deep",
            Self::TooManyElements { .. } => "too_many_elements",
            Self::NotAResponse { .. } => "not_a_response",
            Self::UnsupportedProtocol { .. } => "unsupported_protocol",
            Self::MissingElement { .. } => "missing_element",
            Self::MissingAttribute { .. } => "missing_attribute",
            Self::InvalidAttribute { .. } => "invalid_attribute",
            Self::AppNotFound { .. } => "app_not_found",
            Self::UnsafePackageName { .. } => "unsafe_package_name",
            Self::UnsupportedCodebase { .. } => "unsupported_codebase",
            Self::ServerError { .. } => "server_error",
        }
    }

    /// The update_engine error code this failure maps to, as reported in a
    /// `3/0` event: 30 for an empty body, 31 when the XML cannot be parsed at
    /// all, 34 (`OmahaResponseInvalid`) for everything else, including server
    /// error statuses.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::Empty => ErrorCode::OmahaRequestEmptyResponse,
            Self::TooLarge { .. }
            | Self::NotUtf8 { .. }
            | Self::Xml { .. }
            | Self::Truncated { .. }
            | Self::BadStructure { .. }
            | Self::Doctype
            | Self::BadEscape { .. }
            | Self::ForbiddenChar { .. }
            | Self::BadName { .. }
            | Self::TooDeep { .. }
            | Self::TooManyElements { .. } => ErrorCode::OmahaRequestXmlParseError,
            Self::NotAResponse { .. }
            | Self::UnsupportedProtocol { .. }
            | Self::MissingElement { .. }
            | Self::MissingAttribute { .. }
            | Self::InvalidAttribute { .. }
            | Self::AppNotFound { .. }
            | Self::UnsafePackageName { .. }
            | Self::UnsupportedCodebase { .. }
            | Self::ServerError { .. } => ErrorCode::OmahaResponseInvalid,
        }
    }

    /// Whether the response was understood and refused as unsafe to act on:
    /// another product's app, a package name that could leave its codebase,
    /// a codebase outside http(s). Such an answer must never reach the
    /// downloader, and retrying or falling back to another URL cannot fix
    /// it; only a different answer from the server can. Every other error
    /// may be transient (a cut connection, a proxy page, a server limit).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::AppNotFound { .. }
                | Self::UnsafePackageName { .. }
                | Self::UnsupportedCodebase { .. }
        )
    }

    /// The server's status string for [`ResponseError::ServerError`], e.g.
    /// `error-noPackageFound`.
    pub fn server_status(&self) -> Option<&str> {
        match self {
            Self::ServerError { status, .. } => Some(status),
            _ => None,
        }
    }

    pub(crate) fn invalid(
        element: &'static str,
        attribute: &'static str,
        value: &str,
        reason: &'static str,
    ) -> Self {
        Self::InvalidAttribute {
            element,
            attribute,
            value: quote_cut(value),
            reason,
        }
    }
}

/// Longest tokenizer message kept in [`ResponseError::Xml`]: quick-xml
/// quotes whole tags, which a server can make as long as the body.
const MAX_REASON: usize = 200;

/// A tokenizer error as text that is safe to log: quick-xml quotes the
/// document (newlines, C1 controls and bidi overrides included) in its
/// messages, so they are escaped like [`crate::LogEscaped`] and cut. The
/// message is kept instead of the error as `#[source]` because the agent
/// prints source chains verbatim.
pub(crate) fn describe(err: &impl std::fmt::Display) -> String {
    let text = crate::LogEscaped(err.to_string().as_bytes()).to_string();
    match text.char_indices().nth(MAX_REASON) {
        Some((idx, _)) => format!("{}...", &text[..idx]),
        None => text,
    }
}

/// Cuts `value` to [`MAX_QUOTED_VALUE`] characters, marking the cut.
pub(crate) fn quote_cut(value: &str) -> String {
    match value.char_indices().nth(MAX_QUOTED_VALUE) {
        Some((idx, _)) => format!("{}...", &value[..idx]),
        None => value.to_string(),
    }
}
