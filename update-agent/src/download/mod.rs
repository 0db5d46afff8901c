//! The payload download: an async HTTP body stream bridged to a blocking
//! [`Read`] for the `payload` crate's applier.
//!
//! - A tokio task GETs `[start, end)` of the payload and pushes the body
//!   chunks into a bounded channel ([`CHANNEL_CHUNKS`] chunks): memory is
//!   bounded no matter how large the payload is, and a slow writer slows
//!   the download (back-pressure), never the other way round.
//! - An interrupted body is resumed with `Range: bytes=N-` at the byte
//!   where it stopped, after `retry_delay`, up to `retries` times; a URL
//!   that fails without delivering a byte hands over to the next URL
//!   (update_engine's fallback list).
//! - The stream is capped at the advertised size: a server that sends more,
//!   or announces a different total length, fails with
//!   `PayloadSizeMismatchError` (11) at once.
//! - Low-speed abort (update_engine: below 10 B/s for 90 s, also when no
//!   byte arrives at all) and an optional bandwidth cap.
//! - Credentials only over HTTPS; the client's redirect policy refuses
//!   https→http.
//!
//! [`ChannelReader`] is the blocking side; it must be read outside the
//! async runtime (e.g. in `spawn_blocking`). When the task fails, the reader
//! returns an I/O error carrying the typed [`DownloadError`]
//! ([`DownloadError::from_io`] gets it back).
//!
//! Submodules: `fetch` (one HTTP request and its body), `reader` (the
//! blocking end).

mod fetch;
mod reader;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use omaha::ErrorCode;
use reqwest::Url;
use tokio::sync::mpsc;

use crate::config::Settings;
use crate::http;
pub use reader::ChannelReader;

/// Chunks buffered between the network and the applier.
pub const CHANNEL_CHUNKS: usize = 16;

/// Transfer tuning.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// Restarts of an interrupted or failed transfer.
    pub retries: u32,
    /// Wait before a restart.
    pub retry_delay: Duration,
    /// Low-speed threshold in bytes/s…
    pub low_speed_limit: u64,
    /// …sustained for this long aborts the transfer.
    pub low_speed_time: Duration,
    /// Bytes/s cap.
    pub bandwidth_limit: Option<u64>,
}

impl DownloadOptions {
    /// The `[download]` settings (their defaults are update_engine's and
    /// live in `config::settings` only).
    pub fn from_settings(s: &Settings) -> Self {
        Self {
            retries: s.download_retries,
            retry_delay: s.download_retry_delay,
            low_speed_limit: s.low_speed_limit,
            low_speed_time: s.low_speed_time,
            bandwidth_limit: s.bandwidth_limit,
        }
    }
}

/// What to download.
#[derive(Debug, Clone)]
pub struct Source {
    /// The HTTP client (built with [`http::build_client`], no whole-request
    /// timeout).
    pub client: reqwest::Client,
    /// The payload URLs, in fallback order.
    pub urls: Vec<Url>,
    /// `DOWNLOAD_USER`/`DOWNLOAD_PASSWORD`, sent only over HTTPS.
    pub credentials: Option<(String, String)>,
    /// The advertised size.
    pub size: u64,
    /// Counts every byte passed on (the metrics' `download_bytes`).
    pub received: Option<crate::metrics::ByteCounter>,
}

/// A failed download.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The response offers no URL.
    #[error("no payload URL")]
    NoUrls,
    /// The server answered with an error status.
    #[error("payload server {url} answered HTTP {status}")]
    HttpStatus {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// Connecting or reading failed.
    #[error("payload download from {url} failed at byte {offset}")]
    Transfer {
        /// The URL.
        url: String,
        /// Bytes of the payload received so far.
        offset: u64,
        /// What the HTTP client said.
        #[source]
        source: reqwest::Error,
    },
    /// The server broke the protocol or the connection ended early.
    #[error("payload download from {url} failed at byte {offset}: {reason}")]
    Interrupted {
        /// The URL.
        url: String,
        /// Bytes of the payload received so far.
        offset: u64,
        /// What happened.
        reason: String,
    },
    /// Too slow for too long.
    #[error("payload download from {url} stayed below {limit} B/s for {secs} s at byte {offset}")]
    LowSpeed {
        /// The URL.
        url: String,
        /// Bytes received.
        offset: u64,
        /// The limit.
        limit: u64,
        /// The window.
        secs: u64,
    },
    /// The server sent more than advertised or announced another length.
    #[error("payload size mismatch: the response advertised {expected} bytes, {url} {what}")]
    SizeMismatch {
        /// The URL.
        url: String,
        /// Advertised size.
        expected: u64,
        /// What the server did.
        what: String,
    },
    /// A redirect was refused (https→http, bad scheme, too many).
    #[error("payload download from {url}: {refusal}")]
    Redirect {
        /// The URL.
        url: String,
        /// Why.
        refusal: http::RedirectRefused,
    },
    /// Every retry failed; the last error.
    #[error("payload download gave up after {attempts} attempts")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        #[source]
        last: Box<DownloadError>,
    },
    /// Cancelled by the user or the consumer went away.
    #[error("payload download cancelled")]
    Cancelled,
}

impl DownloadError {
    /// update_engine's code for this failure.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::SizeMismatch { .. } => ErrorCode::PayloadSizeMismatchError,
            Self::GaveUp { last, .. } => last.error_code(),
            _ => ErrorCode::DownloadTransferError,
        }
    }

    /// A stable name.
    pub fn error_kind(&self) -> &'static str {
        match self {
            Self::NoUrls => "no_urls",
            Self::HttpStatus { .. } => "http_status",
            Self::Transfer { .. } | Self::Interrupted { .. } => "transfer",
            Self::LowSpeed { .. } => "low_speed",
            Self::SizeMismatch { .. } => "size_mismatch",
            Self::Redirect { .. } => "redirect_refused",
            Self::GaveUp { last, .. } => last.error_kind(),
            Self::Cancelled => "cancelled",
        }
    }

    /// The download error an I/O error from [`ChannelReader`] carries, if
    /// any (the applier sees only `io::Error`).
    pub fn from_io(e: std::io::Error) -> Result<Self, std::io::Error> {
        if e.get_ref().is_some_and(|inner| inner.is::<Self>()) {
            let inner = e.into_inner().expect("checked above");
            return Ok(*inner.downcast::<Self>().expect("checked above"));
        }
        Err(e)
    }

    /// Errors that no retry or other URL can fix.
    fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::SizeMismatch { .. } | Self::Redirect { .. } | Self::Cancelled
        )
    }
}

/// Starts downloading `[start, end)` on `rt`; read the bytes from the
/// returned reader.
pub fn spawn(
    rt: &tokio::runtime::Handle,
    source: Arc<Source>,
    start: u64,
    end: u64,
    opts: DownloadOptions,
    cancel: Arc<AtomicBool>,
) -> ChannelReader {
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    rt.spawn(async move {
        if let Err(e) = fetch(&source, start, end, &opts, &tx, &cancel).await {
            tracing::warn!("{}", crate::error_chain(&e));
            let _ = tx.send(Err(e)).await;
        }
    });
    ChannelReader::new(rx)
}

async fn fetch(
    source: &Source,
    start: u64,
    end: u64,
    opts: &DownloadOptions,
    tx: &mpsc::Sender<Result<Bytes, DownloadError>>,
    cancel: &AtomicBool,
) -> Result<(), DownloadError> {
    if source.urls.is_empty() {
        return Err(DownloadError::NoUrls);
    }
    let mut offset = start;
    let mut url_index = 0;
    let mut attempts = 0u32;
    let mut failures = 0u32;
    let rate = RateState::new(opts.bandwidth_limit);
    while offset < end {
        attempts += 1;
        let url = &source.urls[url_index];
        let before = offset;
        let request = fetch::Request {
            source,
            url,
            end,
            opts,
            tx,
            cancel,
            rate: &rate,
        };
        let result = request.run(&mut offset).await;
        let err = match result {
            Ok(()) if offset >= end => return Ok(()),
            Ok(()) => DownloadError::Interrupted {
                url: url.to_string(),
                offset,
                reason: "connection closed before the end of the body".into(),
            },
            Err(e) => e,
        };
        if err.is_fatal() {
            return Err(err);
        }
        failures += 1;
        if failures > opts.retries {
            return Err(DownloadError::GaveUp {
                attempts,
                last: Box::new(err),
            });
        }
        if offset == before {
            // Nothing from this URL: try the next one.
            url_index = (url_index + 1) % source.urls.len();
        }
        tracing::info!(
            "{}; retrying from byte {offset} in {:?}",
            crate::error_chain(&err),
            opts.retry_delay
        );
        tokio::time::sleep(opts.retry_delay).await;
        if cancel.load(Ordering::Relaxed) {
            return Err(DownloadError::Cancelled);
        }
    }
    Ok(())
}

/// The bandwidth cap's bookkeeping, shared by the retries of one download.
#[derive(Debug)]
struct RateState {
    limit: Option<u64>,
    started: Instant,
    bytes: std::sync::atomic::AtomicU64,
}

impl RateState {
    fn new(limit: Option<u64>) -> Self {
        Self {
            limit,
            started: Instant::now(),
            bytes: 0.into(),
        }
    }

    /// How long to sleep after `n` more bytes to stay under the cap.
    fn account(&self, n: u64) -> Option<Duration> {
        let limit = self.limit?;
        let total = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        let due = Duration::from_secs_f64(total as f64 / limit as f64);
        due.checked_sub(self.started.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_concatenates_and_carries_the_typed_error() {
        use std::io::Read;
        let mut r = ChannelReader::from_chunks(vec![
            Ok(Bytes::from_static(b"hello ")),
            Ok(Bytes::new()),
            Ok(Bytes::from_static(b"world")),
        ]);
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello world");
        assert_eq!(r.read(&mut [0u8; 4]).unwrap(), 0);

        let mut r = ChannelReader::from_chunks(vec![
            Ok(Bytes::from_static(b"ab")),
            Err(DownloadError::Cancelled),
        ]);
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).unwrap_err();
        assert_eq!(err.to_string(), "payload download cancelled");
        assert_eq!(out, b"ab");
        let typed = DownloadError::from_io(err).unwrap();
        assert_eq!(typed.error_kind(), "cancelled");
        assert_eq!(r.read(&mut []).unwrap(), 0);
        // Any other I/O error stays what it was.
        let other = DownloadError::from_io(std::io::Error::other("EIO")).unwrap_err();
        assert_eq!(other.to_string(), "EIO");
    }

    #[test]
    fn content_range() {
        assert_eq!(
            fetch::parse_content_range("bytes 5-9/10"),
            Some((5, Some(10)))
        );
        assert_eq!(fetch::parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(fetch::parse_content_range("bytes */10"), None);
        assert_eq!(fetch::parse_content_range("items 1-2/3"), None);
    }

    #[test]
    fn codes() {
        let mismatch = DownloadError::SizeMismatch {
            url: "u".into(),
            expected: 1,
            what: "x".into(),
        };
        assert_eq!(mismatch.error_code(), ErrorCode::PayloadSizeMismatchError);
        let gave_up = DownloadError::GaveUp {
            attempts: 3,
            last: Box::new(DownloadError::HttpStatus {
                url: "u".into(),
                status: 404,
            }),
        };
        assert_eq!(gave_up.error_code(), ErrorCode::DownloadTransferError);
        assert_eq!(gave_up.error_kind(), "http_status");
    }

    #[test]
    fn bandwidth_cap_delays() {
        let r = RateState::new(Some(1000));
        assert!(r.account(2000).unwrap() > Duration::from_millis(1500));
        assert_eq!(RateState::new(None).account(1 << 30), None);
    }
}
