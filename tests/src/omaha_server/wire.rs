//! The wire side of the test server: reading a request, writing a
//! response, answering Omaha requests from the script, serving files with
//! `Range` and the scripted misbehaviour (cuts, stalls).

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) struct Head {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

pub(super) async fn read_request(
    stream: &mut impl Conn,
) -> std::io::Result<Option<(Head, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_REQUEST {
            return Ok(None);
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let path = first.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
        .min(MAX_REQUEST);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let mut chunk = vec![0u8; (len - body.len()).min(65536)];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Ok(Some((
        Head {
            method,
            path,
            headers,
        },
        body,
    )))
}

pub(super) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

pub(super) async fn write_head(
    stream: &mut impl Conn,
    status: u16,
    headers: &[(&str, String)],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nConnection: close\r\n",
        reason(status)
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await
}

pub(super) async fn respond(
    stream: &mut impl Conn,
    status: u16,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    write_head(
        stream,
        status,
        &[
            ("Content-Type", content_type.to_string()),
            ("Content-Length", body.len().to_string()),
        ],
    )
    .await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

pub(super) async fn handle(
    mut stream: impl Conn,
    shared: Arc<Mutex<Shared>>,
) -> std::io::Result<()> {
    let Some((head, body)) = read_request(&mut stream).await? else {
        return Ok(());
    };
    let omaha = (head.method == "POST")
        .then(|| omaha::server::parse_request(&body).map_err(|e| update_agent::error_chain(&e)));
    let lock = || shared.lock().unwrap_or_else(|e| e.into_inner());
    lock().requests.push(RecordedRequest {
        method: head.method.clone(),
        path: head.path.clone(),
        headers: head.headers.clone(),
        body: body.clone(),
        omaha: omaha.clone(),
        at: std::time::Instant::now(),
    });

    if head.method == "GET" || head.method == "HEAD" {
        let redirect = lock().redirects.get(&head.path).cloned();
        if let Some(location) = redirect {
            write_head(
                &mut stream,
                302,
                &[("Location", location), ("Content-Length", "0".into())],
            )
            .await?;
            return stream.shutdown().await;
        }
        let file = lock().files.get_mut(&head.path).map(|f| {
            let cut = if let Some(at) = f.stall_at {
                Cut::StallAt(at)
            } else if f.cuts_left > 0 {
                f.cuts_left -= 1;
                f.cut_after.map_or(Cut::None, Cut::After)
            } else {
                Cut::None
            };
            (f.data.clone(), cut)
        });
        return match file {
            Some((data, cut)) => {
                let r = serve_file(&mut stream, &head, &data, cut).await;
                if let Ok(true) = r {
                    if let Some(f) = lock().files.get_mut(&head.path) {
                        f.stalled += 1;
                    }
                    tokio::time::sleep(Duration::from_secs(300)).await;
                }
                r.map(|_| ())
            }
            None => respond(&mut stream, 404, "text/plain", b"not found").await,
        };
    }
    if head.method != "POST" {
        return respond(&mut stream, 400, "text/plain", b"bad method").await;
    }

    let request = omaha.and_then(Result::ok);
    let reply = match &request {
        Some(r) if !matches!(r.kind, RequestKind::UpdateCheck { .. }) => {
            // Events and pings are answered automatically.
            let xml = match r.kind {
                RequestKind::Ping => ping_response_xml(&r.client.app_id),
                _ => omaha::server::event_response_xml(&r.client.app_id),
            };
            Reply::Xml(xml)
        }
        _ => lock().replies.pop_front().unwrap_or(Reply::NoUpdate),
    };
    answer(&mut stream, reply, request.as_ref(), &shared).await
}

pub(super) fn ping_response_xml(app_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<response protocol=\"3.0\" server=\"nebraska\"><daystart elapsed_seconds=\"0\"></daystart><app appid=\"{app_id}\" status=\"ok\"><ping status=\"ok\"></ping></app></response>"
    )
}

pub(super) async fn answer(
    stream: &mut impl Conn,
    mut reply: Reply,
    request: Option<&omaha::Request>,
    shared: &Arc<Mutex<Shared>>,
) -> std::io::Result<()> {
    while let Reply::Delay(d, inner) = reply {
        tokio::time::sleep(d).await;
        reply = *inner;
    }
    let app_id = request.map(|r| r.client.app_id.clone());
    let echo = request
        .map(omaha::server::Echo::for_request)
        .unwrap_or_default();
    let xml = |resp: UpdateCheckResponse| omaha::server::update_check_response_xml(&resp, echo);
    match reply {
        Reply::NoUpdate | Reply::NoUpdateWithPollInterval(_) => {
            let poll_interval = match reply {
                Reply::NoUpdateWithPollInterval(p) => Some(p),
                _ => None,
            };
            let body = xml(UpdateCheckResponse {
                server: Some("nebraska".into()),
                app_id,
                poll_interval,
                outcome: UpdateCheck::NoUpdate,
            });
            respond(stream, 200, "text/xml", body.as_bytes()).await
        }
        Reply::Update(spec) => {
            let body = xml(spec.to_response(app_id));
            respond(stream, 200, "text/xml", body.as_bytes()).await
        }
        Reply::Xml(body) => respond(stream, 200, "text/xml", body.as_bytes()).await,
        Reply::Status(status) => respond(stream, status, "text/plain", b"").await,
        Reply::Redirect { status, location } => {
            write_head(
                stream,
                status,
                &[("Location", location), ("Content-Length", "0".into())],
            )
            .await?;
            stream.shutdown().await
        }
        Reply::Huge {
            size,
            content_length,
        } => {
            let mut headers = vec![("Content-Type", "text/xml".to_string())];
            if content_length {
                headers.push(("Content-Length", size.to_string()));
            }
            write_head(stream, 200, &headers).await?;
            let chunk = vec![b' '; 64 * 1024];
            let mut sent = 0u64;
            stream.write_all(b"<response>").await?;
            while sent < size {
                let n = (size - sent).min(chunk.len() as u64) as usize;
                stream.write_all(&chunk[..n]).await?;
                sent += n as u64;
                shared
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .huge_bytes_sent += n as u64;
            }
            stream.shutdown().await
        }
        Reply::Hangup => Ok(()),
        Reply::Delay(..) => unreachable!("unwrapped above"),
    }
}

/// Parses a single `bytes=` range against `len`: `Ok(None)` for no/ignored
/// header, `Err(())` when unsatisfiable.
pub(super) fn parse_range(header: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // multi-range: answer with the whole file
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (len.saturating_sub(n), len.checked_sub(1).ok_or(())?)
        }
        (s, "") => (s.parse().map_err(|_| ())?, len.checked_sub(1).ok_or(())?),
        (s, e) => {
            let s: u64 = s.parse().map_err(|_| ())?;
            let e: u64 = e.parse().map_err(|_| ())?;
            (s, e.min(len.saturating_sub(1)))
        }
    };
    if start >= len || start > end {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// How a file response ends early.
#[derive(Debug, Clone, Copy)]
pub(super) enum Cut {
    /// The whole requested range.
    None,
    /// Close after this many body bytes.
    After(u64),
    /// Stop at this file offset (the caller then goes silent).
    StallAt(u64),
}

/// Serves `data` for a GET or HEAD; true when the body stopped at a
/// [`Cut::StallAt`] offset (the caller then goes silent).
pub(super) async fn serve_file(
    stream: &mut impl Conn,
    head: &Head,
    data: &[u8],
    cut: Cut,
) -> std::io::Result<bool> {
    let len = data.len() as u64;
    let range = head
        .headers
        .iter()
        .find(|(k, _)| k == "range")
        .map(|(_, v)| v.as_str());
    let (status, start, end, mut headers) = match parse_range(range, len) {
        Ok(None) => (200, 0, len, vec![]),
        Ok(Some((s, e))) => (
            206,
            s,
            e + 1,
            vec![("Content-Range", format!("bytes {s}-{e}/{len}"))],
        ),
        Err(()) => {
            write_head(
                stream,
                416,
                &[
                    ("Content-Range", format!("bytes */{len}")),
                    ("Content-Length", "0".into()),
                ],
            )
            .await?;
            return stream.shutdown().await.map(|()| false);
        }
    };
    headers.push(("Content-Length", (end - start).to_string()));
    headers.push(("Accept-Ranges", "bytes".into()));
    headers.push(("Content-Type", "application/octet-stream".into()));
    write_head(stream, status, &headers).await?;
    if head.method == "HEAD" {
        return stream.shutdown().await.map(|()| false);
    }
    // A range that ends before the stall offset is served whole.
    let stalls = matches!(cut, Cut::StallAt(at) if end > at);
    let body = &data[start as usize..end as usize];
    let body = match cut {
        Cut::After(n) => &body[..(n as usize).min(body.len())],
        Cut::StallAt(at) if stalls => &body[..at.saturating_sub(start) as usize],
        Cut::StallAt(_) | Cut::None => body,
    };
    stream.write_all(body).await?;
    stream.flush().await?;
    // On a cut, drop the connection without a clean shutdown of the body.
    if matches!(cut, Cut::None) || matches!(cut, Cut::StallAt(_)) && !stalls {
        stream.shutdown().await?;
    }
    Ok(stalls)
}
