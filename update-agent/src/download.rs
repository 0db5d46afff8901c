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
//! returns an I/O error and the typed [`DownloadError`] is kept in the
//! shared [`ErrorSlot`] for the caller.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use omaha::ErrorCode;
use reqwest::{StatusCode, Url, header};
use tokio::sync::mpsc;

use crate::http;

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

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            retries: 20,
            retry_delay: Duration::from_secs(20),
            low_speed_limit: 10,
            low_speed_time: Duration::from_secs(90),
            bandwidth_limit: None,
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
}

/// A failed download.
#[derive(Debug, Clone, thiserror::Error)]
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
    #[error("payload download from {url} failed at byte {offset}: {reason}")]
    Transfer {
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
    #[error("payload download gave up after {attempts} attempts: {last}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
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
            Self::Transfer { .. } => "transfer",
            Self::LowSpeed { .. } => "low_speed",
            Self::SizeMismatch { .. } => "size_mismatch",
            Self::Redirect { .. } => "redirect_refused",
            Self::GaveUp { last, .. } => last.error_kind(),
            Self::Cancelled => "cancelled",
        }
    }

    /// Errors that no retry or other URL can fix.
    fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::SizeMismatch { .. } | Self::Redirect { .. } | Self::Cancelled
        )
    }
}

/// Where the download task leaves its error for the consumer.
pub type ErrorSlot = Arc<Mutex<Option<DownloadError>>>;

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
    let error: ErrorSlot = Arc::default();
    let slot = error.clone();
    rt.spawn(async move {
        if let Err(e) = fetch(&source, start, end, &opts, &tx, &cancel).await {
            tracing::warn!("{e}");
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
            let _ = tx.send(Err(e)).await;
        }
    });
    ChannelReader {
        rx,
        current: Bytes::new(),
        error,
        done: false,
    }
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
        let result = fetch_once(source, url, &mut offset, end, opts, tx, cancel, &rate).await;
        let err = match result {
            Ok(()) if offset >= end => return Ok(()),
            Ok(()) => DownloadError::Transfer {
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
            "{err}; retrying from byte {offset} in {:?}",
            opts.retry_delay
        );
        tokio::time::sleep(opts.retry_delay).await;
        if cancel.load(Ordering::Relaxed) {
            return Err(DownloadError::Cancelled);
        }
    }
    Ok(())
}

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

#[allow(clippy::too_many_arguments)]
async fn fetch_once(
    source: &Source,
    url: &Url,
    offset: &mut u64,
    end: u64,
    opts: &DownloadOptions,
    tx: &mpsc::Sender<Result<Bytes, DownloadError>>,
    cancel: &AtomicBool,
    rate: &RateState,
) -> Result<(), DownloadError> {
    let url_s = url.to_string();
    let transfer = |offset: u64, e: &reqwest::Error| {
        if let Some(refusal) = http::redirect_refusal(e) {
            return DownloadError::Redirect {
                url: url_s.clone(),
                refusal: refusal.clone(),
            };
        }
        DownloadError::Transfer {
            url: url_s.clone(),
            offset,
            reason: crate::error_chain(e),
        }
    };
    let size_mismatch = |what: String| DownloadError::SizeMismatch {
        url: url_s.clone(),
        expected: source.size,
        what,
    };
    let mut req = source.client.get(url.clone());
    if *offset > 0 || end < source.size {
        req = req.header(header::RANGE, format!("bytes={}-{}", *offset, end - 1));
    }
    let creds = source
        .credentials
        .as_ref()
        .map(|(u, p)| (u.as_str(), p.as_str()));
    if let Some((user, pass)) = http::credentials_for(url, creds) {
        req = req.basic_auth(user, Some(pass));
    }
    let send = tokio::time::timeout(opts.low_speed_time, req.send());
    let mut resp = match send.await {
        Err(_) => {
            return Err(DownloadError::LowSpeed {
                url: url_s.clone(),
                offset: *offset,
                limit: opts.low_speed_limit,
                secs: opts.low_speed_time.as_secs(),
            });
        }
        Ok(r) => r.map_err(|e| transfer(*offset, &e))?,
    };
    let status = resp.status();
    // Bytes to drop from the front (a server that ignores Range).
    let mut skip = 0u64;
    match status {
        StatusCode::PARTIAL_CONTENT => {
            let range = resp
                .headers()
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_content_range);
            match range {
                Some((first, total)) => {
                    if total.is_some_and(|t| t != source.size) {
                        return Err(size_mismatch(format!(
                            "reports a total of {} bytes",
                            total.unwrap_or_default()
                        )));
                    }
                    if first != *offset {
                        return Err(DownloadError::Transfer {
                            url: url_s.clone(),
                            offset: *offset,
                            reason: format!("asked for byte {offset} on, got {first} on"),
                        });
                    }
                }
                None => {
                    return Err(DownloadError::Transfer {
                        url: url_s.clone(),
                        offset: *offset,
                        reason: "206 without a valid Content-Range".into(),
                    });
                }
            }
        }
        StatusCode::OK => {
            if let Some(len) = resp.content_length() {
                if len != source.size {
                    return Err(size_mismatch(format!("has {len} bytes")));
                }
            }
            skip = *offset;
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            let total = resp
                .headers()
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes */"))
                .and_then(|v| v.trim().parse::<u64>().ok());
            if let Some(total) = total.filter(|&t| t != source.size) {
                return Err(size_mismatch(format!("has {total} bytes")));
            }
            return Err(DownloadError::HttpStatus {
                url: url_s.clone(),
                status: status.as_u16(),
            });
        }
        other => {
            return Err(DownloadError::HttpStatus {
                url: url_s.clone(),
                status: other.as_u16(),
            });
        }
    }
    let mut window_start = Instant::now();
    let mut window_bytes = 0u64;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(DownloadError::Cancelled);
        }
        let at = *offset;
        let low_speed = || DownloadError::LowSpeed {
            url: url_s.clone(),
            offset: at,
            limit: opts.low_speed_limit,
            secs: opts.low_speed_time.as_secs(),
        };
        let chunk = match tokio::time::timeout(opts.low_speed_time, resp.chunk()).await {
            Err(_) => return Err(low_speed()),
            Ok(c) => c.map_err(|e| transfer(*offset, &e))?,
        };
        let Some(mut chunk) = chunk else {
            return Ok(());
        };
        if skip > 0 {
            let n = skip.min(chunk.len() as u64);
            skip -= n;
            chunk = chunk.slice(n as usize..);
            if chunk.is_empty() {
                continue;
            }
        }
        let n = chunk.len() as u64;
        if *offset + n > end {
            if end == source.size {
                return Err(size_mismatch(format!(
                    "sent more than {} bytes",
                    source.size
                )));
            }
            chunk = chunk.slice(..(end - *offset) as usize);
        }
        let n = chunk.len() as u64;
        if tx.send(Ok(chunk)).await.is_err() {
            return Err(DownloadError::Cancelled);
        }
        *offset += n;
        if *offset >= end {
            return Ok(());
        }
        window_bytes += n;
        let elapsed = window_start.elapsed();
        if elapsed >= opts.low_speed_time {
            if (window_bytes as f64) < opts.low_speed_limit as f64 * elapsed.as_secs_f64() {
                return Err(low_speed());
            }
            window_start = Instant::now();
            window_bytes = 0;
        }
        if let Some(wait) = rate.account(n) {
            tokio::time::sleep(wait).await;
        }
    }
}

/// `bytes FIRST-LAST/TOTAL` → (FIRST, TOTAL or None for `*`).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, _last) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((first.trim().parse().ok()?, total))
}

/// The blocking end of a download: a `Read` over the received chunks.
#[derive(Debug)]
pub struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, DownloadError>>,
    current: Bytes,
    error: ErrorSlot,
    done: bool,
}

impl ChannelReader {
    /// The download's error, if it failed.
    pub fn error_slot(&self) -> ErrorSlot {
        self.error.clone()
    }

    /// A reader over fixed chunks (tests).
    pub fn from_chunks(chunks: Vec<Result<Bytes, DownloadError>>) -> Self {
        let (tx, rx) = mpsc::channel(chunks.len().max(1));
        for c in chunks {
            tx.try_send(c).expect("capacity");
        }
        Self {
            rx,
            current: Bytes::new(),
            error: Arc::default(),
            done: false,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.current.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => {
                    self.done = true;
                    let text = e.to_string();
                    self.error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                    return Err(io::Error::other(text));
                }
                None => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        bytes::Buf::advance(&mut self.current, n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_concatenates_and_reports_errors() {
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
        let slot = r.error_slot();
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).unwrap_err();
        assert_eq!(err.to_string(), "payload download cancelled");
        assert_eq!(out, b"ab");
        assert_eq!(
            slot.lock().unwrap().as_ref().unwrap().error_kind(),
            "cancelled"
        );
        assert_eq!(r.read(&mut []).unwrap(), 0);
    }

    #[test]
    fn content_range() {
        assert_eq!(parse_content_range("bytes 5-9/10"), Some((5, Some(10))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("bytes */10"), None);
        assert_eq!(parse_content_range("items 1-2/3"), None);
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
