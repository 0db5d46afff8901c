//! The cluster-wide reboot lock behind one narrow trait, with its two implementations:
//! locksmith's semaphore on etcd's v3 JSON gateway ([`etcd`]) and FleetLock ([`fleetlock`]).

pub mod etcd;
pub mod fleetlock;

use std::future::Future;
use std::time::Duration;

use crate::config::{Config, Strategy, Tls};
use crate::semaphore::SemaphoreError;

/// Result of asking for a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquire {
    /// A slot is now ours (or already was).
    Acquired,
    /// No slot free; the reason as the server put it.
    Busy(String),
}

/// Result of giving a slot back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    Released,
    /// We did not hold one (idempotent release).
    NotHeld,
}

/// Why talking to the lock failed. Every variant means "unknown": never reboot on it.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// No endpoint answered.
    #[error("lock server unreachable at {endpoints}")]
    Unreachable {
        /// The endpoints (or URL) tried.
        endpoints: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("{url}: HTTP {status}: {body}")]
    Http {
        /// The request's URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The answer's body, trimmed.
        body: String,
    },
    /// The answer is not what the protocol says.
    #[error("{url}: unexpected response: {reason}")]
    Protocol {
        /// The request's URL or path.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The semaphore refused the change.
    #[error("semaphore at {key}")]
    Semaphore {
        /// The semaphore's key.
        key: String,
        #[source]
        source: SemaphoreError,
    },
    /// Others kept changing the semaphore between our read and our write.
    #[error("semaphore at {key} changed under us {tries} times in a row")]
    Contended {
        /// The semaphore's key.
        key: String,
        /// How many writes lost.
        tries: u32,
    },
    /// The TLS material could not be loaded into the HTTP client.
    #[error("TLS setup")]
    Tls(#[source] reqwest::Error),
    /// etcd refused the user or answered without a token.
    #[error("etcd authentication as {user:?} failed: {reason}")]
    Auth {
        /// The etcd user.
        user: String,
        /// Why.
        reason: String,
    },
}

impl LockError {
    /// A stable name for metrics and logs.
    pub fn error_kind(&self) -> &'static str {
        match self {
            LockError::Unreachable { .. } => "lock_unreachable",
            LockError::Http { .. } => "lock_http",
            LockError::Protocol { .. } => "lock_protocol",
            LockError::Semaphore { .. } => "lock_semaphore",
            LockError::Contended { .. } => "lock_contended",
            LockError::Tls(_) => "lock_tls",
            LockError::Auth { .. } => "lock_auth",
        }
    }
}

/// A reboot lock: idempotent acquire and release for this node.
pub trait Lock: Send + Sync {
    fn acquire(&self) -> impl Future<Output = Result<Acquire, LockError>> + Send;
    fn release(&self) -> impl Future<Output = Result<Release, LockError>> + Send;
}

/// The lock a [`Config`] asks for.
#[derive(Debug)]
pub enum AnyLock {
    /// `reboot` / `off`: nothing to take.
    None,
    Etcd(etcd::EtcdLock),
    FleetLock(fleetlock::FleetLock),
}

impl AnyLock {
    /// Builds the lock for `config` and node `id` (no I/O beyond parsing TLS material).
    pub fn from_config(config: &Config, id: &str) -> Result<Self, LockError> {
        Ok(match config.strategy {
            Strategy::Reboot | Strategy::Off => AnyLock::None,
            Strategy::EtcdLock => AnyLock::Etcd(etcd::EtcdLock::new(
                etcd::EtcdClient::new(config)?,
                config.group.as_deref(),
                id,
            )),
            Strategy::FleetLock => AnyLock::FleetLock(fleetlock::FleetLock::new(
                http_client(&config.tls)?,
                &config.endpoints[0],
                config.group.as_deref().unwrap_or("default"),
                id,
            )),
        })
    }
}

impl Lock for AnyLock {
    async fn acquire(&self) -> Result<Acquire, LockError> {
        match self {
            AnyLock::None => Ok(Acquire::Acquired),
            AnyLock::Etcd(l) => l.acquire().await,
            AnyLock::FleetLock(l) => l.acquire().await,
        }
    }
    async fn release(&self) -> Result<Release, LockError> {
        match self {
            AnyLock::None => Ok(Release::NotHeld),
            AnyLock::Etcd(l) => l.release().await,
            AnyLock::FleetLock(l) => l.release().await,
        }
    }
}

/// The one HTTP client shape for both lock protocols: bounded timeouts, the configured CA and
/// client identity.
pub fn http_client(tls: &Tls) -> Result<reqwest::Client, LockError> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("update-coordinator/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &tls.ca_pem {
        for cert in reqwest::Certificate::from_pem_bundle(ca).map_err(LockError::Tls)? {
            b = b.add_root_certificate(cert);
        }
    }
    if let Some(id) = &tls.identity_pem {
        b = b.identity(reqwest::Identity::from_pem(id).map_err(LockError::Tls)?);
    }
    b.build().map_err(LockError::Tls)
}
