//! A small [`Engine`] on the real [`fsm::step`], driven by a script of
//! events instead of HTTP and a payload: for tests of the D-Bus service's
//! own behaviour (signal throttling, properties, the CLI's output) where a
//! script gives exact timings. Everything about updating itself is tested
//! against the real daemon. Every status it reports is one the state machine
//! produced; invalid scripts fail the way the daemon would (the transition
//! is refused and logged).
//!
//! Slot operations are the agent's own ([`BootDisk`]).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cgpt::slot::Slot;
use omaha::{ErrorCode, ErrorFlags, EventErrorCode};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use update_agent::config::Root;
use update_agent::dbus::{Engine, EngineError, LastError};
use update_agent::denylist::DenyList;
use update_agent::fsm::{self, Admission, Command, Effect, Event, State, Status};
pub use update_agent::slots::BootDisk;

/// The update check: returns `NoUpdate` or `UpdateFound`, or an error text.
pub type CheckFn =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<Event, String>> + Send>> + Send + Sync>;

/// One scripted event, applied after `delay`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Wait before the event.
    pub delay: Duration,
    /// The event.
    pub event: Event,
}

/// What the engine starts from.
#[derive(Clone)]
pub struct SimConfig {
    /// Where `/etc/flatcar/update.conf` etc. live.
    pub root: Root,
    /// Where the deny list lives.
    pub state_dir: PathBuf,
    /// The running version.
    pub current_version: String,
    /// The boot disk, for ResetStatus and Rollback.
    pub boot: Option<BootDisk>,
    /// The update check; without it the first script step is the check's result.
    pub check: Option<CheckFn>,
    /// Events after `CheckRequested`, applied in order (the check's result
    /// first unless `check` is set).
    pub script: Vec<Step>,
}

impl std::fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimConfig")
            .field("root", &self.root)
            .field("state_dir", &self.state_dir)
            .field("current_version", &self.current_version)
            .field("boot", &self.boot)
            .field("check", &self.check.is_some())
            .field("script", &self.script)
            .finish()
    }
}

#[derive(Debug)]
struct Inner {
    state: State,
    last_checked: i64,
    last_error: Option<LastError>,
    task: Option<JoinHandle<()>>,
    /// Effects run so far (for tests).
    effects: Vec<Effect>,
}

#[derive(Debug)]
struct Shared {
    config: SimConfig,
    inner: Mutex<Inner>,
    tx: watch::Sender<Status>,
}

/// The scripted engine. Cheap to clone (a handle).
#[derive(Debug, Clone)]
pub struct SimEngine {
    shared: Arc<Shared>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl SimEngine {
    /// An idle engine (or UPDATED_NEED_REBOOT when the reboot marker exists).
    pub fn new(config: SimConfig) -> Self {
        let state = State::initial(config.root.join(REBOOT_MARKER).exists());
        let (tx, _) = watch::channel(state.status());
        Self {
            shared: Arc::new(Shared {
                config,
                inner: Mutex::new(Inner {
                    state,
                    last_checked: 0,
                    last_error: None,
                    task: None,
                    effects: Vec::new(),
                }),
                tx,
            }),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.lock().state.clone()
    }

    /// Every effect the state machine asked for so far, in order.
    pub fn effects(&self) -> Vec<Effect> {
        self.lock().effects.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `event` through [`fsm::step`] and runs its effects.
    pub fn apply(&self, event: Event) -> Result<(), fsm::TransitionError> {
        let mut inner = self.lock();
        let successful_check = matches!(event, Event::NoUpdate | Event::UpdateFound { .. });
        let failure = match &event {
            Event::Failed { code } => Some(*code),
            _ => None,
        };
        let (next, effects) = fsm::step(&inner.state, event)?;
        inner.state = next;
        if successful_check {
            inner.last_checked = i64::try_from(now_unix()).unwrap_or(i64::MAX);
        }
        if let Some(code) = failure {
            inner.last_error.get_or_insert(LastError {
                kind: "update_failed".into(),
                message: format!("update failed with error code {code}"),
                code: code.to_u32(),
            });
        }
        for effect in &effects {
            self.run_effect(&mut inner, effect);
        }
        inner.effects.extend(effects);
        Ok(())
    }

    fn run_effect(&self, inner: &mut Inner, effect: &Effect) {
        let marker = self.shared.config.root.join(REBOOT_MARKER);
        let result = match effect {
            Effect::NotifyStatus => {
                self.shared.tx.send_replace(inner.state.status());
                Ok(())
            }
            Effect::WriteRebootMarker => marker
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&marker, b"")),
            Effect::RemoveRebootMarker => match std::fs::remove_file(&marker) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
            Effect::RevertSlotSwitch => match &self.shared.config.boot {
                Some(boot) => boot.revert_staged().map_err(std::io::Error::other),
                None => Ok(()),
            },
            Effect::PostUpdateCheck { .. }
            | Effect::PostPing
            | Effect::PostEvent(_)
            | Effect::StartInstall
            | Effect::ScheduleCheck => Ok(()),
        };
        if let Err(e) = result {
            tracing::error!("effect {effect:?}: {e}");
            inner.last_error = Some(LastError {
                kind: "effect_failed".into(),
                message: format!("{effect:?}: {e}"),
                code: 0,
            });
        }
    }

    /// Fails the running update with `kind`/`message` and returns to IDLE.
    fn fail(&self, kind: &str, message: String, code: EventErrorCode) {
        self.lock().last_error = Some(LastError {
            kind: kind.into(),
            message,
            code: code.to_u32(),
        });
        let _ = self.apply(Event::Failed { code });
        let _ = self.apply(Event::ErrorEventSent);
    }

    async fn run(self) {
        let config = &self.shared.config;
        let mut script = config.script.clone().into_iter();
        if let Some(check) = &config.check {
            let result = check().await;
            let event = match result {
                Ok(event) => event,
                Err(message) => {
                    let code = EventErrorCode::new(ErrorCode::OmahaRequestError, ErrorFlags::NONE);
                    self.fail("check_failed", message, code);
                    return;
                }
            };
            if let Err(e) = self.apply(event) {
                tracing::error!("check result: {e}");
                return;
            }
        }
        for step in script.by_ref() {
            if !matches!(
                self.state(),
                State::CheckingForUpdate { .. }
                    | State::UpdateAvailable { .. }
                    | State::Downloading { .. }
                    | State::Verifying { .. }
                    | State::Finalizing { .. }
            ) {
                break;
            }
            tokio::time::sleep(step.delay).await;
            let failed = matches!(step.event, Event::Failed { .. });
            if let Err(e) = self.apply(step.event) {
                tracing::error!("scripted event: {e}");
                break;
            }
            if failed {
                let _ = self.apply(Event::ErrorEventSent);
            }
        }
    }

    fn deny_list_file(&self) -> DenyList {
        DenyList::in_dir(&self.shared.config.state_dir)
    }
}

/// The reboot-pending marker, under the root.
pub const REBOOT_MARKER: &str = update_agent::config::Settings::DEFAULT_REBOOT_MARKER;

impl Engine for SimEngine {
    fn status(&self) -> Status {
        self.lock().state.status()
    }

    fn subscribe(&self) -> watch::Receiver<Status> {
        self.shared.tx.subscribe()
    }

    fn last_checked_time(&self) -> i64 {
        self.lock().last_checked
    }

    async fn attempt_update(&self) -> Result<(), EngineError> {
        if self.lock().state != State::Idle {
            return Err(EngineError::Busy(format!(
                "not idle ({}): request ignored",
                self.lock().state.operation()
            )));
        }
        self.apply(Event::CheckRequested { interactive: true })
            .map_err(|e| EngineError::Busy(e.to_string()))?;
        let task = tokio::spawn(self.clone().run());
        self.lock().task = Some(task);
        Ok(())
    }

    async fn reset_status(&self) -> Result<(), EngineError> {
        if fsm::admits(self.state().operation(), Command::ResetStatus)? == Admission::Accept {
            self.apply(Event::ResetStatus)
                .map_err(|e| EngineError::Busy(e.to_string()))?;
        }
        Ok(())
    }

    async fn cancel(&self) -> Result<(), EngineError> {
        fsm::admits(self.state().operation(), Command::Cancel)?;
        if let Some(task) = self.lock().task.take() {
            task.abort();
        }
        let code = EventErrorCode::new(ErrorCode::Error, ErrorFlags::NONE);
        self.fail("canceled", "canceled by the administrator".into(), code);
        Ok(())
    }

    async fn rollback(&self) -> Result<(), EngineError> {
        fsm::admits(self.state().operation(), Command::Rollback)?;
        let boot = self.shared.config.boot.as_ref().ok_or_else(|| {
            EngineError::NotSupported("the boot disk is unknown on this node".into())
        })?;
        Ok(boot.rollback()?)
    }

    fn root(&self) -> &Root {
        &self.shared.config.root
    }

    fn deny_file(&self) -> DenyList {
        self.deny_list_file()
    }

    fn current_version(&self) -> String {
        self.shared.config.current_version.clone()
    }

    fn booted_slot(&self) -> Option<Slot> {
        self.shared.config.boot.as_ref().map(|b| b.booted)
    }

    fn last_error(&self) -> Option<LastError> {
        self.lock().last_error.clone()
    }
}

/// The path of the reboot marker under `root`.
pub fn reboot_marker(root: &Root) -> PathBuf {
    root.join(Path::new(REBOOT_MARKER))
}
