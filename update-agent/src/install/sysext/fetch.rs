//! One extension image: the package streams from the answer's codebases
//! through the same chain as USR,
//!
//! ```text
//! HTTP body → ChannelReader → Progress → payload::Applier → hidden temp file
//! ```
//!
//! and gets its final name (an atomic rename in its own directory) only
//! after the applier checked its size and SHA-256 against the answer, the
//! signature against the node's keyring and the extracted image against the
//! signed partition hash.

use std::cell::Cell;
use std::fs::File;
use std::path::{Path, PathBuf};

use omaha::response::Package;
use payload::{Applier, ApplyOptions, Expectations, Keyring, PayloadError};

use super::plan::Wanted;
use super::{OemDir, PARTIAL_SUFFIX, SysextError};
use crate::config::Root;
use crate::fsm::Event;
use crate::install::stream::{self, Progress};
use crate::install::{InstallError, InstallJob, Net, Reporter};
use crate::metrics::Image;

/// Everything fetching an image needs; `done` counts the bytes of every
/// image so far, for the progress of the whole release.
pub struct Fetcher<'a> {
    /// The install.
    pub job: &'a InstallJob,
    /// The trusted keys.
    pub keys: &'a Keyring,
    /// The network side.
    pub net: &'a Net,
    /// Progress events.
    pub report: Reporter<'a>,
    /// The OEM directory.
    pub oem: OemDir,
    /// Bytes of the release downloaded so far (USR included).
    pub done: Cell<u64>,
}

impl std::fmt::Debug for Fetcher<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("version", &self.job.info.version)
            .field("done", &self.done.get())
            .finish_non_exhaustive()
    }
}

impl Fetcher<'_> {
    pub(super) fn root(&self) -> &Root {
        &self.job.root
    }

    pub(super) fn oem(&self) -> &OemDir {
        &self.oem
    }

    pub(super) fn running_version(&self) -> &str {
        &self.job.running_version
    }

    /// Fetches `package` for `w` into the first of `dirs` that can take
    /// it. Only a failure to write there moves on to the next directory
    /// (the OEM partition is small); a bad download or payload does not.
    pub(super) fn fetch(
        &self,
        w: &Wanted,
        package: &Package,
        dirs: &[PathBuf],
    ) -> Result<PathBuf, InstallError> {
        let name = w.file_name(&self.job.info.version);
        let start = self.done.get();
        let mut last = None;
        for dir in dirs {
            self.done.set(start);
            match self.fetch_into(package, dir, &name) {
                Ok(path) => {
                    tracing::info!("{} verified and placed at {}", package.name, path.display());
                    return Ok(path);
                }
                Err(e) if is_destination_error(&e) => {
                    tracing::warn!(
                        "cannot write {} in {}: {}",
                        name,
                        dir.display(),
                        crate::error_chain(&e)
                    );
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            SysextError::Place {
                path: PathBuf::from(&name),
                source: std::io::Error::other("no destination directory"),
            }
            .into()
        }))
    }

    fn fetch_into(
        &self,
        package: &Package,
        dir: &Path,
        name: &str,
    ) -> Result<PathBuf, InstallError> {
        let place = |path: &Path| {
            let path = path.to_path_buf();
            move |source| InstallError::from(SysextError::Place { path, source })
        };
        std::fs::create_dir_all(dir).map_err(place(dir))?;
        // Dropped (so removed) on every error below.
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(PARTIAL_SUFFIX)
            .tempfile_in(dir)
            .map_err(place(dir))?;
        let file = tmp.as_file().try_clone().map_err(place(tmp.path()))?;
        self.apply(package, file).map_err(|e| match e {
            // The destination could not take the image: a placement
            // failure (the next directory may), not the package's fault.
            InstallError::Payload(p) if matches!(*p, PayloadError::TargetIo { .. }) => {
                let PayloadError::TargetIo { source, .. } = *p else {
                    unreachable!()
                };
                SysextError::Place {
                    path: dir.join(name),
                    source,
                }
                .into()
            }
            e => InstallError::Extension {
                package: package.name.clone(),
                source: Box::new(e),
            },
        })?;
        let dest = dir.join(name);
        // Still removed on an error; kept (it has been renamed) on success.
        let tmp = tmp.into_temp_path();
        crate::fsutil::durable_rename(&tmp, &dest).map_err(|e| {
            InstallError::from(SysextError::Place {
                path: e.path,
                source: e.source,
            })
        })?;
        let _ = tmp.keep();
        Ok(dest)
    }

    /// Streams the package into `file` through the applier.
    fn apply(&self, package: &Package, file: File) -> Result<(), InstallError> {
        let info = &self.job.info;
        let urls = info.package_urls(package);
        let image = if package.name.starts_with("oem-") {
            Image::Oem
        } else {
            Image::Extension
        };
        let received = self.net.metrics.download_counter(image, false);
        let size = package.size;
        let body = stream::download(self.net, self.job, (&urls, received), size, 0, size);
        let progress = Progress::new(body, self.done.get(), self.report);
        let mut slot = payload::Slot::new(file);
        slot.truncate = true;
        let mut slots = payload::Slots::new();
        // A full payload of one image: Flatcar's extension payloads carry
        // it as the (v1) root partition, ours as `usr` too.
        slots.insert("usr", slot);
        let opts = ApplyOptions {
            expected_size: Some(package.size),
            expected_sha256: package.sha256,
            expect: Expectations {
                version: Some(info.version.clone()),
                board: Some(self.job.board.clone()).filter(|b| !b.is_empty()),
                // v1 extension payloads carry no release info; the image
                // is bound to the release by the answer's hash and size.
                v1_unbound: true,
                ..Expectations::default()
            },
            ..ApplyOptions::default()
        };
        let result = Applier::new(self.keys)
            .options(opts)
            .apply(progress, &mut slots)
            .map_err(stream::payload_error);
        self.done.set(self.done.get() + package.size);
        (self.report)(Event::DownloadProgress {
            bytes: self.done.get(),
        });
        result.map(|_| ())
    }
}

/// Whether `e` says the destination could not take the file (rather than
/// something wrong with the download or the payload).
fn is_destination_error(e: &InstallError) -> bool {
    matches!(e, InstallError::Sysext(SysextError::Place { .. }))
}
