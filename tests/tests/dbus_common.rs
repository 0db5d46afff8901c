//! Shared fixture of the D-Bus and client tests (included with `#[path]`;
//! as its own test target it has no tests).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::dbus_bus::{Policy, PrivateBus};
use e2e::sim::{BootDisk, CheckFn, SimConfig, SimEngine, Step};
use omaha::EventErrorCode;
use update_agent::config::Root;
use update_agent::dbus::{Bus, serve};
use update_agent::fsm::{Event, Operation, Target};

pub const NEW_VERSION: &str = "3815.2.1";
pub const NEW_SIZE: u64 = 458_234_665;

fn step(ms: u64, event: Event) -> Step {
    Step {
        delay: Duration::from_millis(ms),
        event,
    }
}

/// A whole successful update: found, 200 progress events, verified, installed.
pub fn update_script() -> Vec<Step> {
    let mut s = vec![step(
        50,
        Event::UpdateFound {
            target: Target {
                version: NEW_VERSION.into(),
                size: NEW_SIZE,
            },
        },
    )];
    for i in 1..=200u64 {
        s.push(step(
            2,
            Event::DownloadProgress {
                bytes: NEW_SIZE * i / 200,
            },
        ));
    }
    s.push(step(50, Event::DownloadComplete));
    s.push(step(50, Event::Verified));
    s.push(step(50, Event::InstallComplete));
    s
}

/// The server has nothing.
pub fn noupdate_script() -> Vec<Step> {
    vec![step(50, Event::NoUpdate)]
}

/// The download fails half-way with `code`.
pub fn failing_script(code: EventErrorCode) -> Vec<Step> {
    let mut s = update_script();
    s.truncate(101);
    s.push(step(50, Event::Failed { code }));
    s
}

/// A Flatcar-like root in `dir`.
pub fn make_root(dir: &Path) -> Root {
    let root = Root::new(dir.join("root"));
    for (path, text) in [
        ("/sys/fs/cgroup/cgroup.controllers", "cpu io memory pids\n"),
        (
            "/usr/share/flatcar/release",
            "FLATCAR_RELEASE_VERSION=3510.2.0\nFLATCAR_RELEASE_BOARD=amd64-usr\nFLATCAR_RELEASE_APPID={e96281a6-d1af-4bde-9a0a-97b76e56dc57}\n",
        ),
        (
            "/usr/share/flatcar/update.conf",
            "SERVER=http://127.0.0.1:9/\nGROUP=stable\n",
        ),
        ("/etc/machine-id", "0123456789abcdef0123456789abcdef\n"),
        (
            "/proc/sys/kernel/random/boot_id",
            "5a2e0c3d-1f7e-4a4c-9d7e-2b7b7a0f1c11\n",
        ),
    ] {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    root
}

/// Builds the update check once the fixture made the root.
pub type MakeCheck = Box<dyn FnOnce(&Root) -> CheckFn>;

/// What to run.
pub struct Setup {
    pub policy: Policy,
    pub script: Vec<Step>,
    /// Builds the update check from the root (created by the fixture).
    pub check: Option<MakeCheck>,
    pub boot: Option<BootDisk>,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("policy", &self.policy)
            .field("script", &self.script.len())
            .field("check", &self.check.is_some())
            .field("boot", &self.boot)
            .finish()
    }
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            policy: Policy::Shipped,
            script: update_script(),
            check: None,
            boot: None,
        }
    }
}

/// A private bus with the service on it, running a [`SimEngine`] on its own
/// runtime thread (so tests can block on subprocesses).
#[derive(Debug)]
pub struct Fixture {
    pub engine: SimEngine,
    pub root: Root,
    pub bus: PrivateBus,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn start(setup: Setup) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bus = PrivateBus::start(dir.path(), setup.policy);
        let root = make_root(dir.path());
        let engine = SimEngine::new(SimConfig {
            root: root.clone(),
            state_dir: root.join("/var/lib/update_engine"),
            current_version: "3510.2.0".into(),
            boot: setup.boot,
            check: setup.check.map(|make| make(&root)),
            script: setup.script,
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let e = Arc::new(engine.clone());
        let address = bus.address.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                match serve(e, &Bus::Address(address)).await {
                    Ok(service) => {
                        ready_tx.send(Ok(())).unwrap();
                        let _ = stop_rx.await;
                        drop(service);
                    }
                    Err(err) => ready_tx.send(Err(err.to_string())).unwrap(),
                }
            });
        });
        ready_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("service start")
            .expect("service took the name");
        Self {
            engine,
            root,
            bus,
            stop: Some(stop),
            thread: Some(thread),
            dir,
        }
    }

    pub fn address(&self) -> &str {
        &self.bus.address
    }

    /// Waits until the engine reaches `op`.
    pub fn wait_for(&self, op: Operation, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.engine.state().operation() != op {
            assert!(
                Instant::now() < deadline,
                "engine stuck in {} waiting for {op}",
                self.engine.state().operation()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.root.join(p)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Parses `gdbus monitor` StatusUpdate lines into (op, progress, version, size).
pub fn status_updates(lines: &[String]) -> Vec<(String, f64, String, i64)> {
    lines
        .iter()
        .filter_map(|l| l.split_once("com.coreos.update1.Manager.StatusUpdate ("))
        .map(|(_, rest)| {
            let rest = rest.trim_end_matches(')');
            let parts: Vec<&str> = rest.split(", ").collect();
            assert_eq!(parts.len(), 5, "{rest}");
            let num = |s: &str| s.trim_start_matches("int64 ").to_string();
            (
                parts[2].trim_matches('\'').to_string(),
                parts[1].parse().unwrap(),
                parts[3].trim_matches('\'').to_string(),
                num(parts[4]).parse().unwrap(),
            )
        })
        .collect()
}
