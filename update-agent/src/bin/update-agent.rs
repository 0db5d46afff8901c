//! `update-agent`: the update daemon.
//!
//! ```text
//! update-agent [daemon] [--root DIR] [--config FILE] [--once]
//!              [--metrics-socket PATH | --no-metrics]
//! update-agent health-gate [--root DIR] [--config FILE]
//! update-agent config show|check|reference [--root DIR] [--config FILE]
//! ```
//!
//! `--once` runs exactly one interactive check→install cycle and exits:
//! 0 = an update was installed (reboot to use it), 3 = no update (or one
//! is already staged), 1 = the check or install failed (the error is
//! printed).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use std::sync::Arc;

use ab_node::metrics_socket as serve;
use update_agent::cli::{Cli, Command, ConfigCommand, DaemonArgs};
use update_agent::config::Root;
use update_agent::config::settings::Settings;
use update_agent::daemon::{Daemon, Handle, Outcome};
use update_agent::dbus::daemon_engine::DaemonEngine;
use update_agent::dbus::{self, Bus};
use update_agent::metrics::NodeFiles;
use update_agent::slots::BootDisk;

#[path = "update-agent/config_cmd.rs"]
mod config_cmd;

/// Logs to the journal with its priorities when systemd connected stderr
/// to it (`JOURNAL_STREAM`), else to stderr, coloured only on a terminal.
fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let tty = std::io::stderr().is_terminal();
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && !tty
        && let Ok(journald) = tracing_journald::layer()
    {
        tracing_subscriber::registry()
            .with(filter())
            .with(journald.with_syslog_identifier("update_engine".into()))
            .init();
        return;
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_ansi(tty)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Daemon) {
        Command::Config(cmd) => {
            let root = Root::new(&cli.daemon.root);
            let extra = cli.daemon.config.as_deref();
            let result = match cmd {
                ConfigCommand::Show { json } => config_cmd::show(&root, extra, json),
                ConfigCommand::Check => config_cmd::check(&root, extra),
                ConfigCommand::Reference => {
                    config_cmd::print_reference();
                    Ok(())
                }
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("update-agent config: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Command::HealthGate => match run_health_gate(&cli.daemon) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("update-agent health-gate: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Daemon => match run_daemon(&cli.daemon) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("update-agent: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}

fn run_health_gate(args: &DaemonArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let root = Root::new(&args.root);
    let outcome = rt.block_on(update_agent::health::run_node(
        &root,
        args.config.as_deref(),
    ))?;
    println!("{outcome:?}");
    Ok(ExitCode::from(outcome.exit_code()))
}

/// Serves the daemon's metrics on `--metrics-socket`, else the setting
/// (unless `--no-metrics`). A socket that cannot be set up is logged, not
/// fatal: updates matter more than their metrics.
fn serve_metrics(
    args: &DaemonArgs,
    settings: &Settings,
    root: &Root,
    handle: &Handle,
) -> Option<tokio::task::JoinHandle<()>> {
    let socket = match (args.no_metrics, &args.metrics_socket) {
        (true, _) => return None,
        (false, Some(flag)) => flag,
        (false, None) => settings.metrics_socket.as_ref()?,
    };
    let files = NodeFiles {
        state_dir: root.join(&settings.state_dir),
    };
    let path = root.join(socket);
    match serve::bind(&path) {
        Ok(listener) => {
            tracing::info!("serving metrics on {}", path.display());
            let server = serve::serve(listener, files.render(handle.metrics()));
            Some(tokio::spawn(server))
        }
        Err(e) => {
            let e = update_agent::error_chain(&e);
            tracing::error!("not serving metrics: {e}");
            None
        }
    }
}

fn run_daemon(args: &DaemonArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let root = Root::new(&args.root);
    let mut daemon = Daemon::new(root.clone(), args.config.clone()).context("loading settings")?;
    if args.once {
        let outcome = rt.block_on(daemon.run_once());
        match &outcome {
            Outcome::Updated { version } => {
                println!("UPDATE_STATUS_UPDATED_NEED_REBOOT {version}")
            }
            Outcome::NoUpdate => println!("UPDATE_STATUS_IDLE no update"),
            Outcome::AlreadyUpdated => {
                println!("UPDATE_STATUS_UPDATED_NEED_REBOOT (already staged)")
            }
            Outcome::Failed(e) => {
                println!("UPDATE_STATUS_IDLE failed");
                let code = omaha::NamedErrorCode(e.code);
                eprintln!("update-agent: error {code} ({}): {}", e.kind, e.message);
            }
        }
        return Ok(ExitCode::from(outcome.exit_code() as u8));
    }
    let settings = daemon.settings().clone();
    let _metrics = rt.block_on(async { serve_metrics(args, &settings, &root, &daemon.handle()) });
    if args.no_dbus {
        rt.block_on(daemon.run());
        return Ok(ExitCode::SUCCESS);
    }
    // The D-Bus face (com.coreos.update1): locksmithd, FLUO and
    // update_engine_client talk to the daemon through it.
    let boot = match update_agent::slots::detect(&root, &settings) {
        Ok(plan) => Some(BootDisk {
            path: plan.disk,
            booted: plan.booted,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "booted slot unknown: D-Bus Rollback is unavailable");
            None
        }
    };
    let engine = Arc::new(DaemonEngine::new(
        daemon.handle(),
        root.clone(),
        &root.join(&settings.state_dir),
        boot,
    ));
    let bus = args.bus_address.clone().map_or(Bus::System, Bus::Address);
    rt.block_on(async {
        let service = dbus::serve(engine, &bus)
            .await
            .context("serving com.coreos.update1 on D-Bus")?;
        daemon.run().await;
        drop(service);
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
