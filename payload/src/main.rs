//! `payload`: generate, sign, inspect, verify and apply CrAU update payloads.
//!
//! Exit codes: 0 success, 1 other errors (I/O, generation), 2 usage,
//! 3 a signature or hash did not verify, 4 the payload is malformed,
//! 5 writing the target failed. Errors print Flatcar's error code too.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use payload::generate::{Compressor, GenOptions, PartitionInput};
use payload::keys::{Keyring, SigningKey};
use payload::mapped::MappedImage;
use payload::proto::ReleaseInfo;
use payload::write::{Signed, UnsignedPayload};
use payload::{Applier, ApplyOptions, PayloadError, Slot, Slots};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "payload",
    version,
    about = "CrAU update payloads: generate, sign, verify, apply"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum KeyType {
    Ed25519,
    Rsa2048,
    Rsa4096,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a key pair: OUT.key (PKCS#8 PEM, keep secret) and OUT.pub.
    Keygen {
        #[arg(long, value_enum, default_value = "ed25519")]
        r#type: KeyType,
        out: PathBuf,
    },
    /// Build a payload from images (full, or delta with --source).
    Generate {
        /// New USR image.
        #[arg(long)]
        target: PathBuf,
        /// Old USR image: makes a delta payload.
        #[arg(long)]
        source: Option<PathBuf>,
        /// Kernel image.
        #[arg(long)]
        kernel: Option<PathBuf>,
        /// Old kernel image (delta).
        #[arg(long)]
        old_kernel: Option<PathBuf>,
        /// Extra image NAME=PATH (system extensions), repeatable.
        #[arg(long = "image", value_parser = parse_kv)]
        images: Vec<(String, PathBuf)>,
        /// Payload major version: 2 (default) or 1 (stock Flatcar, RSA only).
        #[arg(long, default_value_t = 2)]
        major: u64,
        /// Also try zstd (project minor version 64; AOSP tools cannot read it).
        /// zstd is already the v2 default; this adds it to --compressors / --aosp.
        #[arg(long)]
        zstd: bool,
        /// AOSP-compatible v2 payload: xz + bzip2 (minor 0 full / 4 delta)
        /// instead of the default zstd (minor 64).
        #[arg(long, conflicts_with = "compressors")]
        aosp: bool,
        /// Delta: also bsdiff changed data against the old data at the same
        /// position, not only against content-matched old blocks (slower).
        #[arg(long)]
        thorough_diff: bool,
        /// Compressors to try, comma separated (xz,bzip2,zstd); default zstd
        /// (v2) or bzip2 (v1, Flatcar).
        #[arg(long, value_delimiter = ',')]
        compressors: Option<Vec<String>>,
        /// zstd level when zstd is tried.
        #[arg(long, default_value_t = 19)]
        zstd_level: i32,
        /// Signing key (repeatable). Without any, the payload is written unsigned.
        #[arg(long = "key")]
        keys: Vec<PathBuf>,
        #[arg(long)]
        version: Option<String>,
        #[arg(long)]
        app_id: Option<String>,
        #[arg(long)]
        board: Option<String>,
        #[arg(long)]
        channel: Option<String>,
        /// Build timestamp (seconds), for downgrade protection.
        #[arg(long)]
        timestamp: Option<i64>,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// (Re-)sign a payload with local keys.
    Sign {
        input: PathBuf,
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// HSM step 1: print the digests to sign for the given signature sizes.
    Hash {
        input: PathBuf,
        /// Size of each signature in bytes (64 Ed25519, 256 RSA-2048, 512 RSA-4096).
        #[arg(long = "sig-size", required = true, value_delimiter = ',')]
        sig_sizes: Vec<usize>,
    },
    /// HSM step 2: insert raw signatures (files) over the digests of `hash`.
    InsertSignature {
        input: PathBuf,
        /// Raw signature over the metadata digest, one per --sig-size, in order (v2).
        #[arg(long = "metadata-signature")]
        metadata: Vec<PathBuf>,
        /// Raw signature over the payload digest, one per --sig-size, in order.
        #[arg(long = "payload-signature", required = true)]
        payload: Vec<PathBuf>,
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Check signatures, every blob hash and the size; writes nothing.
    Verify {
        input: PathBuf,
        #[arg(long)]
        keys: PathBuf,
        /// Expected SHA-256 (hex) of the whole file.
        #[arg(long)]
        sha256: Option<String>,
    },
    /// Show partitions, operations, signatures and versions.
    Inspect {
        input: PathBuf,
        #[arg(long)]
        json: bool,
        /// Verify the metadata signature with this keyring.
        #[arg(long)]
        keys: Option<PathBuf>,
    },
    /// Apply a payload (file or - for stdin) to images or devices.
    Apply {
        input: PathBuf,
        #[arg(long)]
        keys: PathBuf,
        /// USR target (file or block device).
        #[arg(long)]
        target: Option<PathBuf>,
        /// Old USR slot, for delta payloads.
        #[arg(long)]
        source: Option<PathBuf>,
        /// Kernel target file (truncated to the kernel's size).
        #[arg(long)]
        kernel: Option<PathBuf>,
        /// Other partitions NAME=PATH, repeatable.
        #[arg(long = "partition", value_parser = parse_kv)]
        partitions: Vec<(String, PathBuf)>,
        /// Verify but do not write partitions that have no target.
        #[arg(long)]
        skip_missing: bool,
        #[arg(long)]
        sha256: Option<String>,
        #[arg(long)]
        no_progress: bool,
        /// Write a JSON checkpoint here after every operation.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
}

fn parse_kv(s: &str) -> Result<(String, PathBuf), String> {
    let (k, v) = s.split_once('=').ok_or("expected NAME=PATH")?;
    Ok((k.to_string(), PathBuf::from(v)))
}

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
        eprintln!("error{prefix}: {e:#}");
        std::process::exit(code);
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

/// Images are mapped, not read: generation then holds no copy of them.
fn read_image(p: &Path) -> Result<MappedImage> {
    Ok(MappedImage::open(p)?)
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

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Keygen { r#type, out } => {
            let k = match r#type {
                KeyType::Ed25519 => SigningKey::generate_ed25519(),
                KeyType::Rsa2048 => SigningKey::generate_rsa(2048)?,
                KeyType::Rsa4096 => SigningKey::generate_rsa(4096)?,
            };
            let key = out.with_extension("key");
            let pubk = out.with_extension("pub");
            std::fs::write(&key, k.to_pem()?)
                .with_context(|| format!("writing {}", key.display()))?;
            std::fs::write(&pubk, k.public().to_pem()?)
                .with_context(|| format!("writing {}", pubk.display()))?;
            println!(
                "{} {}",
                pubk.display(),
                hex::encode(k.public().fingerprint())
            );
        }
        Cmd::Generate {
            target,
            source,
            kernel,
            old_kernel,
            images,
            major,
            zstd,
            aosp,
            thorough_diff,
            zstd_level,
            compressors,
            keys,
            version,
            app_id,
            board,
            channel,
            timestamp,
            output,
        } => {
            let mut opts = if major == 1 {
                GenOptions::flatcar_v1()
            } else if aosp {
                GenOptions::aosp()
            } else {
                GenOptions::default()
            };
            if let Some(list) = compressors {
                opts.compressors = list
                    .iter()
                    .map(|c| match c.as_str() {
                        "xz" => Ok(Compressor::Xz),
                        "bzip2" | "bz2" => Ok(Compressor::Bzip2),
                        "zstd" => Ok(Compressor::Zstd),
                        other => bail!("unknown compressor {other}"),
                    })
                    .collect::<Result<_>>()?;
            }
            if zstd && !opts.compressors.contains(&Compressor::Zstd) {
                opts.compressors.push(Compressor::Zstd);
            }
            opts.timestamp = timestamp;
            opts.zstd_level = zstd_level;
            opts.thorough_diff = thorough_diff;
            if version.is_some() || app_id.is_some() || board.is_some() || channel.is_some() {
                opts.release = Some(ReleaseInfo {
                    version,
                    app_id,
                    board,
                    channel,
                });
            }
            let signers: Vec<SigningKey> =
                keys.iter().map(|k| load_key(k)).collect::<Result<_>>()?;
            let mut data: Vec<(String, MappedImage, Option<MappedImage>)> = Vec::new();
            data.push((
                "usr".into(),
                read_image(&target)?,
                source.as_deref().map(read_image).transpose()?,
            ));
            if let Some(k) = kernel {
                data.push((
                    "kernel".into(),
                    read_image(&k)?,
                    old_kernel.as_deref().map(read_image).transpose()?,
                ));
            }
            for (name, p) in images {
                data.push((name, read_image(&p)?, None));
            }
            let parts: Vec<PartitionInput> = data
                .iter()
                .map(|(n, new, old)| PartitionInput {
                    name: n.clone(),
                    new,
                    old: old.as_deref(),
                })
                .collect();
            let unsigned = payload::generate::generate(&parts, &opts)?;
            let mut out = create(&output)?;
            if signers.is_empty() {
                unsigned.write_unsigned(&mut out)?;
                eprintln!(
                    "wrote unsigned {}; sign it with `payload sign` or `hash` + `insert-signature`",
                    output.display()
                );
            } else {
                unsigned.write_with_keys(&signers, &mut out)?;
            }
        }
        Cmd::Sign {
            input,
            keys,
            output,
        } => {
            let signers: Vec<SigningKey> =
                keys.iter().map(|k| load_key(k)).collect::<Result<_>>()?;
            let p = UnsignedPayload::from_file(&input)?;
            p.write_with_keys(&signers, &mut create(&output)?)?;
        }
        Cmd::Hash { input, sig_sizes } => {
            let d = UnsignedPayload::from_file(&input)?.digests(&sig_sizes)?;
            if let Some(m) = d.metadata {
                println!("metadata {}", hex::encode(m));
            }
            println!("payload {}", hex::encode(d.payload));
        }
        Cmd::InsertSignature {
            input,
            metadata,
            payload,
            output,
        } => {
            let read = |ps: &[PathBuf]| -> Result<Vec<Vec<u8>>> {
                ps.iter()
                    .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
                    .collect()
            };
            let (msigs, psigs) = (read(&metadata)?, read(&payload)?);
            let sizes: Vec<usize> = psigs.iter().map(Vec::len).collect();
            let p = UnsignedPayload::from_file(&input)?;
            p.write_signed(
                &sizes,
                |which, _| {
                    Ok(if which == Signed::Metadata {
                        msigs.clone()
                    } else {
                        psigs.clone()
                    })
                },
                &mut create(&output)?,
            )?;
        }
        Cmd::Verify {
            input,
            keys,
            sha256,
        } => {
            let ring = Keyring::load_dir(&keys)?;
            let opts = ApplyOptions {
                expected_sha256: sha256.as_deref().map(hex32).transpose()?,
                expected_size: Some(std::fs::metadata(&input)?.len()),
                ..Default::default()
            };
            let f = File::open(&input).with_context(|| format!("opening {}", input.display()))?;
            let r = payload::verify(BufReader::with_capacity(1 << 20, f), &ring, opts)?;
            println!(
                "OK: major {} minor {}, signed by {}, sha256 {}",
                r.major, r.minor, r.payload_signed_by, r.payload_sha256
            );
        }
        Cmd::Inspect { input, json, keys } => {
            let ring = keys.as_deref().map(Keyring::load_dir).transpose()?;
            let f = File::open(&input).with_context(|| format!("opening {}", input.display()))?;
            let s = payload::inspect::inspect(&f, ring.as_ref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print_summary(&s);
            }
        }
        Cmd::Apply {
            input,
            keys,
            target,
            source,
            kernel,
            partitions,
            skip_missing,
            sha256,
            no_progress,
            checkpoint,
        } => {
            let ring = Keyring::load_dir(&keys)?;
            let mut slots = Slots::new();
            slots.skip_missing = skip_missing;
            let open_rw = |p: &Path| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(p)
                    .with_context(|| format!("opening target {}", p.display()))
            };
            if let Some(t) = &target {
                let mut slot = Slot::new(open_rw(t)?);
                if let Some(s) = &source {
                    slot = slot.with_source(
                        File::open(s).with_context(|| format!("opening source {}", s.display()))?,
                    );
                }
                slots.insert("usr", slot);
            }
            if let Some(k) = &kernel {
                let mut slot = Slot::new(open_rw(k)?);
                slot.truncate = true;
                slots.insert("kernel", slot);
            }
            for (name, p) in &partitions {
                slots.insert(name.clone(), Slot::new(open_rw(p)?));
            }
            let (reader, size): (Box<dyn Read>, Option<u64>) = if input.as_os_str() == "-" {
                (Box::new(std::io::stdin().lock()), None)
            } else {
                let f =
                    File::open(&input).with_context(|| format!("opening {}", input.display()))?;
                let len = f.metadata()?.len();
                (Box::new(f), Some(len))
            };
            let opts = ApplyOptions {
                expected_sha256: sha256.as_deref().map(hex32).transpose()?,
                ..Default::default()
            };
            let bar = if no_progress {
                indicatif::ProgressBar::hidden()
            } else {
                indicatif::ProgressBar::new(size.unwrap_or(0))
            };
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let mut applier = Applier::new(&ring).options(opts).on_progress(|p| {
                bar.set_length(p.bytes_total);
                bar.set_position(p.bytes_read);
            });
            if let Some(cp) = checkpoint.clone() {
                applier = applier.on_checkpoint(move |c| {
                    if let Ok(s) = serde_json::to_vec(c) {
                        let tmp = cp.with_extension("tmp");
                        if std::fs::write(&tmp, s).is_ok() {
                            let _ = std::fs::rename(&tmp, &cp);
                        }
                    }
                });
            }
            let report = applier.apply(BufReader::with_capacity(1 << 20, reader), &mut slots)?;
            bar.finish_and_clear();
            for (name, size) in &report.written {
                println!("{name}: {size} bytes written and verified");
            }
            for name in &report.skipped {
                println!("{name}: verified, not written (no target)");
            }
            println!(
                "payload signed by {}, sha256 {}",
                report.payload_signed_by, report.payload_sha256
            );
        }
    }
    Ok(())
}

fn print_summary(s: &payload::inspect::Summary) {
    println!("CrAU major {} minor {} ({})", s.major, s.minor, s.kind);
    println!(
        "file {} bytes: metadata {}, manifest {}, data {}",
        s.file_size, s.metadata_size, s.manifest_size, s.data_size
    );
    if let Some(r) = &s.release {
        println!(
            "release: version {} app {} board {} channel {}",
            r.version.as_deref().unwrap_or("-"),
            r.app_id.as_deref().unwrap_or("-"),
            r.board.as_deref().unwrap_or("-"),
            r.channel.as_deref().unwrap_or("-")
        );
    }
    if let Some(t) = s.timestamp {
        println!("timestamp: {t}");
    }
    for p in &s.partitions {
        println!(
            "partition {}: {} bytes, sha256 {}",
            p.name, p.new_size, p.new_sha256
        );
        if let Some(o) = p.old_size {
            println!("  delta from {o} bytes");
        }
        for (ty, st) in &p.operations {
            println!(
                "  {:<14} {:>7} ops {:>12} data bytes {:>5.1}% {:>12} dst bytes",
                ty, st.count, st.data_bytes, st.data_share, st.dst_bytes
            );
        }
    }
    let list = |v: &[payload::inspect::SignatureSummary]| {
        v.iter()
            .map(|s| format!("{}B", s.size))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("metadata signatures: [{}]", list(&s.metadata_signatures));
    println!("payload signatures: [{}]", list(&s.payload_signatures));
    if let Some(k) = &s.metadata_signed_by {
        println!("metadata verified by {k}");
    }
    let _ = std::io::stdout().flush();
}
