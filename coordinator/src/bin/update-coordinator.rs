//! `update-coordinator`: the standalone reboot coordinator, a locksmithd drop-in for nodes that
//! keep Flatcar's own update_engine (the update agent embeds the library instead).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use coordinator::{KeyValues, Outcome, Standalone};

/// Keys also taken from the environment (a unit's `Environment=` wins over update.conf, as
/// for locksmithd).
const ENV_KEYS: &[&str] = &[
    "REBOOT_STRATEGY",
    "REBOOT_WINDOW_START",
    "REBOOT_WINDOW_LENGTH",
    "LOCKSMITHD_REBOOT_WINDOW_START",
    "LOCKSMITHD_REBOOT_WINDOW_LENGTH",
    "LOCKSMITHD_ENDPOINT",
    "LOCKSMITHD_ETCD_CAFILE",
    "LOCKSMITHD_ETCD_CERTFILE",
    "LOCKSMITHD_ETCD_KEYFILE",
    "LOCKSMITHD_ETCD_USERNAME",
    "LOCKSMITHD_ETCD_PASSWORD",
    "LOCKSMITHD_GROUP",
];

#[derive(Debug, Parser)]
#[command(version, about = "Reboot coordinator (locksmithd-compatible)")]
struct Args {
    /// Root directory for every path read or written (tests use a temporary directory).
    #[arg(long, default_value = "/")]
    root: PathBuf,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}`: the message and each cause once, on one line.
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut env = KeyValues::default();
    for key in ENV_KEYS {
        if let Ok(v) = std::env::var(key) {
            env.set(key, &v);
        }
    }
    let coordinator =
        Standalone::from_root(&args.root, &env).context("starting the reboot coordinator")?;
    match coordinator
        .run()
        .await
        .context("running the reboot coordinator")?
    {
        Outcome::Disabled => Ok(()),
        Outcome::RebootRequested => {
            // The machine is going down; systemd stops us.
            tokio::signal::ctrl_c()
                .await
                .context("waiting for shutdown")?;
            Ok(())
        }
    }
}
