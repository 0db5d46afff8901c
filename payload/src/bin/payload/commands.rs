//! The subcommands other than `apply`, one function each.

use crate::{create, hex32, load_key};
use anyhow::{Context, Result, bail};
use payload::ApplyOptions;
use payload::cli::{
    GenerateArgs, HashArgs, InsertSignatureArgs, InspectArgs, KeyType, KeygenArgs, SignArgs,
    VerifyArgs,
};
use payload::generate::{Compressor, GenOptions, PartitionInput};
use payload::keys::{Keyring, SigningKey};
use payload::mapped::MappedImage;
use payload::proto::ReleaseInfo;
use payload::write::{Signed, UnsignedPayload};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// `payload keygen`: OUT.key and OUT.pub; prints the public key's fingerprint.
pub(crate) fn keygen(a: KeygenArgs) -> Result<()> {
    let k = match a.r#type {
        KeyType::Ed25519 => SigningKey::generate_ed25519(),
        KeyType::Rsa2048 => SigningKey::generate_rsa(2048)?,
        KeyType::Rsa4096 => SigningKey::generate_rsa(4096)?,
    };
    let key = a.out.with_extension("key");
    let pubk = a.out.with_extension("pub");
    std::fs::write(&key, k.to_pem()?).with_context(|| format!("writing {}", key.display()))?;
    std::fs::write(&pubk, k.public().to_pem()?)
        .with_context(|| format!("writing {}", pubk.display()))?;
    println!(
        "{} {}",
        pubk.display(),
        hex::encode(k.public().fingerprint())
    );
    Ok(())
}

/// `payload generate`: maps the images, generates, and writes the payload
/// signed (with `--key`) or unsigned.
pub(crate) fn generate(a: GenerateArgs) -> Result<()> {
    let opts = gen_options(&a)?;
    let signers = load_keys(&a.keys)?;
    let images = map_images(&a)?;
    let parts: Vec<PartitionInput> = images
        .iter()
        .map(|(n, new, old)| PartitionInput {
            name: n.clone(),
            new,
            old: old.as_deref(),
        })
        .collect();
    let unsigned = payload::generate::generate(&parts, &opts)?;
    let mut out = create(&a.output)?;
    if signers.is_empty() {
        unsigned.write_unsigned(&mut out)?;
        eprintln!(
            "wrote unsigned {}; sign it with `payload sign` or `hash` + `insert-signature`",
            a.output.display()
        );
    } else {
        unsigned.write_with_keys(&signers, &mut out)?;
    }
    Ok(())
}

/// The generation settings the flags ask for.
fn gen_options(a: &GenerateArgs) -> Result<GenOptions> {
    let mut opts = if a.major == 1 {
        GenOptions::flatcar_v1()
    } else if a.aosp {
        GenOptions::aosp()
    } else {
        GenOptions::default()
    };
    if let Some(list) = &a.compressors {
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
    if a.zstd && !opts.compressors.contains(&Compressor::Zstd) {
        opts.compressors.push(Compressor::Zstd);
    }
    opts.timestamp = a.timestamp;
    opts.zstd_level = a.zstd_level;
    opts.thorough_diff = a.thorough_diff;
    if a.version.is_some() || a.app_id.is_some() || a.board.is_some() || a.channel.is_some() {
        opts.release = Some(ReleaseInfo {
            version: a.version.clone(),
            app_id: a.app_id.clone(),
            board: a.board.clone(),
            channel: a.channel.clone(),
        });
    }
    Ok(opts)
}

/// Each image of the release as (name, new, old), mapped: usr, then the
/// kernel, then the extra images.
fn map_images(a: &GenerateArgs) -> Result<Vec<(String, MappedImage, Option<MappedImage>)>> {
    let mut images = vec![(
        "usr".to_string(),
        map_image(&a.target)?,
        a.source.as_deref().map(map_image).transpose()?,
    )];
    if let Some(k) = &a.kernel {
        images.push((
            "kernel".into(),
            map_image(k)?,
            a.old_kernel.as_deref().map(map_image).transpose()?,
        ));
    }
    for (name, p) in &a.images {
        images.push((name.clone(), map_image(p)?, None));
    }
    Ok(images)
}

/// Images are mapped, not read: generation then holds no copy of them.
fn map_image(p: &Path) -> Result<MappedImage> {
    Ok(MappedImage::open(p)?)
}

fn load_keys(paths: &[PathBuf]) -> Result<Vec<SigningKey>> {
    paths.iter().map(|k| load_key(k)).collect()
}

/// `payload sign`: (re-)signs with local keys.
pub(crate) fn sign(a: SignArgs) -> Result<()> {
    let signers = load_keys(&a.keys)?;
    let p = UnsignedPayload::from_file(&a.input)?;
    p.write_with_keys(&signers, &mut create(&a.output)?)?;
    Ok(())
}

/// `payload hash`: the digests an HSM signs.
pub(crate) fn hash(a: HashArgs) -> Result<()> {
    let d = UnsignedPayload::from_file(&a.input)?.digests(&a.sig_sizes)?;
    if let Some(m) = d.metadata {
        println!("metadata {}", hex::encode(m));
    }
    println!("payload {}", hex::encode(d.payload));
    Ok(())
}

/// `payload insert-signature`: writes the payload with the HSM's signatures.
pub(crate) fn insert_signature(a: InsertSignatureArgs) -> Result<()> {
    let read = |ps: &[PathBuf]| -> Result<Vec<Vec<u8>>> {
        ps.iter()
            .map(|p| std::fs::read(p).with_context(|| format!("reading {}", p.display())))
            .collect()
    };
    let (msigs, psigs) = (read(&a.metadata)?, read(&a.payload)?);
    let sizes: Vec<usize> = psigs.iter().map(Vec::len).collect();
    let p = UnsignedPayload::from_file(&a.input)?;
    p.write_signed(
        &sizes,
        |which, _| {
            Ok(if which == Signed::Metadata {
                msigs.clone()
            } else {
                psigs.clone()
            })
        },
        &mut create(&a.output)?,
    )?;
    Ok(())
}

/// `payload verify`: every check of an apply, nothing written.
pub(crate) fn verify(a: VerifyArgs) -> Result<()> {
    let ring = Keyring::load_dir(&a.keys)?;
    let opts = ApplyOptions {
        expected_sha256: a.sha256.as_deref().map(hex32).transpose()?,
        expected_size: Some(std::fs::metadata(&a.input)?.len()),
        ..Default::default()
    };
    let f = File::open(&a.input).with_context(|| format!("opening {}", a.input.display()))?;
    let r = payload::verify(BufReader::with_capacity(1 << 20, f), &ring, opts)?;
    println!(
        "OK: major {} minor {}, signed by {}, sha256 {}",
        r.major, r.minor, r.payload_signed_by, r.payload_sha256
    );
    Ok(())
}

/// `payload inspect`: the summary as text or JSON.
pub(crate) fn inspect(a: InspectArgs) -> Result<()> {
    let ring = a.keys.as_deref().map(Keyring::load_dir).transpose()?;
    let f = File::open(&a.input).with_context(|| format!("opening {}", a.input.display()))?;
    let s = payload::inspect::inspect(&f, ring.as_ref())?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        crate::summary::print_summary(&s);
    }
    Ok(())
}
