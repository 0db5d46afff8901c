//! Async Omaha client: POSTs a [`omaha::Request`] to `SERVER` and parses the
//! answer, reading at most [`omaha::MAX_RESPONSE_SIZE`] bytes.

use std::time::Duration;

use omaha::{ErrorFlags, EventErrorCode, Request, ResponseError, UpdateCheckResponse};
use reqwest::Url;

use crate::config::Root;
use crate::config::flatcar::SERVER_DISABLED;
use crate::config::settings::Settings;
use crate::http::{self, HttpOptions, HttpSetupError, RedirectRefused};

/// Why an Omaha exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum OmahaClientError {
    /// `SERVER=disabled`.
    #[error("updates are disabled (SERVER=disabled)")]
    Disabled,
    /// `SERVER` is not an http(s) URL.
    #[error("invalid SERVER URL {url:?}: {reason}")]
    InvalidServerUrl {
        /// The value.
        url: String,
        /// Why.
        reason: String,
    },
    /// The HTTP client could not be set up.
    #[error(transparent)]
    Setup(#[from] HttpSetupError),
    /// No HTTP response at all: DNS, connect, TLS, or the connection closed
    /// before a status line.
    #[error("cannot reach Omaha server {url}")]
    Unreachable {
        /// The URL.
        url: String,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
    /// The request or the body timed out.
    #[error("Omaha request to {url} timed out")]
    Timeout {
        /// The URL.
        url: String,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
    /// A redirect was refused (https → http, bad scheme, too many).
    #[error("Omaha request to {url}: {refusal}")]
    Redirect {
        /// The URL.
        url: String,
        /// Why.
        refusal: RedirectRefused,
    },
    /// The server answered with a non-2xx status.
    #[error("Omaha server {url} answered HTTP {status}")]
    HttpStatus {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The connection broke while the body was being read.
    #[error("Omaha response from {url} was cut off")]
    Body {
        /// The URL.
        url: String,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
    /// The body was rejected (too large, malformed, or an `error-*` status).
    #[error(transparent)]
    Response(#[from] ResponseError),
}

impl OmahaClientError {
    /// A stable, machine-readable name for the failure class.
    pub fn error_kind(&self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::InvalidServerUrl { .. } => "invalid_server_url",
            Self::Setup(_) => "http_setup",
            Self::Unreachable { .. } => "unreachable",
            Self::Timeout { .. } => "timeout",
            Self::Redirect { .. } => "redirect_refused",
            Self::HttpStatus { .. } => "http_status",
            Self::Body { .. } => "body_interrupted",
            Self::Response(e) => e.error_kind(),
        }
    }

    /// The HTTP status, when the server answered with a non-2xx one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::HttpStatus { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the scheduler must double its interval (HTTP 500 or 503).
    pub fn is_backoff_status(&self) -> bool {
        self.http_status()
            .is_some_and(crate::schedule::is_backoff_status)
    }

    /// The server's `error-*` status, e.g. `error-noPackageFound`.
    pub fn server_status(&self) -> Option<&str> {
        match self {
            Self::Response(e) => e.server_status(),
            _ => None,
        }
    }

    /// The code to report in the `3/0` error event: `2000 + status` for an
    /// HTTP failure (`2000` when there was no response), the parser's code
    /// (30/31/34) for a rejected body, `2` otherwise.
    pub fn event_error_code(&self, flags: ErrorFlags) -> EventErrorCode {
        match self {
            Self::HttpStatus { status, .. } => EventErrorCode::omaha_http_status(*status, flags),
            Self::Unreachable { .. }
            | Self::Timeout { .. }
            | Self::Redirect { .. }
            | Self::Body { .. } => EventErrorCode::omaha_http_status(0, flags),
            Self::Response(e) => EventErrorCode::new(e.error_code(), flags),
            Self::Disabled | Self::InvalidServerUrl { .. } | Self::Setup(_) => {
                EventErrorCode::new(omaha::ErrorCode::OmahaRequestError, flags)
            }
        }
    }
}

/// A parsed update-check answer and the raw body (for the `full-response`
/// pref that flatcar-postinst reads).
#[derive(Debug, Clone)]
pub struct CheckResult {
    /// The parsed response.
    pub response: UpdateCheckResponse,
    /// The body as received.
    pub body: Vec<u8>,
}

/// Client options beyond the URL.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// HTTP setup (the https-only flag is derived from the URL).
    pub http: HttpOptions,
    /// Response size cap.
    pub max_response_size: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            http: HttpOptions::default(),
            max_response_size: omaha::MAX_RESPONSE_SIZE,
        }
    }
}

impl ClientOptions {
    /// Options from the agent settings (CA bundle resolved under `root`).
    pub fn from_settings(settings: &Settings, root: &Root) -> Self {
        Self {
            http: HttpOptions {
                ca_bundle: settings.ca_bundle.as_ref().map(|p| root.join(p)),
                connect_timeout: settings.connect_timeout,
                request_timeout: Some(settings.request_timeout),
                https_only: false,
            },
            max_response_size: omaha::MAX_RESPONSE_SIZE,
        }
    }
}

/// An Omaha client for one server URL. Build a new one per check: the
/// configuration is re-read every time.
#[derive(Debug, Clone)]
pub struct OmahaClient {
    http: reqwest::Client,
    url: Url,
    max_response_size: usize,
}

/// Parses `SERVER`.
pub fn parse_server_url(server: &str) -> Result<Url, OmahaClientError> {
    if server == SERVER_DISABLED {
        return Err(OmahaClientError::Disabled);
    }
    let invalid = |reason: String| OmahaClientError::InvalidServerUrl {
        url: server.to_string(),
        reason,
    };
    let url = Url::parse(server).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "scheme {:?} is not http or https",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host".into()));
    }
    Ok(url)
}

impl OmahaClient {
    /// A client for `server` (the `SERVER` value). An https URL makes the
    /// client https-only, redirects included.
    pub fn new(server: &str, options: &ClientOptions) -> Result<Self, OmahaClientError> {
        let url = parse_server_url(server)?;
        let http = http::build_client(&HttpOptions {
            https_only: url.scheme() == "https",
            ..options.http.clone()
        })?;
        Ok(Self {
            http,
            url,
            max_response_size: options.max_response_size,
        })
    }

    /// The server URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    fn transport_error(&self, source: reqwest::Error) -> OmahaClientError {
        let url = self.url.to_string();
        if let Some(refusal) = http::redirect_refusal(&source) {
            return OmahaClientError::Redirect {
                url,
                refusal: refusal.clone(),
            };
        }
        if source.is_redirect() && source.url().is_some_and(|u| u.scheme() != "https") {
            // reqwest's own https-only check on a redirect target.
            return OmahaClientError::Redirect {
                url: url.clone(),
                refusal: RedirectRefused::SchemeDowngrade {
                    from: url,
                    to: source.url().map(|u| u.to_string()).unwrap_or_default(),
                },
            };
        }
        if source.is_timeout() {
            OmahaClientError::Timeout { url, source }
        } else {
            OmahaClientError::Unreachable { url, source }
        }
    }

    /// POSTs `request` and returns the raw body of a 2xx answer, read
    /// incrementally and abandoned as soon as it passes the size cap.
    pub async fn post(&self, request: &Request) -> Result<Vec<u8>, OmahaClientError> {
        let xml = request.to_xml();
        tracing::info!(url = %self.url, "Omaha request: {}", omaha::LogEscaped(xml.as_bytes()));
        let mut response = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "text/xml")
            .body(xml)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(OmahaClientError::HttpStatus {
                url: self.url.to_string(),
                status: status.as_u16(),
            });
        }
        let max = self.max_response_size;
        let too_large =
            |size: usize| OmahaClientError::Response(ResponseError::TooLarge { size, max });
        if let Some(len) = response.content_length()
            && len > max as u64
        {
            return Err(too_large(usize::try_from(len).unwrap_or(usize::MAX)));
        }
        let mut body = Vec::with_capacity(
            response
                .content_length()
                .map_or(8192, |l| l as usize)
                .min(max),
        );
        loop {
            let chunk = response.chunk().await.map_err(|source| {
                if source.is_timeout() {
                    OmahaClientError::Timeout {
                        url: self.url.to_string(),
                        source,
                    }
                } else {
                    OmahaClientError::Body {
                        url: self.url.to_string(),
                        source,
                    }
                }
            })?;
            let Some(chunk) = chunk else { break };
            if body.len() + chunk.len() > max {
                return Err(too_large(body.len() + chunk.len()));
            }
            body.extend_from_slice(&chunk);
        }
        // Flatcar's prefix: flatcar-postinst scrapes the journal for it.
        tracing::info!(
            url = %self.url,
            "Omaha request response: {}",
            omaha::LogEscaped(&body)
        );
        Ok(body)
    }

    /// Sends an update check (or any request) and parses the answer as an
    /// update-check response. A server `error-*` status is an error carrying
    /// the server's reason ([`OmahaClientError::server_status`]).
    pub async fn check(&self, request: &Request) -> Result<CheckResult, OmahaClientError> {
        let body = self.post(request).await?;
        let response = omaha::parse_update_check(&body, &request.client.app_id)?;
        Ok(CheckResult { response, body })
    }

    /// Sends an event or ping request. update_engine ignores the answer; we
    /// only require a 2xx status and a well-formed Omaha envelope.
    pub async fn send_event(
        &self,
        request: &Request,
    ) -> Result<omaha::EventResponse, OmahaClientError> {
        let body = self.post(request).await?;
        Ok(omaha::parse_event_response(&body, &request.client.app_id)?)
    }
}

/// How long the scheduler should wait before retrying a check that got no
/// HTTP response at all (update_engine: 10 s).
pub const NO_RESPONSE_RETRY_DELAY: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn server_url_validation() {
        assert!(matches!(
            parse_server_url("disabled"),
            Err(OmahaClientError::Disabled)
        ));
        for bad in ["", "ftp://x/", "not a url", "file:///etc/x", "http://"] {
            let err = parse_server_url(bad).unwrap_err();
            assert_eq!(err.error_kind(), "invalid_server_url", "{bad:?}: {err}");
        }
        assert_eq!(
            parse_server_url("https://public.update.flatcar-linux.net/v1/update/")
                .unwrap()
                .as_str(),
            "https://public.update.flatcar-linux.net/v1/update/"
        );
    }

    #[test]
    fn event_codes() {
        let f = ErrorFlags::NONE;
        let http = |status| OmahaClientError::HttpStatus {
            url: String::new(),
            status,
        };
        assert_eq!(http(503).event_error_code(f).to_u32(), 2503);
        assert!(http(503).is_backoff_status());
        assert!(http(500).is_backoff_status());
        assert!(!http(502).is_backoff_status());
        assert_eq!(http(1234).event_error_code(f).to_u32(), 2999);
        let e = OmahaClientError::Response(ResponseError::Empty);
        assert_eq!(e.event_error_code(f).to_u32(), 30);
        assert_eq!(
            OmahaClientError::Disabled
                .event_error_code(ErrorFlags {
                    test_omaha_url: true,
                    ..f
                })
                .to_u32(),
            2 | 0x1000_0000
        );
    }
}
