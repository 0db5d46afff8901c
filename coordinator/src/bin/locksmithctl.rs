//! `locksmithctl`: inspect and administer locksmith's reboot semaphore in etcd (v3 API).
//! Defaults come from update.conf (`LOCKSMITHD_*`); flags override them. Go-style single-dash
//! flags (`-endpoint=…`) are accepted as locksmithctl's were.

use anyhow::{Context as _, bail};
use clap::Parser;
use coordinator::cli::{LocksmithctlArgs as Args, LocksmithctlCommand as Command};
use coordinator::lock::Release;
use coordinator::lock::etcd::{EtcdClient, EtcdLock};
use coordinator::{Config, KeyValues};

/// `-endpoint=x` → `--endpoint=x` (Go's flag package accepts one dash).
fn go_style(args: impl Iterator<Item = String>) -> Vec<String> {
    args.map(|a| {
        if a.len() > 2 && a.starts_with('-') && !a.starts_with("--") {
            format!("-{a}")
        } else {
            a
        }
    })
    .collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse_from(go_style(std::env::args()));
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}`: the message and each cause once, on one line.
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut kv = KeyValues::default();
    let flags = [
        ("LOCKSMITHD_ENDPOINT", &args.endpoint),
        ("LOCKSMITHD_ETCD_CAFILE", &args.etcd_cafile),
        ("LOCKSMITHD_ETCD_CERTFILE", &args.etcd_certfile),
        ("LOCKSMITHD_ETCD_KEYFILE", &args.etcd_keyfile),
        ("LOCKSMITHD_ETCD_USERNAME", &args.etcd_username),
        ("LOCKSMITHD_ETCD_PASSWORD", &args.etcd_password),
        ("LOCKSMITHD_GROUP", &args.group),
    ];
    for (key, value) in flags {
        if let Some(v) = value {
            kv.set(key, v);
        }
    }
    kv.fill_from(KeyValues::load(&args.root)?);
    kv.set("REBOOT_STRATEGY", "etcd-lock");
    let config = Config::from_values(&kv).context("configuration")?;
    let this = || coordinator::node::machine_id(&args.root);
    let id = match &args.command {
        Command::Lock { id: Some(id) } | Command::Unlock { id: Some(id) } => id.clone(),
        Command::Lock { id: None } | Command::Unlock { id: None } => this()?,
        Command::Status | Command::SetMax { .. } => String::new(),
    };
    let lock = EtcdLock::new(EtcdClient::new(&config)?, config.group.as_deref(), &id);
    match args.command {
        Command::Status => {
            let (sem, _) = lock.read().await.context("reading the semaphore")?;
            println!("Available: {}\nMax: {}", sem.semaphore, sem.max);
            if !sem.holders().is_empty() {
                println!("\nMACHINE ID");
                for h in sem.holders() {
                    println!("{h}");
                }
            }
        }
        Command::Lock { .. } => {
            let r = lock.update(|s| s.lock(&id)).await.context("locking")?;
            r.with_context(|| format!("locking for {id}"))?;
        }
        Command::Unlock { .. } => match coordinator::lock::Lock::release(&lock)
            .await
            .context("unlocking")?
        {
            Release::Released => {}
            Release::NotHeld => bail!("{id} does not hold the lock"),
        },
        Command::SetMax { max } => {
            let (old, _) = lock.read().await.context("reading the semaphore")?;
            let sem = lock
                .update(|s| s.set_max(max))
                .await
                .context("setting max")??;
            println!("Old-Max: {}\nMax: {}", old.max, sem.max);
        }
    }
    Ok(())
}
