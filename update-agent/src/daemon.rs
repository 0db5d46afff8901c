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

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use omaha::{ErrorFlags, EventErrorCode, InstallSource, Request, UpdateCheck, UpdateInfo};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::config::settings::Settings;
use crate::config::{NodeIdentity, Root, SettingsError};
use crate::denylist::DenyList;
use crate::fsm::{self, Effect, Event, State, Status, Target};
use crate::http::{self, HttpOptions};
use crate::install::{self, InstallJob, PolicyRefusal};
use crate::omaha_client::{ClientOptions, OmahaClient};
use crate::prefs;
use crate::schedule::{PayloadState, payload_backoff_applies};

/// The last failure, for `LastError` and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastError {
    /// The reported code with flags (as in the error event).
    pub code: u32,
    /// Stable machine-readable kind.
    pub kind: String,
    /// Human-readable text.
    pub message: String,
}

#[derive(Debug)]
enum Command {
    AttemptUpdate,
    ResetStatus,
}

#[derive(Debug)]
struct HandleInner {
    status: watch::Sender<Status>,
    commands: mpsc::UnboundedSender<Command>,
    last_error: Mutex<Option<LastError>>,
    last_checked: AtomicI64,
    cancel: Mutex<Arc<AtomicBool>>,
}

/// A clonable handle on a running daemon (see the module docs).
#[derive(Debug, Clone)]
pub struct Handle {
    inner: Arc<HandleInner>,
}

impl Handle {
    /// The current status.
    pub fn status(&self) -> Status {
        self.inner.status.borrow().clone()
    }

    /// A receiver that sees every published status.
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.inner.status.subscribe()
    }

    /// Asks for an interactive update check (ignored unless IDLE or
    /// UPDATED_NEED_REBOOT, as update_engine does).
    pub fn attempt_update(&self) {
        let _ = self.inner.commands.send(Command::AttemptUpdate);
    }

    /// `ResetStatus`: forget a staged update (reverts the slot switch).
    pub fn reset_status(&self) {
        let _ = self.inner.commands.send(Command::ResetStatus);
    }

    /// Aborts the running download/install, if any.
    pub fn cancel(&self) {
        lock(&self.inner.cancel).store(true, Ordering::Relaxed);
    }

    /// The last failure.
    pub fn last_error(&self) -> Option<LastError> {
        lock(&self.inner.last_error).clone()
    }

    /// Unix time of the last completed update check (0 = never).
    pub fn last_checked_time(&self) -> i64 {
        self.inner.last_checked.load(Ordering::Relaxed)
    }

    fn set_error(&self, e: LastError) {
        tracing::error!("update failed ({}, code {}): {}", e.kind, e.code, e.message);
        *lock(&self.inner.last_error) = Some(e);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

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
    commands: mpsc::UnboundedReceiver<Command>,
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
        let (status, _) = watch::channel(state.status());
        let (cmd_tx, commands) = mpsc::unbounded_channel();
        let (install_tx, install_rx) = mpsc::unbounded_channel();
        let handle = Handle {
            inner: Arc::new(HandleInner {
                status,
                commands: cmd_tx,
                last_error: Mutex::new(None),
                last_checked: AtomicI64::new(0),
                cancel: Mutex::new(Arc::default()),
            }),
        };
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
        self.queue
            .push_back(Event::CheckRequested { interactive: true });
        self.pump(true).await;
        self.outcome.clone().unwrap_or(Outcome::NoUpdate)
    }

    /// Runs forever.
    pub async fn run(mut self) {
        let delay = crate::schedule::first_check_delay(&self.settings.schedule, &mut self.rng);
        if self.settings.schedule.enabled {
            self.next_check = Some(Instant::now() + delay);
        }
        self.pump(false).await;
    }

    fn cycle_done(&self) -> bool {
        self.queue.is_empty()
            && !self.installing
            && matches!(self.state, State::Idle | State::UpdatedNeedReboot { .. })
    }

    async fn pump(&mut self, once: bool) {
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
                Some(cmd) = self.commands.recv() => match cmd {
                    Command::AttemptUpdate => {
                        if matches!(self.state, State::Idle | State::UpdatedNeedReboot { .. }) {
                            self.queue.push_back(Event::CheckRequested { interactive: true });
                        }
                    }
                    Command::ResetStatus => self.queue.push_back(Event::ResetStatus),
                },
                _ = sleep_until(next), if next.is_some() => {
                    self.next_check = None;
                    if matches!(self.state, State::Idle | State::UpdatedNeedReboot { .. }) {
                        self.queue.push_back(Event::CheckRequested { interactive: false });
                    }
                }
            }
        }
    }

    async fn process(&mut self, event: Event) {
        let before = self.state.operation();
        let (next, effects) = match fsm::step(&self.state, event.clone()) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("{e}");
                return;
            }
        };
        tracing::debug!("{before} --{}--> {}", event.name(), next.operation());
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
                    let req = Request::ping(identity.client_info(), self.install_source());
                    if let Err(e) = client.post(&req).await {
                        tracing::warn!("ping: {e}");
                    }
                }
            }
            Effect::PostEvent(ev) => {
                if let Some((client, identity)) = self.omaha() {
                    let req = Request::event(identity.client_info(), self.install_source(), ev);
                    if let Err(e) = client.send_event(&req).await {
                        tracing::warn!("event: {e}");
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
                if cfg.enabled {
                    let next = crate::schedule::next_check(
                        cfg,
                        self.last_interval,
                        self.poll_interval,
                        self.last_http_status,
                        &mut self.rng,
                    );
                    self.last_interval = next.interval;
                    self.next_check = Some(Instant::now() + next.delay);
                    tracing::info!("next update check in {:?}", next.delay);
                }
            }
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

    fn fail(&self, code: EventErrorCode, kind: &str, message: String) -> Event {
        self.handle.set_error(LastError {
            code: code.to_u32(),
            kind: kind.into(),
            message,
        });
        Event::Failed { code }
    }

    async fn check(&mut self, interactive: bool) -> Event {
        let generic = |flags| EventErrorCode::new(omaha::ErrorCode::OmahaRequestError, flags);
        match Settings::load_with(&self.root, self.config_file.as_deref()) {
            Ok(s) => self.settings = s,
            Err(e) => return self.fail(generic(self.flags), e.error_kind(), e.to_string()),
        }
        let prefs = self.settings.prefs(&self.root);
        let mut identity = match NodeIdentity::load(&self.root, &prefs) {
            Ok(i) => i,
            Err(e) => return self.fail(generic(self.flags), e.error_kind(), e.to_string()),
        };
        if let Err(e) = identity.ensure_aleph_version(&prefs) {
            tracing::warn!("cannot record aleph-version: {e}");
        }
        self.flags = identity.error_flags();
        self.identity = Some(identity.clone());
        let version = identity.config.version().to_string();
        let previous = prefs.get(prefs::PREVIOUS_VERSION).ok().flatten();
        self.note_rollback(previous.as_deref(), &version);
        let source = if interactive {
            InstallSource::OnDemandUpdate
        } else {
            InstallSource::Scheduler
        };
        let request = Request::update_check(identity.client_info(), source, previous.as_deref());
        if previous.as_deref().is_some_and(|p| !p.is_empty()) || previous.is_none() {
            let _ = prefs.set(prefs::PREVIOUS_VERSION, "");
        }
        let opts = ClientOptions::from_settings(&self.settings, &self.root);
        let client = match OmahaClient::new(identity.config.server(), &opts) {
            Ok(c) => c,
            Err(e) => {
                return self.fail(
                    e.event_error_code(self.flags),
                    e.error_kind(),
                    e.to_string(),
                );
            }
        };
        let result = client.check(&request).await;
        self.handle
            .inner
            .last_checked
            .store(unix_now() as i64, Ordering::Relaxed);
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                self.last_http_status = e.http_status();
                return self.fail(
                    e.event_error_code(self.flags),
                    e.error_kind(),
                    e.to_string(),
                );
            }
        };
        self.last_http_status = None;
        self.poll_interval = result.response.poll_interval;
        let info = match result.response.outcome {
            UpdateCheck::NoUpdate => return Event::NoUpdate,
            UpdateCheck::Update(info) => *info,
        };
        let deny = DenyList::in_dir(&self.root.join(&self.settings.state_dir));
        let denied = match deny.entries() {
            Ok(list) => list.into_iter().find(|d| d.version == info.version),
            Err(e) => {
                tracing::warn!("deny list unreadable, refusing updates: {e}");
                Some(crate::denylist::Denied {
                    version: info.version.clone(),
                    since: 0,
                    reason: format!("deny list unreadable: {e}"),
                })
            }
        };
        if let Err(refusal) = install::check_policy(
            &info.version,
            &version,
            self.settings.allow_downgrade,
            denied.as_ref(),
        ) {
            let kind = match refusal {
                PolicyRefusal::Downgrade { .. } => "downgrade_refused",
                PolicyRefusal::Denied { .. } => "deny_listed",
            };
            let code =
                EventErrorCode::new(omaha::ErrorCode::OmahaUpdateIgnoredPerPolicy, self.flags);
            return self.fail(code, kind, refusal.to_string());
        }
        // Payload backoff and URL position (update_engine's PayloadState),
        // kept across restarts in the prefs.
        let mut payload_state = prefs.load_payload_state();
        payload_state.set_response(&info);
        let now = SystemTime::now();
        payload_state.sanitize_backoff(&self.settings.schedule, now);
        if let Err(e) = prefs.save_payload_state(&payload_state) {
            tracing::warn!("cannot save the payload state: {e}");
        }
        let backoff = payload_backoff_applies(&self.settings.schedule, &info, false);
        if backoff && payload_state.in_backoff(now) {
            let until = payload_state
                .backoff_expiry
                .and_then(|t| t.duration_since(now).ok())
                .unwrap_or_default();
            let code =
                EventErrorCode::new(omaha::ErrorCode::OmahaUpdateDeferredForBackoff, self.flags);
            return self.fail(
                code,
                "payload_backoff",
                format!(
                    "update to {} deferred: payload backoff after attempt {} for another {} s",
                    info.version,
                    payload_state.attempt_number,
                    until.as_secs()
                ),
            );
        }
        self.payload_state = Some((payload_state, backoff));
        let target = Target {
            version: info.version.clone(),
            size: info.payload.size,
        };
        self.pending = Some(Pending {
            info,
            body: result.body,
        });
        Event::UpdateFound { target }
    }

    /// update_engine reports a rollback (3/0/44) when the running version
    /// equals `previous-version`; we also put the version we had installed
    /// on the deny list, so it is not installed again (Flatcar#1924).
    fn note_rollback(&self, previous: Option<&str>, running: &str) {
        let prefs = self.settings.prefs(&self.root);
        let installed = prefs.get(install::INSTALLED_VERSION_PREF).ok().flatten();
        let Some(prev) = previous.filter(|p| !p.is_empty()) else {
            return;
        };
        if prev == running {
            if let Some(bad) = installed.filter(|v| !v.is_empty() && v != running) {
                let deny = DenyList::in_dir(&self.root.join(&self.settings.state_dir));
                let reason = format!("rolled back: {running} booted again after installing {bad}");
                match deny.add(&bad, &reason, unix_now()) {
                    Ok(()) => tracing::warn!("deny-listed {bad}: {reason}"),
                    Err(e) => tracing::error!("cannot deny-list {bad}: {e}"),
                }
            }
        }
        let _ = prefs.delete(install::INSTALLED_VERSION_PREF);
    }

    fn start_install(&mut self) {
        let Some(pending) = self.pending.clone() else {
            self.queue.push_back(self.fail(
                EventErrorCode::new(omaha::ErrorCode::Error, self.flags),
                "internal",
                "install started without an update".into(),
            ));
            return;
        };
        let identity = self.identity.clone();
        let config = identity.as_ref().map(|i| &i.config);
        let mut info = pending.info;
        // The downloader always starts at `urls[0]` and falls back in order,
        // so rotating the list is how a restart resumes at the URL the
        // payload state reached.
        if let Some((state, _)) = &self.payload_state {
            if !info.urls.is_empty() {
                let n = state.url_index % info.urls.len();
                info.urls.rotate_left(n);
            }
        }
        let job = InstallJob {
            root: self.root.clone(),
            settings: self.settings.clone(),
            info,
            response_body: pending.body,
            running_version: config.map(|c| c.version().to_string()).unwrap_or_default(),
            board: config.map(|c| c.board().to_string()).unwrap_or_default(),
            credentials: config
                .and_then(|c| c.download_credentials())
                .map(|(u, p)| (u.to_string(), p.to_string())),
        };
        let client = match http::build_client(&HttpOptions {
            ca_bundle: self.settings.ca_bundle.as_ref().map(|p| self.root.join(p)),
            connect_timeout: self.settings.connect_timeout,
            request_timeout: None,
            https_only: false,
        }) {
            Ok(c) => c,
            Err(e) => {
                let code = EventErrorCode::new(omaha::ErrorCode::DownloadTransferError, self.flags);
                self.queue
                    .push_back(self.fail(code, "http_setup", e.to_string()));
                return;
            }
        };
        let cancel = Arc::new(AtomicBool::new(false));
        *lock(&self.handle.inner.cancel) = cancel.clone();
        let tx = self.install_tx.clone();
        let handle = self.handle.clone();
        let flags = self.flags;
        let rt = tokio::runtime::Handle::current();
        self.installing = true;
        tokio::task::spawn_blocking(move || {
            let (etx, mut erx) = mpsc::unbounded_channel();
            let forward_tx = tx.clone();
            let forward = rt.spawn(async move {
                while let Some(ev) = erx.recv().await {
                    let _ = forward_tx.send(InstallMsg::Event(ev));
                }
            });
            let result = install::run(&job, &rt, client, &etx, cancel);
            drop(etx);
            // Progress events first, then the verdict.
            let _ = rt.block_on(forward);
            let done = match result {
                Ok(plan) => {
                    tracing::info!(
                        "{} staged in {}; reboot to use it",
                        job.info.version,
                        plan.target
                    );
                    Ok(())
                }
                Err(e) => {
                    let code = EventErrorCode::new(e.error_code(), flags);
                    handle.set_error(LastError {
                        code: code.to_u32(),
                        kind: e.error_kind().into(),
                        message: e.to_string(),
                    });
                    Err((code, e.counts_against_payload()))
                }
            };
            let _ = tx.send(InstallMsg::Done(done));
        });
    }

    /// Updates the pending payload's state with `f` and saves it.
    fn update_payload_state(
        &mut self,
        f: impl FnOnce(&mut PayloadState, &UpdateInfo, bool, &mut StdRng, &Settings),
    ) {
        let (Some((state, backoff)), Some(pending)) = (&mut self.payload_state, &self.pending)
        else {
            return;
        };
        f(
            state,
            &pending.info,
            *backoff,
            &mut self.rng,
            &self.settings,
        );
        tracing::debug!(
            "payload state: attempt {}, URL {} ({} failures), backoff until {:?}",
            state.attempt_number,
            state.url_index,
            state.url_failure_count,
            state.backoff_expiry
        );
        if let Err(e) = self.settings.prefs(&self.root).save_payload_state(state) {
            tracing::warn!("cannot save the payload state: {e}");
        }
    }

    fn note_download_complete(&mut self) {
        self.update_payload_state(|state, _, backoff, rng, settings| {
            state.on_download_complete(&settings.schedule, backoff, SystemTime::now(), rng)
        });
    }

    fn note_install_failure(&mut self, code: EventErrorCode) {
        let omaha::BaseCode::Known(code) = code.base else {
            return;
        };
        self.update_payload_state(|state, info, backoff, rng, settings| {
            state.on_failure(
                code,
                info,
                &settings.schedule,
                backoff,
                SystemTime::now(),
                rng,
            )
        });
    }

    fn revert_slot_switch(&self) {
        match crate::slots::detect(&self.root, &self.settings) {
            Ok(plan) => {
                let res = cgpt::FileDisk::open_rw(&plan.disk)
                    .map_err(|e| e.to_string())
                    .and_then(|mut d| {
                        cgpt::slot::mark_unbootable(&mut d, plan.target).map_err(|e| e.to_string())
                    });
                if let Err(e) = res {
                    tracing::error!("cannot revert the slot switch: {e}");
                }
            }
            Err(e) => tracing::error!("cannot revert the slot switch: {e}"),
        }
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
