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
//! - the slot is already good: nothing, no write. If GRUB fell back because a
//!   new slot died before its gate ran, that slot is marked bad and its version
//!   denied.
//!
//! Decisions are pure ([`decide`]); this module carries them out.

pub mod checks;
pub mod decide;
pub mod guard;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cgpt::{FileDisk, Slot};
use tracing::{error, info, warn};

use crate::config::Root;
use crate::denylist::{DenyList, DenyListError};
use crate::prefs::{self, Prefs};
use checks::UnitProbe;
use decide::{Start, Verdict};
use guard::RebootGuard;

/// The `[health]` settings (validated; see `config::settings` for the file form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// Units whose activation means "the boot has settled".
    pub settle_units: Vec<String>,
    /// How long to wait for them before declaring the boot failed.
    pub settle_timeout_secs: u64,
    /// Units that must be active for the slot to pass.
    pub required_units: Vec<String>,
    /// Units whose failure is only logged.
    pub wanted_units: Vec<String>,
    /// Deadline for each check executable.
    pub check_timeout_secs: u64,
    /// How to ask systemd about units (`is-active --quiet UNIT` is appended).
    pub systemctl: Vec<String>,
    /// How to reboot after a failure (logind's Reboot by default).
    pub reboot_command: Vec<String>,
    /// At most this many gate-initiated reboots...
    pub max_reboots: u32,
    /// ...within this many seconds.
    pub reboot_window_secs: u64,
    /// How often to poll the settle units.
    pub poll_interval_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        HealthConfig {
            settle_units: s(&["boot-complete.target"]),
            settle_timeout_secs: 300,
            required_units: Vec::new(),
            wanted_units: Vec::new(),
            check_timeout_secs: 120,
            systemctl: s(&["systemctl"]),
            reboot_command: s(&[
                "busctl",
                "call",
                "org.freedesktop.login1",
                "/org/freedesktop/login1",
                "org.freedesktop.login1.Manager",
                "Reboot",
                "b",
                "false",
            ]),
            max_reboots: 2,
            reboot_window_secs: 3600,
            poll_interval_ms: 1000,
        }
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
    #[error("reading or writing the slot table: {0}")]
    Gpt(#[from] cgpt::Error),
    #[error("opening {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    DenyList(#[from] DenyListError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Settings(#[from] crate::config::settings::SettingsError),
    #[error(transparent)]
    Node(#[from] crate::config::flatcar::FlatcarConfigError),
    #[error("finding the booted slot: {0}")]
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
            .map_err(|e| e.to_string())
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

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs the gate once.
pub async fn run<R: Reporter>(
    env: &GateEnv,
    cfg: &HealthConfig,
    reporter: &R,
) -> Result<Outcome, HealthError> {
    let disk_path = env.disk.clone();
    let open = || {
        FileDisk::open_rw(&disk_path).map_err(|source| HealthError::Open {
            path: disk_path.clone(),
            source,
        })
    };
    let state_dir = env.root.join(&env.state_dir);
    let prefs = Prefs::new(state_dir.join("prefs"));
    let deny = DenyList::in_dir(&state_dir);
    let [a, b] = cgpt::slot::read_slots(&mut open()?)?;
    let (booted, other) = if env.booted == Slot::A {
        (a, b)
    } else {
        (b, a)
    };

    match decide::start(&booted, &other) {
        Start::AlreadyGood => {
            info!(slot = %env.booted, "booted slot is already good; nothing to do");
            write_steady(&env.root, &env.version)?;
            return Ok(Outcome::AlreadyGood);
        }
        Start::RolledBack { failed } => {
            let version = offered_version(&prefs, &env.app_id);
            warn!(%failed, version = ?version, "the new slot never passed its health gate; GRUB fell back");
            cgpt::slot::mark_bad(&mut open()?, failed)?;
            if let Some(v) = &version {
                let reason = format!("rolled back: {failed} never passed its health gate");
                deny.add(v, &reason, now_unix())?;
            }
            write_steady(&env.root, &env.version)?;
            return Ok(Outcome::RolledBack {
                failed,
                denied: version,
            });
        }
        Start::OnTrial => {
            info!(slot = %env.booted, version = %env.version, "booted slot is on trial; running the health gate")
        }
    }

    let failures = evaluate(env, cfg).await;
    match decide::verdict(&failures, &other) {
        Verdict::Bless => {
            cgpt::slot::mark_good(&mut open()?, env.booted)?;
            info!(slot = %env.booted, "health gate passed; slot marked good");
            report_success(reporter, &prefs, &env.version).await;
            write_steady(&env.root, &env.version)?;
            Ok(Outcome::Blessed)
        }
        Verdict::FallBack { to } => {
            error!(slot = %env.booted, ?failures, "health gate failed; falling back to {to}");
            let mut disk = open()?;
            cgpt::slot::mark_bad(&mut disk, env.booted)?;
            // The other slot holds a verified image (successful=1): make it the next boot.
            cgpt::slot::mark_good(&mut disk, to)?;
            drop(disk);
            deny.add(
                &env.version,
                &format!("health check failed: {}", failures.join("; ")),
                now_unix(),
            )?;
            report(reporter, omaha::Event::rollback()).await;
            // The fallback is reported now; the old slot must not report it again.
            prefs
                .set(prefs::PREVIOUS_VERSION, "")
                .map_err(io_err("clearing previous-version"))?;
            let reboot = reboot(env, cfg, &state_dir);
            Ok(Outcome::FellBack {
                to,
                failures,
                reboot,
            })
        }
        Verdict::NoFallback => {
            error!(slot = %env.booted, ?failures, "health gate failed, but the other slot holds no verified image; keeping this slot bootable");
            cgpt::slot::mark_good(&mut open()?, env.booted)?;
            let event = omaha::Event::failure(
                omaha::ErrorCode::NewRootfsVerificationError,
                omaha::ErrorFlags::NONE,
            );
            report(reporter, event).await;
            Ok(Outcome::NoFallback { failures })
        }
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

async fn report<R: Reporter>(reporter: &R, event: omaha::Event) {
    if let Err(e) = reporter.report(event).await {
        warn!(error = %e, "could not report the health gate's result to the update server");
    }
}

/// The `3/2` event with `previousversion`, as update_engine sends after an
/// update; afterwards the pref is cleared as update_engine does, so the next
/// check does not report it twice.
async fn report_success<R: Reporter>(reporter: &R, prefs: &Prefs, version: &str) {
    let prev = prefs.get(prefs::PREVIOUS_VERSION).ok().flatten();
    report(
        reporter,
        omaha::Event::for_update_check(prev.as_deref(), version),
    )
    .await;
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
    coordinator::node::write_steady(root.dir(), version).map_err(io_err(format!(
        "writing {}",
        coordinator::node::STEADY_MARKER
    )))
}

fn reboot(env: &GateEnv, cfg: &HealthConfig, state_dir: &Path) -> RebootResult {
    let guard = RebootGuard::new(
        &state_dir.join(REBOOT_RECORDS),
        cfg.max_reboots,
        cfg.reboot_window_secs,
    );
    let now = now_unix();
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
    let Some((prog, args)) = cfg.reboot_command.split_first() else {
        return RebootResult::Refused("no reboot command configured".into());
    };
    info!(command = ?cfg.reboot_command, "rebooting into the previous slot");
    match crate::fsutil::retry_text_busy(|| std::process::Command::new(prog).args(args).status()) {
        Ok(s) if s.success() => RebootResult::Issued,
        Ok(s) => RebootResult::Failed(format!("{prog} exited with {s}")),
        Err(e) => RebootResult::Failed(format!("cannot run {prog}: {e}")),
    }
}
