//! What the coordinator reads and writes on the node, all under one root (`/` on a real node,
//! a temporary directory in tests).
//!
//! | path (under root) | who writes it | meaning |
//! |---|---|---|
//! | `run/update_engine_autoupdate_completed` | the update engine (Flatcar's or ours) | an update is installed; reboot needed |
//! | `run/update-engine/health/steady` | the health gate, after it marked the booted slot good | this boot is healthy: the reboot lock may be released. Content: the booted version, one line. In `/run`, so every boot starts without it. |
//! | `run/update-engine/coordinator.conf` | this crate | `NAME=locksmithd`, `STRATEGY=…`, `STATE=…` as locksmithd writes it |
//! | `etc/machine-id` | systemd | this node's lock holder id |

use std::future::Future;
use std::path::{Path, PathBuf};

/// The engine's reboot-pending marker (`/var/run` is `/run`).
pub const REBOOT_NEEDED_MARKER: &str = "run/update_engine_autoupdate_completed";
/// The health gate's marker (this boot reached steady state) and its writer: the contract
/// lives in `ab_node`, shared with the update agent.
pub use ab_node::steady::{STEADY_MARKER, write_steady};
/// locksmithd's coordinator file.
pub const COORDINATOR_CONF: &str = "run/update-engine/coordinator.conf";

/// Where the coordinator gets "reboot needed" and "steady state" from. The file-backed
/// [`Markers`] serve the standalone daemon; the embedding agent may answer from its own state.
pub trait Signals: Send + Sync {
    /// An installed update waits for a reboot.
    fn reboot_needed(&self) -> bool;
    /// This boot passed the health gate.
    fn steady(&self) -> bool;
}

/// The marker files under a root.
#[derive(Debug, Clone)]
pub struct Markers {
    root: PathBuf,
    /// `false` (config `COORDINATOR_HEALTH_GATE=none`): every boot counts as steady.
    pub health_gate: bool,
}

impl Markers {
    /// The markers under `root`; `health_gate: false` makes every boot steady.
    pub fn new(root: &Path, health_gate: bool) -> Self {
        Markers {
            root: root.to_owned(),
            health_gate,
        }
    }
}

impl Signals for Markers {
    fn reboot_needed(&self) -> bool {
        self.root.join(REBOOT_NEEDED_MARKER).exists()
    }
    fn steady(&self) -> bool {
        !self.health_gate || ab_node::is_steady(&self.root)
    }
}

/// What can fail on the node: reading its id, writing the coordinator file, rebooting.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// `/etc/machine-id` could not be read.
    #[error("reading the machine id from {path}")]
    MachineId {
        /// The file's path.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `/etc/machine-id` is empty, too long or holds whitespace.
    #[error("{path} does not hold a machine id")]
    EmptyMachineId {
        /// The file's path.
        path: PathBuf,
    },
    /// A file could not be written.
    #[error("writing {path}")]
    Write {
        /// The file's path.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The reboot was not accepted.
    #[error(transparent)]
    Reboot(#[from] ab_node::RebootError),
}

/// This node's id for the lock: `/etc/machine-id`, as locksmith uses it.
pub fn machine_id(root: &Path) -> Result<String, NodeError> {
    let path = root.join("etc/machine-id");
    let text = std::fs::read_to_string(&path).map_err(|source| NodeError::MachineId {
        path: path.clone(),
        source,
    })?;
    let id = text.trim();
    if id.is_empty() || id.len() > 128 || id.chars().any(|c| c.is_whitespace()) {
        return Err(NodeError::EmptyMachineId { path });
    }
    Ok(id.to_owned())
}

/// Writes coordinator.conf the way locksmithd does (atomically: temp file, fsync, rename).
pub fn write_coordinator_conf(root: &Path, strategy: &str, state: &str) -> Result<(), NodeError> {
    use std::io::Write as _;
    let path = root.join(COORDINATOR_CONF);
    let err = |source| NodeError::Write {
        path: path.clone(),
        source,
    };
    let dir = path.parent().unwrap_or(root);
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(".coordinator.conf.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(format!("NAME=locksmithd\nSTRATEGY={strategy}\nSTATE={state}\n").as_bytes())
        .map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)
}

/// Reboots the machine.
pub trait Rebooter: Send + Sync {
    /// Asks for the reboot; returns once it was accepted (the machine then goes down).
    fn reboot(&self) -> impl Future<Output = Result<(), NodeError>> + Send;
}

/// logind's `Reboot(false)` through `busctl`, or the configured shell command.
#[derive(Debug, Clone)]
pub struct CommandRebooter {
    argv: Vec<String>,
}

/// `org.freedesktop.login1.Manager.Reboot(false)` on the system bus (shared with the agent).
pub use ab_node::LOGIND_REBOOT;

impl CommandRebooter {
    /// `None`: logind. `Some(cmd)`: `sh -c cmd` (tests use a harmless command).
    pub fn new(command: Option<&str>) -> Self {
        let argv = match command {
            None => ab_node::logind_command(),
            Some(c) => vec!["sh".into(), "-c".into(), c.into()],
        };
        CommandRebooter { argv }
    }
}

impl Rebooter for CommandRebooter {
    async fn reboot(&self) -> Result<(), NodeError> {
        let argv = self.argv.clone();
        // The call blocks (and may sleep through ETXTBSY retries): keep it off the
        // runtime's worker threads.
        match tokio::task::spawn_blocking(move || ab_node::reboot::reboot(&argv)).await {
            Ok(result) => result.map_err(NodeError::from),
            // A blocking task is never cancelled once started; a panic is passed on.
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_and_conf() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let m = Markers::new(root, true);
        assert!(!m.reboot_needed() && !m.steady());
        assert!(Markers::new(root, false).steady());
        std::fs::create_dir_all(root.join("run")).unwrap();
        std::fs::write(root.join(REBOOT_NEEDED_MARKER), "").unwrap();
        write_steady(root, "4000.0.0").unwrap();
        assert!(m.reboot_needed() && m.steady());
        write_coordinator_conf(root, "etcd-lock", "reboot-planned").unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join(COORDINATOR_CONF)).unwrap(),
            "NAME=locksmithd\nSTRATEGY=etcd-lock\nSTATE=reboot-planned\n"
        );
    }

    #[test]
    fn machine_id_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            machine_id(dir.path())
                .unwrap_err()
                .to_string()
                .contains("etc/machine-id")
        );
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/machine-id"), "\n").unwrap();
        assert!(matches!(
            machine_id(dir.path()),
            Err(NodeError::EmptyMachineId { .. })
        ));
        std::fs::write(dir.path().join("etc/machine-id"), "0123abcd\n").unwrap();
        assert_eq!(machine_id(dir.path()).unwrap(), "0123abcd");
    }

    #[tokio::test]
    async fn command_rebooter_reports_failure() {
        CommandRebooter::new(Some("true")).reboot().await.unwrap();
        let err = CommandRebooter::new(Some("exit 3"))
            .reboot()
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("exited with exit status: 3"),
            "{err}"
        );
    }
}
