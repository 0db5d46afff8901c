//! `update-agent`'s command line, in the library so that the man page and
//! shell completions (`cargo run -p e2e --bin gen-docs`) are generated from
//! the definitions the binary parses with.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// `update-agent`'s command line.
#[derive(Debug, Parser)]
#[command(
    name = "update-agent",
    version,
    about = "A/B OS update agent (update_engine replacement)"
)]
pub struct Cli {
    /// What to run; the daemon when none is given.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The daemon's options (global: every subcommand takes them).
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// The options every subcommand takes.
#[derive(Debug, clap::Args, Clone)]
pub struct DaemonArgs {
    /// Directory that stands for `/` (tests and the demo use a tempdir).
    #[arg(long, default_value = "/", global = true)]
    pub root: PathBuf,
    /// Extra TOML settings file (host path), applied last.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Run one check-and-install cycle and exit (0 updated, 3 no update, 1 failed).
    #[arg(long, global = true)]
    pub once: bool,
    /// Serve D-Bus on this bus address instead of the system bus (tests).
    #[arg(long, global = true)]
    pub bus_address: Option<String>,
    /// Do not serve D-Bus (nodes or tests without a bus).
    #[arg(long, global = true)]
    pub no_dbus: bool,
    /// Serve Prometheus metrics on this unix socket (a node path, under
    /// --root), instead of the setting `metrics.socket`.
    #[arg(long, global = true)]
    pub metrics_socket: Option<PathBuf>,
    /// Do not serve metrics, whatever `metrics.enabled` says.
    #[arg(long, global = true)]
    pub no_metrics: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default).
    Daemon,
    /// Run the post-boot health gate once: bless the booted slot, or mark it
    /// bad and reboot into the previous one (exit 0: slot good, 1: failed).
    HealthGate,
    /// Inspect the configuration without starting anything.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `update-agent config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print every setting's merged value and the file it came from (or
    /// "default").
    Show {
        /// Print JSON: {"files": [...], "keys": [{"key", "value", "origin"}]}.
        #[arg(long)]
        json: bool,
    },
    /// Validate every settings file and update.conf (exit 0 ok, 1 with the
    /// file and key at fault).
    Check,
    /// Print the configuration reference (docs/configuration.md).
    Reference,
}
