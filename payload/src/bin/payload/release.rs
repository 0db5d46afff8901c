//! `payload release`: what a release manager publishes for one version in
//! one command: the full payload and a delta from each earlier release
//! (`delta-<from>.gz`, the name the agent looks for), then the `<package>`
//! lines for an Omaha server: Nebraska takes `hash_sha256` as hex,
//! go-omaha as base64, so both are printed.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine as _;
use payload::generate::{GenOptions, PartitionInput};
use payload::keys::SigningKey;
use payload::mapped::MappedImage;
use payload::proto::ReleaseInfo;
use sha2::{Digest, Sha256};

use crate::{create, load_key};
use payload::cli::ReleaseArgs;

/// One written payload: its file name, size and SHA-256.
struct Written {
    name: String,
    size: u64,
    sha256: [u8; 32],
}

/// Generates the full payload and every delta into `--out`, then prints
/// their `<package>` lines.
pub(crate) fn release(a: ReleaseArgs) -> Result<()> {
    let keys: Vec<SigningKey> = a.keys.iter().map(|k| load_key(k)).collect::<Result<_>>()?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let opts = GenOptions {
        release: Some(ReleaseInfo {
            version: Some(a.version.clone()),
            app_id: a.app_id.clone(),
            board: a.board.clone(),
            channel: None,
        }),
        ..GenOptions::default()
    };
    let usr = MappedImage::open(&a.target)?;
    let kernel = a.kernel.as_deref().map(MappedImage::open).transpose()?;
    let mut written = vec![write_one(
        &a.out,
        &a.name,
        &opts,
        &keys,
        (&usr, None),
        kernel.as_ref().map(|k| (k, None)),
    )?];
    for (from, old_usr, old_kernel) in &a.from {
        let old_usr = MappedImage::open(old_usr)?;
        let old_kernel = old_kernel.as_deref().map(MappedImage::open).transpose()?;
        let kernel_pair = kernel.as_ref().map(|k| (k, old_kernel.as_ref()));
        let name = format!("delta-{from}.gz");
        written.push(write_one(
            &a.out,
            &name,
            &opts,
            &keys,
            (&usr, Some(&old_usr)),
            kernel_pair,
        )?);
    }
    print_packages(&written);
    Ok(())
}

/// Generates one payload (a delta where old images are given) into a
/// hidden file in `dir`, renamed to `name` once complete.
fn write_one(
    dir: &Path,
    name: &str,
    opts: &GenOptions,
    keys: &[SigningKey],
    usr: (&MappedImage, Option<&MappedImage>),
    kernel: Option<(&MappedImage, Option<&MappedImage>)>,
) -> Result<Written> {
    let mut parts = vec![PartitionInput {
        name: "usr".into(),
        new: usr.0,
        old: usr.1.map(|m| &**m),
    }];
    if let Some((new, old)) = kernel {
        parts.push(PartitionInput {
            name: "kernel".into(),
            new,
            old: old.map(|m| &**m),
        });
    }
    let unsigned =
        payload::generate::generate(&parts, opts).with_context(|| format!("generating {name}"))?;
    let tmp: PathBuf = dir.join(format!(".{name}.tmp"));
    {
        let mut out = create(&tmp)?;
        unsigned.write_with_keys(keys, &mut out)?;
        out.flush()?;
    }
    let (size, sha256) = hash_file(&tmp)?;
    let path = dir.join(name);
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {} ({size} bytes)", path.display());
    Ok(Written {
        name: name.to_string(),
        size,
        sha256,
    })
}

fn hash_file(path: &Path) -> Result<(u64, [u8; 32])> {
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, h.finalize().into()))
}

/// The `<package>` lines: the full payload first and required, the deltas
/// optional (stock Flatcar nodes ignore them).
fn print_packages(written: &[Written]) {
    println!("<!-- Nebraska (hash_sha256 in hex) -->");
    for (i, w) in written.iter().enumerate() {
        println!(
            r#"<package name="{}" size="{}" hash_sha256="{}" required="{}"/>"#,
            w.name,
            w.size,
            hex::encode(w.sha256),
            i == 0
        );
    }
    println!("<!-- go-omaha (hash_sha256 in base64) -->");
    for (i, w) in written.iter().enumerate() {
        println!(
            r#"<package name="{}" size="{}" hash_sha256="{}" required="{}"/>"#,
            w.name,
            w.size,
            base64::engine::general_purpose::STANDARD.encode(w.sha256),
            i == 0
        );
    }
}
