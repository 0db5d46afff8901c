//! The executor around [`fsm::step`]: it feeds events in, runs the
//! effects (Omaha POSTs, the install pipeline, the reboot marker, timers)
//! and publishes the status.
//!
//! # Handle (for D-Bus and the CLI)
//!
//! [`Daemon::handle`] returns a clonable [`Handle`]:
//!
//! | method | D-Bus (`com.coreos.update1.Manager`) |
//! |---|---|
//! | [`Handle::status`] → [`fsm::Status`] (+ [`Handle::last_checked_time`]) | `GetStatus` |
//! | [`Handle::subscribe`] → `watch::Receiver<fsm::Status>` | `StatusUpdate` signal (one per change) |
//! | [`Handle::attempt_update`] | `AttemptUpdate` (interactive check) |
//! | [`Handle::reset_status`] | `ResetStatus` |
//! | [`Handle::cancel`] | abort a running download/install (goes to REPORTING_ERROR_EVENT → IDLE) |
//! | [`Handle::last_error`] → [`LastError`] (code, kind, text) | `LastError`-style diagnostics |
//!
//! Commands are queued and handled by the daemon's loop; they never block.
//!
//! # Run modes
//!
//! [`Daemon::run`] runs forever (first check after `schedule.first_check`,
//! then periodic); [`Daemon::run_once`] runs exactly one check→install
//! cycle and returns its [`Outcome`].

mod check;
mod handle;
mod install_task;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use omaha::{ErrorFlags, EventErrorCode, InstallSource, Request, UpdateInfo};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::settings::Settings;
use crate::config::{NodeIdentity, Root, SettingsError};
use crate::fsm::{self, Admission, Command, Effect, Event, State};
use crate::omaha_client::{ClientOptions, OmahaClient};
use crate::schedule::PayloadState;

pub use handle::{Handle, LastError};

/// The result of one [`Daemon::run_once`] cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An update was installed; reboot to use it.
    Updated {
        /// The new version.
        version: String,
    },
    /// The server had nothing newer.
    NoUpdate,
    /// An update was already waiting for a reboot (only a ping was sent).
    AlreadyUpdated,
    /// The check or install failed.
    Failed(LastError),
}

impl Outcome {
    /// Process exit status for `--once`: 0 updated, 3 no update (or already
    /// staged), 1 failed.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Updated { .. } => 0,
            Self::NoUpdate | Self::AlreadyUpdated => 3,
            Self::Failed(_) => 1,
        }
    }
}

#[derive(Debug, Clone)]
struct Pending {
    info: UpdateInfo,
    body: Vec<u8>,
}

#[derive(Debug)]
enum InstallMsg {
    Event(Event),
    /// The verdict; on failure, the code and whether it counts against
    /// the payload's URL ([`InstallError::counts_against_payload`]).
    Done(Result<(), (EventErrorCode, bool)>),
}

/// The daemon.
#[derive(Debug)]
pub struct Daemon {
    root: Root,
    config_file: Option<PathBuf>,
    settings: Settings,
    state: State,
    handle: Handle,
    commands: mpsc::UnboundedReceiver<handle::Queued>,
    install_tx: mpsc::UnboundedSender<InstallMsg>,
    install_rx: mpsc::UnboundedReceiver<InstallMsg>,
    queue: VecDeque<Event>,
    pending: Option<Pending>,
    identity: Option<NodeIdentity>,
    flags: ErrorFlags,
    installing: bool,
    interactive: bool,
    last_interval: Duration,
    poll_interval: Option<u32>,
    last_http_status: Option<u16>,
    /// `run_once`: one cycle, no schedule (nothing arms or logs a next
    /// check).
    once: bool,
    next_check: Option<Instant>,
    outcome: Option<Outcome>,
    rng: StdRng,
    /// The payload state of the pending update and whether payload
    /// backoff applies to it; persisted in the prefs after every change.
    payload_state: Option<(PayloadState, bool)>,
}

impl Daemon {
    /// A daemon for the node at `root`; `config_file` (host path) is applied
    /// after the drop-in configuration.
    pub fn new(root: Root, config_file: Option<PathBuf>) -> Result<Self, SettingsError> {
        let settings = Settings::load_with(&root, config_file.as_deref())?;
        let marker = root.join(&settings.reboot_marker).exists();
        let state = State::initial(marker);
        let (handle, commands) = Handle::new(state.status());
        handle.metrics().set_state(&state);
        if let Ok(c) = crate::config::FlatcarConfig::load(&root) {
            handle
                .metrics()
                .set_build_info(c.version(), c.board(), c.group());
        }
        let prefs = settings.prefs(&root);
        if let Ok(Some(t)) = prefs.get_i64(crate::prefs::LAST_CHECKED_TIME) {
            handle.set_last_checked(t);
        }
        let (install_tx, install_rx) = mpsc::unbounded_channel();
        Ok(Self {
            last_interval: settings.schedule.periodic,
            root,
            config_file,
            settings,
            state,
            handle,
            commands,
            install_tx,
            install_rx,
            queue: VecDeque::new(),
            pending: None,
            identity: None,
            flags: ErrorFlags::NONE,
            installing: false,
            interactive: false,
            poll_interval: None,
            last_http_status: None,
            next_check: None,
            once: false,
            outcome: None,
            rng: StdRng::from_entropy(),
            payload_state: None,
        })
    }

    /// Seeds the RNG behind the schedule's fuzz (and the payload backoff),
    /// so a test can predict every delay with the same seed.
    pub fn with_rng_seed(mut self, seed: u64) -> Self {
        self.rng = StdRng::seed_from_u64(seed);
        self
    }

    /// The settings as loaded at start (each check reloads them).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The handle for D-Bus and friends.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// The current state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Runs one interactive check→install cycle.
    pub async fn run_once(&mut self) -> Outcome {
        self.outcome = None;
        self.once = true;
        self.queue
            .push_back(Event::CheckRequested { interactive: true });
        self.pump().await;
        self.once = false;
        self.outcome.clone().unwrap_or(Outcome::NoUpdate)
    }

    /// Runs forever. Beside the checks, the booted slot is marked good
    /// after `schedule.mark_good_delay` unless the health gate owns that
    /// verdict ([`crate::health::mark_good_after`]).
    pub async fn run(mut self) {
        self.log_summary();
        let delay = crate::schedule::first_check_delay(&self.settings.schedule, &mut self.rng);
        if self.settings.schedule.enabled {
            self.arm_check(Some(Instant::now() + delay));
        }
        let (root, settings) = (self.root.clone(), self.settings.clone());
        let mark_good = tokio::spawn(async move {
            let delay = settings.schedule.mark_good_delay;
            crate::health::mark_good_after(&root, &settings, delay).await
        });
        self.pump().await;
        mark_good.abort();
    }

    fn cycle_done(&self) -> bool {
        self.queue.is_empty()
            && !self.installing
            && matches!(self.state, State::Idle | State::UpdatedNeedReboot { .. })
    }

    /// Processes events and timers: until the cycle is done under
    /// `run_once`, else forever.
    async fn pump(&mut self) {
        let once = self.once;
        loop {
            if let Some(ev) = self.queue.pop_front() {
                self.process(ev).await;
                continue;
            }
            if once && self.cycle_done() {
                return;
            }
            let next = self.next_check.filter(|_| !once);
            tokio::select! {
                Some(msg) = self.install_rx.recv() => match msg {
                    InstallMsg::Event(ev) => {
                        if matches!(ev, Event::DownloadComplete) {
                            self.note_download_complete();
                        }
                        self.queue.push_back(ev)
                    }
                    InstallMsg::Done(result) => {
                        self.installing = false;
                        if let Err((code, true)) = &result {
                            self.note_install_failure(*code);
                        }
                        self.queue.push_back(match result {
                            Ok(()) => Event::InstallComplete,
                            Err((code, _)) => Event::Failed { code },
                        });
                    }
                },
                Some(queued) = self.commands.recv() => {
                    self.take_command(queued.command);
                    // Act on it before answering (ResetStatus returns once
                    // the revert is done).
                    while let Some(ev) = self.queue.pop_front() {
                        self.process(ev).await;
                    }
                    if let Some(done) = queued.done {
                        let _ = done.send(());
                    }
                }
                _ = sleep_until(next), if next.is_some() => {
                    self.arm_check(None);
                    self.take_command(Command::ScheduledCheck);
                }
            }
        }
    }

    /// What an operator checks first: where updates come from, what runs,
    /// which keys and slots.
    fn log_summary(&self) {
        let s = &self.settings;
        match crate::config::FlatcarConfig::load(&self.root) {
            Ok(c) => {
                tracing::info!(
                    "update-agent {}: server {}, group {}, running {} on {}",
                    env!("CARGO_PKG_VERSION"),
                    c.server(),
                    c.group(),
                    c.version(),
                    c.board()
                );
            }
            Err(e) => tracing::warn!(
                "cannot read the Flatcar configuration: {}",
                crate::error_chain(&e)
            ),
        }
        let flatcar_key = s.flatcar_payload_key.as_ref().map(|k| self.root.join(k));
        tracing::info!(
            "trusted keys: {} and {}",
            self.root.join(&s.trusted_keys_dir).display(),
            flatcar_key.map_or("no Flatcar key file".into(), |k| format!(
                "{} (exists: {})",
                k.display(),
                k.exists()
            ))
        );
        match crate::slots::detect(&self.root, s) {
            Ok(plan) => tracing::info!(
                "booted {} on {}; updates go to {}",
                plan.booted,
                plan.disk.display(),
                plan.target
            ),
            Err(e) => tracing::warn!("booted slot unknown: {}", crate::error_chain(&e)),
        }
    }

    /// Queues the event for `cmd` when the current state admits it
    /// ([`fsm::admits`], the same table the handle checked).
    fn take_command(&mut self, cmd: Command) {
        let op = self.state.operation();
        match fsm::admits(op, cmd) {
            Ok(Admission::Accept) => self.queue.push_back(match cmd {
                Command::AttemptUpdate => Event::CheckRequested { interactive: true },
                Command::ScheduledCheck => Event::CheckRequested { interactive: false },
                Command::ResetStatus => Event::ResetStatus,
                // Cancel and Rollback act outside the state machine.
                Command::Cancel | Command::Rollback => return,
            }),
            Ok(Admission::Ignore) => {}
            Err(e) => tracing::info!("{e}"),
        }
    }

    async fn process(&mut self, event: Event) {
        let before = self.state.operation();
        let (next, effects) = match fsm::step(&self.state, event.clone()) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("{}", crate::error_chain(&e));
                return;
            }
        };
        tracing::debug!("{before} --{}--> {}", event.name(), next.operation());
        if matches!(event, Event::NoUpdate | Event::UpdateFound { .. }) {
            // `-json`/`LastError` describe the current state, not history.
            self.handle.clear_error();
        }
        match (&self.state, &next) {
            (State::CheckingForUpdate { .. }, State::Idle) => {
                self.outcome = Some(Outcome::NoUpdate)
            }
            (State::ReportingErrorEvent { code }, State::Idle) => {
                let e = self.handle.last_error().unwrap_or(LastError {
                    code: code.to_u32(),
                    kind: "unknown".into(),
                    message: "update failed".into(),
                });
                self.outcome = Some(Outcome::Failed(e));
            }
            (State::Finalizing { target }, State::UpdatedNeedReboot { .. }) => {
                self.outcome = Some(Outcome::Updated {
                    version: target.version.clone(),
                });
            }
            (State::UpdatedNeedReboot { .. }, State::UpdatedNeedReboot { .. }) => {
                self.outcome = Some(Outcome::AlreadyUpdated);
            }
            _ => {}
        }
        self.state = next;
        self.handle.metrics().set_state(&self.state);
        for effect in effects {
            self.execute(effect).await;
        }
    }

    async fn execute(&mut self, effect: Effect) {
        match effect {
            Effect::NotifyStatus => {
                self.handle.inner.status.send_replace(self.state.status());
            }
            Effect::PostUpdateCheck { interactive } => {
                self.interactive = interactive;
                let ev = self.check(interactive).await;
                self.queue.push_back(ev);
            }
            Effect::PostPing => {
                if let Some((client, identity)) = self.omaha() {
                    let req = Request::ping(self.client_info(&identity), self.install_source());
                    if let Err(e) = client.post(&req).await {
                        tracing::warn!("ping: {}", crate::error_chain(&e));
                    }
                }
            }
            Effect::PostEvent(ev) => {
                if let Some((client, identity)) = self.omaha() {
                    let req =
                        Request::event(self.client_info(&identity), self.install_source(), ev);
                    if let Err(e) = client.send_event(&req).await {
                        tracing::warn!("event: {}", crate::error_chain(&e));
                    }
                }
                if matches!(self.state, State::ReportingErrorEvent { .. }) {
                    self.queue.push_back(Event::ErrorEventSent);
                }
            }
            Effect::StartInstall => self.start_install(),
            Effect::WriteRebootMarker => {
                let path = self.root.join(&self.settings.reboot_marker);
                if let Some(dir) = path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                if let Err(e) = std::fs::write(&path, b"") {
                    tracing::error!("cannot write {}: {e}", path.display());
                }
            }
            Effect::RemoveRebootMarker => {
                let path = self.root.join(&self.settings.reboot_marker);
                let _ = std::fs::remove_file(path);
            }
            Effect::RevertSlotSwitch => self.revert_slot_switch(),
            Effect::ScheduleCheck => {
                let cfg = &self.settings.schedule;
                if cfg.enabled && !self.once {
                    let next = crate::schedule::next_check(
                        cfg,
                        self.last_interval,
                        self.poll_interval,
                        self.last_http_status,
                        &mut self.rng,
                    );
                    self.last_interval = next.interval;
                    self.arm_check(Some(Instant::now() + next.delay));
                    tracing::info!("next update check in {:?}", next.delay);
                }
            }
        }
    }

    /// Arms (or disarms) the check timer, and says when in the metrics.
    fn arm_check(&mut self, at: Option<Instant>) {
        self.next_check = at;
        let unix = at.map(|t| {
            let wait = t.saturating_duration_since(Instant::now());
            crate::fsutil::unix_now() + wait.as_secs()
        });
        self.handle.metrics().set_next_check(unix);
        // For -json (NextCheckTime); 0 when none is armed.
        let unix = unix.map_or(0, |u| i64::try_from(u).unwrap_or(i64::MAX));
        self.handle.set_next_check(unix);
    }

    /// The request attributes: the node's identity, and whether this node
    /// takes deltas (`download.deltas`).
    fn client_info(&self, identity: &NodeIdentity) -> omaha::ClientInfo {
        omaha::ClientInfo {
            delta_okay: self.settings.deltas,
            ..identity.client_info()
        }
    }

    fn install_source(&self) -> InstallSource {
        if self.interactive {
            InstallSource::OnDemandUpdate
        } else {
            InstallSource::Scheduler
        }
    }

    fn omaha(&self) -> Option<(OmahaClient, NodeIdentity)> {
        let identity = self.identity.clone()?;
        let opts = ClientOptions::from_settings(&self.settings, &self.root);
        OmahaClient::new(identity.config.server(), &opts)
            .ok()
            .map(|c| (c, identity))
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
