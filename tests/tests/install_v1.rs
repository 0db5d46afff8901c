//! Stock Flatcar payloads: CrAU v1 (no release info, bzip2 operations, an
//! RSA signature) installed through the real daemon. The payload cannot
//! say which version it carries, so the agent binds it by the server's
//! `hash_sha256` and size, the signature, and the release file inside the
//! written image (mounted read-only before the commit point): a validly
//! signed image of another version or board never becomes bootable.
//!
//! The USR images are real ext4 file systems (`mkfs.ext4 -d`), mounted by
//! the agent with the real `mount` (loop, read-only) as root.

use cgpt::Slot;
use e2e::fixture::{self, BOARD, Node, PAYLOAD_NAME, RUNNING, USR_MIB};
use e2e::{OmahaServer, Reply, UpdateSpec, omaha_log};
use update_agent::config::Root;
use update_agent::daemon::{Daemon, LastError, Outcome};
use update_agent::fsm::Operation;

/// The TestOmahaUrl flag: SERVER is not the public server.
const TEST_URL: u32 = 0x1000_0000;
const NEW: &str = "3600.0.0";

/// A v1 release: (usr image, kernel, payload) whose image says `version`
/// and `board` of itself.
fn release(version: &str, board: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let usr = fixture::usr_fs_image(version, board, (USR_MIB << 20) as usize, 5, 1 << 20);
    let kernel = format!("kernel of {version}\n").repeat(300).into_bytes();
    let payload = fixture::payload_v1(&usr, &kernel);
    (usr, kernel, payload)
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

/// Mount points the agent left in its state directory.
fn leftover_mounts(node: &Node) -> Vec<String> {
    std::fs::read_dir(node.path("/var/lib/update_engine"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("new-usr."))
                .collect()
        })
        .unwrap_or_default()
}

/// One cycle that must fail with `code`: the target stays unbootable, the
/// booted slot unchanged, no kernel or mount left behind.
async fn fails(server: &OmahaServer, node: &Node, code: u32) -> LastError {
    let a = node.slot_hash(Slot::A);
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    let outcome = daemon.run_once().await;
    let Outcome::Failed(err) = outcome else {
        panic!("expected a failure, got {outcome:?}")
    };
    assert_eq!(err.code, code | TEST_URL, "{err:?}");
    assert_eq!(daemon.handle().status().operation, Operation::Idle);
    assert_eq!(node.slot_hash(Slot::A), a, "booted slot changed");
    assert_eq!(node.cgpt_pts(Slot::A), (1, 0, 1));
    assert_eq!(node.cgpt_pts(Slot::B), (0, 0, 0), "target made bootable");
    assert_eq!(node.kernel_dir_listing(), ["vmlinuz-a"]);
    assert!(!node.exists("/run/update_engine_autoupdate_completed"));
    assert_eq!(node.pref("previous-version").unwrap_or_default(), "");
    assert_eq!(leftover_mounts(node), Vec::<String>::new());
    let log = omaha_log(server);
    assert_eq!(
        log.last().unwrap(),
        &format!("3/0/{}", code | TEST_URL),
        "{log:?}"
    );
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_v1_payload_installs() {
    let (server, node) = setup().await;
    let (usr, kernel, payload) = release(NEW, BOARD);
    assert_eq!(
        &payload[..12],
        b"CrAU\0\0\0\0\0\0\0\x01",
        "not a v1 payload"
    );
    server.push(Reply::Update(offer(&server, NEW, &payload)));
    let a = node.slot_hash(Slot::A);
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    let outcome = daemon.run_once().await;
    assert_eq!(
        outcome,
        Outcome::Updated {
            version: NEW.into()
        },
        "{:?}",
        daemon.handle().last_error()
    );
    assert_eq!(node.read_slot(Slot::B), usr);
    assert_eq!(
        std::fs::read(node.path("/boot/flatcar/vmlinuz-b")).unwrap(),
        kernel
    );
    assert_eq!(node.slot_hash(Slot::A), a);
    assert_eq!(node.cgpt_pts(Slot::A), (1, 0, 1));
    assert_eq!(node.cgpt_pts(Slot::B), (2, 1, 0));
    assert_eq!(node.pref("previous-version").as_deref(), Some(RUNNING));
    assert_eq!(leftover_mounts(&node), Vec::<String>::new());
    assert_eq!(omaha_log(&server), ["check", "13/1", "14/1", "3/1"]);
}

/// A validly signed v1 image whose release file names another version or
/// board than the server announced, or that has no release file, or is no
/// file system at all: refused before the commit point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_image_of_another_release_is_refused() {
    let (server, node) = setup().await;
    let (_, _, old) = release("3500.0.0", BOARD);
    server.push(Reply::Update(offer(&server, NEW, &old)));
    let err = fails(&server, &node, 15).await;
    assert_eq!(err.kind, "image_release_mismatch", "{err:?}");
    assert!(
        err.message.contains("\"3500.0.0\"") && err.message.contains("\"3600.0.0\""),
        "{err:?}"
    );

    let (_, _, arm) = release(NEW, "arm64-usr");
    server.push(Reply::Update(offer(&server, NEW, &arm)));
    let err = fails(&server, &node, 15).await;
    assert!(err.message.contains("arm64-usr"), "{err:?}");

    // Not a file system: the read-only mount fails.
    let junk = fixture::image_bytes(9, 1 << 20);
    let p = fixture::payload_v1(&junk, b"kernel");
    server.push(Reply::Update(offer(&server, NEW, &p)));
    let err = fails(&server, &node, 5).await;
    assert_eq!(err.kind, "image_mount", "{err:?}");
}

/// The v1 payload's other bindings: the whole-file hash and size from the
/// answer, and the RSA signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_wrong_hash_size_or_key_is_refused() {
    let (server, node) = setup().await;
    let (usr, kernel, payload) = release(NEW, BOARD);
    let mut spec = offer(&server, NEW, &payload);
    spec.sha256[0] ^= 1;
    server.push(Reply::Update(spec));
    let err = fails(&server, &node, 10).await;
    assert_eq!(err.kind, "payload_hash_mismatch", "{err:?}");

    let mut spec = offer(&server, NEW, &payload);
    spec.size -= 1;
    server.push(Reply::Update(spec));
    fails(&server, &node, 11).await;

    let stranger = payload::SigningKey::generate_rsa(2048).unwrap();
    let parts = [
        payload::generate::PartitionInput {
            name: "usr".into(),
            new: &usr,
            old: None,
        },
        payload::generate::PartitionInput {
            name: "kernel".into(),
            new: &kernel,
            old: None,
        },
    ];
    let unsigned =
        payload::generate::generate(&parts, &payload::generate::GenOptions::flatcar_v1()).unwrap();
    let mut foreign = Vec::new();
    unsigned.write_with_keys(&[stranger], &mut foreign).unwrap();
    server.push(Reply::Update(offer(&server, NEW, &foreign)));
    let err = fails(&server, &node, 18).await;
    assert_eq!(err.kind, "payload_signature_mismatch", "{err:?}");
}

/// A v1 download cut twice (at a third and two thirds: the image's file
/// system, and so the payload's length, differs from run to run) resumes
/// within the run with Range requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_cut_download_resumes() {
    let (server, node) = setup().await;
    let (usr, _, payload) = release(NEW, BOARD);
    server.push(Reply::Update(offer(&server, NEW, &payload)));
    let cut = payload.len() as u64 / 3;
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
    assert_eq!(
        gets[1].header("range"),
        Some(format!("bytes={cut}-{}", payload.len() - 1).as_str())
    );
    assert_eq!(node.read_slot(Slot::B), usr);
    assert_eq!(node.cgpt_pts(Slot::B), (2, 1, 0));
}
