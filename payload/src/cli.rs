//! `payload`'s command line: one argument struct per subcommand. In the
//! library so that the man page and completions (`cargo run -p e2e --bin
//! gen-docs`) are generated from the definitions the binary parses with.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "payload",
    version,
    about = "CrAU update payloads: generate, sign, verify, apply"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum KeyType {
    Ed25519,
    Rsa2048,
    Rsa4096,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a key pair: OUT.key (PKCS#8 PEM, keep secret) and OUT.pub.
    Keygen(KeygenArgs),
    /// Build a payload from images (full, or delta with --source).
    Generate(GenerateArgs),
    /// A release for an Omaha server: the full payload and a delta from
    /// each earlier release, and the `<package>` lines to paste.
    Release(ReleaseArgs),
    /// (Re-)sign a payload with local keys.
    Sign(SignArgs),
    /// HSM step 1: print the digests to sign for the given signature sizes.
    Hash(HashArgs),
    /// HSM step 2: insert raw signatures (files) over the digests of `hash`.
    InsertSignature(InsertSignatureArgs),
    /// Check signatures, every blob hash and the size; writes nothing.
    Verify(VerifyArgs),
    /// Show partitions, operations, signatures and versions.
    Inspect(InspectArgs),
    /// Apply a payload (file or - for stdin) to images or devices.
    Apply(ApplyArgs),
}

// Arguments of `payload keygen`.
#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// The key type.
    #[arg(long, value_enum, default_value = "ed25519")]
    pub r#type: KeyType,
    /// Path prefix: writes OUT.key and OUT.pub.
    pub out: PathBuf,
}

// Arguments of `payload release`.
#[derive(Args, Debug)]
pub struct ReleaseArgs {
    /// New USR image.
    #[arg(long)]
    pub target: PathBuf,
    /// New kernel image.
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// An earlier release to make a delta from, VERSION=USR[,KERNEL]
    /// (repeatable): written as `delta-VERSION.gz`.
    #[arg(long = "from", value_parser = parse_from)]
    pub from: Vec<(String, PathBuf, Option<PathBuf>)>,
    /// Directory to write the payloads to.
    #[arg(long)]
    pub out: PathBuf,
    /// The full payload's file name.
    #[arg(long, default_value = "flatcar_production_update.gz")]
    pub name: String,
    /// Signing key (repeatable; at least one).
    #[arg(long = "key", required = true)]
    pub keys: Vec<PathBuf>,
    /// The release version, e.g. 3600.0.0 (signed into the payload).
    #[arg(long)]
    pub version: String,
    /// The Omaha app id signed into the payload.
    #[arg(long)]
    pub app_id: Option<String>,
    /// The board signed into the payload, e.g. amd64-usr (the agent refuses another board's payload).
    #[arg(long)]
    pub board: Option<String>,
}

// Arguments of `payload generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// New USR image.
    #[arg(long)]
    pub target: PathBuf,
    /// Old USR image: makes a delta payload.
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// Kernel image.
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Old kernel image (delta).
    #[arg(long)]
    pub old_kernel: Option<PathBuf>,
    /// Extra image NAME=PATH (system extensions), repeatable.
    #[arg(long = "image", value_parser = parse_kv)]
    pub images: Vec<(String, PathBuf)>,
    /// Payload major version: 2 (default) or 1 (stock Flatcar, RSA only).
    #[arg(long, default_value_t = 2)]
    pub major: u64,
    /// Also try zstd (project minor version 64; AOSP tools cannot read it).
    /// zstd is already the v2 default; this adds it to --compressors / --aosp.
    #[arg(long)]
    pub zstd: bool,
    /// AOSP-compatible v2 payload: xz + bzip2 (minor 0 full / 4 delta)
    /// instead of the default zstd (minor 64).
    #[arg(long, conflicts_with = "compressors")]
    pub aosp: bool,
    /// Delta: also bsdiff changed data against the old data at the same
    /// position, not only against content-matched old blocks (slower).
    #[arg(long)]
    pub thorough_diff: bool,
    /// Compressors to try, comma separated (xz,bzip2,zstd); default zstd
    /// (v2) or bzip2 (v1, Flatcar).
    #[arg(long, value_delimiter = ',')]
    pub compressors: Option<Vec<String>>,
    /// zstd level when zstd is tried.
    #[arg(long, default_value_t = 19)]
    pub zstd_level: i32,
    /// Signing key (repeatable). Without any, the payload is written unsigned.
    #[arg(long = "key")]
    pub keys: Vec<PathBuf>,
    /// The release version, e.g. 3600.0.0 (signed into the payload).
    #[arg(long)]
    pub version: Option<String>,
    /// The Omaha app id signed into the payload.
    #[arg(long)]
    pub app_id: Option<String>,
    /// The board signed into the payload, e.g. amd64-usr (the agent refuses another board's payload).
    #[arg(long)]
    pub board: Option<String>,
    /// The channel signed into the payload.
    #[arg(long)]
    pub channel: Option<String>,
    /// Build timestamp (seconds), for downgrade protection.
    #[arg(long)]
    pub timestamp: Option<i64>,
    /// Where to write the result.
    #[arg(short, long)]
    pub output: PathBuf,
}

// Arguments of `payload sign`.
#[derive(Args, Debug)]
pub struct SignArgs {
    /// The payload file.
    pub input: PathBuf,
    /// Signing key (repeatable; at least one).
    #[arg(long = "key", required = true)]
    pub keys: Vec<PathBuf>,
    /// Where to write the result.
    #[arg(short, long)]
    pub output: PathBuf,
}

// Arguments of `payload hash`.
#[derive(Args, Debug)]
pub struct HashArgs {
    /// The payload file.
    pub input: PathBuf,
    /// Size of each signature in bytes (64 Ed25519, 256 RSA-2048, 512 RSA-4096).
    #[arg(long = "sig-size", required = true, value_delimiter = ',')]
    pub sig_sizes: Vec<usize>,
}

// Arguments of `payload insert-signature`.
#[derive(Args, Debug)]
pub struct InsertSignatureArgs {
    /// The payload file.
    pub input: PathBuf,
    /// Raw signature over the metadata digest, one per --sig-size, in order (v2).
    #[arg(long = "metadata-signature")]
    pub metadata: Vec<PathBuf>,
    /// Raw signature over the payload digest, one per --sig-size, in order.
    #[arg(long = "payload-signature", required = true)]
    pub payload: Vec<PathBuf>,
    /// Where to write the result.
    #[arg(short, long)]
    pub output: PathBuf,
}

// Arguments of `payload verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The payload file.
    pub input: PathBuf,
    /// Directory of trusted public keys (`*.pub`, `*.pem`).
    #[arg(long)]
    pub keys: PathBuf,
    /// Expected SHA-256 (hex) of the whole file.
    #[arg(long)]
    pub sha256: Option<String>,
}

// Arguments of `payload inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The payload file.
    pub input: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Verify the metadata signature with this keyring.
    #[arg(long)]
    pub keys: Option<PathBuf>,
}

// Arguments of `payload apply`.
#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// The payload file.
    pub input: PathBuf,
    /// Directory of trusted public keys (`*.pub`, `*.pem`).
    #[arg(long)]
    pub keys: PathBuf,
    /// USR target (file or block device).
    #[arg(long)]
    pub target: Option<PathBuf>,
    /// Old USR slot, for delta payloads.
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// Kernel target file (truncated to the kernel's size).
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// Other partitions NAME=PATH, repeatable.
    #[arg(long = "partition", value_parser = parse_kv)]
    pub partitions: Vec<(String, PathBuf)>,
    /// Verify but do not write partitions that have no target.
    #[arg(long)]
    pub skip_missing: bool,
    /// Expected SHA-256 (hex) of the whole file.
    #[arg(long)]
    pub sha256: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Write a JSON checkpoint here after every operation.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
}

/// `NAME=PATH`, for repeatable image and partition arguments.
/// `VERSION=USR[,KERNEL]` of `payload release --from`.
fn parse_from(s: &str) -> Result<(String, PathBuf, Option<PathBuf>), String> {
    let (version, paths) = s.split_once('=').ok_or("expected VERSION=USR[,KERNEL]")?;
    if version.is_empty() || version.contains('/') {
        return Err(format!("{version:?} is not a version"));
    }
    let (usr, kernel) = match paths.split_once(',') {
        Some((u, k)) => (u, Some(PathBuf::from(k))),
        None => (paths, None),
    };
    Ok((version.to_string(), PathBuf::from(usr), kernel))
}

fn parse_kv(s: &str) -> Result<(String, PathBuf), String> {
    let (k, v) = s.split_once('=').ok_or("expected NAME=PATH")?;
    Ok((k.to_string(), PathBuf::from(v)))
}
