//! The scrape endpoint: HTTP/1.1 on a unix socket, `GET /metrics`.
//!
//! A unix socket rather than a TCP port: nothing listens on the node's
//! network, and file permissions say who may scrape (the socket is
//! world-connectable, like `/run/dbus/system_bus_socket`; a node exporter's
//! textfile or a socket-to-TCP proxy exposes it further if wanted).

use std::convert::Infallible;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

use super::Metrics;

/// OpenMetrics, which Prometheus negotiates and parses.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The bound socket; the file is removed when this is dropped.
#[derive(Debug)]
pub struct MetricsServer {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = fs::remove_file(&self.path);
    }
}

/// Binds `path` (its directory created 0755, a stale socket replaced, the
/// socket made 0666) and answers scrapes of `metrics` until dropped.
pub fn serve(path: &Path, metrics: Metrics) -> io::Result<MetricsServer> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
    }
    // A socket left by a daemon that did not exit cleanly.
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o666))?;
    let task = tokio::spawn(accept(listener, metrics));
    Ok(MetricsServer {
        path: path.to_path_buf(),
        task,
    })
}

async fn accept(listener: UnixListener, metrics: Metrics) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("metrics socket: {e}");
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(answer(&req, &metrics)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!("metrics connection: {e}");
            }
        });
    }
}

fn answer(req: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, body, content_type) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (StatusCode::OK, metrics.encode(), CONTENT_TYPE),
        (&Method::GET, _) => (StatusCode::NOT_FOUND, "try /metrics\n".into(), "text/plain"),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "GET only\n".into(),
            "text/plain",
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    resp
}
