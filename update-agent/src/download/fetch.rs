//! One HTTP request of a download: send it (with `Range` and credentials),
//! check the answer against the advertised size, then stream its body into
//! the channel under the low-speed and bandwidth rules.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use reqwest::{Response, StatusCode, Url, header};
use tokio::sync::mpsc;

use super::{DownloadError, DownloadOptions, RateState, Source};
use crate::http;

/// One attempt at `[offset, end)` from `url`.
pub(super) struct Request<'a> {
    pub(super) source: &'a Source,
    pub(super) url: &'a Url,
    pub(super) end: u64,
    pub(super) opts: &'a DownloadOptions,
    pub(super) tx: &'a mpsc::Sender<Result<Bytes, DownloadError>>,
    pub(super) cancel: &'a AtomicBool,
    pub(super) rate: &'a RateState,
}

impl Request<'_> {
    /// Runs the attempt; `offset` advances with every byte delivered, so
    /// the caller resumes from there.
    pub(super) async fn run(&self, offset: &mut u64) -> Result<(), DownloadError> {
        let resp = self.send(*offset).await?;
        let skip = self.check(&resp, *offset)?;
        self.stream(resp, offset, skip).await
    }

    async fn send(&self, offset: u64) -> Result<Response, DownloadError> {
        let (source, url) = (self.source, self.url);
        let mut req = source.client.get(url.clone());
        if offset > 0 || self.end < source.size {
            req = req.header(header::RANGE, format!("bytes={offset}-{}", self.end - 1));
        }
        let creds = source
            .credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()));
        if let Some((user, pass)) = http::credentials_for(url, creds) {
            req = req.basic_auth(user, Some(pass));
        }
        match tokio::time::timeout(self.opts.low_speed_time, req.send()).await {
            Err(_) => Err(self.low_speed(offset)),
            Ok(r) => r.map_err(|e| self.transfer(offset, e)),
        }
    }

    /// The status and length against what was asked; returns how many
    /// bytes to drop from the front (a server that ignores `Range`).
    fn check(&self, resp: &Response, offset: u64) -> Result<u64, DownloadError> {
        let content_range = || {
            resp.headers()
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
        };
        match resp.status() {
            StatusCode::PARTIAL_CONTENT => match content_range().and_then(parse_content_range) {
                Some((_, Some(total))) if total != self.source.size => {
                    Err(self.size_mismatch(format!("reports a total of {total} bytes")))
                }
                Some((first, _)) if first != offset => Err(self.interrupted(
                    offset,
                    format!("asked for byte {offset} on, got {first} on"),
                )),
                Some(_) => Ok(0),
                None => Err(self.interrupted(offset, "206 without a valid Content-Range".into())),
            },
            StatusCode::OK => match resp.content_length() {
                Some(len) if len != self.source.size => {
                    Err(self.size_mismatch(format!("has {len} bytes")))
                }
                _ => Ok(offset),
            },
            StatusCode::RANGE_NOT_SATISFIABLE => {
                let total = content_range()
                    .and_then(|v| v.strip_prefix("bytes */"))
                    .and_then(|v| v.trim().parse::<u64>().ok());
                match total.filter(|&t| t != self.source.size) {
                    Some(total) => Err(self.size_mismatch(format!("has {total} bytes"))),
                    None => Err(self.status(resp.status())),
                }
            }
            other => Err(self.status(other)),
        }
    }

    /// Moves the body into the channel, dropping `skip` leading bytes.
    async fn stream(
        &self,
        mut resp: Response,
        offset: &mut u64,
        mut skip: u64,
    ) -> Result<(), DownloadError> {
        let (end, opts) = (self.end, self.opts);
        let mut window_start = Instant::now();
        let mut window_bytes = 0u64;
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(DownloadError::Cancelled);
            }
            let chunk = match tokio::time::timeout(opts.low_speed_time, resp.chunk()).await {
                Err(_) => return Err(self.low_speed(*offset)),
                Ok(c) => c.map_err(|e| self.transfer(*offset, e))?,
            };
            let Some(mut chunk) = chunk else {
                return Ok(());
            };
            let n = skip.min(chunk.len() as u64);
            skip -= n;
            chunk = chunk.slice(n as usize..);
            if chunk.is_empty() {
                continue;
            }
            if *offset + chunk.len() as u64 > end {
                if end == self.source.size {
                    let size = self.source.size;
                    return Err(self.size_mismatch(format!("sent more than {size} bytes")));
                }
                chunk = chunk.slice(..(end - *offset) as usize);
            }
            let n = chunk.len() as u64;
            if self.tx.send(Ok(chunk)).await.is_err() {
                return Err(DownloadError::Cancelled);
            }
            *offset += n;
            if let Some(received) = &self.source.received {
                received.inc_by(n);
            }
            if *offset >= end {
                return Ok(());
            }
            // update_engine's low-speed rule: below the limit for a whole
            // window aborts the attempt.
            window_bytes += n;
            let elapsed = window_start.elapsed();
            if elapsed >= opts.low_speed_time {
                if (window_bytes as f64) < opts.low_speed_limit as f64 * elapsed.as_secs_f64() {
                    return Err(self.low_speed(*offset));
                }
                window_start = Instant::now();
                window_bytes = 0;
            }
            if let Some(wait) = self.rate.account(n) {
                tokio::time::sleep(wait).await;
            }
        }
    }

    fn url(&self) -> String {
        self.url.to_string()
    }

    fn transfer(&self, offset: u64, e: reqwest::Error) -> DownloadError {
        if let Some(refusal) = http::redirect_refusal(&e) {
            return DownloadError::Redirect {
                url: self.url(),
                refusal: refusal.clone(),
            };
        }
        DownloadError::Transfer {
            url: self.url(),
            offset,
            source: e,
        }
    }

    fn interrupted(&self, offset: u64, reason: String) -> DownloadError {
        DownloadError::Interrupted {
            url: self.url(),
            offset,
            reason,
        }
    }

    fn size_mismatch(&self, what: String) -> DownloadError {
        DownloadError::SizeMismatch {
            url: self.url(),
            expected: self.source.size,
            what,
        }
    }

    fn status(&self, status: StatusCode) -> DownloadError {
        DownloadError::HttpStatus {
            url: self.url(),
            status: status.as_u16(),
        }
    }

    fn low_speed(&self, offset: u64) -> DownloadError {
        DownloadError::LowSpeed {
            url: self.url(),
            offset,
            limit: self.opts.low_speed_limit,
            secs: self.opts.low_speed_time.as_secs(),
        }
    }
}

/// `bytes FIRST-LAST/TOTAL` → (FIRST, TOTAL or None for `*`).
pub(super) fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, _last) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((first.trim().parse().ok()?, total))
}
