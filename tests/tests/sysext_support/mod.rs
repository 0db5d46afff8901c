//! The release, node and checks shared by the extension tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::fixture::{self, BOARD, Node, PAYLOAD_NAME, USR_MIB};
use e2e::{OmahaServer, UpdateSpec};

/// The offered version.
pub const NEW: &str = "3600.0.0";
/// Every extension package the server offers.
pub const OFFERED: [&str; 5] = [
    "oem-azure.gz",
    "oem-gce.gz",
    "flatcar-zfs.gz",
    "flatcar-podman.gz",
    "flatcar-python.gz",
];
/// The ones the Azure node of [`azure_node`] needs.
pub const NEEDED: [&str; 3] = ["oem-azure.gz", "flatcar-zfs.gz", "flatcar-podman.gz"];

/// A release: a v1 USR image (listing the `azure` OEM, enabling `podman`
/// and `python` by default), its kernel and payload, and five extension
/// packages.
pub struct Release {
    pub usr: Vec<u8>,
    pub payload: Vec<u8>,
    /// The new image's `share/flatcar/enabled-sysext.conf`.
    pub defaults: String,
    /// (package name, image, package bytes)
    pub packages: Vec<(String, Vec<u8>, Vec<u8>)>,
}

impl Release {
    pub fn new() -> Self {
        let defaults = "podman\npython # default\n".to_string();
        let usr = fixture::usr_fs_image_with(
            NEW,
            BOARD,
            (USR_MIB << 20) as usize,
            5,
            1 << 20,
            &[
                ("share/flatcar/oems/azure", "azure\n"),
                ("share/flatcar/enabled-sysext.conf", &defaults),
            ],
        );
        let kernel = format!("kernel of {NEW}\n").repeat(300).into_bytes();
        let payload = fixture::payload_v1(&usr, &kernel);
        let packages = OFFERED
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let image = fixture::image_bytes(100 + i as u64, (192 << 10) + i * 4096);
                let package = fixture::sysext_payload_v1(&image);
                (name.to_string(), image, package)
            })
            .collect();
        Self {
            usr,
            payload,
            defaults,
            packages,
        }
    }

    /// Serves every file and returns the offer listing them all.
    pub fn offer(&self, server: &OmahaServer) -> UpdateSpec {
        server.serve_file(PAYLOAD_NAME, self.payload.clone());
        let mut spec =
            UpdateSpec::for_payload(NEW, &server.files_url(), PAYLOAD_NAME, &self.payload);
        for (name, _, package) in &self.packages {
            server.serve_file(name, package.clone());
            spec = spec.with_package(name, package);
        }
        spec
    }

    /// The image inside package `name`.
    pub fn image(&self, name: &str) -> &[u8] {
        &self.packages.iter().find(|p| p.0 == name).unwrap().1
    }

    /// The package bytes of `name`.
    pub fn package(&self, name: &str) -> &[u8] {
        &self.packages.iter().find(|p| p.0 == name).unwrap().2
    }

    /// USR plus the packages the Azure node needs.
    pub fn needed_bytes(&self) -> u64 {
        let extra: usize = NEEDED.iter().map(|n| self.package(n).len()).sum();
        (self.payload.len() + extra) as u64
    }
}

/// Makes `node` an Azure node running OEM sysexts' predecessor layout:
/// the running version's OEM image, an older one, `zfs` enabled and
/// `python` disabled in `/etc`, a stale `python` image, and an OEM hook
/// that logs its arguments. Returns the files before the update.
pub fn azure_node(node: &Node) -> BTreeMap<String, Vec<u8>> {
    let w = |path: &str, data: &[u8]| {
        let p = node.path(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    };
    w("/usr/share/oem/oem-release", b"ID=azure\nVERSION_ID=1\n");
    w(
        "/usr/share/oem/sysext/oem-azure-3510.2.0.raw",
        b"running oem",
    );
    w("/usr/share/oem/sysext/oem-azure-3400.0.0.raw", b"old oem");
    w("/etc/flatcar/enabled-sysext.conf", b"zfs\n-python\n");
    w(
        "/etc/flatcar/sysext/flatcar-zfs-3510.2.0.raw",
        b"running zfs",
    );
    w("/etc/flatcar/sysext/flatcar-python-3510.2.0.raw", b"python");
    let log = node.path("/oem-hook.log");
    let hook = format!(
        "#!/bin/sh\n. \"$2/share/flatcar/release\"\necho \"$1 $FLATCAR_RELEASE_VERSION\" > {}\n",
        log.display()
    );
    w("/usr/share/oem/bin/oem-postinst", hook.as_bytes());
    use std::os::unix::fs::PermissionsExt;
    let perms = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(node.path("/usr/share/oem/bin/oem-postinst"), perms).unwrap();
    snapshot(node)
}

/// Every file under the OEM directory and `/etc/flatcar` (node path → bytes).
pub fn snapshot(node: &Node) -> BTreeMap<String, Vec<u8>> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                let key = format!("/{}", p.strip_prefix(root).unwrap().display());
                out.insert(key, std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    let mut out = BTreeMap::new();
    for d in ["/usr/share/oem", "/etc/flatcar"] {
        walk(&node.path(d), node.root(), &mut out);
    }
    out
}

/// Hidden partial files left anywhere in the extension directories.
pub fn partials(node: &Node) -> Vec<String> {
    snapshot(node)
        .into_keys()
        .filter(|k| k.ends_with(".partial"))
        .collect()
}

/// What Flatcar's initrd would not find when `version` boots: an
/// independent reading of its rules (`flatcar-compat.md` §5.6): the OEM
/// image in `/oem/sysext` (here the OEM directory) or
/// `/etc/flatcar/oem-sysext`, and every extension enabled by `/etc`'s list
/// and the image's defaults, minus `/etc`'s `-NAME` lines.
pub fn initrd_missing(node: &Node, version: &str, image_defaults: &str) -> Vec<String> {
    let read = |p: &str| std::fs::read_to_string(node.path(p)).unwrap_or_default();
    let mut missing = Vec::new();
    let oem_id = read("/usr/share/oem/oem-release")
        .lines()
        .find_map(|l| l.strip_prefix("ID=").map(str::to_string));
    if let Some(id) = oem_id {
        let name = format!("oem-{id}-{version}.raw");
        let found = ["/usr/share/oem/sysext", "/etc/flatcar/oem-sysext"]
            .iter()
            .any(|d| node.exists(&format!("{d}/{name}")));
        if !found {
            missing.push(name);
        }
    }
    let etc = read("/etc/flatcar/enabled-sysext.conf");
    let names = |text: &str| -> Vec<String> {
        text.lines()
            .map(|l| l.split('#').next().unwrap().trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    };
    let disabled: Vec<String> = names(&etc)
        .iter()
        .filter_map(|n| n.strip_prefix('-').map(str::to_string))
        .collect();
    for n in names(&etc).into_iter().chain(names(image_defaults)) {
        if n.starts_with('-') || disabled.contains(&n) {
            continue;
        }
        let path = format!("/etc/flatcar/sysext/flatcar-{n}-{version}.raw");
        if !node.exists(&path) {
            missing.push(path);
        }
    }
    missing
}

/// A tmpfs mounted over a node directory (its files copied in first),
/// unmounted on drop: a read-only or full file system for one directory.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `opts` e.g. `ro,size=1m` or `size=64k`.
    pub fn mount_over(node: &Node, dir: &str, opts: &str) -> Self {
        let path = node.path(dir);
        std::fs::create_dir_all(&path).unwrap();
        let saved = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
            assert!(o.status.success(), "{args:?}: {o:?}");
        };
        let (p, s) = (path.to_str().unwrap(), saved.path().to_str().unwrap());
        run(&["cp", "-a", &format!("{p}/."), s]);
        let rw_opts: Vec<&str> = opts.split(',').filter(|o| *o != "ro").collect();
        run(&["mount", "-t", "tmpfs", "-o", &rw_opts.join(","), "tmpfs", p]);
        let guard = Self(path.clone());
        run(&["cp", "-a", &format!("{s}/."), p]);
        if opts.split(',').any(|o| o == "ro") {
            run(&["mount", "-o", "remount,ro", p]);
        }
        guard
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
