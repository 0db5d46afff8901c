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

use std::time::{Duration, Instant};

use cgpt::Slot;
use cgpt::disk::{LoggedOp, MemDisk, WriteLog};
use e2e::Reply;
use e2e::fixture::{self, Node, PAYLOAD_NAME, USR_MIB};
use sha2::{Digest, Sha256};

#[path = "crash_injection/support.rs"]
mod support;
use support::*;

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
    assert_extension_files(&node, r, what, false);
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
    // The payload held three quarters into the kernel's bytes: its first
    // 256 KiB operation is written, the second cannot be. Deterministic,
    // unlike the polled points around it, which a loaded machine can
    // overrun (the whole kernel takes ~250 ms at BANDWIDTH).
    let mid_kernel = rel.kernel_at + k * 3 / 4;
    vec![
        Point {
            stall_at: Some(mid_kernel),
            ..Point::new(
                rel,
                "kernel: payload stalled mid-write",
                Trigger::Partial(1),
            )
        },
        Point::new(rel, "kernel: first bytes", Trigger::Partial(1)),
        Point::new(rel, "kernel: half", Trigger::Partial(k / 2)),
        Point::new(rel, "kernel: all written", Trigger::PartialComplete),
        Point::new(rel, "payload verified", Trigger::Log("payload verified")),
        Point::new(
            rel,
            "payload verified (2)",
            Trigger::Log("payload verified"),
        ),
        // Right after every image verified: the kernel rename and the
        // commit are next (the extension phase, if any, lies before).
        Point::new(
            rel,
            "release verified",
            Trigger::Log(update_agent::install::RELEASE_VERIFIED_LOG),
        ),
        Point::new(
            rel,
            "release verified (2)",
            Trigger::Log(update_agent::install::RELEASE_VERIFIED_LOG),
        ),
        Point::new(rel, "kernel renamed", Trigger::Exists(KERNEL_B)),
        Point::new(rel, "GPT commit", Trigger::Committed),
        Point::new(rel, "GPT commit (2)", Trigger::Committed),
        Point {
            flip_writes: Some(1),
            ..Point::new(
                rel,
                "flag flip: killed after write 1 of 4",
                Trigger::Log(update_agent::install::RELEASE_VERIFIED_LOG),
            )
        },
        Point {
            flip_writes: Some(2),
            ..Point::new(
                rel,
                "flag flip: killed after write 2 of 4",
                Trigger::Log(update_agent::install::RELEASE_VERIFIED_LOG),
            )
        },
        Point {
            flip_writes: Some(3),
            ..Point::new(
                rel,
                "flag flip: killed after write 3 of 4",
                Trigger::Log(update_agent::install::RELEASE_VERIFIED_LOG),
            )
        },
        Point {
            flip_writes: Some(4),
            ..Point::new(
                rel,
                "flag flip: killed after write 4 of 4",
                Trigger::Log(update_agent::install::RELEASE_VERIFIED_LOG),
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
    // The extension phase: its start, the OEM image placed (the zfs one
    // still downloading), a fraction of it.
    for i in 0..2 {
        steps.push(Point::new(
            rel,
            format!("extensions: start ({i})"),
            Trigger::Log("payload verified"),
        ));
        steps.push(Point::new(
            rel,
            format!("extensions: OEM image placed ({i})"),
            Trigger::Log("oem-azure.gz verified and placed"),
        ));
    }
    let records = run_points(vec![deterministic_points(rel), steps], "v1");
    assert!(
        records
            .iter()
            .any(|r| r.killed && r.phase == Phase::Extensions),
        "v1: no kill landed in the extension phase"
    );
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
