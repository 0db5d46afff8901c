//! `update-coordinator`: the standalone reboot coordinator, a locksmithd drop-in for nodes that
//! keep Flatcar's own update_engine (the update agent embeds the library instead).

use ab_node::metrics_socket;
use anyhow::Context as _;
use clap::Parser;
use coordinator::cli::CoordinatorArgs as Args;
use coordinator::metrics::Metrics;
use coordinator::{KeyValues, Outcome, Standalone};
use std::sync::Arc;

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

/// Serves the metrics on `--metrics-socket`; a socket that cannot be set up
/// is logged, not fatal (reboot coordination matters more).
fn serve_metrics(args: &Args, metrics: &Metrics) -> Option<tokio::task::JoinHandle<()>> {
    let relative = args
        .metrics_socket
        .strip_prefix("/")
        .unwrap_or(&args.metrics_socket);
    let path = args.root.join(relative);
    match metrics_socket::bind(&path) {
        Ok(listener) => {
            tracing::info!("serving metrics on {}", path.display());
            let m = metrics.clone();
            let render: metrics_socket::Render = Arc::new(move || m.encode());
            Some(tokio::spawn(metrics_socket::serve(listener, render)))
        }
        Err(e) => {
            tracing::error!("not serving metrics: {e:#}", e = anyhow::Error::from(e));
            None
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
    let _metrics = (!args.no_metrics).then(|| serve_metrics(&args, &coordinator.metrics));
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
