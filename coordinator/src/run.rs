//! The executor: performs the state machine's actions against the real (or fake) world.

use std::path::{Path, PathBuf};

use jiff::Zoned;
use tracing::{error, info, warn};

use crate::Error;
use crate::config::{Config, KeyValues, Strategy};
use crate::fsm::{Action, Event, FsmError, Policy, State, step};
use crate::lock::{Acquire, AnyLock, Lock, Release};
use crate::metrics::Metrics;
use crate::node::{
    CommandRebooter, Markers, Rebooter, Signals, machine_id, write_coordinator_conf,
};
use crate::users::Users;
use crate::window::Window;

/// The wall clock in the local time zone; tests pass their own.
pub trait Clock: Send + Sync {
    fn now(&self) -> Zoned;
}

/// `Zoned::now()` (the system's time zone: `TZ`, else `/etc/localtime`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Zoned {
        Zoned::now()
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `REBOOT_STRATEGY=off`: nothing to do (FLUO or kured reboot this node).
    Disabled,
    /// The reboot was requested; the caller should wait for the machine to go down.
    RebootRequested,
}

/// The coordinator with its I/O edges.
#[derive(Debug)]
pub struct Coordinator<L, R, S, C> {
    pub policy: Policy,
    pub window: Option<Window>,
    pub lock: L,
    pub rebooter: R,
    pub signals: S,
    pub clock: C,
    pub users: Users,
    /// Where coordinator.conf is written (`None`: not written).
    pub conf_root: Option<PathBuf>,
    /// Its state and reboot-lock waits, for Prometheus.
    pub metrics: Metrics,
}

/// The standalone coordinator: everything from the files under `root`.
pub type Standalone = Coordinator<AnyLock, CommandRebooter, Markers, SystemClock>;

impl Standalone {
    /// Loads update.conf under `root`, validates it and builds the lock client. Fails on any
    /// bad configuration (before anything could reboot).
    pub fn from_root(root: &Path, overrides: &KeyValues) -> Result<Self, Error> {
        let mut kv = overrides.clone();
        kv.fill_from(KeyValues::load(root)?);
        let config = Config::from_values(&kv)?;
        Self::from_config(root, &config)
    }

    /// Builds from a validated configuration.
    pub fn from_config(root: &Path, config: &Config) -> Result<Self, Error> {
        let lock = if config.strategy.uses_lock() {
            AnyLock::from_config(config, &machine_id(root)?)?
        } else {
            AnyLock::None
        };
        Ok(Coordinator {
            policy: Policy {
                strategy: config.strategy,
                backoff: config.backoff,
                poll: config.poll_interval,
                user_delay: config.user_delay,
            },
            window: config.window,
            lock,
            rebooter: CommandRebooter::new(config.reboot_command.as_deref()),
            signals: Markers::new(root, config.health_gate),
            clock: SystemClock,
            users: Users::new(root),
            conf_root: Some(root.to_owned()),
            metrics: Metrics::new(),
        })
    }
}

impl<L: Lock, R: Rebooter, S: Signals, C: Clock> Coordinator<L, R, S, C> {
    fn observe(&self) -> Event {
        let window = self.window.as_ref().map(|w| {
            w.status(&self.clock.now()).unwrap_or_else(|e| {
                // Cannot happen for validated windows; treat as open rather than never reboot.
                warn!(error = %crate::error_chain(&e), "reboot window could not be evaluated; treating it as open");
                crate::window::WindowStatus::Open {
                    closes_in: std::time::Duration::ZERO,
                }
            })
        });
        Event::Observed {
            reboot_needed: self.signals.reboot_needed(),
            steady: self.signals.steady(),
            window,
        }
    }

    fn write_conf(&self, state: State) {
        if let Some(root) = &self.conf_root
            && let Err(e) =
                write_coordinator_conf(root, self.policy.strategy.as_str(), state.conf_state())
        {
            warn!(error = %crate::error_chain(&e), "could not write coordinator.conf");
        }
    }

    async fn perform(&self, action: Action) -> Event {
        match action {
            Action::Observe => self.observe(),
            Action::Sleep(d) => {
                tokio::time::sleep(d).await;
                Event::Woke
            }
            Action::Acquire => match self.lock.acquire().await {
                Ok(Acquire::Acquired) => {
                    info!("reboot lock acquired");
                    Event::Acquired
                }
                Ok(Acquire::Busy(why)) => {
                    info!(reason = %why, "reboot lock busy; backing off");
                    Event::Busy(why)
                }
                Err(e) => {
                    let error = crate::error_chain(&e);
                    error!(%error, kind = e.error_kind(), "cannot take the reboot lock; will retry, not rebooting");
                    Event::LockFailed(error)
                }
            },
            Action::Release => match self.lock.release().await {
                Ok(Release::Released) => {
                    info!("this boot is steady; reboot lock released");
                    Event::Released
                }
                Ok(Release::NotHeld) => Event::Released,
                Err(e) => {
                    let error = crate::error_chain(&e);
                    error!(%error, kind = e.error_kind(), "cannot release the reboot lock; will retry");
                    Event::LockFailed(error)
                }
            },
            Action::WarnUsers => {
                let logins = self.users.warn("System reboot in 5 minutes!");
                if !logins.is_empty() {
                    info!(users = logins.len(), delay = ?self.policy.user_delay, "users logged in; postponing the reboot once");
                }
                Event::Warned {
                    logged_in: logins.len(),
                }
            }
            Action::Reboot => match self.rebooter.reboot().await {
                Ok(()) => {
                    info!("reboot requested");
                    Event::RebootRequested
                }
                Err(e) => {
                    let error = crate::error_chain(&e);
                    error!(%error, "reboot failed; will retry");
                    Event::RebootFailed(error)
                }
            },
            // Terminal actions never reach here (see `run`).
            Action::Park | Action::Exit => Event::Woke,
        }
    }

    /// Runs until the reboot is requested (or at once with strategy `off`).
    pub async fn run(&self) -> Result<Outcome, FsmError> {
        let mut state = State::Starting;
        let mut event = Event::Start;
        let mut written = None;
        info!(strategy = self.policy.strategy.as_str(), window = ?self.window.map(|w| w.to_string()), "reboot coordinator starting");
        loop {
            let (next, action) = step(&self.policy, state, event.clone())?;
            self.metrics.observe(state, &event, next);
            if written != Some(next.conf_state()) {
                self.write_conf(next);
                written = Some(next.conf_state());
            }
            if next != state {
                tracing::debug!(from = ?state, to = ?next, ?action, "transition");
                if matches!(next, State::Pending { attempt: 0 })
                    && !matches!(state, State::Pending { .. })
                {
                    info!("reboot needed; waiting for the window and the lock");
                }
            }
            state = next;
            match action {
                Action::Park => return Ok(Outcome::RebootRequested),
                Action::Exit => {
                    info!("REBOOT_STRATEGY=off: this node is rebooted by someone else");
                    return Ok(Outcome::Disabled);
                }
                _ => event = self.perform(action).await,
            }
        }
    }

    /// The strategy in use.
    pub fn strategy(&self) -> Strategy {
        self.policy.strategy
    }
}
