//! The D-Bus service: update_engine's `com.coreos.update1.Manager` (what
//! locksmithd, FLUO and `update_engine_client` use) and the agent's own
//! `org.ab_update_engine.Agent1`, both on `/com/coreos/update1` under the
//! bus name `com.coreos.update1`.
//!
//! The service depends only on the [`Engine`] trait. [`serve`] exports both
//! interfaces, then requests the name (so `Type=dbus` units see a ready
//! service), and runs a notifier that turns engine status changes into
//! `StatusUpdate` signals, throttled by [`throttle::should_emit`], and
//! `PropertiesChanged` for the agent's properties.
//!
//! Introspection XML for both interfaces: `systemd/dbus/` (checked against the live service by `tests/tests/dbus_service.rs`).

pub mod agent;
pub mod client;
pub mod daemon_engine;
mod engine;
pub mod manager;
pub mod throttle;

use std::collections::HashMap;
use std::pin::pin;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::{Either, select};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use zbus::connection::Builder;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::Value;

pub use engine::{Engine, EngineError, LastError, SlotView};

use agent::{Agent, Snapshot};
use manager::Manager;
use throttle::{Emitted, StatusTuple, should_emit};

/// The well-known bus name.
pub const BUS_NAME: &str = "com.coreos.update1";
/// The object path of both interfaces.
pub const OBJECT_PATH: &str = "/com/coreos/update1";
/// update_engine's interface.
pub const MANAGER_INTERFACE: &str = "com.coreos.update1.Manager";
/// The agent's own interface.
pub const AGENT_INTERFACE: &str = "org.ab_update_engine.Agent1";

/// D-Bus errors of the service (`org.ab_update_engine.Error.*`).
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.ab_update_engine.Error")]
pub enum DbusError {
    /// A zbus failure.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The request does not fit the current state.
    Busy(String),
    /// A bad argument.
    InvalidArgument(String),
    /// Not possible on this node.
    NotSupported(String),
    /// The request failed.
    Failed(String),
}

impl From<EngineError> for DbusError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Busy(m) => Self::Busy(m),
            EngineError::InvalidArgument(m) => Self::InvalidArgument(m),
            EngineError::NotSupported(m) => Self::NotSupported(m),
            EngineError::Failed(m) => Self::Failed(m),
        }
    }
}

/// Which bus to use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Bus {
    /// The system bus (`DBUS_SYSTEM_BUS_ADDRESS` or the default socket).
    #[default]
    System,
    /// A bus at this address (tests, `--bus-address`).
    Address(String),
}

/// A running service. Dropping it stops the notifier; the connection (and
/// the bus name) goes away with the last clone of [`Service::connection`].
#[derive(Debug)]
pub struct Service {
    connection: zbus::Connection,
    notifier: JoinHandle<()>,
}

impl Service {
    /// The bus connection.
    pub fn connection(&self) -> &zbus::Connection {
        &self.connection
    }

    /// Waits until the notifier ends (the engine's status channel closed or
    /// the connection failed).
    pub async fn wait(self) {
        let _ = (&mut { self }.notifier).await;
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.notifier.abort();
    }
}

/// Exports both interfaces for `engine`, takes `com.coreos.update1` (an error
/// if another owner has it) and starts the notifier (which broadcasts the
/// status once at once, as update_engine does at startup).
pub async fn serve<E: Engine>(engine: Arc<E>, bus: &Bus) -> zbus::Result<Service> {
    let changed = Arc::new(Notify::new());
    let builder = match bus {
        Bus::System => Builder::system()?,
        Bus::Address(a) => Builder::address(a.as_str())?,
    };
    let connection = builder
        .serve_at(OBJECT_PATH, Manager::new(engine.clone()))?
        .serve_at(OBJECT_PATH, Agent::new(engine.clone(), changed.clone()))?
        .name(BUS_NAME)?
        .build()
        .await?;
    let emitter = SignalEmitter::new(&connection, OBJECT_PATH)?.into_owned();
    let notifier = tokio::spawn(notify_loop(engine, emitter, changed));
    Ok(Service {
        connection,
        notifier,
    })
}

async fn notify_loop<E: Engine>(
    engine: Arc<E>,
    emitter: SignalEmitter<'static>,
    changed: Arc<Notify>,
) {
    let clock = Instant::now();
    let mut rx = engine.subscribe();
    let mut last: Option<Emitted> = None;
    let mut props: Option<Snapshot> = None;
    loop {
        let status = StatusTuple::new(&rx.borrow_and_update(), engine.last_checked_time());
        let now = clock.elapsed();
        if should_emit(last.as_ref(), &status, now) {
            let (t, p, op, v, s) = status.to_wire();
            if let Err(e) = Manager::<E>::status_update(&emitter, t, p, &op, &v, s).await {
                tracing::warn!("emitting StatusUpdate: {}", crate::error_chain(&e));
            }
            last = Some(Emitted { status, at: now });
        }
        let broadcast = last
            .as_ref()
            .map(|l| l.status.clone())
            .unwrap_or(status_of(&*engine));
        let snapshot = Snapshot::read(&*engine, broadcast);
        let changes = snapshot.changes(props.as_ref());
        if !changes.is_empty() {
            let map: HashMap<&str, Value<'_>> = changes.into_iter().collect();
            if let Err(e) = zbus::fdo::Properties::properties_changed(
                &emitter,
                AGENT_INTERFACE.try_into().expect("valid interface name"),
                map,
                std::borrow::Cow::Borrowed(&[]),
            )
            .await
            {
                tracing::warn!("emitting PropertiesChanged: {}", crate::error_chain(&e));
            }
        }
        props = Some(snapshot);
        let closed = match select(pin!(rx.changed()), pin!(changed.notified())).await {
            Either::Left((r, _)) => r.is_err(),
            Either::Right(_) => false,
        };
        if closed {
            break; // the engine is gone
        }
    }
}

fn status_of<E: Engine>(engine: &E) -> StatusTuple {
    StatusTuple::new(&engine.status(), engine.last_checked_time())
}
