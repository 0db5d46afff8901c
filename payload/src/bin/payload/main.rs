//! `payload`: generate, sign, inspect, verify and apply CrAU update payloads.
//!
//! Exit codes: 0 success, 1 other errors (I/O, generation), 2 usage,
//! 3 a signature or hash did not verify, 4 the payload is malformed,
//! 5 writing the target failed. Errors print Flatcar's error code too.

mod apply;
use payload::cli as args;
mod commands;
mod release;
mod summary;

use anyhow::{Context, Result};
use args::{Cli, Cmd};
use clap::Parser;
use payload::PayloadError;
use payload::keys::SigningKey;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        let (code, prefix) = match e.downcast_ref::<PayloadError>() {
            Some(p) => (
                exit_code(p),
                format!(" (flatcar code {}, {})", p.flatcar_code(), p.error_kind()),
            ),
            None => (1, String::new()),
        };
        // `{:#}`: the message and each cause once, on one line.
        eprintln!("error{prefix}: {e:#}");
        std::process::exit(code);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Keygen(a) => commands::keygen(a),
        Cmd::Generate(a) => commands::generate(a),
        Cmd::Release(a) => release::release(a),
        Cmd::Sign(a) => commands::sign(a),
        Cmd::Hash(a) => commands::hash(a),
        Cmd::InsertSignature(a) => commands::insert_signature(a),
        Cmd::Verify(a) => commands::verify(a),
        Cmd::Inspect(a) => commands::inspect(a),
        Cmd::Apply(a) => apply::apply(a),
    }
}

fn exit_code(e: &PayloadError) -> i32 {
    use PayloadError::*;
    match e {
        MetadataSignatureMissing
        | MetadataSignatureMismatch
        | PayloadSignatureMismatch
        | PayloadSignatureMissing(_)
        | OperationHashMismatch { .. }
        | OperationHashMissing { .. }
        | SourceHashMismatch { .. }
        | PayloadHashMismatch { .. }
        | PartitionHashMismatch { .. }
        | Keyring(_)
        | ReleaseMismatch(_) => 3,
        TargetIo { .. } => 5,
        Io { .. } | Generate(_) | Read { .. } => 1,
        _ => 4,
    }
}

fn load_key(p: &Path) -> Result<SigningKey> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("reading key {}", p.display()))?;
    Ok(SigningKey::parse_pem(&text)?)
}

fn create(p: &Path) -> Result<BufWriter<File>> {
    Ok(BufWriter::with_capacity(
        1 << 20,
        File::create(p).with_context(|| format!("creating {}", p.display()))?,
    ))
}

fn hex32(s: &str) -> Result<[u8; 32]> {
    hex::decode(s)
        .ok()
        .and_then(|v| v.try_into().ok())
        .context("expected 64 hex characters")
}
