//! The post-boot health gate: decides whether the slot we booted into is good.
//!
//! Flatcar marks a new slot good 45 s after update_engine starts, whatever the
//! machine's state. The gate instead waits for the boot to settle
//! (`boot-complete.target` or configured units), runs the required checks
//! (executables in `health.d/required` under `/usr/lib/update-agent` and
//! `/etc/update-agent`, plus units that must be active) and the wanted ones
//! (only logged), then:
//! - passes: successful=1, tries=0, prioritize; report `3/2` with
//!   `previousversion`; write the steady-state marker the reboot coordinator
//!   waits for (`/run/update-engine/health/steady`);
//! - fails (or the deadline passes): the slot gets priority 0, the other slot
//!   (which must hold a verified image) becomes the next boot, the version goes
//!   on the deny list, `3/0/44` is reported, and the node reboots through a
//!   configurable command, guarded against reboot loops;
//! - the slot is already good: nothing is written to the disk. If GRUB fell
//!   back because a new slot died before its gate ran, that slot is marked
//!   bad and its version denied.
//!
//! Every verdict is counted in `<state_dir>/health/verdicts` for the
//! daemon's metrics ([`crate::metrics::verdicts`]).
//!
//! Decisions are pure ([`decide`]); this module carries them out.

pub mod checks;
pub mod decide;
pub mod guard;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgpt::{FileDisk, Slot};
use tracing::{error, info, warn};

use crate::config::Root;
use crate::denylist::{DenyList, DenyListError};
use crate::prefs::{self, Prefs};
use checks::UnitProbe;
use decide::{Start, Verdict};
use guard::RebootGuard;

pub use crate::config::health::{HealthConfig, SlotVerdict};

/// The daemon's part of the slot verdict ([`SlotVerdict`]): after
/// `delay`, mark the booted slot good unless the gate owns the verdict.
pub async fn mark_good_after(root: &Root, settings: &crate::config::Settings, delay: Duration) {
    let cfg = &settings.health;
    let enabled = if cfg.slot_verdict == SlotVerdict::Auto {
        let probe = UnitProbe {
            command: cfg.systemctl.clone(),
        };
        probe.is_enabled(&cfg.gate_unit).await
    } else {
        None
    };
    if !cfg.slot_verdict.daemon_marks_good(enabled) {
        info!(
            "the health gate ({}) decides whether this slot is good",
            cfg.gate_unit
        );
        return;
    }
    info!("no health gate: marking the booted slot good in {delay:?} (health.slot_verdict)");
    tokio::time::sleep(delay).await;
    let marked = crate::slots::detect(root, settings)
        .map_err(|e| crate::error_chain(&e))
        .and_then(|plan| {
            let boot = plan.boot_disk();
            boot.mark_good()
                .map_err(|e| crate::error_chain(&e))
                .map(|w| (boot.booted, w))
        });
    match marked {
        Ok((slot, true)) => info!("marked {slot} good"),
        Ok((slot, false)) => info!("{slot} was already good"),
        Err(e) => error!("cannot mark the booted slot good: {e}"),
    }
}

/// Check directories, lowest priority first.
pub const CHECK_DIRS: [&str; 2] = [
    "/usr/lib/update-agent/health.d",
    "/etc/update-agent/health.d",
];
/// The reboot-loop guard's records (under the state directory).
pub const REBOOT_RECORDS: &str = "health/reboots";

/// Everything the gate acts on.
#[derive(Debug, Clone)]
pub struct GateEnv {
    /// Every path hangs off this root.
    pub root: Root,
    /// The disk holding the USR slots (host path; an image file in tests).
    pub disk: PathBuf,
    /// The slot we booted from.
    pub booted: Slot,
    /// The running version.
    pub version: String,
    /// This boot's id (the reboot guard's key).
    pub boot_id: String,
    /// The agent's state directory (node path, resolved under `root`).
    pub state_dir: PathBuf,
    /// Our appid (`FLATCAR_RELEASE_APPID`): the `<app>` of `full-response`
    /// to read the offered version from.
    pub app_id: String,
}

/// What the gate did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The booted slot was already good; nothing was written.
    AlreadyGood,
    /// GRUB had fallen back to us: the slot that never passed was marked bad.
    RolledBack {
        failed: Slot,
        denied: Option<String>,
    },
    /// Every required check passed; the slot is now good.
    Blessed,
    /// A required check failed: the slot is bad, the other is next.
    FellBack {
        to: Slot,
        failures: Vec<String>,
        reboot: RebootResult,
    },
    /// A required check failed with nothing verified to fall back to.
    NoFallback { failures: Vec<String> },
}

impl Outcome {
    /// The gate's exit status: 0 when the booted slot is good, 1 when it failed.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::AlreadyGood | Outcome::RolledBack { .. } | Outcome::Blessed => 0,
            Outcome::FellBack { .. } | Outcome::NoFallback { .. } => 1,
        }
    }
}

/// What happened to the reboot after a fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RebootResult {
    Issued,
    Refused(String),
    Failed(String),
}

/// A gate failure that stopped it before a decision was carried out.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("reading or writing the slot table")]
    Gpt(#[from] cgpt::Error),
    #[error("opening {path}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    DenyList(#[from] DenyListError),
    #[error("{what}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Settings(#[from] crate::config::settings::SettingsError),
    #[error(transparent)]
    Node(#[from] crate::config::flatcar::FlatcarConfigError),
    #[error("finding the booted slot")]
    Slots(#[from] crate::slots::SlotError),
}

impl HealthError {
    /// A stable name for logs and D-Bus.
    pub fn error_kind(&self) -> &'static str {
        match self {
            HealthError::Gpt(_) => "health_gpt",
            HealthError::Open { .. } => "health_open_disk",
            HealthError::DenyList(e) => e.error_kind(),
            HealthError::Io { .. } => "health_io",
            HealthError::Settings(e) => e.error_kind(),
            HealthError::Node(e) => e.error_kind(),
            HealthError::Slots(e) => e.error_kind(),
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HealthError {
    let what = what.into();
    move |source| HealthError::Io { what, source }
}

/// Where the gate reports to the update server.
pub trait Reporter {
    /// Sends one event; failures are logged by the gate, never fatal.
    fn report(&self, event: omaha::Event) -> impl Future<Output = Result<(), String>> + Send;
}

/// A reporter for nodes without a server (and for `SERVER=disabled`).
#[derive(Debug, Clone, Copy)]
pub struct NoReporter;

impl Reporter for NoReporter {
    async fn report(&self, _event: omaha::Event) -> Result<(), String> {
        Ok(())
    }
}

/// Reports to the node's Omaha server (Flatcar's `SERVER`) with its identity.
#[derive(Debug, Clone)]
pub struct OmahaReporter {
    client: crate::omaha_client::OmahaClient,
    info: omaha::ClientInfo,
}

impl OmahaReporter {
    /// A reporter posting events as `info` through `client`.
    pub fn new(client: crate::omaha_client::OmahaClient, info: omaha::ClientInfo) -> Self {
        OmahaReporter { client, info }
    }
}

impl Reporter for OmahaReporter {
    async fn report(&self, event: omaha::Event) -> Result<(), String> {
        let request =
            omaha::Request::event(self.info.clone(), omaha::InstallSource::Scheduler, event);
        self.client
            .send_event(&request)
            .await
            .map(|_| ())
            .map_err(|e| crate::error_chain(&e))
    }
}

impl<R: Reporter + Sync> Reporter for Option<R> {
    async fn report(&self, event: omaha::Event) -> Result<(), String> {
        match self {
            Some(r) => r.report(event).await,
            None => Ok(()),
        }
    }
}

/// `update-agent health-gate`: everything from the node's own configuration
/// (settings, `update.conf`, the booted slot behind `/usr`), then [`run`].
pub async fn run_node(root: &Root, extra_config: Option<&Path>) -> Result<Outcome, HealthError> {
    use crate::config::flatcar::NodeIdentity;
    use crate::omaha_client::{ClientOptions, OmahaClient};
    let settings = crate::config::settings::Settings::load_with(root, extra_config)?;
    let plan = crate::slots::detect(root, &settings)?;
    let prefs = settings.prefs(root);
    let node = NodeIdentity::load(root, &prefs)?;
    let env = GateEnv {
        root: root.clone(),
        disk: plan.disk,
        booted: plan.booted,
        version: node.config.version().to_string(),
        boot_id: node.boot_id.to_string(),
        state_dir: settings.state_dir.clone(),
        app_id: node.config.app_id().to_string(),
    };
    // Reporting is best effort: a node with updates disabled or a bad SERVER still gets its gate.
    let reporter = match OmahaClient::new(
        node.config.server(),
        &ClientOptions::from_settings(&settings, root),
    ) {
        Ok(client) => Some(OmahaReporter::new(client, node.client_info())),
        Err(e) => {
            warn!(error = %e, "not reporting the health gate's result");
            None
        }
    };
    run(&env, &settings.health, &reporter).await
}

/// Runs the gate once.
pub async fn run<R: Reporter>(
    env: &GateEnv,
    cfg: &HealthConfig,
    reporter: &R,
) -> Result<Outcome, HealthError> {
    let gate = Gate::new(env);
    let [a, b] = cgpt::slot::read_slots(&mut gate.open()?)?;
    let (booted, other) = if env.booted == Slot::A {
        (a, b)
    } else {
        (b, a)
    };
    match decide::start(&booted, &other) {
        Start::AlreadyGood => {
            info!(slot = %env.booted, "booted slot is already good; nothing to do");
            write_steady(&env.root, &env.version)?;
            gate.note("already_good");
            return Ok(Outcome::AlreadyGood);
        }
        Start::RolledBack { failed } => return gate.rolled_back(failed),
        Start::OnTrial => {
            info!(
                slot = %env.booted, version = %env.version,
                "booted {} ({}) is on trial; running the health gate",
                env.booted.label(),
                env.version
            )
        }
    }
    let failures = evaluate(env, cfg).await;
    match decide::verdict(&failures, &other) {
        Verdict::Bless => {
            cgpt::slot::mark_good(&mut gate.open()?, env.booted)?;
            info!(slot = %env.booted, "health gate passed; slot marked good");
            report_success(reporter, &gate.prefs, &env.version).await;
            write_steady(&env.root, &env.version)?;
            gate.note("blessed");
            Ok(Outcome::Blessed)
        }
        Verdict::FallBack { to } => gate.fall_back(cfg, reporter, to, failures).await,
        Verdict::NoFallback => {
            error!(slot = %env.booted, ?failures, "health gate failed, but the other slot holds no verified image; keeping this slot bootable");
            cgpt::slot::mark_good(&mut gate.open()?, env.booted)?;
            let event = omaha::Event::failure(
                omaha::ErrorCode::NewRootfsVerificationError,
                omaha::ErrorFlags::NONE,
            );
            report(reporter, event).await;
            gate.note("no_fallback");
            Ok(Outcome::NoFallback { failures })
        }
    }
}

/// What the gate's verdicts act on.
struct Gate<'a> {
    env: &'a GateEnv,
    state_dir: PathBuf,
    prefs: Prefs,
    deny: DenyList,
}

impl<'a> Gate<'a> {
    fn new(env: &'a GateEnv) -> Self {
        let state_dir = env.root.join(&env.state_dir);
        Self {
            env,
            prefs: Prefs::new(state_dir.join("prefs")),
            deny: DenyList::in_dir(&state_dir),
            state_dir,
        }
    }

    /// Counts `verdict` for the daemon's metrics; best effort (the verdict
    /// itself is already carried out).
    fn note(&self, verdict: &str) {
        let path = self.state_dir.join(crate::metrics::verdicts::FILE);
        if let Err(e) = crate::metrics::verdicts::record(&path, verdict) {
            warn!("cannot record the verdict in {}: {e}", path.display());
        }
    }

    fn open(&self) -> Result<FileDisk, HealthError> {
        FileDisk::open_rw(&self.env.disk).map_err(|source| HealthError::Open {
            path: self.env.disk.clone(),
            source,
        })
    }

    /// GRUB fell back from `failed` before its gate ran: mark it bad and
    /// deny the version it held.
    fn rolled_back(&self, failed: Slot) -> Result<Outcome, HealthError> {
        let version = offered_version(&self.prefs, &self.env.app_id);
        warn!(%failed, version = ?version, "the new slot never passed its health gate; GRUB fell back");
        cgpt::slot::mark_bad(&mut self.open()?, failed)?;
        if let Some(v) = &version {
            let reason = format!("rolled back: {failed} never passed its health gate");
            self.deny.add(v, &reason, crate::fsutil::unix_now())?;
        }
        write_steady(&self.env.root, &self.env.version)?;
        self.note("rolled_back");
        Ok(Outcome::RolledBack {
            failed,
            denied: version,
        })
    }

    /// The gate failed and `to` holds a verified image: boot it next,
    /// deny this version, report, reboot.
    async fn fall_back<R: Reporter>(
        &self,
        cfg: &HealthConfig,
        reporter: &R,
        to: Slot,
        failures: Vec<String>,
    ) -> Result<Outcome, HealthError> {
        let env = self.env;
        error!(slot = %env.booted, ?failures, "health gate failed; falling back to {to}");
        let mut disk = self.open()?;
        cgpt::slot::mark_bad(&mut disk, env.booted)?;
        // The other slot holds a verified image (successful=1): make it the next boot.
        cgpt::slot::mark_good(&mut disk, to)?;
        drop(disk);
        let reason = format!("health check failed: {}", failures.join("; "));
        self.deny
            .add(&env.version, &reason, crate::fsutil::unix_now())?;
        // Reported now, the old slot must not report it again. Unreported
        // (no network yet at this point of the boot), the pref is kept:
        // equal to the old slot's version, it makes the daemon's first
        // check there carry the rollback event (3/0/44) instead.
        if report(reporter, omaha::Event::rollback()).await {
            self.prefs
                .set(prefs::PREVIOUS_VERSION, "")
                .map_err(io_err("clearing previous-version"))?;
        }
        // Before the reboot, which may end this process.
        self.note("fell_back");
        let reboot = reboot(env, cfg, &self.state_dir);
        Ok(Outcome::FellBack {
            to,
            failures,
            reboot,
        })
    }
}

/// Waits for the boot to settle, then runs every check; returns the required failures.
async fn evaluate(env: &GateEnv, cfg: &HealthConfig) -> Vec<String> {
    let probe = UnitProbe {
        command: cfg.systemctl.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(cfg.settle_timeout_secs);
    loop {
        let waiting = probe.inactive(&cfg.settle_units).await;
        if waiting.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return vec![format!(
                "the boot did not settle within {} s: {} not active",
                cfg.settle_timeout_secs,
                waiting.join(", ")
            )];
        }
        tokio::time::sleep(Duration::from_millis(cfg.poll_interval_ms)).await;
    }
    let dirs = |kind: &str| -> Vec<PathBuf> {
        CHECK_DIRS
            .iter()
            .map(|d| env.root.join(Path::new(d).join(kind)))
            .collect()
    };
    let timeout = Duration::from_secs(cfg.check_timeout_secs);
    let mut failures = match checks::discover(&dirs("required")) {
        Ok(found) => checks::run_all("required", &found, timeout).await,
        Err(e) => vec![format!("cannot list the required checks: {e}")],
    };
    failures.extend(
        probe
            .inactive(&cfg.required_units)
            .await
            .into_iter()
            .map(|u| format!("required unit {u} is not active")),
    );
    // Wanted checks only inform.
    if let Ok(found) = checks::discover(&dirs("wanted")) {
        for why in checks::run_all("wanted", &found, timeout).await {
            warn!(reason = %why, "wanted health check failed (not fatal)");
        }
    }
    for u in probe.inactive(&cfg.wanted_units).await {
        warn!(unit = %u, "wanted unit is not active (not fatal)");
    }
    failures
}

/// Sends `event`; true when the server took it.
async fn report<R: Reporter>(reporter: &R, event: omaha::Event) -> bool {
    match reporter.report(event).await {
        Ok(()) => true,
        Err(e) => {
            warn!(error = %e, "could not report the health gate's result to the update server; the next update check carries it");
            false
        }
    }
}

/// The `3/2` event with `previousversion`, as update_engine sends after an
/// update; once the server took it the pref is cleared as update_engine
/// does, so the next check does not report it twice (and while it did not,
/// the next check carries it).
async fn report_success<R: Reporter>(reporter: &R, prefs: &Prefs, version: &str) {
    let prev = prefs.get(prefs::PREVIOUS_VERSION).ok().flatten();
    let event = omaha::Event::for_update_check(prev.as_deref(), version);
    if !report(reporter, event).await {
        return;
    }
    if let Err(e) = prefs.set(prefs::PREVIOUS_VERSION, "") {
        warn!(error = %e, "could not clear previous-version");
    }
}

/// The version the server offered for the last install (from `full-response`).
fn offered_version(prefs: &Prefs, app_id: &str) -> Option<String> {
    let body = prefs.get(prefs::FULL_RESPONSE).ok().flatten()?;
    match omaha::parse_update_check(body.as_bytes(), app_id)
        .ok()?
        .outcome
    {
        omaha::UpdateCheck::Update(info) => Some(info.version.clone()),
        omaha::UpdateCheck::NoUpdate => None,
    }
}

/// Tells the reboot coordinator this boot reached steady state (the marker in
/// `/run` is gone after the next reboot, so it always speaks of this boot).
fn write_steady(root: &Root, version: &str) -> Result<(), HealthError> {
    ab_node::write_steady(root.dir(), version)
        .map_err(io_err(format!("writing {}", ab_node::STEADY_MARKER)))
}

fn reboot(env: &GateEnv, cfg: &HealthConfig, state_dir: &Path) -> RebootResult {
    let guard = RebootGuard::new(
        &state_dir.join(REBOOT_RECORDS),
        cfg.max_reboots,
        cfg.reboot_window_secs,
    );
    let now = crate::fsutil::unix_now();
    match guard.check(&env.boot_id, now) {
        Err(e) => return RebootResult::Failed(format!("reading the reboot records: {e}")),
        Ok(Err(refusal)) => {
            error!(%refusal, "not rebooting");
            return RebootResult::Refused(refusal.to_string());
        }
        Ok(Ok(())) => {}
    }
    if let Err(e) = guard.record(&env.boot_id, now) {
        return RebootResult::Failed(format!("recording the reboot: {e}"));
    }
    if cfg.reboot_command.is_empty() {
        return RebootResult::Refused("no reboot command configured".into());
    }
    info!(command = ?cfg.reboot_command, "rebooting into the previous slot");
    // The same reboot call as the coordinator's (ab_node).
    match ab_node::reboot::reboot(&cfg.reboot_command) {
        Ok(()) => RebootResult::Issued,
        Err(e) => RebootResult::Failed(crate::error_chain(&e)),
    }
}
