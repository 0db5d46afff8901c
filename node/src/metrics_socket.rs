//! `GET /metrics` over HTTP/1 on a unix socket (hyper), for unprivileged
//! scrapers of the update agent and the reboot coordinator: they run as
//! root, the socket is mode 0666 in a 0755 directory
//! ([`PUBLIC_DIR`]). A socket rather than a TCP port: nothing is exposed to the
//! network unless the admin proxies it, and file modes say who may read.
//!
//! Anyone on the node may connect, so the server is bounded: at most
//! [`MAX_CONNECTIONS`] at a time (more are closed at once), each for at
//! most [`CONNECTION_TIME`], and it only answers `GET`/`HEAD /metrics`.

use std::convert::Infallible;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tokio::sync::Semaphore;

/// The directory of the metrics sockets (node path).
pub const PUBLIC_DIR: &str = "/run/update-agent/public";

/// Renders the exposition for one scrape.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Connections served at the same time.
pub const MAX_CONNECTIONS: usize = 8;
/// How long one connection may stay open (a scrape takes milliseconds).
pub const CONNECTION_TIME: Duration = Duration::from_secs(10);
/// What `prometheus_client`'s text encoder writes.
const CONTENT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Something that is not a socket sits at the path; it is left alone.
    #[error("{path} exists and is not a socket")]
    NotASocket {
        /// The path.
        path: String,
    },
    /// Another process answers on the socket (a second daemon); it is
    /// left alone.
    #[error("{path} is in use by another process")]
    InUse {
        /// The path.
        path: String,
    },
    /// Creating the directory, removing a stale socket, binding or setting
    /// the mode failed.
    #[error("{what} {path}")]
    Io {
        /// The step.
        what: &'static str,
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Binds `path` (a host path): creates its directory (0755) when missing,
/// replaces a stale socket from an earlier run, and opens the socket to
/// every local user (0666).
pub fn bind(path: &Path) -> Result<UnixListener, BindError> {
    let io = |what, p: &Path| {
        let path = p.display().to_string();
        move |source| BindError::Io { what, path, source }
    };
    // Every directory created here is 0755 whatever the umask, so that
    // other users can reach the socket; existing ones are left as they are.
    let missing: Vec<&Path> = path
        .ancestors()
        .skip(1)
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .collect();
    for dir in missing.into_iter().rev() {
        std::fs::create_dir(dir).map_err(io("creating", dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .map_err(io("setting the mode of", dir))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(BindError::InUse {
                    path: path.display().to_string(),
                });
            }
            std::fs::remove_file(path).map_err(io("removing the stale socket", path))?;
        }
        Ok(_) => {
            return Err(BindError::NotASocket {
                path: path.display().to_string(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("inspecting", path)(e)),
    }
    let listener = UnixListener::bind(path).map_err(io("binding", path))?;
    // Connecting needs write permission on the socket.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(io("setting the mode of", path))?;
    Ok(listener)
}

/// Serves what `render` returns on `listener` until the task is dropped.
pub async fn serve(listener: UnixListener, render: Render) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: do not spin.
                tracing::warn!("metrics socket: accept: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("metrics socket: too many connections, closing one");
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let answer = respond(&render, &req);
                async move { Ok::<_, Infallible>(answer) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIME, conn).await {
                Ok(Err(e)) => tracing::debug!("metrics socket: {e}"),
                Err(_) => tracing::debug!("metrics socket: connection timed out"),
                Ok(Ok(())) => {}
            }
            drop(slot);
        });
    }
}

fn respond(render: &Render, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "only /metrics is served here\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let mut r = Response::new(Full::new(Bytes::from(render())));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn bind_opens_the_socket_to_everyone_and_replaces_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/update-agent/public/metrics.sock");
        let first = bind(&path).unwrap();
        assert_eq!(mode(&path), 0o666);
        for d in ["run", "run/update-agent", "run/update-agent/public"] {
            assert_eq!(mode(&dir.path().join(d)), 0o755, "{d}");
        }
        // A live server is not displaced …
        let e = bind(&path).unwrap_err();
        assert!(matches!(e, BindError::InUse { .. }), "{e}");
        drop(first);
        // … the file of a daemon that died is replaced.
        assert!(path.exists());
        let _second = bind(&path).unwrap();
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
    }

    #[tokio::test]
    async fn bind_leaves_anything_else_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.sock");
        std::fs::write(&path, "an admin's file").unwrap();
        let e = bind(&path).unwrap_err();
        assert!(matches!(e, BindError::NotASocket { .. }), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "an admin's file");
        let existing = dir.path().join("mine");
        std::fs::create_dir(&existing).unwrap();
        std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o700)).unwrap();
        let _l = bind(&existing.join("m.sock")).unwrap();
        assert_eq!(
            mode(&existing),
            0o700,
            "an existing directory keeps its mode"
        );
    }
}
