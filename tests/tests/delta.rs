//! Deltas through an unmodified Omaha server: the answer offers the full
//! payload and `delta-<running version>.gz`; the agent applies the delta
//! with the booted slot and kernel as its read-only source, and any delta
//! failure goes on with the full payload in the same attempt.

use cgpt::Slot;
use e2e::fixture::{self, BOARD, Node, PAYLOAD_NAME, RUNNING};
use e2e::{OmahaServer, Reply, UpdateSpec, omaha_log};
use payload::SigningKey;
use update_agent::config::Root;
use update_agent::daemon::{Daemon, Outcome};

const NEW: &str = "3600.0.0";
const DELTA: &str = "delta-3510.2.0.gz";
/// The TestOmahaUrl flag.
const TEST_URL: u32 = 0x1000_0000;

/// The new release: 5 % of the running image's blocks changed.
fn new_release() -> (Vec<u8>, Vec<u8>) {
    let (mut usr, _) = fixture::running_images();
    for (i, block) in usr.chunks_mut(4096).enumerate() {
        if i % 20 == 7 {
            block.copy_from_slice(&fixture::image_bytes(1000 + i as u64, 4096));
        }
    }
    (usr, format!("kernel of {NEW}\n").repeat(50).into_bytes())
}

/// A v2 payload of the new release, a delta from `old` when given.
fn payload(old: Option<(&[u8], &[u8])>, key: &SigningKey) -> Vec<u8> {
    let (usr, kernel) = new_release();
    let images = [
        (&usr[..], old.map(|o| o.0)),
        (&kernel[..], old.map(|o| o.1)),
    ];
    fixture::signed_v2(key, NEW, BOARD, images)
}

struct Release {
    full: Vec<u8>,
    delta: Vec<u8>,
}

fn release() -> &'static Release {
    static R: std::sync::OnceLock<Release> = std::sync::OnceLock::new();
    R.get_or_init(|| {
        let (usr, kernel) = fixture::running_images();
        Release {
            full: payload(None, fixture::test_key()),
            delta: payload(Some((&usr, &kernel)), fixture::test_key()),
        }
    })
}

/// Serves the full payload and `delta` under `name`; the offer lists both.
fn offer(server: &OmahaServer, name: &str, delta: &[u8]) -> UpdateSpec {
    let r = release();
    server.serve_file(PAYLOAD_NAME, r.full.clone());
    server.serve_file(name, delta.to_vec());
    UpdateSpec::for_payload(NEW, &server.files_url(), PAYLOAD_NAME, &r.full)
        .with_package(name, delta)
}

/// One run that must stage the new release.
async fn installs(node: &Node) {
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
    let (usr, kernel) = new_release();
    assert!(node.read_slot(Slot::B) == usr, "USR-B is not the new image");
    assert!(std::fs::read(node.path("/boot/flatcar/vmlinuz-b")).unwrap() == kernel);
    assert_eq!(node.cgpt_pts(Slot::B), (2, 1, 0));
    assert_eq!(node.pref("previous-version").as_deref(), Some(RUNNING));
}

fn fetched(server: &OmahaServer) -> Vec<String> {
    let mut v: Vec<String> = server
        .gets()
        .iter()
        .map(|r| r.path.trim_start_matches("/files/").to_string())
        .collect();
    v.dedup();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_delta_is_downloaded() {
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    let r = release();
    assert!(
        r.delta.len() * 4 < r.full.len(),
        "{} vs {}",
        r.delta.len(),
        r.full.len()
    );
    let a = node.slot_hash(Slot::A);
    server.push(Reply::Update(offer(&server, DELTA, &r.delta)));
    installs(&node).await;
    assert_eq!(fetched(&server), [DELTA]);
    assert_eq!(node.slot_hash(Slot::A), a, "the source slot was written");
    let check = String::from_utf8(server.requests()[0].body.clone()).unwrap();
    assert!(check.contains("delta_okay=\"true\""), "{check}");
    assert_eq!(omaha_log(&server), ["check", "13/1", "14/1", "3/1"]);
}

/// The booted slot differs from the delta's source in one block: the
/// source check fails, the full payload is fetched in the same attempt,
/// the server hears of the failed delta, and the delta is not tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modified_booted_slot_falls_back_to_the_full_payload() {
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    let (mut usr, _) = fixture::running_images();
    usr[4096 * 40] ^= 0xff;
    node.write_slot(Slot::A, &usr);
    let r = release();
    server.push(Reply::Update(offer(&server, DELTA, &r.delta)));
    installs(&node).await;
    assert_eq!(fetched(&server), [DELTA, PAYLOAD_NAME]);
    let log = omaha_log(&server);
    assert_eq!(log.len(), 5, "{log:?}");
    assert_eq!(log[..2], ["check", "13/1"]);
    // The delta's own error code (a source hash mismatch), with our flags.
    let code: u32 = log[2].strip_prefix("3/0/").unwrap().parse().unwrap();
    assert_eq!(code & TEST_URL, TEST_URL, "{log:?}");
    assert_ne!(code & !TEST_URL, 0, "{log:?}");
    assert_eq!(log[3..], ["14/1", "3/1"]);
    let failed = node.pref("update-agent-failed-deltas").unwrap_or_default();
    assert_eq!(failed.trim(), "3600.0.0 3510.2.0");
}

/// Only a delta from another version, or deltas turned off: the full
/// payload, and `delta_okay` says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_versions_delta_or_deltas_off_use_the_full_payload() {
    let r = release();
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    server.push(Reply::Update(offer(&server, "delta-3400.0.0.gz", &r.delta)));
    installs(&node).await;
    assert_eq!(fetched(&server), [PAYLOAD_NAME]);

    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    node.add_config("[download]\ndeltas = false\n");
    server.push(Reply::Update(offer(&server, DELTA, &r.delta)));
    installs(&node).await;
    assert_eq!(fetched(&server), [PAYLOAD_NAME]);
    let check = String::from_utf8(server.requests()[0].body.clone()).unwrap();
    assert!(check.contains("delta_okay=\"false\""), "{check}");
}

/// A delta signed by a stranger, announced with a wrong hash, or cut
/// short more often than the retries allow: the full payload each time,
/// the failure reported with its code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deltas_fall_back_to_the_full_payload() {
    let r = release();
    let (usr, kernel) = fixture::running_images();
    let stranger = SigningKey::generate_ed25519();
    let foreign = payload(Some((&usr, &kernel)), &stranger);
    type Case<'a> = (&'a str, Box<dyn Fn(&OmahaServer) -> UpdateSpec + 'a>);
    let cases: [Case; 3] = [
        ("untrusted key", Box::new(|s| offer(s, DELTA, &foreign))),
        (
            "wrong hash",
            Box::new(|s| {
                let mut spec = offer(s, DELTA, &r.delta);
                spec.extra_packages[0].sha256.as_mut().unwrap()[0] ^= 1;
                spec
            }),
        ),
        (
            "truncated",
            Box::new(|s| {
                let spec = offer(s, DELTA, &r.delta);
                s.cut_file_after(DELTA, 100, 10);
                spec
            }),
        ),
    ];
    for (what, spec) in cases {
        let server = OmahaServer::start().await;
        let node = Node::new(&server.update_url());
        server.push(Reply::Update(spec(&server)));
        installs(&node).await;
        let got = fetched(&server);
        assert_eq!(got.first().map(String::as_str), Some(DELTA), "{what}");
        assert_eq!(got.last().map(String::as_str), Some(PAYLOAD_NAME), "{what}");
        let log = omaha_log(&server);
        assert!(log[2].starts_with("3/0/"), "{what}: {log:?}");
        assert_eq!(log[3..], ["14/1", "3/1"], "{what}");
    }
}
