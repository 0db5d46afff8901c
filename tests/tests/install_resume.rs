//! Resume after a daemon restart: a daemon process is killed in the middle
//! of the download; the next run resumes from the saved checkpoint with an
//! HTTP Range request instead of starting over, and the result is the same
//! as an uninterrupted install.
//!
//! The daemon runs in a child process (this test binary re-executed in
//! child mode), so it can really be killed.

use std::process::Command;
use std::time::{Duration, Instant};

use cgpt::Slot;
use e2e::fixture::{self, BOARD, Node, PAYLOAD_NAME, USR_MIB};
use e2e::{OmahaServer, Reply, UpdateSpec, omaha_log};
use update_agent::config::Root;
use update_agent::daemon::{Daemon, Outcome};

const CHILD_ENV: &str = "E2E_INSTALL_RESUME_CHILD_ROOT";
const CHECKPOINT: &str = "/var/lib/update_engine/install-checkpoint.json";

/// Child mode: run one cycle on the node at `$E2E_INSTALL_RESUME_CHILD_ROOT`
/// (the parent kills it mid-download). Without the variable this checks
/// that the child entry point is really wired to an empty environment.
#[test]
fn child_daemon() {
    let Ok(root) = std::env::var(CHILD_ENV) else {
        assert!(std::env::var_os(CHILD_ENV).is_none());
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut daemon = Daemon::new(Root::new(root), None).unwrap();
    let outcome = rt.block_on(daemon.run_once());
    panic!("the child should have been killed, but finished: {outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_after_restart() {
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    let usr = fixture::image_bytes(3, (USR_MIB << 20) as usize);
    let kernel = b"kernel of 3600.0.0\n".repeat(500);
    let payload = node.payload("3600.0.0", BOARD, &usr, &kernel);
    let spec = full_offer(&server, &payload);
    resume_case(
        server,
        node,
        (usr, kernel),
        spec,
        (PAYLOAD_NAME, payload.len()),
    )
    .await;
}

/// The same with a stock Flatcar (CrAU v1) payload of a real file system.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_a_v1_payload_after_restart() {
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    let usr = fixture::usr_fs_image("3600.0.0", BOARD, (USR_MIB << 20) as usize, 3, 4 << 20);
    let kernel = b"kernel of 3600.0.0\n".repeat(500);
    let payload = fixture::payload_v1(&usr, &kernel);
    let spec = full_offer(&server, &payload);
    resume_case(
        server,
        node,
        (usr, kernel),
        spec,
        (PAYLOAD_NAME, payload.len()),
    )
    .await;
}

/// The same with a delta against the booted slot (the full payload is
/// offered too and never fetched).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_a_delta_after_restart() {
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    let (old_usr, old_kernel) = fixture::running_images();
    let mut usr = old_usr.clone();
    for (i, block) in usr.chunks_mut(4096).enumerate().filter(|(i, _)| i % 8 == 3) {
        block.copy_from_slice(&fixture::image_bytes(500 + i as u64, 4096));
    }
    let kernel = b"kernel of 3600.0.0\n".repeat(500);
    let full = node.payload("3600.0.0", BOARD, &usr, &kernel);
    let images = [
        (&usr[..], Some(&old_usr[..])),
        (&kernel[..], Some(&old_kernel[..])),
    ];
    let delta = fixture::signed_v2(&node.key, "3600.0.0", BOARD, images);
    let name = "delta-3510.2.0.gz";
    server.serve_file(name, delta.clone());
    let spec = full_offer(&server, &full).with_package(name, &delta);
    resume_case(server, node, (usr, kernel), spec, (name, delta.len())).await;
}

/// Serves `payload` and offers it.
fn full_offer(server: &OmahaServer, payload: &[u8]) -> UpdateSpec {
    server.serve_file(PAYLOAD_NAME, payload.to_vec());
    UpdateSpec::for_payload("3600.0.0", &server.files_url(), PAYLOAD_NAME, payload)
}

/// Kill mid-download of `file` (`len` bytes), restart, check the resumed
/// result (`usr`, `kernel`).
async fn resume_case(
    server: OmahaServer,
    node: Node,
    (usr, kernel): (Vec<u8>, Vec<u8>),
    spec: UpdateSpec,
    (file, len): (&str, usize),
) {
    server.push(Reply::Update(spec.clone()));
    server.push(Reply::Update(spec));
    let stall_at = len as u64 * 3 / 4;
    server.stall_file_after(file, stall_at);
    let a = node.slot_hash(Slot::A);

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_daemon", "--nocapture"])
        .env(CHILD_ENV, node.root())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !node.exists(CHECKPOINT) {
        assert!(Instant::now() < deadline, "no checkpoint was saved");
        assert!(child.try_wait().unwrap().is_none(), "child exited early");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the transfer reach the stall (the server says when), then kill
    // the daemon.
    while server.stalled_responses(file) == 0 {
        let gets: Vec<_> = server
            .requests()
            .iter()
            .filter(|r| r.method != "POST")
            .map(|r| format!("{} {:?}", r.method, r.header("range")))
            .collect();
        assert!(
            Instant::now() < deadline,
            "the download never reached the stall: {gets:?}"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "child exited before the stall: {gets:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let cp: serde_json_value::Value =
        serde_json_value::parse(&std::fs::read(node.path(CHECKPOINT)).unwrap());
    let resume_at = cp.resume_offset;
    assert!(
        resume_at > 0 && resume_at <= stall_at,
        "{resume_at} vs {stall_at}"
    );
    // Killed mid-way: target unbootable, booted slot untouched.
    assert_eq!(node.cgpt_pts(Slot::B), (0, 0, 0));
    assert_eq!(node.slot_hash(Slot::A), a);

    server.unstall_file(file);
    let gets_before = server.gets().len();
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    let outcome = daemon.run_once().await;
    assert_eq!(
        outcome,
        Outcome::Updated {
            version: "3600.0.0".into()
        },
        "{:?}",
        daemon.handle().last_error()
    );
    let gets = &server.gets()[gets_before..];
    let ranges: Vec<_> = gets
        .iter()
        .map(|r| r.header("range").unwrap_or(""))
        .collect();
    // The metadata re-read (from 0) and the resumed rest; the server may
    // record them in either order.
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert!(
        ranges.iter().any(|r| r.starts_with("bytes=0-")),
        "{ranges:?}"
    );
    let rest = format!("bytes={resume_at}-{}", len - 1);
    let path = format!("/files/{file}");
    assert!(
        gets.iter().all(|r| r.path == path),
        "only {file} was fetched"
    );
    assert!(ranges.contains(&rest.as_str()), "{ranges:?} lacks {rest}");
    assert_eq!(node.read_slot(Slot::B), usr);
    assert_eq!(
        std::fs::read(node.path("/boot/flatcar/vmlinuz-b")).unwrap(),
        kernel
    );
    assert_eq!(node.kernel_dir_listing(), ["vmlinuz-a", "vmlinuz-b"]);
    assert_eq!(node.cgpt_pts(Slot::B), (2, 1, 0));
    assert_eq!(node.slot_hash(Slot::A), a);
    assert!(!node.exists(CHECKPOINT));
    let log = omaha_log(&server);
    assert_eq!(log[log.len() - 4..], ["check", "13/1", "14/1", "3/1"]);
}

/// The two checkpoint fields the test needs, without a JSON dependency.
mod serde_json_value {
    #[derive(Debug)]
    pub struct Value {
        pub resume_offset: u64,
    }

    fn field(text: &str, name: &str) -> u64 {
        let at = text.find(&format!("\"{name}\":")).unwrap() + name.len() + 3;
        text[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    }

    pub fn parse(bytes: &[u8]) -> Value {
        let text = String::from_utf8_lossy(bytes);
        Value {
            resume_offset: field(&text, "data_start") + field(&text, "next_data_offset"),
        }
    }
}
