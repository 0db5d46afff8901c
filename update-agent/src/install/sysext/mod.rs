//! The release's other images: the node's OEM system extension and the
//! official extensions the admin enabled, fetched from the same Omaha
//! answer as USR and placed where Flatcar's initrd looks for them — all
//! before the commit point, so the new slot never boots without them.
//!
//! What `flatcar-postinst` does with `download_sysext` (`flatcar-compat.md`
//! §5.6), done natively:
//! 1. [`plan`] decides which images are needed from the node's files and
//!    the new image's (pure);
//! 2. [`fetch`] streams each package through the same download chain and
//!    `payload::Applier` as USR (size, SHA-256, signature, extracted-image
//!    hash) into a hidden temporary file next to its destination, and gives
//!    it its final name only once verified;
//! 3. after the commit, older images are pruned ([`prune`]), never the
//!    running version's (the fallback slot boots with them) or `-initial`.

mod fetch;
pub mod manifest;
pub mod plan;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use omaha::response::Package;

pub use fetch::Fetcher;
use plan::{ImageFacts, Kind, NodeFacts, PlanError, Wanted};

use crate::config::Root;

/// Flatcar's extension settings and image directory (node paths).
pub const ETC_ENABLED: &str = "/etc/flatcar/enabled-sysext.conf";
/// Where enabled extensions' images go.
pub const EXTENSION_DIR: &str = "/etc/flatcar/sysext";
/// Where the OEM image goes when the OEM partition cannot take it.
pub const OEM_FALLBACK_DIR: &str = "/etc/flatcar/oem-sysext";
/// Hidden temporary files are `.<final name>.XXXXXX.partial`.
const PARTIAL_SUFFIX: &str = ".partial";

/// Why the extension step failed (downloads and payloads fail as
/// `InstallError::Extension`).
#[derive(Debug, thiserror::Error)]
pub enum SysextError {
    /// The plan could not be made.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A node or image file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// An image could not be written or named in its directory.
    #[error("cannot place {}", path.display())]
    Place {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// The OEM directory's paths (`install.oem_dir`, Flatcar's `/usr/share/oem`).
#[derive(Debug, Clone)]
pub struct OemDir(pub PathBuf);

impl OemDir {
    /// `<oem>/oem-release`.
    pub fn release(&self) -> PathBuf {
        self.0.join("oem-release")
    }
    /// `<oem>/sysext`: the OEM image and its flag files.
    pub fn sysext(&self) -> PathBuf {
        self.0.join("sysext")
    }
    /// `<oem>/bin/oem-postinst`: the OEM's post-install hook.
    pub fn hook(&self) -> PathBuf {
        self.0.join("bin/oem-postinst")
    }
}

fn read_or_empty(path: &Path) -> Result<String, SysextError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(SysextError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Reads what the node's files say about its extensions.
pub fn node_facts(root: &Root, oem: &OemDir) -> Result<NodeFacts, SysextError> {
    let oem_id = plan::oem_id(&read_or_empty(&root.join(oem.release()))?)?;
    let oem_active = oem_id.as_ref().is_some_and(|id| {
        root.join(oem.sysext())
            .join(format!("active-oem-{id}"))
            .exists()
    });
    Ok(NodeFacts {
        oem_id,
        oem_active,
        etc_enabled: read_or_empty(&root.join(ETC_ENABLED))?,
    })
}

/// Reads what the new USR image (mounted at `usr`) says.
pub fn image_facts(usr: &Path, oem_id: Option<&str>) -> Result<ImageFacts, SysextError> {
    Ok(ImageFacts {
        lists_oem: oem_id.is_some_and(|id| usr.join("share/flatcar/oems").join(id).exists()),
        default_enabled: read_or_empty(&usr.join("share/flatcar/enabled-sysext.conf"))?,
    })
}

/// Whether the extension step has anything to look at: the node has an
/// OEM or extension settings, or the answer offers extension packages.
pub fn relevant(node: &NodeFacts, offered: &[Package]) -> bool {
    node.oem_id.is_some() || !node.etc_enabled.trim().is_empty() || plan::offers_extensions(offered)
}

/// The images placed by this attempt, removed again if the attempt fails
/// before the commit point.
#[derive(Debug, Default)]
pub struct Placed {
    /// Final paths (node filesystem) of the new images.
    pub files: Vec<PathBuf>,
    /// Flag files created.
    pub flags: Vec<PathBuf>,
}

impl Placed {
    /// Removes what this attempt placed: the new version's images and
    /// flags (the node's older files were never touched).
    pub fn undo(&self) {
        for p in self.files.iter().chain(&self.flags) {
            if let Err(e) = fs::remove_file(p)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!("cannot remove {}: {e}", p.display());
            }
        }
    }
}

/// The directories an image may go to, in order.
fn destinations(root: &Root, oem: &OemDir, kind: Kind) -> Vec<PathBuf> {
    match kind {
        Kind::Oem => vec![root.join(oem.sysext()), root.join(OEM_FALLBACK_DIR)],
        Kind::Extension => vec![root.join(EXTENSION_DIR)],
    }
}

/// Removes the hidden temporary files of every extension directory (a
/// failed attempt's, or a killed agent's when starting afresh).
pub fn remove_partials(root: &Root, oem: &OemDir) {
    let all: Vec<PathBuf> = [Kind::Oem, Kind::Extension]
        .iter()
        .flat_map(|&k| destinations(root, oem, k))
        .collect();
    remove_stale_partials(&all);
}

/// Removes hidden temporary files a killed agent left in `dirs`.
fn remove_stale_partials(dirs: &[PathBuf]) {
    for dir in dirs {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(PARTIAL_SUFFIX) {
                tracing::info!("removing a stale partial image {}", entry.path().display());
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Fetches, verifies and places every chosen image for `version` (next to
/// those the release payload carried, `placed`), then the OEM flag files
/// when the node's OEM image (`oem_id`) is among them. On failure,
/// whatever this attempt placed is removed.
pub fn install(
    fetcher: &Fetcher<'_>,
    chosen: &[(Wanted, Package)],
    image: &ImageFacts,
    mut placed: Placed,
    oem_id: Option<&str>,
) -> Result<Placed, crate::install::InstallError> {
    remove_partials(fetcher.root(), fetcher.oem());
    let (root, oem) = (fetcher.root(), fetcher.oem());
    let result = chosen
        .iter()
        .try_for_each(|(w, p)| {
            let path = fetcher.fetch(w, p, &destinations(root, oem, w.kind))?;
            placed.files.push(path);
            Ok(())
        })
        .and_then(|()| match oem_id {
            Some(id) => write_oem_flags(fetcher, id, image.lists_oem, &mut placed),
            None => Ok(()),
        });
    match result {
        Ok(()) => Ok(placed),
        Err(e) => {
            placed.undo();
            Err(e)
        }
    }
}

fn write_oem_flags(
    fetcher: &Fetcher<'_>,
    id: &str,
    lists_oem: bool,
    placed: &mut Placed,
) -> Result<(), crate::install::InstallError> {
    let (root, oem) = (fetcher.root(), fetcher.oem());
    let running = fetcher.running_version();
    let sysext = root.join(oem.sysext());
    let keep_exists = [
        sysext.join(format!("oem-{id}-{running}.raw")),
        root.join(OEM_FALLBACK_DIR)
            .join(format!("oem-{id}-{running}.raw")),
        sysext.join(format!("oem-{id}-initial.raw")),
    ]
    .iter()
    .any(|p| p.exists());
    let active = sysext.join(format!("active-oem-{id}")).exists();
    for flag in plan::oem_flags(id, keep_exists, active, lists_oem) {
        let path = sysext.join(flag);
        fs::File::create(&path).map_err(|source| SysextError::Place {
            path: path.clone(),
            source,
        })?;
        placed.flags.push(path);
    }
    Ok(())
}

/// After the commit: removes the images neither slot boots with (Flatcar
/// prunes before the download; we wait until the new images are in and
/// committed). Failures are logged, never fatal: the update is staged.
pub fn prune(
    root: &Root,
    oem: &OemDir,
    node: &NodeFacts,
    image: &ImageFacts,
    running: &str,
    new: &str,
) {
    let listing = |dir: &Path| -> Vec<String> {
        fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut doomed = Vec::new();
    if let Some(id) = &node.oem_id {
        for dir in destinations(root, oem, Kind::Oem) {
            let names = listing(&dir);
            doomed.extend(
                plan::oem_prunable(&names, id, running, new)
                    .iter()
                    .map(|n| dir.join(n)),
            );
        }
    }
    if let Ok(enabled) = plan::enabled_extensions(&node.etc_enabled, &image.default_enabled) {
        let dir = root.join(EXTENSION_DIR);
        let names = listing(&dir);
        doomed.extend(
            plan::extensions_prunable(&names, &enabled, running, new)
                .iter()
                .map(|n| dir.join(n)),
        );
    }
    for path in doomed {
        match fs::remove_file(&path) {
            Ok(()) => tracing::info!("pruned {}", path.display()),
            Err(e) => tracing::warn!("cannot prune {}: {e}", path.display()),
        }
    }
}
