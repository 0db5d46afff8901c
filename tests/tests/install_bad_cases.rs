//! Every way an update can go wrong, through the real daemon: each ends
//! with a clear error, status back to IDLE, the booted slot's bytes
//! unchanged, the target never made bootable, no kernel left behind, and
//! the failure reported to the server.

use cgpt::Slot;
use e2e::fixture::{self, BOARD, Node, PAYLOAD_NAME};
use e2e::{OmahaServer, Reply, UpdateSpec, omaha_log};
use update_agent::config::Root;
use update_agent::daemon::{Daemon, LastError, Outcome};
use update_agent::fsm::Operation;

/// The TestOmahaUrl flag: SERVER is not the public server.
const TEST_URL: u32 = 0x1000_0000;

fn fixtures() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../omaha/tests/fixtures/generated-responses")
}

async fn setup() -> (OmahaServer, Node) {
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    (server, node)
}

fn offer(server: &OmahaServer, version: &str, payload: &[u8]) -> UpdateSpec {
    server.serve_file(PAYLOAD_NAME, payload.to_vec());
    UpdateSpec::for_payload(version, &server.files_url(), PAYLOAD_NAME, payload)
}

/// Runs one cycle that must fail with base code `code` (result `result`)
/// and checks the invariants; returns the error.
async fn fails(server: &OmahaServer, node: &Node, code: u32, result: u32) -> LastError {
    let a = node.slot_hash(Slot::A);
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    let outcome = daemon.run_once().await;
    let Outcome::Failed(err) = outcome else {
        panic!("expected a failure, got {outcome:?}")
    };
    assert_eq!(err.code, code | TEST_URL, "{err:?}");
    assert!(!err.message.is_empty());
    assert_eq!(daemon.handle().status().operation, Operation::Idle);
    assert_eq!(daemon.handle().last_error().as_ref(), Some(&err));
    assert_eq!(node.slot_hash(Slot::A), a, "booted slot changed");
    assert_eq!(node.cgpt_pts(Slot::A), (1, 0, 1));
    let (p, t, s) = node.cgpt_pts(Slot::B);
    assert!(p == 0 && t == 0 && s == 0, "target bootable: {p} {t} {s}");
    assert_eq!(node.kernel_dir_listing(), ["vmlinuz-a"]);
    assert!(!node.exists("/run/update_engine_autoupdate_completed"));
    assert!(!node.exists("/var/lib/update_engine/install-checkpoint.json"));
    let log = omaha_log(server);
    assert_eq!(
        log.last().unwrap(),
        &format!("3/{result}/{}", code | TEST_URL),
        "{log:?}"
    );
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nebraska_errors_malformed_bomb_and_huge() {
    let (server, node) = setup().await;
    let mut entries: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("resp-error-")
        })
        .collect();
    entries.sort();
    assert!(entries.len() >= 10);
    for path in entries {
        // Nebraska answers for the appid asked about; the unknown-app
        // fixture answered a made-up one.
        let xml = std::fs::read_to_string(&path).unwrap().replace(
            "{00000000-0000-0000-0000-000000000000}",
            omaha::FLATCAR_APP_ID,
        );
        server.push(Reply::Xml(xml));
        let err = fails(&server, &node, 34, 0).await;
        assert!(err.message.contains("error-"), "{path:?}: {err:?}");
    }
    server.push(Reply::Xml(
        "<response protocol=\"3.0\"><app status=\"ok\"><updatecheck".into(),
    ));
    fails(&server, &node, 31, 0).await;
    let bomb = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<response protocol="3.0"><app status="ok"><updatecheck status="&lol4;"></updatecheck></app></response>"#;
    server.push(Reply::Xml(bomb.into()));
    fails(&server, &node, 31, 0).await;
    server.push(Reply::Huge {
        size: 100 << 20,
        content_length: false,
    });
    let err = fails(&server, &node, 31, 0).await;
    assert!(server.huge_bytes_sent() < 100 << 20);
    assert!(err.kind.contains("large"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_and_5xx() {
    let (server, node) = setup().await;
    server.push(Reply::Status(503));
    let err = fails(&server, &node, 2503, 0).await;
    assert!(err.message.contains("503"), "{err:?}");
    server.push(Reply::Status(500));
    fails(&server, &node, 2500, 0).await;

    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    std::fs::write(
        node.path("/etc/flatcar/update.conf"),
        format!("SERVER=http://127.0.0.1:{port}/v1/update/\n"),
    )
    .unwrap_or_else(|_| {
        std::fs::create_dir_all(node.path("/etc/flatcar")).unwrap();
        std::fs::write(
            node.path("/etc/flatcar/update.conf"),
            format!("SERVER=http://127.0.0.1:{port}/v1/update/\n"),
        )
        .unwrap()
    });
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    let Outcome::Failed(err) = daemon.run_once().await else {
        panic!()
    };
    assert_eq!(err.code, 2000 | TEST_URL);
    assert_eq!(err.kind, "unreachable");
    assert_eq!(node.cgpt_pts(Slot::B), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_hash_and_wrong_size() {
    let (server, node) = setup().await;
    let (_, _, payload) = fixture::small_payload();
    let mut spec = offer(&server, "3600.0.0", payload);
    spec.sha256[0] ^= 1;
    server.push(Reply::Update(spec));
    let err = fails(&server, &node, 10, 0).await;
    assert_eq!(err.kind, "payload_hash_mismatch", "{err:?}");
    // As update_engine: 13/1 before the download; 14/1 ("after the
    // download and signature verification") is never sent for a payload
    // that failed verification.
    let log = omaha_log(&server);
    assert_eq!(log[..2], ["check", "13/1"], "{log:?}");
    assert!(log[2].starts_with("3/0/"), "{log:?}");

    for delta in [-1i64, 1] {
        let mut spec = offer(&server, "3600.0.0", payload);
        spec.size = (spec.size as i64 + delta) as u64;
        server.push(Reply::Update(spec));
        let err = fails(&server, &node, 11, 0).await;
        assert!(err.message.contains("size mismatch"), "{err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_and_other_board() {
    let (server, node) = setup().await;
    let (usr, kernel, _) = fixture::small_payload();
    let stranger = payload::SigningKey::generate_ed25519();
    let bad = Node::payload_signed(&stranger, "3600.0.0", BOARD, usr, kernel);
    server.push(Reply::Update(offer(&server, "3600.0.0", &bad)));
    let err = fails(&server, &node, 26, 0).await;
    assert!(err.message.contains("signature"), "{err:?}");

    let arm = node.payload("3600.0.0", "arm64-usr", usr, kernel);
    server.push(Reply::Update(offer(&server, "3600.0.0", &arm)));
    let err = fails(&server, &node, 12, 0).await;
    assert!(err.message.contains("arm64-usr"), "{err:?}");

    // Signed metadata says 3600.0.0, the server announces 3700.0.0.
    let (_, _, good) = fixture::small_payload();
    server.push(Reply::Update(offer(&server, "3700.0.0", good)));
    let err = fails(&server, &node, 12, 0).await;
    assert!(err.message.contains("3700.0.0"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downgrade_and_deny_list() {
    let (server, node) = setup().await;
    let (_, _, payload) = fixture::small_payload();
    server.push(Reply::Update(offer(&server, "3400.0.0", payload)));
    let err = fails(&server, &node, 35, 9).await;
    assert_eq!(err.kind, "downgrade_refused");
    assert_eq!(
        omaha_log(&server),
        ["check", format!("3/9/{}", 35 | TEST_URL).as_str()]
    );
    assert!(
        server.requests().iter().all(|r| r.method != "GET"),
        "nothing may be downloaded"
    );

    update_agent::denylist::DenyList::in_dir(&node.path("/var/lib/update_engine"))
        .add("3600.0.0", "health check failed: etcd", 1)
        .unwrap();
    server.push(Reply::Update(offer(&server, "3600.0.0", payload)));
    let err = fails(&server, &node, 35, 9).await;
    assert_eq!(err.kind, "deny_listed");
    assert!(err.message.contains("health check failed: etcd"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_version_is_not_reinstalled() {
    let (server, node) = setup().await;
    let (_, _, payload) = fixture::small_payload();
    server.push(Reply::Update(offer(&server, "3600.0.0", payload)));
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    assert!(matches!(daemon.run_once().await, Outcome::Updated { .. }));
    drop(daemon);
    // Reboot: B fails, GRUB falls back to A, still 3510.2.0.
    node.reboot("3a2f4d8e-0000-4000-8000-000000000002");
    let mut disk = cgpt::FileDisk::open_rw(&node.disk).unwrap();
    cgpt::slot::mark_bad(&mut disk, Slot::B).unwrap();
    drop(disk);
    std::fs::remove_file(node.path("/boot/flatcar/vmlinuz-b")).unwrap();

    server.push(Reply::Update(offer(&server, "3600.0.0", payload)));
    let gets_before = server.gets().len();
    let err = fails(&server, &node, 35, 9).await;
    assert_eq!(err.kind, "deny_listed");
    assert!(err.message.contains("rolled back"), "{err:?}");
    assert_eq!(gets_before, server.gets().len());
    // The check itself reported the rollback (3/0/44), as update_engine does.
    let checks: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .filter_map(|r| match &r.omaha_request().kind {
            omaha::RequestKind::UpdateCheck { event } => Some(event.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(checks.last().unwrap(), &omaha::Event::rollback());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_download_resumes_within_the_run() {
    let (server, node) = setup().await;
    let (usr, kernel, payload) = fixture::small_payload();
    server.push(Reply::Update(offer(&server, "3600.0.0", payload)));
    let cut = payload.len() as u64 / 2;
    server.cut_file_after(PAYLOAD_NAME, cut, 2);
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    let outcome = daemon.run_once().await;
    assert!(
        matches!(outcome, Outcome::Updated { .. }),
        "{outcome:?} {:?}",
        daemon.handle().last_error()
    );
    let gets = server.gets();
    assert_eq!(gets.len(), 3, "{gets:?}");
    assert_eq!(gets[0].header("range"), None);
    assert_eq!(
        gets[1].header("range"),
        Some(format!("bytes={cut}-{}", payload.len() - 1).as_str())
    );
    assert_eq!(
        gets[2].header("range"),
        Some(format!("bytes={}-{}", 2 * cut, payload.len() - 1).as_str())
    );
    assert_eq!(&node.read_slot(Slot::B)[..usr.len()], &usr[..]);
    assert_eq!(
        std::fs::read(node.path("/boot/flatcar/vmlinuz-b")).unwrap(),
        *kernel
    );
    assert_eq!(node.cgpt_pts(Slot::B), (2, 1, 0));
    assert_eq!(omaha_log(&server), ["check", "13/1", "14/1", "3/1"]);
}

/// Flatcar's key file (`/usr/share/update_engine/update-payload-key.pub.pem`,
/// where admins bind-mount another key to switch servers) is trusted beside
/// the key directory. With Flatcar's production key there and no key
/// directory, a payload Flatcar did not sign is refused; with neither, the
/// update fails before anything is downloaded (update_engine would skip the
/// signature check); with the release key there, it installs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flatcar_payload_key_file() {
    let (server, node) = setup().await;
    let (usr, kernel, payload) = fixture::small_payload();
    std::fs::remove_dir_all(node.path("/etc/update-agent/keys")).unwrap();
    let key_file = node.path("/usr/share/update_engine/update-payload-key.pub.pem");
    std::fs::create_dir_all(key_file.parent().unwrap()).unwrap();
    let official = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../payload/tests/data/flatcar/official-v2.pub.pem");
    std::fs::copy(official, &key_file).unwrap();
    server.push(Reply::Update(offer(&server, "3600.0.0", payload)));
    let err = fails(&server, &node, 26, 0).await;
    assert!(err.message.contains("signature"), "{err:?}");

    std::fs::remove_file(&key_file).unwrap();
    server.push(Reply::Update(offer(&server, "3600.0.0", payload)));
    let before = server.gets().len();
    let err = fails(&server, &node, 18, 0).await;
    assert!(err.message.contains("no trusted keys"), "{err:?}");
    assert_eq!(server.gets().len(), before, "downloaded without a keyring");

    std::fs::write(&key_file, fixture::test_key().public().to_pem().unwrap()).unwrap();
    server.push(Reply::Update(offer(&server, "3600.0.0", payload)));
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    let outcome = daemon.run_once().await;
    assert!(
        matches!(outcome, Outcome::Updated { .. }),
        "{outcome:?} {:?}",
        daemon.handle().last_error()
    );
    assert!(node.read_slot(Slot::B)[..usr.len()] == usr[..]);
    assert_eq!(
        std::fs::read(node.path("/boot/flatcar/vmlinuz-b")).unwrap(),
        *kernel
    );
    assert_eq!(node.cgpt_pts(Slot::B), (2, 1, 0));
}

/// A failure after the commit point (here the reboot marker cannot be
/// written: its directory is a file) undoes the slot switch: the error is
/// reported and the next boot is still the booted slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_after_the_switch_undoes_it() {
    let (server, node) = setup().await;
    let (_, _, payload) = fixture::small_payload();
    node.add_config(
        "[state]\nreboot_marker = \"/run/blocked/update_engine_autoupdate_completed\"\n",
    );
    std::fs::create_dir_all(node.path("/run")).unwrap();
    std::fs::write(node.path("/run/blocked"), "not a directory").unwrap();
    server.push(Reply::Update(offer(&server, "3600.0.0", payload)));
    let a = node.slot_hash(Slot::A);
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    let outcome = daemon.run_once().await;
    let Outcome::Failed(err) = outcome else {
        panic!("expected a failure, got {outcome:?}")
    };
    assert!(err.message.contains("/run/blocked"), "{err:?}");
    assert_eq!(daemon.handle().status().operation, Operation::Idle);
    assert_eq!(node.slot_hash(Slot::A), a);
    assert_eq!(node.cgpt_pts(Slot::A), (1, 0, 1));
    assert_eq!(node.cgpt_pts(Slot::B), (0, 0, 0));
    // The verified kernel stays (complete, and unused while B is unbootable).
    assert_eq!(node.kernel_dir_listing(), ["vmlinuz-a", "vmlinuz-b"]);
    // Not the running version: without the marker that reads as a rollback.
    let previous =
        std::fs::read_to_string(node.path("/var/lib/update_engine/prefs/previous-version"));
    assert_ne!(previous.ok().as_deref(), Some(fixture::RUNNING));
    assert!(!node.exists("/var/lib/update_engine/prefs/update-agent-installed-version"));
    let log = omaha_log(&server);
    assert_eq!(log[..3], ["check", "13/1", "14/1"], "{log:?}");
    assert!(log[3].starts_with("3/0/"), "{log:?}");
}

/// `LastError` (and `-json`'s `last_error`) describe the current state: a
/// later successful check clears an old failure. The last check time
/// survives a restart of the daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_check_clears_the_last_error_and_the_check_time_persists() {
    let (server, node) = setup().await;
    server.push(Reply::Status(503));
    server.push(Reply::NoUpdate);
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    assert!(matches!(daemon.run_once().await, Outcome::Failed(_)));
    assert!(daemon.handle().last_error().is_some());
    assert_eq!(daemon.run_once().await, Outcome::NoUpdate);
    assert_eq!(daemon.handle().last_error(), None);
    let checked = daemon.handle().last_checked_time();
    assert!(checked > 1_700_000_000, "{checked}");
    drop(daemon);
    let restarted = Daemon::new(Root::new(node.root()), None).unwrap();
    assert_eq!(restarted.handle().last_checked_time(), checked);
}

/// A node whose release file names no version or no board takes no offer:
/// nothing could rule out a downgrade, or another board's release. The
/// check still goes out; nothing is downloaded; setting the key in
/// /etc/flatcar/update.conf (which update_engine reads first) fixes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_does_not_know_its_version_or_board_takes_nothing() {
    let (server, node) = setup().await;
    let (_, _, payload) = fixture::small_payload();
    let release = node.path("/usr/share/flatcar/release");
    for (text, kind) in [
        (
            "FLATCAR_RELEASE_BOARD=amd64-usr\n",
            "running_version_unknown",
        ),
        ("FLATCAR_RELEASE_VERSION=3510.2.0\n", "board_unknown"),
    ] {
        std::fs::write(&release, text).unwrap();
        server.push(Reply::Update(offer(&server, "3600.0.0", payload)));
        let err = fails(&server, &node, 35, 9).await;
        assert_eq!(err.kind, kind, "{err:?}");
    }
    assert!(
        server.requests().iter().all(|r| r.method != "GET"),
        "nothing may be downloaded"
    );
    let conf = node.path("/etc/flatcar/update.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::write(&conf, "FLATCAR_RELEASE_BOARD=amd64-usr\n").unwrap();
    server.push(Reply::Update(offer(&server, "3600.0.0", payload)));
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    let outcome = daemon.run_once().await;
    assert!(matches!(outcome, Outcome::Updated { .. }), "{outcome:?}");
}
