//! `payload apply`: open the slots, stream the payload into them with a
//! progress bar, report what was written.

use crate::hex32;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use payload::cli::ApplyArgs;
use payload::keys::Keyring;
use payload::{Applier, ApplyOptions, Slot, Slots};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// `payload apply`.
pub(crate) fn apply(a: ApplyArgs) -> Result<()> {
    let ring = Keyring::load_dir(&a.keys)?;
    let mut slots = open_slots(&a)?;
    let (reader, size) = open_input(&a.input)?;
    let opts = ApplyOptions {
        expected_sha256: a.sha256.as_deref().map(hex32).transpose()?,
        ..Default::default()
    };
    let bar = progress_bar(a.no_progress, size);
    let mut applier = Applier::new(&ring).options(opts).on_progress(|p| {
        bar.set_length(p.bytes_total);
        bar.set_position(p.bytes_read);
    });
    if let Some(cp) = a.checkpoint.clone() {
        applier = applier.on_checkpoint(move |c| save_checkpoint(&cp, c));
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
    Ok(())
}

/// The targets named on the command line: usr (with its old slot for
/// deltas), the kernel (truncated to its new size) and the others.
fn open_slots(a: &ApplyArgs) -> Result<Slots> {
    let mut slots = Slots::new();
    slots.skip_missing = a.skip_missing;
    if let Some(t) = &a.target {
        let mut slot = Slot::new(open_rw(t)?);
        if let Some(s) = &a.source {
            slot = slot.with_source(
                File::open(s).with_context(|| format!("opening source {}", s.display()))?,
            );
        }
        slots.insert("usr", slot);
    }
    if let Some(k) = &a.kernel {
        let mut slot = Slot::new(open_rw(k)?);
        slot.truncate = true;
        slots.insert("kernel", slot);
    }
    for (name, p) in &a.partitions {
        slots.insert(name.clone(), Slot::new(open_rw(p)?));
    }
    Ok(slots)
}

/// A target, created if missing and never truncated (it may be a device).
fn open_rw(p: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(p)
        .with_context(|| format!("opening target {}", p.display()))
}

/// The payload file, or stdin for `-`; with its size when known.
fn open_input(input: &Path) -> Result<(Box<dyn Read>, Option<u64>)> {
    if input.as_os_str() == "-" {
        return Ok((Box::new(std::io::stdin().lock()), None));
    }
    let f = File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let len = f.metadata()?.len();
    Ok((Box::new(f), Some(len)))
}

fn progress_bar(hidden: bool, size: Option<u64>) -> ProgressBar {
    let bar = if hidden {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(size.unwrap_or(0))
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Writes the checkpoint as JSON through a temp file and a rename, so a
/// crash leaves the previous one whole. Best effort: a failed write only
/// means a resume starts further back.
fn save_checkpoint(path: &Path, c: &payload::Checkpoint) {
    if let Ok(s) = serde_json::to_vec(c) {
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, s).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }
}
