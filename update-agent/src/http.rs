//! The one HTTP client setup shared by the Omaha client and (later) the
//! payload download: rustls with the system roots (`/etc/ssl/certs`, as
//! update_engine's `CURLOPT_CAPATH`) plus an optional extra CA bundle, a
//! connect timeout, at most 10 redirects and never a redirect from https to
//! http.
//!
//! Proxies: reqwest (0.12, via hyper-util's matcher) reads `ALL_PROXY`,
//! `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY`, each upper case first and then
//! lower case, like libcurl. One difference from curl: `HTTP_PROXY` (upper
//! case) is ignored when `REQUEST_METHOD` is set (the CGI "httpoxy" guard);
//! `http_proxy` still works then.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use reqwest::redirect;

/// update_engine follows up to 10 redirects.
pub const MAX_REDIRECTS: usize = 10;

/// How to build a client.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Extra PEM CA bundle (already resolved under the root).
    pub ca_bundle: Option<PathBuf>,
    /// TCP+TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout, `None` for none (downloads use a low-speed
    /// watchdog instead).
    pub request_timeout: Option<Duration>,
    /// Refuse every plain-http URL, including redirect targets. Set when the
    /// configured URL is https (update_engine: "an https URL allows only
    /// HTTPS, including for redirects").
    pub https_only: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            ca_bundle: None,
            connect_timeout: Duration::from_secs(30),
            request_timeout: Some(Duration::from_secs(120)),
            https_only: false,
        }
    }
}

/// Why a redirect was not followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectRefused {
    /// https → http.
    #[error("refusing redirect from {from} to insecure {to}")]
    SchemeDowngrade {
        /// The URL that redirected.
        from: String,
        /// The http target.
        to: String,
    },
    /// A scheme other than http or https.
    #[error("refusing redirect to unsupported URL {to}")]
    BadScheme {
        /// The target.
        to: String,
    },
    /// More than [`MAX_REDIRECTS`].
    #[error("too many redirects (more than {max})")]
    TooMany {
        /// The limit.
        max: usize,
    },
}

/// The redirect rule as a pure function: `previous` are the URLs requested
/// so far (the first is the original), `next` the redirect target.
pub fn check_redirect(previous: &[Url], next: &Url) -> Result<(), RedirectRefused> {
    if previous.len() > MAX_REDIRECTS {
        return Err(RedirectRefused::TooMany { max: MAX_REDIRECTS });
    }
    if !matches!(next.scheme(), "http" | "https") {
        return Err(RedirectRefused::BadScheme {
            to: next.to_string(),
        });
    }
    // Once any hop was https, stay on https.
    if next.scheme() == "http"
        && let Some(from) = previous.iter().find(|u| u.scheme() == "https")
    {
        return Err(RedirectRefused::SchemeDowngrade {
            from: from.to_string(),
            to: next.to_string(),
        });
    }
    Ok(())
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    /// The CA bundle cannot be read.
    #[error("cannot read CA bundle {}", path.display())]
    CaBundleRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The CA bundle is not valid PEM.
    #[error("invalid CA bundle {}", path.display())]
    CaBundleInvalid {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: reqwest::Error,
    },
    /// reqwest refused the configuration.
    #[error("cannot set up the HTTP client")]
    Build(#[source] reqwest::Error),
}

/// Builds the client.
pub fn build_client(opts: &HttpOptions) -> Result<reqwest::Client, HttpSetupError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(opts.connect_timeout)
        .https_only(opts.https_only)
        .redirect(redirect::Policy::custom(|attempt| {
            match check_redirect(attempt.previous(), attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(e) => attempt.error(e),
            }
        }));
    if let Some(t) = opts.request_timeout {
        builder = builder.timeout(t);
    }
    if let Some(path) = &opts.ca_bundle {
        let pem = std::fs::read(path).map_err(|source| HttpSetupError::CaBundleRead {
            path: path.clone(),
            source,
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
            HttpSetupError::CaBundleInvalid {
                path: path.clone(),
                source,
            }
        })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(HttpSetupError::Build)
}

/// `DOWNLOAD_USER`/`DOWNLOAD_PASSWORD` are only ever sent over https
/// (update_engine ignores them for http).
pub fn credentials_for<'a>(
    url: &Url,
    creds: Option<(&'a str, &'a str)>,
) -> Option<(&'a str, &'a str)> {
    creds.filter(|_| url.scheme() == "https")
}

/// The [`RedirectRefused`] inside a reqwest error, if that is what it is.
pub fn redirect_refusal(err: &reqwest::Error) -> Option<&RedirectRefused> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(r) = e.downcast_ref::<RedirectRefused>() {
            return Some(r);
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn redirect_rules() {
        let https = u("https://a.example/x");
        let http = u("http://a.example/x");
        assert_eq!(
            check_redirect(std::slice::from_ref(&https), &u("https://b.example/")),
            Ok(())
        );
        assert_eq!(
            check_redirect(std::slice::from_ref(&http), &u("https://b.example/")),
            Ok(())
        );
        assert_eq!(
            check_redirect(std::slice::from_ref(&http), &u("http://b.example/")),
            Ok(())
        );
        assert!(matches!(
            check_redirect(std::slice::from_ref(&https), &u("http://b.example/")),
            Err(RedirectRefused::SchemeDowngrade { .. })
        ));
        // http -> https -> http is a downgrade too.
        assert!(matches!(
            check_redirect(&[http.clone(), https.clone()], &u("http://c.example/")),
            Err(RedirectRefused::SchemeDowngrade { .. })
        ));
        assert!(matches!(
            check_redirect(std::slice::from_ref(&https), &u("file:///etc/passwd")),
            Err(RedirectRefused::BadScheme { .. })
        ));
        let many = vec![https.clone(); MAX_REDIRECTS + 1];
        assert_eq!(
            check_redirect(&many, &https),
            Err(RedirectRefused::TooMany { max: 10 })
        );
        assert_eq!(check_redirect(&many[..MAX_REDIRECTS], &https), Ok(()));
    }

    #[test]
    fn credentials_only_over_https() {
        let c = Some(("u", "p"));
        assert_eq!(credentials_for(&u("https://x/"), c), c);
        assert_eq!(credentials_for(&u("http://x/"), c), None);
    }

    #[test]
    fn ca_bundle_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = HttpOptions {
            ca_bundle: Some(dir.path().join("none.pem")),
            ..Default::default()
        };
        assert!(matches!(
            build_client(&missing),
            Err(HttpSetupError::CaBundleRead { .. })
        ));
        let path = dir.path().join("bad.pem");
        std::fs::write(
            &path,
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let bad = HttpOptions {
            ca_bundle: Some(path),
            ..Default::default()
        };
        assert!(build_client(&bad).is_err());
        assert!(build_client(&HttpOptions::default()).is_ok());
    }
}
