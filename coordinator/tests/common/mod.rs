//! Test harness: a real etcd on 127.0.0.1, simulated nodes running `update-coordinator` under
//! temporary roots, and a contention driver that plays the nodes' reboots.
#![allow(dead_code)]

pub mod fleetlock_server;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coordinator::node::{REBOOT_NEEDED_MARKER, STEADY_MARKER};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A throwaway etcd server; killed on drop.
pub struct Etcd {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    pub fn start() -> Etcd {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let peer = format!("http://127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("t={peer}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd not installed (apt-get install etcd-server)");
        let etcd = Etcd {
            child,
            url,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !http_get(port, "/health").is_some_and(|b| b.contains("\"health\":\"true\"")) {
            assert!(Instant::now() < deadline, "etcd did not become healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
        etcd
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

pub fn locksmithctl(endpoint: &str, args: &[&str]) -> std::process::Output {
    let root = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_locksmithctl"))
        .arg("--root")
        .arg(root.path())
        .arg(format!("-endpoint={endpoint}"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

/// One simulated machine: a root directory and (while "booted") an `update-coordinator`.
pub struct Node {
    pub id: String,
    pub root: PathBuf,
    child: Option<Child>,
    boots: u32,
}

/// update.conf for fast tests: short polls and backoffs, the harmless reboot command.
pub fn fast_conf(root: &Path, extra: &str) -> String {
    format!(
        "COORDINATOR_POLL_INTERVAL=50ms\nCOORDINATOR_BACKOFF_MIN=50ms\nCOORDINATOR_BACKOFF_MAX=300ms\n\
         COORDINATOR_REBOOT_COMMAND=\"touch {}/rebooted\"\n{extra}",
        root.display()
    )
}

impl Node {
    /// A node under `parent/<id>` with `update.conf` holding `conf`.
    pub fn new(parent: &Path, id: &str, conf: &str) -> Node {
        let root = parent.join(id);
        std::fs::create_dir_all(root.join("etc/flatcar")).unwrap();
        std::fs::create_dir_all(root.join("run")).unwrap();
        std::fs::write(root.join("etc/machine-id"), format!("{id}\n")).unwrap();
        std::fs::write(root.join("etc/flatcar/update.conf"), fast_conf(&root, conf)).unwrap();
        Node {
            id: id.to_owned(),
            root,
            child: None,
            boots: 0,
        }
    }

    /// The engine installed an update (healthy boot before it).
    pub fn need_reboot(&self) {
        std::fs::write(self.root.join(REBOOT_NEEDED_MARKER), "").unwrap();
        coordinator::node::write_steady(&self.root, "1.0.0").unwrap();
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join("log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_update-coordinator"))
            .arg("--root")
            .arg(&self.root)
            .env("RUST_LOG", "info")
            .env_remove("REBOOT_STRATEGY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.boots += 1;
    }

    /// Kills the process (the machine went down).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Exit status if the process ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().unwrap())
    }

    pub fn rebooted(&self) -> bool {
        self.root.join("rebooted").exists()
    }

    /// The machine comes back: /run is empty, the new boot has not passed the health gate.
    pub fn come_back(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(self.root.join("rebooted"));
        let _ = std::fs::remove_file(self.root.join(REBOOT_NEEDED_MARKER));
        let _ = std::fs::remove_file(self.root.join(STEADY_MARKER));
        self.start();
    }

    /// The health gate marks the new boot good.
    pub fn pass_health_gate(&self) {
        coordinator::node::write_steady(&self.root, "2.0.0").unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("log")).unwrap_or_default()
    }

    pub fn conf(&self) -> String {
        std::fs::read_to_string(self.root.join("run/update-engine/coordinator.conf"))
            .unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    /// Rebooted and came back; not steady yet.
    Back(Instant),
    Steady,
    Done,
}

/// Plays a fleet of nodes that all need a reboot against a lock with `max` slots.
/// `holders` reads the lock's ground truth. Asserts: never more than `max` holders; every
/// node reboots holding a slot; a node that came back keeps its slot until its health gate
/// passes (checked after `gate_delay`); afterwards it releases. Returns the holders' peak.
pub async fn contend<F, Fut>(
    nodes: &mut [Node],
    max: usize,
    gate_delay: Duration,
    mut holders: F,
) -> usize
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    for n in nodes.iter_mut() {
        n.need_reboot();
        n.start();
    }
    let mut phase = vec![Phase::Waiting; nodes.len()];
    let mut peak = 0;
    let mut saw_rebooting_conf = false;
    let deadline = Instant::now() + Duration::from_secs(45);
    while phase.iter().any(|p| *p != Phase::Done) {
        assert!(Instant::now() < deadline, "fleet did not finish: {phase:?}");
        // 1. Reboots that happened since the last look.
        let mut rebooted_now = vec![];
        for (i, n) in nodes.iter_mut().enumerate() {
            if phase[i] == Phase::Waiting && n.rebooted() {
                saw_rebooting_conf |= n.conf().contains("STATE=rebooting");
                rebooted_now.push(i);
            }
            if let Some(status) = n.exited() {
                panic!("{} exited early with {status}: {}", n.id, n.log());
            }
        }
        // 2. Ground truth, read after those reboots.
        let held = holders().await;
        assert!(held.len() <= max, "more than {max} holders: {held:?}");
        peak = peak.max(held.len());
        for i in rebooted_now {
            assert!(
                held.contains(&nodes[i].id),
                "{} rebooted without holding the lock ({held:?})",
                nodes[i].id
            );
            nodes[i].come_back();
            phase[i] = Phase::Back(Instant::now());
        }
        // 3. Health gates and releases.
        for (i, n) in nodes.iter_mut().enumerate() {
            let holds = held.contains(&n.id);
            match phase[i] {
                Phase::Back(since) if since.elapsed() >= gate_delay => {
                    assert!(holds, "{} released before its health gate passed", n.id);
                    n.pass_health_gate();
                    phase[i] = Phase::Steady;
                }
                Phase::Steady if !holds => {
                    assert!(!n.rebooted(), "{} rebooted twice", n.id);
                    n.kill();
                    phase[i] = Phase::Done;
                }
                Phase::Back(_) | Phase::Steady => assert!(holds, "{} lost the lock early", n.id),
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        saw_rebooting_conf,
        "coordinator.conf never said STATE=rebooting"
    );
    peak
}
