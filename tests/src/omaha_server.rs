//! An in-process Omaha and payload server for integration tests.
//!
//! It binds `127.0.0.1:0`, answers update checks from a script of
//! [`Reply`]s, answers event and ping requests with Nebraska's `ok`, serves
//! payload files with HTTP `Range` support (optionally cutting the
//! connection after N body bytes), and records every request.
//!
//! Why a small hand-written HTTP/1.1 server on tokio's TCP instead of
//! hyper/axum: the tests need to misbehave on the wire in ways a framework
//! hides or forbids: send a `Content-Length` and then close early, stream
//! 100 MB without a length, stall before answering, or hang up without a
//! status line. Every response is `Connection: close`, which keeps the
//! server small.
//!
//! [`OmahaServer::start_tls`] serves the same over TLS (tokio-rustls with
//! the ring provider that reqwest already uses) with a leaf certificate for
//! `127.0.0.1` and `localhost`, issued by a test CA generated once per
//! process ([`test_ca_pem`]): point the agent's `omaha.ca_bundle` at that
//! PEM.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use omaha::{
    Package, PostinstallAction, RequestKind, UpdateCheck, UpdateCheckResponse, UpdateInfo,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// A connection, plain TCP or TLS.
trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// The test CA and a leaf certificate for 127.0.0.1/localhost it issued.
struct TestPki {
    ca_pem: String,
    leaf_der: rustls::pki_types::CertificateDer<'static>,
    ca_der: rustls::pki_types::CertificateDer<'static>,
    leaf_key_der: Vec<u8>,
}

fn test_pki() -> &'static TestPki {
    static PKI: std::sync::OnceLock<TestPki> = std::sync::OnceLock::new();
    PKI.get_or_init(|| {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "e2e test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().expect("CA key");
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let mut leaf_params = CertificateParams::default();
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        leaf_params.subject_alt_names = vec![
            SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
            SanType::DnsName("localhost".try_into().expect("dns name")),
        ];
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = leaf_params
            .signed_by(&leaf_key, &ca, &ca_key)
            .expect("leaf certificate");
        TestPki {
            ca_pem: ca.pem(),
            leaf_der: leaf.der().clone(),
            ca_der: ca.der().clone(),
            leaf_key_der: leaf_key.serialize_der(),
        }
    })
}

/// PEM of the CA that issued every [`OmahaServer::start_tls`] server's
/// certificate (one per test process).
pub fn test_ca_pem() -> &'static str {
    &test_pki().ca_pem
}

fn tls_acceptor() -> TlsAcceptor {
    let pki = test_pki();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(pki.leaf_key_der.clone().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![pki.leaf_der.clone(), pki.ca_der.clone()], key)
        .expect("server certificate");
    TlsAcceptor::from(Arc::new(config))
}

/// Largest request head or body the server accepts.
const MAX_REQUEST: usize = 4 * 1024 * 1024;

/// An update to offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateSpec {
    /// `manifest@version`.
    pub version: String,
    /// Codebases (`url@codebase`), in order.
    pub codebases: Vec<String>,
    /// `package@name`.
    pub name: String,
    /// `package@size`.
    pub size: u64,
    /// `action@sha256` (raw).
    pub sha256: [u8; 32],
    /// `DisablePayloadBackoff="true"`.
    pub disable_payload_backoff: bool,
    /// `updatecheck@PollInterval`.
    pub poll_interval: Option<u32>,
    /// More `<package>`s after the payload (extension images).
    pub extra_packages: Vec<Package>,
}

impl UpdateSpec {
    /// An update whose size and hash match `payload`, served from
    /// `codebase` (e.g. [`OmahaServer::files_url`]).
    pub fn for_payload(version: &str, codebase: &str, name: &str, payload: &[u8]) -> Self {
        Self {
            version: version.into(),
            codebases: vec![codebase.into()],
            name: name.into(),
            size: payload.len() as u64,
            sha256: Sha256::digest(payload).into(),
            disable_payload_backoff: true,
            poll_interval: None,
            extra_packages: Vec::new(),
        }
    }

    /// Adds a `<package>` for `data` (size, `hash_sha256`, `required="false"`
    /// as Flatcar's extension packages).
    pub fn with_package(mut self, name: &str, data: &[u8]) -> Self {
        self.extra_packages.push(Package {
            name: name.into(),
            size: data.len() as u64,
            sha1: None,
            sha256: Some(Sha256::digest(data).into()),
            required: false,
        });
        self
    }

    fn to_response(&self, app_id: Option<String>) -> UpdateCheckResponse {
        UpdateCheckResponse {
            server: Some("nebraska".into()),
            app_id,
            poll_interval: self.poll_interval,
            outcome: UpdateCheck::Update(Box::new(UpdateInfo {
                version: self.version.clone(),
                urls: self.codebases.clone(),
                payload: Package {
                    name: self.name.clone(),
                    size: self.size,
                    sha1: None,
                    sha256: None,
                    required: true,
                },
                extra_packages: self.extra_packages.clone(),
                postinstall: PostinstallAction {
                    sha256: self.sha256,
                    disable_payload_backoff: self.disable_payload_backoff,
                    is_delta_payload: false,
                    max_failure_count_per_url: omaha::response::DEFAULT_MAX_FAILURE_COUNT_PER_URL,
                    needs_admin: None,
                    other_attributes: Default::default(),
                },
                is_floor: false,
                floor_reason: None,
                is_target: false,
                ignored_manifests: 0,
            })),
        }
    }
}

/// One scripted answer to an update check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `updatecheck status="noupdate"`.
    NoUpdate,
    /// `noupdate` with `PollInterval`.
    NoUpdateWithPollInterval(u32),
    /// An update.
    Update(UpdateSpec),
    /// This body, verbatim, with status 200.
    Xml(String),
    /// This status and an empty body.
    Status(u16),
    /// Wait, then answer.
    Delay(Duration, Box<Reply>),
    /// A redirect (`status`, e.g. 302) to `location`.
    Redirect {
        /// 301/302/303/307/308.
        status: u16,
        /// `Location`.
        location: String,
    },
    /// A 200 with `size` bytes of body; with `content_length` the length is
    /// declared up front, otherwise the body just streams until closed.
    Huge {
        /// Bytes to send.
        size: u64,
        /// Send `Content-Length`.
        content_length: bool,
    },
    /// Close the connection without any answer.
    Hangup,
}

/// A recorded request.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// For a POST: the body parsed by `omaha::server::parse_request`.
    pub omaha: Option<Result<omaha::Request, String>>,
    /// When the whole request had been read.
    pub at: std::time::Instant,
}

impl RecordedRequest {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The parsed Omaha request; panics if this was not one.
    pub fn omaha_request(&self) -> &omaha::Request {
        match &self.omaha {
            Some(Ok(r)) => r,
            other => panic!(
                "{} {} is not an Omaha request: {other:?}",
                self.method, self.path
            ),
        }
    }
}

#[derive(Debug, Clone)]
struct ServedFile {
    data: Arc<Vec<u8>>,
    /// Cut the body after this many bytes…
    cut_after: Option<u64>,
    /// …for this many more responses.
    cuts_left: usize,
    /// Serve up to this file offset, then keep the connection open and
    /// silent.
    stall_at: Option<u64>,
    /// Responses that reached `stall_at`.
    stalled: usize,
}

#[derive(Debug, Default)]
struct Shared {
    replies: VecDeque<Reply>,
    requests: Vec<RecordedRequest>,
    files: HashMap<String, ServedFile>,
    /// GET/HEAD paths answered with a 302 to the value.
    redirects: HashMap<String, String>,
    huge_bytes_sent: u64,
}

/// The server. Dropping it stops accepting connections.
#[derive(Debug)]
pub struct OmahaServer {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

impl Drop for OmahaServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OmahaServer {
    /// Path update checks are expected on (any POST path works).
    pub const UPDATE_PATH: &'static str = "/v1/update/";

    /// Binds 127.0.0.1 on a free port and starts serving plain HTTP on the
    /// current tokio runtime.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Like [`OmahaServer::start`], but HTTPS with a certificate issued by
    /// [`test_ca_pem`]. A failed handshake is not recorded as a request.
    pub async fn start_tls() -> Self {
        Self::start_with(Some(tls_acceptor())).await
    }

    /// Plain HTTP on `addr` (`omaha-test-server --listen`).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self::serve(listener, None))
    }

    async fn start_with(tls: Option<TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        Self::serve(listener, tls)
    }

    fn serve(listener: TcpListener, tls: Option<TlsAcceptor>) -> Self {
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Mutex::new(Shared::default()));
        let s = shared.clone();
        let is_tls = tls.is_some();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    // Errors only mean the client went away (or, for TLS,
                    // refused our certificate).
                    let _ = match tls {
                        None => handle(stream, s).await,
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(stream) => handle(stream, s).await,
                            Err(e) => Err(e),
                        },
                    };
                });
            }
        });
        Self {
            addr,
            tls: is_tls,
            shared,
            task,
        }
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, or `https://…` for [`OmahaServer::start_tls`].
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The update URL to put in `SERVER`.
    pub fn update_url(&self) -> String {
        format!("{}{}", self.base_url(), Self::UPDATE_PATH)
    }

    /// A codebase under which [`OmahaServer::serve_file`] files are found.
    pub fn files_url(&self) -> String {
        format!("{}/files/", self.base_url())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an answer for the next update check. When the queue is empty
    /// checks get `noupdate`.
    pub fn push(&self, reply: Reply) -> &Self {
        self.lock().replies.push_back(reply);
        self
    }

    /// Serves `payload` as the release payload (`PAYLOAD_NAME`) and answers
    /// the next update check with `version` pointing at it.
    pub fn offer_payload(&self, version: &str, payload: &[u8]) {
        let name = crate::fixture::PAYLOAD_NAME;
        self.serve_file(name, payload.to_vec());
        let spec = UpdateSpec::for_payload(version, &self.files_url(), name, payload);
        self.push(Reply::Update(spec));
    }

    /// Serves `data` at `/files/{name}` (GET and HEAD, with `Range`).
    pub fn serve_file(&self, name: &str, data: Vec<u8>) {
        self.lock().files.insert(
            format!("/files/{name}"),
            ServedFile {
                data: Arc::new(data),
                cut_after: None,
                cuts_left: 0,
                stall_at: None,
                stalled: 0,
            },
        );
    }

    /// GET and HEAD of `/files/{name}` answer `302 Found` with
    /// `Location: location`.
    pub fn redirect_file(&self, name: &str, location: &str) {
        self.lock()
            .redirects
            .insert(format!("/files/{name}"), location.to_string());
    }

    /// The next `times` responses for `/files/{name}` declare the full
    /// length but close the connection after `bytes` body bytes.
    pub fn cut_file_after(&self, name: &str, bytes: u64, times: usize) {
        let mut s = self.lock();
        let f = s
            .files
            .get_mut(&format!("/files/{name}"))
            .expect("serve_file first");
        f.cut_after = Some(bytes);
        f.cuts_left = times;
    }

    /// Every following response for `/files/{name}` sends the file's
    /// bytes up to offset `offset` and then goes silent with the connection
    /// open (a hung server, or a daemon killed mid-download);
    /// [`OmahaServer::unstall_file`] ends it for new requests.
    ///
    /// The offset is absolute so that a client's range retry (after its
    /// low-speed abort) stalls at the same place instead of finishing the
    /// download while a slow test is still deciding when to kill it.
    pub fn stall_file_after(&self, name: &str, offset: u64) {
        let mut s = self.lock();
        let f = s
            .files
            .get_mut(&format!("/files/{name}"))
            .expect("serve_file first");
        f.stall_at = Some(offset);
    }

    /// How many responses for `/files/{name}` have reached their stall
    /// point so far.
    pub fn stalled_responses(&self, name: &str) -> usize {
        self.lock()
            .files
            .get(&format!("/files/{name}"))
            .map_or(0, |f| f.stalled)
    }

    /// Serves `/files/{name}` normally again.
    pub fn unstall_file(&self, name: &str) {
        let mut s = self.lock();
        if let Some(f) = s.files.get_mut(&format!("/files/{name}")) {
            f.stall_at = None;
            f.cut_after = None;
            f.cuts_left = 0;
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// The file (payload) downloads so far: every GET, in order.
    pub fn gets(&self) -> Vec<RecordedRequest> {
        let s = self.lock();
        s.requests
            .iter()
            .filter(|r| r.method == "GET")
            .cloned()
            .collect()
    }

    /// Scripted answers not used yet.
    pub fn pending_replies(&self) -> usize {
        self.lock().replies.len()
    }

    /// Body bytes written for [`Reply::Huge`] answers so far.
    pub fn huge_bytes_sent(&self) -> u64 {
        self.lock().huge_bytes_sent
    }
}

mod wire;
use wire::*;

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-4"), 10), Ok(Some((0, 4))));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Ok(Some((7, 9))));
        assert_eq!(parse_range(Some("bytes=-30"), 10), Ok(Some((0, 9))));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Ok(Some((8, 9))));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=5-4"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=x-"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=0-"), 0), Err(()));
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), Ok(None));
        assert_eq!(parse_range(Some("items=0-1"), 10), Ok(None));
    }
}
