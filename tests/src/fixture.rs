//! A Flatcar-like node in a tempdir for install tests: a sparse GPT disk
//! image (USR-A booted, USR-B empty), the kernel directory, the release and
//! update.conf files, the agent's settings, and a trusted signing key to
//! build payloads with.
//!
//! Nothing here touches a real disk: the "disk" is `<root>/disk.img`.

use std::path::{Path, PathBuf};
use std::process::Command;

use cgpt::Slot;
use payload::SigningKey;
use payload::generate::{GenOptions, PartitionInput};
use payload::proto::ReleaseInfo;
use sha2::{Digest, Sha256};

/// Size of each USR slot in the test image.
pub const USR_MIB: u64 = 8;
/// The running version.
pub const RUNNING: &str = "3510.2.0";
/// The board.
pub const BOARD: &str = "amd64-usr";
/// Payload file name on the server.
pub const PAYLOAD_NAME: &str = "flatcar_production_update.gz";

/// The key every [`Node`] trusts (one per test process, so payloads can
/// be shared between nodes).
pub fn test_key() -> &'static SigningKey {
    static KEY: std::sync::OnceLock<SigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(SigningKey::generate_ed25519)
}

/// The RSA key every [`Node`] trusts besides [`test_key`]: CrAU v1
/// payloads (Flatcar's format) are signed with RSA only.
pub fn test_rsa_key() -> &'static SigningKey {
    static KEY: std::sync::OnceLock<SigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate_rsa(2048).expect("rsa key"))
}

/// A USR image as Flatcar's is built: a real file system (ext4 here, by
/// Debian's `mkfs.ext4 -d`) of `len` bytes holding `share/flatcar/release`
/// for `version` and `board`, and `filler` bytes of [`image_bytes`]
/// (`seed`) so the payload has something to carry.
pub fn usr_fs_image(version: &str, board: &str, len: usize, seed: u64, filler: usize) -> Vec<u8> {
    usr_fs_image_with(version, board, len, seed, filler, &[])
}

/// [`usr_fs_image`] with more `files` (path under `/usr`, contents), e.g.
/// `share/flatcar/oems/azure` or `share/flatcar/enabled-sysext.conf`.
pub fn usr_fs_image_with(
    version: &str,
    board: &str,
    len: usize,
    seed: u64,
    filler: usize,
    files: &[(&str, &str)],
) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = dir.path().join("usr");
    let flatcar = tree.join("share/flatcar");
    std::fs::create_dir_all(&flatcar).unwrap();
    for (path, text) in files {
        let path = tree.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    std::fs::write(
        flatcar.join("release"),
        format!(
            "FLATCAR_RELEASE_VERSION={version}\nFLATCAR_RELEASE_BOARD={board}\n\
             FLATCAR_RELEASE_APPID={{e96281a6-d1af-4bde-9a0a-97b76e56dc57}}\n"
        ),
    )
    .unwrap();
    std::fs::write(tree.join("filler"), image_bytes(seed, filler)).unwrap();
    let img = dir.path().join("usr.img");
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-O", "^has_journal", "-d"])
        .arg(&tree)
        .arg(&img)
        .arg(format!("{}k", len / 1024))
        .output()
        .expect("run mkfs.ext4 (apt-get install e2fsprogs)");
    assert!(out.status.success(), "mkfs.ext4: {out:?}");
    let bytes = std::fs::read(&img).unwrap();
    assert_eq!(bytes.len(), len);
    bytes
}

/// A CrAU v1 payload (Flatcar's format: no release info, bzip2, RSA) of
/// `usr` and `kernel`, signed with [`test_rsa_key`].
pub fn payload_v1(usr: &[u8], kernel: &[u8]) -> Vec<u8> {
    let parts = [
        PartitionInput {
            name: "usr".into(),
            new: usr,
            old: None,
        },
        PartitionInput {
            name: "kernel".into(),
            new: kernel,
            old: None,
        },
    ];
    let unsigned =
        payload::generate::generate(&parts, &GenOptions::flatcar_v1()).expect("generate v1");
    let mut out = Vec::new();
    unsigned
        .write_with_keys(std::slice::from_ref(test_rsa_key()), &mut out)
        .expect("sign v1");
    out
}

/// A v2 payload of `[usr, kernel]` (each new image with its old one for a
/// delta), bound to `version` and `board`, signed with `key`.
pub fn signed_v2(
    key: &SigningKey,
    version: &str,
    board: &str,
    [usr, kernel]: [(&[u8], Option<&[u8]>); 2],
) -> Vec<u8> {
    let opts = GenOptions {
        release: Some(ReleaseInfo {
            version: Some(version.into()),
            board: Some(board.into()),
            ..Default::default()
        }),
        ..GenOptions::default()
    };
    let parts = [
        PartitionInput {
            name: "usr".into(),
            new: usr.0,
            old: usr.1,
        },
        PartitionInput {
            name: "kernel".into(),
            new: kernel.0,
            old: kernel.1,
        },
    ];
    let unsigned = payload::generate::generate(&parts, &opts).expect("generate");
    let mut out = Vec::new();
    unsigned
        .write_with_keys(std::slice::from_ref(key), &mut out)
        .expect("sign");
    out
}

/// The running slot's image and kernel as [`Node::new`] writes them.
pub fn running_images() -> (Vec<u8>, Vec<u8>) {
    (
        image_bytes(1, (USR_MIB << 20) as usize),
        format!("kernel of {RUNNING}\n").into_bytes(),
    )
}

/// A Flatcar extension package (`oem-<ID>.gz`, `flatcar-<NAME>.gz`): a
/// CrAU v1 full payload of one image, signed with [`test_rsa_key`].
pub fn sysext_payload_v1(image: &[u8]) -> Vec<u8> {
    sysext_payload_v1_signed(image, test_rsa_key())
}

/// [`sysext_payload_v1`] signed with `key`.
pub fn sysext_payload_v1_signed(image: &[u8], key: &SigningKey) -> Vec<u8> {
    let parts = [PartitionInput {
        name: "usr".into(),
        new: image,
        old: None,
    }];
    let unsigned =
        payload::generate::generate(&parts, &GenOptions::flatcar_v1()).expect("generate v1");
    let mut out = Vec::new();
    unsigned
        .write_with_keys(std::slice::from_ref(key), &mut out)
        .expect("sign v1");
    out
}

/// A small payload for 3600.0.0 on [`BOARD`]: (usr image, kernel, payload).
pub fn small_payload() -> &'static (Vec<u8>, Vec<u8>, Vec<u8>) {
    static P: std::sync::OnceLock<(Vec<u8>, Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let usr = image_bytes(7, 2 << 20);
        let kernel = b"kernel of 3600.0.0\n".repeat(100);
        let payload = Node::payload_signed(test_key(), "3600.0.0", BOARD, &usr, &kernel);
        (usr, kernel, payload)
    })
}

/// A node under a tempdir.
#[derive(Debug)]
pub struct Node {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// The node's `/`.
    pub root: PathBuf,
    /// The disk image (`<root>/disk.img`).
    pub disk: PathBuf,
    /// The trusted key.
    pub key: SigningKey,
}

/// Deterministic filler bytes: compressible but not trivial.
pub fn image_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Half random, half runs, so xz has something to do.
        let b = x.to_le_bytes();
        out.extend_from_slice(&b);
        out.extend_from_slice(&[b[0]; 8]);
    }
    out.truncate(len);
    out
}

impl Node {
    /// A node whose `SERVER` is `server`.
    pub fn new(server: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let disk = root.join("disk.img");
        let w = |p: &str, s: &str| {
            let path = root.join(p.trim_start_matches('/'));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, s).unwrap();
        };
        w(
            "/usr/share/flatcar/release",
            &format!("FLATCAR_RELEASE_VERSION={RUNNING}\nFLATCAR_RELEASE_BOARD={BOARD}\n"),
        );
        w(
            "/usr/share/flatcar/update.conf",
            &format!("SERVER={server}\nGROUP=stable\n"),
        );
        w("/etc/machine-id", "0123456789abcdef0123456789abcdef\n");
        // A cgroup-v2 host (the agent refuses to update a cgroup-v1 one).
        w("/sys/fs/cgroup/cgroup.controllers", "cpu io memory pids\n");
        w(
            "/proc/sys/kernel/random/boot_id",
            "3a2f4d8e-0000-4000-8000-000000000001\n",
        );
        w(
            "/etc/update-agent/config.toml",
            r#"
[install]
slot_device = "/disk.img"
booted_slot = "A"
trusted_keys_dir = "/etc/update-agent/keys"
kernel_dir = "/boot/flatcar"

[state]
state_dir = "/var/lib/update_engine"
reboot_marker = "/run/update_engine_autoupdate_completed"

[download]
retries = 3
retry_delay_ms = 50
low_speed_time_secs = 5

[omaha]
request_timeout_secs = 10
"#,
        );
        let layout = cgpt::image::Layout::flatcar(USR_MIB);
        cgpt::image::create(&disk, layout.disk_bytes(4), 512, &layout).expect("image");
        let key = test_key().clone();
        w(
            "/etc/update-agent/keys/test.pub",
            &key.public().to_pem().unwrap(),
        );
        w(
            "/etc/update-agent/keys/test-rsa.pub",
            &test_rsa_key().public().to_pem().unwrap(),
        );
        let node = Self {
            dir,
            root,
            disk,
            key,
        };
        let (usr, kernel) = running_images();
        node.write_slot(Slot::A, &usr);
        let kdir = node.path("/boot/flatcar");
        std::fs::create_dir_all(&kdir).unwrap();
        std::fs::write(kdir.join("vmlinuz-a"), kernel).unwrap();
        node
    }

    /// Overwrites `/etc/update-agent/config.d/50-test.toml`.
    pub fn add_config(&self, toml: &str) {
        let d = self.path("/etc/update-agent/config.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("50-test.toml"), toml).unwrap();
    }

    /// `path` (a node path) on the host.
    pub fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// Byte offset and length of a slot in the image.
    pub fn extent(&self, slot: Slot) -> (u64, u64) {
        let mut d = cgpt::FileDisk::open_ro(&self.disk).unwrap();
        let gpt = cgpt::Gpt::read(&mut d).unwrap();
        let e = cgpt::slot::slot_state(&gpt, slot).unwrap().entry;
        let ss = gpt.geometry().sector_size;
        (e.first_lba * ss, (e.last_lba + 1 - e.first_lba) * ss)
    }

    /// The slot's bytes.
    pub fn read_slot(&self, slot: Slot) -> Vec<u8> {
        use std::os::unix::fs::FileExt;
        let (off, len) = self.extent(slot);
        let mut buf = vec![0u8; len as usize];
        std::fs::File::open(&self.disk)
            .unwrap()
            .read_exact_at(&mut buf, off)
            .unwrap();
        buf
    }

    /// SHA-256 of the slot's bytes.
    pub fn slot_hash(&self, slot: Slot) -> [u8; 32] {
        Sha256::digest(self.read_slot(slot)).into()
    }

    /// Writes the slot's bytes.
    pub fn write_slot(&self, slot: Slot, data: &[u8]) {
        use std::os::unix::fs::FileExt;
        let (off, len) = self.extent(slot);
        assert!(data.len() as u64 <= len);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.disk)
            .unwrap();
        f.write_all_at(data, off).unwrap();
    }

    /// A signed payload with `usr` and `kernel`, bound to `version` and
    /// `board`, signed with `key`.
    pub fn payload_signed(
        key: &SigningKey,
        version: &str,
        board: &str,
        usr: &[u8],
        kernel: &[u8],
    ) -> Vec<u8> {
        signed_v2(key, version, board, [(usr, None), (kernel, None)])
    }

    /// A payload signed with the node's trusted key.
    pub fn payload(&self, version: &str, board: &str, usr: &[u8], kernel: &[u8]) -> Vec<u8> {
        Self::payload_signed(&self.key, version, board, usr, kernel)
    }

    /// Priority, tries, successful of a slot as the real `cgpt` reads them.
    pub fn cgpt_pts(&self, slot: Slot) -> (u8, u8, u8) {
        let index = if slot == Slot::A { "3" } else { "4" };
        let get = |flag: &str| -> u8 {
            let out = Command::new("cgpt")
                .args(["show", "-i", index, flag])
                .arg(&self.disk)
                .output()
                .expect("run cgpt (apt-get install cgpt)");
            assert!(out.status.success(), "cgpt: {out:?}");
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        (get("-P"), get("-T"), get("-S"))
    }

    /// The attribute field as `sgdisk -i N` prints it (16 hex digits).
    pub fn sgdisk_attrs(&self, slot: Slot) -> String {
        let index = if slot == Slot::A { "3" } else { "4" };
        let out = Command::new("sgdisk")
            .arg(format!("-i{index}"))
            .arg(&self.disk)
            .output()
            .expect("run sgdisk (apt-get install gdisk)");
        assert!(out.status.success(), "sgdisk: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix("Attribute flags: "))
            .unwrap_or_else(|| panic!("no attribute line in {text}"))
            .trim()
            .to_string()
    }

    /// Whether a file exists under the node root.
    pub fn exists(&self, path: &str) -> bool {
        self.path(path).exists()
    }

    /// What a reboot changes for the agent: a new boot id, and the reboot
    /// marker (on tmpfs) gone.
    pub fn reboot(&self, boot_id: &str) {
        std::fs::write(
            self.path("/proc/sys/kernel/random/boot_id"),
            format!("{boot_id}\n"),
        )
        .unwrap();
        let _ = std::fs::remove_file(self.path("/run/update_engine_autoupdate_completed"));
    }

    /// Files in the kernel directory.
    pub fn kernel_dir_listing(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path("/boot/flatcar"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// The pref `key`.
    pub fn pref(&self, key: &str) -> Option<String> {
        std::fs::read_to_string(self.path("/var/lib/update_engine/prefs").join(key)).ok()
    }

    /// The root as a `&Path`.
    pub fn root(&self) -> &Path {
        &self.root
    }
}
