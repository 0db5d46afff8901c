//! Configuration: Flatcar's `update.conf`/release lookup and node identity
//! ([`flatcar`]), and the agent's own TOML settings with drop-ins
//! ([`settings`]).
//!
//! Every path is resolved under a [`Root`], so tests run against a tempdir
//! laid out like a Flatcar node.

pub mod flatcar;
pub mod health;
pub mod reference;
pub mod settings;

use std::path::{Path, PathBuf};

pub use flatcar::{FlatcarConfig, NodeIdentity, set_group};
pub use settings::{Settings, SettingsError};

/// The directory that stands for `/` (usually `/` itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root(PathBuf);

impl Root {
    /// A root at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self(dir.into())
    }

    /// The real root, `/`.
    pub fn system() -> Self {
        Self(PathBuf::from("/"))
    }

    /// The root directory itself.
    pub fn dir(&self) -> &Path {
        &self.0
    }

    /// A host path under this root as the node sees it (`/etc/…`); a path
    /// outside the root as it is.
    pub fn node_path(&self, host: &Path) -> PathBuf {
        match host.strip_prefix(&self.0) {
            Ok(rel) if self.0 != Path::new("/") => Path::new("/").join(rel),
            _ => host.to_path_buf(),
        }
    }

    /// `path` (absolute, as on the node) resolved under this root.
    pub fn join(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        let relative = path.strip_prefix("/").unwrap_or(path);
        self.0.join(relative)
    }
}

impl Default for Root {
    fn default() -> Self {
        Self::system()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_strips_leading_slash() {
        let root = Root::new("/tmp/x");
        assert_eq!(
            root.join("/etc/machine-id"),
            PathBuf::from("/tmp/x/etc/machine-id")
        );
        assert_eq!(root.join("etc/a"), PathBuf::from("/tmp/x/etc/a"));
        assert_eq!(Root::system().join("/etc/a"), PathBuf::from("/etc/a"));
        assert_eq!(
            root.node_path(Path::new("/tmp/x/etc/a")),
            Path::new("/etc/a")
        );
        assert_eq!(
            root.node_path(Path::new("/home/c.toml")),
            Path::new("/home/c.toml")
        );
    }
}
