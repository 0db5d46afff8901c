//! The release under test, the kill triggers and what a kill left
//! behind: the pieces every kill point of `crash_injection.rs` shares.

use cgpt::Slot;
use cgpt::disk::MemDisk;
use e2e::fixture::{self, BOARD, Node, PAYLOAD_NAME, RUNNING, USR_MIB};
use e2e::{OmahaServer, UpdateSpec};
use payload::generate::{GenOptions, PartitionInput};
use payload::proto::ReleaseInfo;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use update_agent::denylist::DenyList;

pub(crate) const NEW: &str = "3600.0.0";
pub(crate) const CHECKPOINT: &str = "/var/lib/update_engine/install-checkpoint.json";
pub(crate) const PARTIAL: &str = "/boot/flatcar/.vmlinuz-b.partial";
pub(crate) const KERNEL_B: &str = "/boot/flatcar/vmlinuz-b";
pub(crate) const MARKER: &str = "/run/update_engine_autoupdate_completed";
pub(crate) const INSTALLED_PREF: &str = "update-agent-installed-version";
/// The download speed while the agent is being killed, so every phase of a
/// run lasts long enough to be hit.
pub(crate) const BANDWIDTH: u64 = 2_000_000;

/// The new release: a full USR slot image, a kernel, and their payload in
/// small (256 KiB) operations so checkpoints are fine-grained.
#[derive(Debug)]
pub(crate) struct Release {
    pub(crate) usr: Vec<u8>,
    pub(crate) kernel: Vec<u8>,
    pub(crate) payload: Vec<u8>,
    pub(crate) usr_hash: [u8; 32],
    /// Where the kernel's bytes start in the payload (stored raw: they are
    /// incompressible), so a stall can land between its two operations.
    pub(crate) kernel_at: u64,
    /// Extension packages (v1 only): (package name, node path of the
    /// placed image, image, package bytes). The node is an `azure` node
    /// with `zfs` enabled, so both are needed.
    pub(crate) extensions: Vec<(&'static str, &'static str, Vec<u8>, Vec<u8>)>,
}

/// The payload format under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// CrAU v2 with signed release info (Ed25519).
    V2,
    /// Stock Flatcar CrAU v1 (RSA, bzip2, no release info) of a real ext4
    /// image, bound through the image's release file before the commit.
    V1,
}

pub(crate) fn release(format: Format) -> &'static Release {
    static V2: std::sync::OnceLock<Release> = std::sync::OnceLock::new();
    static V1: std::sync::OnceLock<Release> = std::sync::OnceLock::new();
    let cell = if format == Format::V1 { &V1 } else { &V2 };
    cell.get_or_init(|| build_release(format))
}

pub(crate) fn build_release(format: Format) -> Release {
    let slot = (USR_MIB << 20) as usize;
    let usr = match format {
        Format::V2 => {
            let mut usr = fixture::image_bytes(11, slot / 2);
            usr.resize(slot, 0);
            usr
        }
        Format::V1 => fixture::usr_fs_image_with(
            NEW,
            BOARD,
            slot,
            11,
            slot / 2,
            &[("share/flatcar/oems/azure", "azure\n")],
        ),
    };
    // Incompressible, so the kernel write takes a while at BANDWIDTH.
    let mut kernel = Vec::with_capacity(512 << 10);
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    while kernel.len() < 512 << 10 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        kernel.extend_from_slice(&x.to_le_bytes());
    }
    let (opts, key) = match format {
        Format::V2 => (
            GenOptions {
                release: Some(ReleaseInfo {
                    version: Some(NEW.into()),
                    board: Some(BOARD.into()),
                    ..Default::default()
                }),
                chunk_blocks: 64,
                ..GenOptions::default()
            },
            fixture::test_key(),
        ),
        Format::V1 => (
            GenOptions {
                chunk_blocks: 64,
                ..GenOptions::flatcar_v1()
            },
            fixture::test_rsa_key(),
        ),
    };
    let parts = [
        PartitionInput {
            name: "usr".into(),
            new: &usr,
            old: None,
        },
        PartitionInput {
            name: "kernel".into(),
            new: &kernel,
            old: None,
        },
    ];
    let unsigned = payload::generate::generate(&parts, &opts).expect("generate");
    let mut payload = Vec::new();
    unsigned
        .write_with_keys(std::slice::from_ref(key), &mut payload)
        .expect("sign");
    let usr_hash = Sha256::digest(&usr).into();
    let extensions = match format {
        Format::V2 => Vec::new(),
        Format::V1 => [
            (
                "oem-azure.gz",
                "/usr/share/oem/sysext/oem-azure-3600.0.0.raw",
            ),
            (
                "flatcar-zfs.gz",
                "/etc/flatcar/sysext/flatcar-zfs-3600.0.0.raw",
            ),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (name, path))| {
            // 768 KiB each: long enough at BANDWIDTH to be killed in.
            let image = fixture::image_bytes(40 + i as u64, 768 << 10);
            let package = fixture::sysext_payload_v1(&image);
            (name, path, image, package)
        })
        .collect(),
    };
    let kernel_at = payload
        .windows(64)
        .position(|w| w == &kernel[..64])
        .expect("the kernel's bytes are stored raw in the payload") as u64;
    Release {
        usr,
        kernel,
        payload,
        usr_hash,
        kernel_at,
        extensions,
    }
}

/// Every placed extension image of `rel` present has its exact bytes
/// (nothing half-written under a final name), and no hidden partial file
/// is left unless `partials_allowed`.
pub(crate) fn assert_extension_files(node: &Node, rel: &Release, what: &str, all: bool) {
    for (_, path, image, _) in &rel.extensions {
        match std::fs::read(node.path(path)) {
            Ok(data) => assert!(data == *image, "{what}: {path} has other bytes"),
            Err(e) => assert!(!all, "{what}: {path}: {e}"),
        }
    }
    if all {
        for dir in ["/usr/share/oem/sysext", "/etc/flatcar/sysext"] {
            let names: Vec<String> = std::fs::read_dir(node.path(dir))
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.ends_with(".partial"))
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(
                names,
                Vec::<String>::new(),
                "{what}: partial files in {dir}"
            );
        }
    }
}

/// The `update-agent` binary, built with the same cargo, target directory
/// and profile as this test binary.
pub(crate) fn agent_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
        let target_dir = profile_dir.parent().unwrap().to_path_buf();
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace)
            .args([
                "build",
                "--quiet",
                "-p",
                "update-agent",
                "--bin",
                "update-agent",
            ])
            .env("CARGO_TARGET_DIR", &target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        assert!(cmd.status().expect("cargo build").success());
        let bin = profile_dir.join("update-agent");
        assert!(bin.exists(), "{} missing", bin.display());
        bin
    })
    .clone()
}

/// Where a kill landed, from the state the agent left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    /// Before the update check reached the server.
    Startup,
    /// The update check was sent, no payload request yet.
    Checking,
    /// The payload request was sent; nothing applied yet, or the agent was
    /// waiting for bytes from a stalled server.
    Downloading,
    /// USR operations written (a checkpoint exists), no kernel bytes yet.
    Writing,
    /// Kernel operations being written into `.vmlinuz-b.partial`.
    KernelWrite,
    /// Every operation written, the payload not verified yet.
    Verifying,
    /// USR verified; the extension images being fetched and placed.
    Extensions,
    /// Verified; the kernel being synced and renamed, the slot synced, the
    /// GPT commit not visible yet.
    KernelInstall,
    /// The flag flip done (B is the next boot), the agent not finished.
    FlagFlip,
    /// The update staged (reboot marker written).
    Staged,
}

/// When to kill.
#[derive(Debug, Clone)]
pub(crate) enum Trigger {
    /// This long after the spawn.
    After(Duration),
    /// This long after the first payload request.
    AfterGet(Duration),
    /// The partial kernel has at least this many bytes.
    Partial(u64),
    /// The partial kernel holds the whole new kernel.
    PartialComplete,
    /// The agent's log contains this text.
    Log(&'static str),
    /// This node path exists.
    Exists(&'static str),
    /// The GPT makes B the next boot.
    Committed,
}

#[derive(Debug, Clone)]
pub(crate) struct Point {
    pub(crate) rel: &'static Release,
    pub(crate) label: String,
    /// Hold the update check's answer this long.
    pub(crate) check_delay: Option<Duration>,
    /// Stall the payload after this many bytes.
    pub(crate) stall_at: Option<u64>,
    pub(crate) trigger: Trigger,
    /// After the kill, if the agent was between "payload verified" and its
    /// GPT commit, finish its pre-commit steps (the kernel rename) and land
    /// the first N writes of that commit (`cgpt::slot::set_next`): the state
    /// a SIGKILL between two of its writes leaves (the writes a process made
    /// are in the page cache; the ones it did not make are missing).
    pub(crate) flip_writes: Option<usize>,
}

impl Point {
    pub(crate) fn new(rel: &'static Release, label: impl Into<String>, trigger: Trigger) -> Self {
        Self {
            rel,
            label: label.into(),
            check_delay: None,
            stall_at: None,
            trigger,
            flip_writes: None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) label: String,
    pub(crate) phase: Phase,
    /// The restarted agent continued from a saved checkpoint with a Range
    /// request past the start of the data.
    pub(crate) resumed: bool,
    /// The kill landed (the child had not finished on its own).
    pub(crate) killed: bool,
}

pub(crate) fn spawn_agent(node: &Node, log: &Path) -> Child {
    Command::new(agent_bin())
        .args(["--once", "--root"])
        .arg(node.root())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("spawn update-agent")
}

pub(crate) fn payload_gets(server: &OmahaServer) -> Vec<Option<String>> {
    let path = format!("/files/{PAYLOAD_NAME}");
    server
        .gets()
        .into_iter()
        .filter(|r| r.path == path)
        .map(|r| r.header("range").map(str::to_string))
        .collect()
}

pub(crate) fn b_committed(node: &Node) -> bool {
    let Ok(mut d) = cgpt::FileDisk::open_ro(&node.disk) else {
        return false;
    };
    match cgpt::slot::read_slots(&mut d) {
        Ok([_, b]) => b.entry.attrs.priority() == 2 && b.entry.attrs.tries() == 1,
        Err(_) => false,
    }
}

pub(crate) fn partial_full_length(node: &Node, rel: &Release) -> bool {
    std::fs::metadata(node.path(PARTIAL)).is_ok_and(|m| m.len() == rel.kernel.len() as u64)
}

pub(crate) fn partial_complete(node: &Node, rel: &Release) -> bool {
    std::fs::read(node.path(PARTIAL)).is_ok_and(|k| k == rel.kernel)
}

pub(crate) fn fired(node: &Node, rel: &Release, log: &Path, t: &Trigger, since: Instant) -> bool {
    match t {
        Trigger::After(d) => since.elapsed() >= *d,
        Trigger::AfterGet(_) => unreachable!("handled by the caller"),
        Trigger::Partial(n) => std::fs::metadata(node.path(PARTIAL)).is_ok_and(|m| m.len() >= *n),
        Trigger::PartialComplete => partial_full_length(node, rel),
        Trigger::Log(text) => std::fs::read_to_string(log).is_ok_and(|s| s.contains(text)),
        Trigger::Exists(p) => node.exists(p),
        Trigger::Committed => b_committed(node),
    }
}

/// Resume offset (`data_start + next_data_offset`) and `data_start` of a
/// saved checkpoint, without a JSON dependency.
pub(crate) fn checkpoint_offsets(node: &Node) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(node.path(CHECKPOINT)).ok()?;
    let field = |name: &str| -> Option<u64> {
        let at = text.find(&format!("\"{name}\":"))? + name.len() + 3;
        text[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()
    };
    let start = field("data_start")?;
    Some((start + field("next_data_offset")?, start))
}

/// What GRUB would boot from a copy of the disk image right now must be a
/// complete, verified image: A untouched, or B holding the new release with
/// its kernel.
pub(crate) fn assert_boot_choice_verified(
    node: &Node,
    rel: &Release,
    a_hash: &[u8; 32],
    what: &str,
) -> Slot {
    let mut copy = MemDisk(std::fs::read(&node.disk).unwrap());
    let entry = cgpt::slot::boot_next(&mut copy)
        .unwrap_or_else(|e| panic!("{what}: GRUB finds no bootable slot: {e}"));
    let slot = Slot::from_label(&entry.label).expect("a USR slot");
    match slot {
        Slot::A => assert_eq!(&node.slot_hash(Slot::A), a_hash, "{what}: A was changed"),
        Slot::B => {
            assert_eq!(
                node.slot_hash(Slot::B),
                rel.usr_hash,
                "{what}: GRUB would boot a half-written USR-B"
            );
            assert_eq!(
                std::fs::read(node.path(KERNEL_B)).ok().as_deref(),
                Some(&rel.kernel[..]),
                "{what}: GRUB would boot USR-B without its kernel"
            );
        }
    }
    slot
}

pub(crate) fn classify(
    node: &Node,
    rel: &Release,
    server: &OmahaServer,
    log: &Path,
    stalled: bool,
) -> Phase {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    let partial = std::fs::metadata(node.path(PARTIAL)).map_or(0, |m| m.len());
    let gets = !payload_gets(server).is_empty();
    let checks = server.requests().iter().any(|r| r.method == "POST");
    if node.exists(MARKER) {
        Phase::Staged
    } else if b_committed(node) {
        Phase::FlagFlip
    } else if log.contains(update_agent::install::RELEASE_VERIFIED_LOG) {
        Phase::KernelInstall
    } else if log.contains("payload verified") {
        Phase::Extensions
    } else if partial_complete(node, rel) {
        Phase::Verifying
    } else if partial > 0 {
        Phase::KernelWrite
    } else if stalled && gets {
        Phase::Downloading
    } else if node.exists(CHECKPOINT) {
        Phase::Writing
    } else if gets {
        Phase::Downloading
    } else if checks {
        Phase::Checking
    } else {
        Phase::Startup
    }
}

pub(crate) fn wait_exit(child: &mut Child, limit: Duration, what: &str, log: &Path) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what}: update-agent did not finish in {limit:?}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub(crate) fn new_node(
    rt: &tokio::runtime::Runtime,
    r: &Release,
) -> (OmahaServer, Node, UpdateSpec) {
    let server = rt.block_on(OmahaServer::start());
    let node = Node::new(&server.update_url());
    server.serve_file(PAYLOAD_NAME, r.payload.clone());
    let mut spec = UpdateSpec::for_payload(NEW, &server.files_url(), PAYLOAD_NAME, &r.payload);
    if !r.extensions.is_empty() {
        let w = |path: &str, data: &str| {
            let p = node.path(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, data).unwrap();
        };
        w("/usr/share/oem/oem-release", "ID=azure\n");
        w("/etc/flatcar/enabled-sysext.conf", "zfs\n");
    }
    for (name, _, _, package) in &r.extensions {
        server.serve_file(name, package.clone());
        spec = spec.with_package(name, package);
    }
    (server, node, spec)
}

/// The agent's final state after a finished update.
///
/// `prefs_written`: the install's prefs are recorded (false only when the
/// kill landed between the reboot marker and the prefs: then the restarted
/// agent finds the update staged and the prefs stay unwritten).
pub(crate) fn assert_installed(
    node: &Node,
    rel: &Release,
    a_hash: &[u8; 32],
    what: &str,
    prefs_written: bool,
) {
    assert_eq!(node.slot_hash(Slot::B), rel.usr_hash, "{what}: USR-B");
    assert_eq!(
        std::fs::read(node.path(KERNEL_B)).ok().as_deref(),
        Some(&rel.kernel[..]),
        "{what}: vmlinuz-b"
    );
    assert_eq!(&node.slot_hash(Slot::A), a_hash, "{what}: USR-A");
    assert_eq!(
        node.kernel_dir_listing(),
        ["vmlinuz-a", "vmlinuz-b"],
        "{what}"
    );
    assert_eq!(node.cgpt_pts(Slot::A), (1, 0, 1), "{what}: A");
    assert_eq!(node.cgpt_pts(Slot::B), (2, 1, 0), "{what}: B");
    assert!(!node.exists(CHECKPOINT), "{what}: checkpoint left behind");
    assert!(node.exists(MARKER), "{what}: no reboot marker");
    assert_extension_files(node, rel, what, true);
    if prefs_written {
        assert_eq!(node.pref(INSTALLED_PREF).as_deref(), Some(NEW), "{what}");
        assert_eq!(
            node.pref("previous-version").as_deref(),
            Some(RUNNING),
            "{what}"
        );
    }
    let deny = DenyList::in_dir(&node.path("/var/lib/update_engine"));
    assert!(
        !deny.contains(NEW).unwrap(),
        "{what}: the new version was deny-listed: {:?}",
        deny.entries()
    );
    assert_eq!(
        assert_boot_choice_verified(node, rel, a_hash, what),
        Slot::B,
        "{what}"
    );
}
