//! Extension images carried as partitions of the release's own (v2)
//! payload: one signature over USR, kernel and every extension, applied in
//! the same stream. Flatcar signs each extension separately, so a node
//! could mix images of different releases; a multi-image payload cannot.
//!
//! The partition names are read from the manifest as it streams by (not
//! yet verified: they only decide which hidden files to open; the applier
//! verifies the manifest before the first write and every partition after
//! its last). The images go to hidden files next to their destinations with
//! fixed names, so a restarted daemon resumes into them; they get their
//! final names once the new image says which are needed.

use std::fs::{self, File, OpenOptions};
use std::io::{Cursor, Read};
use std::path::PathBuf;

use payload::PayloadError;
use payload::header::{Header, Limits};
use payload::plan::Plan;

use super::plan::Wanted;
use super::{OemDir, PARTIAL_SUFFIX, Placed, SysextError, destinations};
use crate::config::Root;
use crate::fsutil;
use crate::install::InstallError;
use crate::install::stream::payload_error;

/// An extension partition being written: its slot name and hidden file.
#[derive(Debug)]
pub struct Written {
    /// The image.
    pub wanted: Wanted,
    /// The hidden file it is written to.
    pub partial: PathBuf,
}

/// The payload stream again after [`peek_partitions`]: the bytes read,
/// then the rest.
pub type Replayed<R> = std::io::Chain<Cursor<Vec<u8>>, R>;

/// Reads the payload's header and manifest off `r` and returns the same
/// bytes again (chained with the rest) and the manifest's partition names.
/// A manifest that does not parse yields no names: the applier reports it.
pub fn peek_partitions<R: Read>(mut r: R) -> Result<(Replayed<R>, Vec<String>), InstallError> {
    let limits = Limits::default();
    let mut buf = Vec::new();
    let take = |r: &mut R, buf: &mut Vec<u8>, n: u64| -> Result<(), InstallError> {
        let offset = buf.len() as u64;
        r.by_ref()
            .take(n)
            .read_to_end(buf)
            .map_err(|source| payload_error(PayloadError::Read { offset, source }))?;
        Ok(())
    };
    take(&mut r, &mut buf, 20)?;
    let prefix: Option<[u8; 20]> = buf.get(..20).and_then(|b| b.try_into().ok());
    let Some(mut header) = prefix.and_then(|p| Header::parse_prefix(&p, &limits).ok()) else {
        return Ok((Cursor::new(buf).chain(r), Vec::new()));
    };
    let v2 = header.major == 2;
    if v2 {
        take(&mut r, &mut buf, 4)?;
        let size: Option<[u8; 4]> = buf.get(20..24).and_then(|b| b.try_into().ok());
        if size.is_none_or(|s| header.set_v2_signature_size(s, &limits).is_err()) {
            return Ok((Cursor::new(buf).chain(r), Vec::new()));
        }
    }
    let start = buf.len();
    take(&mut r, &mut buf, header.manifest_size)?;
    let manifest = &buf[start..];
    let plan = if v2 {
        Plan::from_v2(manifest, &limits)
    } else {
        Plan::from_v1(manifest, &limits)
    };
    let names = plan
        .map(|p| p.partitions.into_iter().map(|p| p.name).collect())
        .unwrap_or_default();
    Ok((Cursor::new(buf).chain(r), names))
}

/// Opens the hidden file of each candidate: `.<final name>.partial` in the
/// first destination directory that takes it (or already holds it, when
/// resuming). `fresh` truncates.
pub fn open(
    root: &Root,
    oem: &OemDir,
    version: &str,
    candidates: &[Wanted],
    fresh: bool,
) -> Result<Vec<(Written, File)>, SysextError> {
    candidates
        .iter()
        .map(|w| {
            let name = format!(".{}{PARTIAL_SUFFIX}", w.file_name(version));
            let dirs = destinations(root, oem, w.kind);
            let existing = dirs.iter().map(|d| d.join(&name)).find(|p| p.exists());
            let mut last = None;
            for path in existing
                .into_iter()
                .chain(dirs.iter().map(|d| d.join(&name)))
            {
                let opened = path
                    .parent()
                    .map_or(Ok(()), fs::create_dir_all)
                    .and_then(|()| {
                        OpenOptions::new()
                            .read(true)
                            .write(true)
                            .create(true)
                            .truncate(fresh)
                            .open(&path)
                    });
                match opened {
                    Ok(file) => {
                        let written = Written {
                            wanted: w.clone(),
                            partial: path,
                        };
                        return Ok((written, file));
                    }
                    Err(source) => last = Some(SysextError::Place { path, source }),
                }
            }
            Err(last.expect("at least one destination"))
        })
        .collect()
}

/// Gives the wanted images among `written` their final names and removes
/// the others; returns what was placed and the wanted images the payload
/// did not carry (to be fetched as packages).
pub fn place(
    written: &[Written],
    wanted: &[Wanted],
    version: &str,
) -> Result<(Placed, Vec<Wanted>), SysextError> {
    let mut placed = Placed::default();
    let result = written.iter().try_for_each(|w| {
        if !wanted.contains(&w.wanted) {
            let _ = fs::remove_file(&w.partial);
            return Ok(());
        }
        let dir = w.partial.parent().unwrap_or(std::path::Path::new("/"));
        let dest = dir.join(w.wanted.file_name(version));
        fsutil::durable_rename(&w.partial, &dest).map_err(|e| SysextError::Place {
            path: e.path,
            source: e.source,
        })?;
        tracing::info!(
            "{} verified (release payload) and placed at {}",
            w.wanted.stem(),
            dest.display()
        );
        placed.files.push(dest);
        Ok(())
    });
    if let Err(e) = result {
        placed.undo();
        return Err(e);
    }
    let rest = wanted
        .iter()
        .filter(|w| !written.iter().any(|x| &x.wanted == *w))
        .cloned()
        .collect();
    Ok((placed, rest))
}
