//! Crash injection (issue 6, points 4 and 5).
//!
//! 4. The real `update-agent --once` runs as a child process and is killed
//!    with SIGKILL at 30+ points spread over checking, downloading, writing,
//!    the kernel write, verifying, the kernel install and the flag flip:
//!    deterministic ones (a stalled update check, the payload stalled after N
//!    bytes, triggers on the state the agent leaves on disk) and time-based
//!    ones at fractions of a measured uninterrupted run. After each kill the
//!    slot GRUB's gptprio rules would boot (on a copy of the disk image) holds
//!    a complete, verified image; then a restarted agent finishes the update,
//!    resuming the download from its checkpoint with an HTTP Range request.
//! 5. Power loss during the GPT write of the commit point: every state the
//!    write sequence can leave boots a verified slot.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cgpt::Slot;
use cgpt::disk::{LoggedOp, MemDisk, WriteLog};
use e2e::fixture::{self, BOARD, Node, PAYLOAD_NAME, RUNNING, USR_MIB};
use e2e::{OmahaServer, Reply, UpdateSpec};
use payload::generate::{GenOptions, PartitionInput};
use payload::proto::ReleaseInfo;
use sha2::{Digest, Sha256};
use update_agent::denylist::DenyList;

const NEW: &str = "3600.0.0";
const CHECKPOINT: &str = "/var/lib/update_engine/install-checkpoint.json";
const PARTIAL: &str = "/boot/flatcar/.vmlinuz-b.partial";
const KERNEL_B: &str = "/boot/flatcar/vmlinuz-b";
const MARKER: &str = "/run/update_engine_autoupdate_completed";
const INSTALLED_PREF: &str = "update-agent-installed-version";
/// The download speed while the agent is being killed, so every phase of a
/// run lasts long enough to be hit.
const BANDWIDTH: u64 = 2_000_000;

/// The new release: a full USR slot image, a kernel, and their payload in
/// small (256 KiB) operations so checkpoints are fine-grained.
#[derive(Debug)]
struct Release {
    usr: Vec<u8>,
    kernel: Vec<u8>,
    payload: Vec<u8>,
    usr_hash: [u8; 32],
}

/// The payload format under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// CrAU v2 with signed release info (Ed25519).
    V2,
    /// Stock Flatcar CrAU v1 (RSA, bzip2, no release info) of a real ext4
    /// image, bound through the image's release file before the commit.
    V1,
}

fn release(format: Format) -> &'static Release {
    static V2: std::sync::OnceLock<Release> = std::sync::OnceLock::new();
    static V1: std::sync::OnceLock<Release> = std::sync::OnceLock::new();
    let cell = if format == Format::V1 { &V1 } else { &V2 };
    cell.get_or_init(|| build_release(format))
}

fn build_release(format: Format) -> Release {
    let slot = (USR_MIB << 20) as usize;
    let usr = match format {
        Format::V2 => {
            let mut usr = fixture::image_bytes(11, slot / 2);
            usr.resize(slot, 0);
            usr
        }
        Format::V1 => fixture::usr_fs_image(NEW, BOARD, slot, 11, slot / 2),
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
    Release {
        usr,
        kernel,
        payload,
        usr_hash,
    }
}

/// The `update-agent` binary, built with the same cargo, target directory
/// and profile as this test binary.
fn agent_bin() -> PathBuf {
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
enum Phase {
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
enum Trigger {
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
struct Point {
    rel: &'static Release,
    label: String,
    /// Hold the update check's answer this long.
    check_delay: Option<Duration>,
    /// Stall the payload after this many bytes.
    stall_at: Option<u64>,
    trigger: Trigger,
    /// After the kill, if the agent was between "payload verified" and its
    /// GPT commit, finish its pre-commit steps (the kernel rename) and land
    /// the first N writes of that commit (`cgpt::slot::set_next`): the state
    /// a SIGKILL between two of its writes leaves (the writes a process made
    /// are in the page cache; the ones it did not make are missing).
    flip_writes: Option<usize>,
}

impl Point {
    fn new(rel: &'static Release, label: impl Into<String>, trigger: Trigger) -> Self {
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
struct Record {
    label: String,
    phase: Phase,
    /// The restarted agent continued from a saved checkpoint with a Range
    /// request past the start of the data.
    resumed: bool,
    /// The kill landed (the child had not finished on its own).
    killed: bool,
}

fn spawn_agent(node: &Node, log: &Path) -> Child {
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

fn payload_gets(server: &OmahaServer) -> Vec<Option<String>> {
    server
        .gets()
        .into_iter()
        .map(|r| r.header("range").map(str::to_string))
        .collect()
}

fn b_committed(node: &Node) -> bool {
    let Ok(mut d) = cgpt::FileDisk::open_ro(&node.disk) else {
        return false;
    };
    match cgpt::slot::read_slots(&mut d) {
        Ok([_, b]) => b.entry.attrs.priority() == 2 && b.entry.attrs.tries() == 1,
        Err(_) => false,
    }
}

fn partial_full_length(node: &Node, rel: &Release) -> bool {
    std::fs::metadata(node.path(PARTIAL)).is_ok_and(|m| m.len() == rel.kernel.len() as u64)
}

fn partial_complete(node: &Node, rel: &Release) -> bool {
    std::fs::read(node.path(PARTIAL)).is_ok_and(|k| k == rel.kernel)
}

fn fired(node: &Node, rel: &Release, log: &Path, t: &Trigger, since: Instant) -> bool {
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
fn checkpoint_offsets(node: &Node) -> Option<(u64, u64)> {
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
fn assert_boot_choice_verified(node: &Node, rel: &Release, a_hash: &[u8; 32], what: &str) -> Slot {
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

fn classify(node: &Node, rel: &Release, server: &OmahaServer, log: &Path, stalled: bool) -> Phase {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    let partial = std::fs::metadata(node.path(PARTIAL)).map_or(0, |m| m.len());
    let gets = !payload_gets(server).is_empty();
    let checks = server.requests().iter().any(|r| r.method == "POST");
    if node.exists(MARKER) {
        Phase::Staged
    } else if b_committed(node) {
        Phase::FlagFlip
    } else if log.contains("payload verified") {
        Phase::KernelInstall
    } else if partial_complete(node, rel) {
        Phase::Verifying
    } else if stalled && gets {
        Phase::Downloading
    } else if partial > 0 {
        Phase::KernelWrite
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

fn wait_exit(child: &mut Child, limit: Duration, what: &str, log: &Path) -> i32 {
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

fn new_node(rt: &tokio::runtime::Runtime, r: &Release) -> (OmahaServer, Node, UpdateSpec) {
    let server = rt.block_on(OmahaServer::start());
    let node = Node::new(&server.update_url());
    server.serve_file(PAYLOAD_NAME, r.payload.clone());
    let spec = UpdateSpec::for_payload(NEW, &server.files_url(), PAYLOAD_NAME, &r.payload);
    (server, node, spec)
}

/// The agent's final state after a finished update.
///
/// `prefs_written`: the install's prefs are recorded (false only when the
/// kill landed between the reboot marker and the prefs: then the restarted
/// agent finds the update staged and the prefs stay unwritten).
fn assert_installed(
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

/// One kill point: run, kill, check the boot choice, restart, check the
/// result and that the download resumed.
fn run_point(rt: &tokio::runtime::Runtime, p: &Point) -> Record {
    let r = p.rel;
    let (server, node, spec) = new_node(rt, r);
    let a_hash = node.slot_hash(Slot::A);
    node.add_config(&format!("[download]\nbandwidth_limit = {BANDWIDTH}\n"));
    if let Some(n) = p.stall_at {
        server.stall_file_after(PAYLOAD_NAME, n);
    }
    let first = Reply::Update(spec.clone());
    server.push(match p.check_delay {
        Some(d) => Reply::Delay(d, Box::new(first)),
        None => first,
    });
    let what = &p.label;
    let log = node.dir.path().join("agent-1.log");
    let start = Instant::now();
    let mut child = spawn_agent(&node, &log);
    let mut got_at: Option<Instant> = None;
    let deadline = start + Duration::from_secs(30);
    let mut exited = None;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            exited = Some(st.code().unwrap_or(-1));
            break;
        }
        let go = match &p.trigger {
            Trigger::AfterGet(d) => {
                if got_at.is_none() && !payload_gets(&server).is_empty() {
                    got_at = Some(Instant::now());
                }
                got_at.is_some_and(|t| t.elapsed() >= *d)
            }
            t => fired(&node, r, &log, t, start),
        };
        if go {
            break;
        }
        assert!(Instant::now() < deadline, "{what}: trigger never fired");
        // Poll tightly once the payload is written: the last steps are short.
        if partial_full_length(&node, r) {
            std::thread::sleep(Duration::from_micros(200));
        } else {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let killed = exited.is_none();
    if killed {
        child.kill().unwrap();
    }
    let status = child.wait().unwrap();
    if !killed {
        assert_eq!(
            status.code(),
            Some(0),
            "{what}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    let mut phase = classify(&node, r, &server, &log, p.stall_at.is_some());
    if let Some(k) = p.flip_writes.filter(|_| phase == Phase::KernelInstall) {
        use std::os::unix::fs::FileExt;
        // Killed between "payload verified" and the commit: first the steps
        // the agent takes before its GPT write (the kernel renamed into place).
        if !node.exists(KERNEL_B) {
            std::fs::rename(node.path(PARTIAL), node.path(KERNEL_B)).unwrap();
        }
        let mut commit = WriteLog::new(MemDisk(std::fs::read(&node.disk).unwrap()));
        assert!(cgpt::slot::set_next(&mut commit, Slot::B).unwrap());
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&node.disk)
            .unwrap();
        let writes = commit.ops().iter().filter_map(|o| match o {
            LoggedOp::Write { offset, data } => Some((*offset, data)),
            LoggedOp::Sync => None,
        });
        for (offset, data) in writes.take(k) {
            f.write_all_at(data, offset).unwrap();
        }
        phase = Phase::FlagFlip;
    }
    let booted = assert_boot_choice_verified(&node, r, &a_hash, what);
    if phase < Phase::FlagFlip {
        assert_eq!(
            booted,
            Slot::A,
            "{what}: B bootable before the commit point"
        );
        assert_eq!(
            node.cgpt_pts(Slot::B).0,
            0,
            "{what}: target bootable before the commit point"
        );
    }
    // The prefs of a commit must never be visible without the reboot marker:
    // a restarted agent would take `previous-version` for a rollback.
    if node.pref(INSTALLED_PREF).is_some() {
        assert!(
            node.exists(MARKER),
            "{what}: killed with the install recorded but no reboot marker"
        );
    }
    let cp = checkpoint_offsets(&node).filter(|_| node.exists(PARTIAL));
    let staged = node.exists(MARKER);
    let prefs_written = !staged || node.pref(INSTALLED_PREF).is_some();
    let t_kill = start.elapsed();

    // Restart, at full speed.
    server.unstall_file(PAYLOAD_NAME);
    node.add_config("[download]\nbandwidth_limit = 0\n");
    server.push(Reply::Update(spec));
    let gets_before = payload_gets(&server).len();
    let log2 = node.dir.path().join("agent-2.log");
    let mut child = spawn_agent(&node, &log2);
    let code = wait_exit(&mut child, Duration::from_secs(60), what, &log2);
    let want = if staged || !killed { 3 } else { 0 };
    assert_eq!(
        code,
        want,
        "{what} ({phase:?}): restart exit code\n--- killed run ---\n{}\n--- restart ---\n{}",
        std::fs::read_to_string(&log).unwrap_or_default(),
        std::fs::read_to_string(&log2).unwrap_or_default()
    );
    let t_restart = start.elapsed();
    assert_installed(&node, r, &a_hash, what, prefs_written);
    let gets: Vec<_> = payload_gets(&server).split_off(gets_before);
    let whole = format!("bytes=0-{}", r.payload.len() - 1);
    let mut resumed = false;
    if let Some((resume_at, data_start)) = cp {
        assert!(resume_at > data_start, "{what}: {resume_at} {data_start}");
        assert!(
            gets.iter().any(
                |g| g.as_deref() == Some(&format!("bytes={resume_at}-{}", r.payload.len() - 1))
            ),
            "{what} ({phase:?}): no resume from the checkpoint at {resume_at}: {gets:?}"
        );
        assert!(
            gets.iter()
                .all(|g| g.as_deref().is_some_and(|g| g != whole)),
            "{what} ({phase:?}): the download started over: {gets:?}"
        );
        resumed = true;
    }
    if staged {
        assert!(gets.is_empty(), "{what}: staged, yet downloaded {gets:?}");
    }
    eprintln!(
        "{what}: {phase:?}, killed at {t_kill:?}, restarted by {t_restart:?}, checked by {:?}",
        start.elapsed()
    );
    Record {
        label: p.label.clone(),
        phase,
        resumed,
        killed,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// The update check stalled, and the payload stalled after N bytes.
fn deterministic_points(rel: &'static Release) -> Vec<Point> {
    let len = rel.payload.len() as u64;
    let mut v = Vec::new();
    for ms in [150u64, 600] {
        v.push(Point {
            check_delay: Some(Duration::from_secs(5)),
            ..Point::new(rel, format!("check held, kill at {ms} ms"), {
                Trigger::After(Duration::from_millis(ms))
            })
        });
    }
    for n in [
        200,
        len / 10,
        len / 4,
        len * 2 / 5,
        len * 11 / 20,
        len * 7 / 10,
        len * 17 / 20,
        len - 200_000,
        len - 1,
    ] {
        let wait = Duration::from_millis(n * 1000 / BANDWIDTH + 400);
        v.push(Point {
            stall_at: Some(n),
            ..Point::new(
                rel,
                format!("payload stalled at {n}/{len}"),
                Trigger::AfterGet(wait),
            )
        });
    }
    v
}

/// Triggers on the agent's steps after the USR image: the kernel write,
/// verification, the kernel rename, the flag flip, the reboot marker.
fn step_points(rel: &'static Release) -> Vec<Point> {
    let k = rel.kernel.len() as u64;
    vec![
        Point::new(rel, "kernel: first bytes", Trigger::Partial(1)),
        Point::new(rel, "kernel: half", Trigger::Partial(k / 2)),
        Point::new(rel, "kernel: all written", Trigger::PartialComplete),
        Point::new(rel, "payload verified", Trigger::Log("payload verified")),
        Point::new(
            rel,
            "payload verified (2)",
            Trigger::Log("payload verified"),
        ),
        Point::new(rel, "kernel renamed", Trigger::Exists(KERNEL_B)),
        Point::new(rel, "GPT commit", Trigger::Committed),
        Point::new(rel, "GPT commit (2)", Trigger::Committed),
        Point {
            flip_writes: Some(1),
            ..Point::new(
                rel,
                "flag flip: killed after write 1 of 4",
                Trigger::Log("payload verified"),
            )
        },
        Point {
            flip_writes: Some(2),
            ..Point::new(
                rel,
                "flag flip: killed after write 2 of 4",
                Trigger::Log("payload verified"),
            )
        },
        Point {
            flip_writes: Some(3),
            ..Point::new(
                rel,
                "flag flip: killed after write 3 of 4",
                Trigger::Log("payload verified"),
            )
        },
        Point {
            flip_writes: Some(4),
            ..Point::new(
                rel,
                "flag flip: killed after write 4 of 4",
                Trigger::Log("payload verified"),
            )
        },
        Point::new(
            rel,
            "install recorded",
            Trigger::Exists("/var/lib/update_engine/prefs/update-agent-installed-version"),
        ),
        Point::new(rel, "reboot marker", Trigger::Exists(MARKER)),
    ]
}

/// Kills at fractions of an uninterrupted run's duration.
fn timed_points(rt: &tokio::runtime::Runtime, rel: &'static Release) -> Vec<Point> {
    let (server, node, spec) = new_node(rt, rel);
    let a_hash = node.slot_hash(Slot::A);
    node.add_config(&format!("[download]\nbandwidth_limit = {BANDWIDTH}\n"));
    server.push(Reply::Update(spec));
    let log = node.dir.path().join("full.log");
    let start = Instant::now();
    let mut child = spawn_agent(&node, &log);
    let code = wait_exit(&mut child, Duration::from_secs(60), "full run", &log);
    let full = start.elapsed();
    assert_eq!(code, 0, "{}", std::fs::read_to_string(&log).unwrap());
    assert_installed(&node, rel, &a_hash, "full run", true);
    eprintln!("uninterrupted run: {full:?}");
    [
        0.04, 0.12, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.88, 0.94, 0.98,
    ]
    .iter()
    .map(|f| {
        let at = full.mul_f64(*f);
        Point::new(
            rel,
            format!("{:.0}% of a run ({at:?})", f * 100.0),
            Trigger::After(at),
        )
    })
    .collect()
}

#[test]
fn sigkill_at_every_phase_leaves_a_verified_boot_choice_and_the_restart_finishes() {
    let rel = release(Format::V2);
    agent_bin();
    let records = run_points(
        vec![
            deterministic_points(rel),
            step_points(rel),
            timed_points(&runtime(), rel),
        ],
        "v2",
    );
    let kills = records.iter().filter(|r| r.killed).count();
    assert!(kills >= 30, "only {kills} kills landed");
    let resumed = records.iter().filter(|r| r.resumed).count();
    assert!(resumed >= 10, "only {resumed} restarts resumed a download");
}

/// The same for a stock Flatcar (CrAU v1) payload, whose release is bound
/// through a read-only mount of the written image before the commit: kills
/// around that mount leave no mount behind once the restart finishes.
#[test]
fn sigkill_during_a_v1_install_leaves_a_verified_boot_choice_and_no_mount() {
    let rel = release(Format::V1);
    agent_bin();
    let mut steps = step_points(rel);
    for i in 0..2 {
        steps.push(Point::new(
            rel,
            format!("first checkpoint ({i})"),
            Trigger::Exists(CHECKPOINT),
        ));
    }
    for i in 0..3 {
        steps.push(Point::new(
            rel,
            format!("image check ({i})"),
            Trigger::Log(update_agent::install::image::MOUNT_LOG),
        ));
    }
    let records = run_points(vec![deterministic_points(rel), steps], "v1");
    let kills = records.iter().filter(|r| r.killed).count();
    assert!(kills >= 20, "only {kills} kills landed");
    let resumed = records.iter().filter(|r| r.resumed).count();
    assert!(resumed >= 5, "only {resumed} restarts resumed a download");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains("/new-usr."),
        "a new-usr mount was left behind:\n{mounts}"
    );
}

/// Runs each group of points on its own thread and checks that every
/// phase was hit by a kill.
fn run_points(groups: Vec<Vec<Point>>, what: &str) -> Vec<Record> {
    let groups: Vec<Vec<Record>> = std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .iter()
            .map(|points| {
                s.spawn(move || {
                    let rt = runtime();
                    points.iter().map(|p| run_point(&rt, p)).collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let records: Vec<Record> = groups.into_iter().flatten().collect();
    for r in &records {
        eprintln!(
            "{what}: {:<40} {:?}{}{}",
            r.label,
            r.phase,
            if r.resumed { ", resumed" } else { "" },
            if r.killed {
                ""
            } else {
                ", finished before the kill"
            }
        );
    }
    for phase in [
        Phase::Checking,
        Phase::Downloading,
        Phase::Writing,
        Phase::KernelWrite,
        Phase::Verifying,
        Phase::KernelInstall,
        Phase::FlagFlip,
        Phase::Staged,
    ] {
        assert!(
            records.iter().any(|r| r.killed && r.phase == phase),
            "{what}: no kill landed in {phase:?}"
        );
    }
    records
}

/// Every crash state of `ops` (see `cgpt::disk::for_each_crash_state`) as a disk.
fn for_each_crash_state(old: &[u8], ops: &[LoggedOp], mut visit: impl FnMut(&str, MemDisk)) {
    cgpt::disk::for_each_crash_state(old, ops, |label, img| visit(label, MemDisk(img)));
}

#[test]
fn power_loss_during_the_commit_gpt_write_boots_a_verified_slot() {
    let r = release(Format::V2);
    let node = Node::new("http://127.0.0.1:9/v1/update/");
    let a_hash = node.slot_hash(Slot::A);
    // What the pipeline leaves right before its commit point: the target
    // marked unbootable, then the verified image and kernel written and synced.
    {
        let mut d = cgpt::FileDisk::open_rw(&node.disk).unwrap();
        cgpt::slot::mark_unbootable(&mut d, Slot::B).unwrap();
    }
    node.write_slot(Slot::B, &r.usr);
    std::fs::write(node.path(KERNEL_B), &r.kernel).unwrap();
    let old = std::fs::read(&node.disk).unwrap();
    let extents = [node.extent(Slot::A), node.extent(Slot::B)];

    // The agent's commit: `set_next`, logged write by write.
    let mut log = WriteLog::new(MemDisk(old.clone()));
    assert!(cgpt::slot::set_next(&mut log, Slot::B).unwrap());
    let ops = log.ops().to_vec();
    let writes: Vec<(u64, usize)> = ops
        .iter()
        .filter_map(|o| match o {
            LoggedOp::Write { offset, data } => Some((*offset, data.len())),
            LoggedOp::Sync => None,
        })
        .collect();
    assert_eq!(writes.len(), 4, "{writes:?}");
    // The GPT write never touches either slot's data, so in every crash
    // state the slots hold what they held before: A the running image, B
    // the verified new one.
    for (off, len) in &writes {
        for (s, l) in extents {
            assert!(
                off + *len as u64 <= s || *off >= s + l,
                "GPT write at {off} overlaps a USR slot"
            );
        }
    }
    let slot_of = |img: &[u8], (s, l): (u64, u64)| -> [u8; 32] {
        Sha256::digest(&img[s as usize..(s + l) as usize]).into()
    };
    assert_eq!(slot_of(&old, extents[0]), a_hash);
    assert_eq!(slot_of(&old, extents[1]), r.usr_hash);

    let (mut to_a, mut to_b, mut states) = (0, 0, 0);
    for_each_crash_state(&old, &ops, |label, mut disk| {
        states += 1;
        let entry = cgpt::slot::boot_next(&mut disk)
            .unwrap_or_else(|e| panic!("{label}: GRUB finds no bootable slot: {e}"));
        let img = &disk.0;
        match Slot::from_label(&entry.label).expect("a USR slot") {
            Slot::A => {
                assert_eq!(slot_of(img, extents[0]), a_hash, "{label}: A changed");
                to_a += 1;
            }
            Slot::B => {
                assert_eq!(
                    slot_of(img, extents[1]),
                    r.usr_hash,
                    "{label}: B incomplete"
                );
                assert_eq!(
                    std::fs::read(node.path(KERNEL_B)).unwrap(),
                    r.kernel,
                    "{label}"
                );
                // GRUB spent the one try: B is tried once, A stays the fallback.
                let [a, b] = cgpt::slot::read_slots(&mut disk).unwrap();
                assert_eq!((b.entry.attrs.priority(), b.entry.attrs.tries()), (2, 0));
                assert!(a.bootable(), "{label}: no fallback");
                to_b += 1;
            }
        }
    });
    assert!(states >= 10, "{states} crash states");
    assert!(
        to_a > 0 && to_b > 0,
        "A {to_a}, B {to_b}: not both old and new states"
    );

    // The same power loss one step earlier, while the target is made
    // unbootable before its first byte is written (a node whose USR-B was
    // still the good previous release): GRUB picks A or the old, intact B.
    let node = Node::new("http://127.0.0.1:9/v1/update/");
    let old_b = fixture::image_bytes(5, (USR_MIB << 20) as usize);
    node.write_slot(Slot::B, &old_b);
    {
        let mut d = cgpt::FileDisk::open_rw(&node.disk).unwrap();
        cgpt::slot::mark_good(&mut d, Slot::B).unwrap();
        cgpt::slot::mark_good(&mut d, Slot::A).unwrap();
    }
    assert_eq!(node.cgpt_pts(Slot::A), (2, 0, 1));
    let old = std::fs::read(&node.disk).unwrap();
    let mut log = WriteLog::new(MemDisk(old.clone()));
    assert!(cgpt::slot::mark_unbootable(&mut log, Slot::B).unwrap());
    let ops = log.ops().to_vec();
    let old_b_hash: [u8; 32] = Sha256::digest(&old_b).into();
    let a_hash = node.slot_hash(Slot::A);
    let mut states = 0;
    for_each_crash_state(&old, &ops, |label, mut disk| {
        states += 1;
        let entry = cgpt::slot::boot_next(&mut disk)
            .unwrap_or_else(|e| panic!("{label}: GRUB finds no bootable slot: {e}"));
        let img = &disk.0;
        match Slot::from_label(&entry.label).unwrap() {
            Slot::A => assert_eq!(slot_of(img, extents[0]), a_hash, "{label}"),
            Slot::B => assert_eq!(slot_of(img, extents[1]), old_b_hash, "{label}"),
        }
    });
    assert!(states >= 10, "{states} crash states");
}
