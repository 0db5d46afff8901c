//! The command lines of `update-coordinator` and `locksmithctl`, in the
//! library so that their man pages and completions (`cargo run -p e2e --bin
//! gen-docs`) are generated from the definitions the binaries parse with.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// `update-coordinator`'s command line.
#[derive(Debug, Parser)]
#[command(
    name = "update-coordinator",
    version,
    about = "Reboot coordinator (locksmithd-compatible)"
)]
pub struct CoordinatorArgs {
    /// Root directory for every path read or written (tests use a temporary directory).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Serve Prometheus metrics on this unix socket (a node path, under --root).
    #[arg(long, default_value = crate::metrics::DEFAULT_SOCKET)]
    pub metrics_socket: PathBuf,
    /// Do not serve metrics.
    #[arg(long)]
    pub no_metrics: bool,
}

/// `locksmithctl`'s command line.
#[derive(Debug, Parser)]
#[command(
    name = "locksmithctl",
    version,
    about = "Manage the cluster reboot lock"
)]
pub struct LocksmithctlArgs {
    /// Root directory for update.conf and machine-id.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// etcd endpoints, comma-separated.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// CA certificate file for etcd's TLS (update.conf: LOCKSMITHD_ETCD_CAFILE).
    #[arg(long)]
    pub etcd_cafile: Option<String>,
    /// Client certificate file for etcd (LOCKSMITHD_ETCD_CERTFILE).
    #[arg(long)]
    pub etcd_certfile: Option<String>,
    /// Client key file for etcd (LOCKSMITHD_ETCD_KEYFILE).
    #[arg(long)]
    pub etcd_keyfile: Option<String>,
    /// etcd user name (LOCKSMITHD_ETCD_USERNAME).
    #[arg(long)]
    pub etcd_username: Option<String>,
    /// etcd password (LOCKSMITHD_ETCD_PASSWORD).
    #[arg(long)]
    pub etcd_password: Option<String>,
    /// Reboot group (a separate semaphore).
    #[arg(long)]
    pub group: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: LocksmithctlCommand,
}

/// `locksmithctl`'s subcommands.
#[derive(Debug, Subcommand)]
pub enum LocksmithctlCommand {
    /// Show free slots, max and the holders.
    Status,
    /// Take a slot for this machine (or ID).
    Lock { id: Option<String> },
    /// Release the slot of this machine or of ID (force-release a dead holder).
    Unlock { id: Option<String> },
    /// Set the number of nodes that may reboot at once.
    SetMax { max: i64 },
}
