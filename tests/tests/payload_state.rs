//! update_engine's payload state (attempt number, backoff expiry, URL
//! position, response signature) survives a daemon restart through the
//! prefs, and resets when the response changes.

use std::time::{Duration, SystemTime};

use cgpt::Slot;
use e2e::fixture::{self, Node, PAYLOAD_NAME};
use e2e::{OmahaServer, Reply, UpdateSpec, omaha_log};
use update_agent::config::Root;
use update_agent::daemon::{Daemon, Outcome};
use update_agent::prefs::time_from_pref;

/// The TestOmahaUrl flag.
const TEST_URL: u32 = 0x1000_0000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_the_payload_backoff() {
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    let (_, _, payload) = fixture::small_payload();
    server.serve_file(PAYLOAD_NAME, payload.clone());
    let good = UpdateSpec {
        disable_payload_backoff: false,
        ..UpdateSpec::for_payload("3600.0.0", &server.files_url(), PAYLOAD_NAME, payload)
    };
    let mut bad = good.clone();
    bad.sha256[0] ^= 1;

    // Attempt 1: the hash does not match, so (as in update_engine, whose
    // DownloadComplete follows only a verified download) the download does
    // not count; the only URL failed: attempt 1, backoff 1 day ± 6 h.
    server.push(Reply::Update(bad.clone()));
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    let Outcome::Failed(err) = daemon.run_once().await else {
        panic!("a wrong hash must fail")
    };
    assert_eq!(err.kind, "payload_hash_mismatch", "{err:?}");
    drop(daemon);
    assert_eq!(node.pref("payload-attempt-number").as_deref(), Some("1"));
    assert_eq!(node.pref("current-url-index").as_deref(), Some("0"));
    let expiry = node
        .pref("backoff-expiry-time")
        .and_then(|v| v.parse().ok())
        .and_then(time_from_pref)
        .expect("a backoff expiry");
    let left = expiry.duration_since(SystemTime::now()).unwrap();
    let hour = Duration::from_secs(3600);
    assert!(left > 17 * hour && left <= 30 * hour, "{left:?}");
    let sig = node.pref("current-response-signature").unwrap();
    assert!(sig.contains(&hex::encode(bad.sha256)), "{sig}");

    // "Restart": a new daemon, the same offer: deferred, nothing fetched.
    let gets = server.gets().len();
    server.push(Reply::Update(bad.clone()));
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    let Outcome::Failed(err) = daemon.run_once().await else {
        panic!("the backoff must defer the update")
    };
    assert_eq!(err.kind, "payload_backoff", "{err:?}");
    assert_eq!(err.code, 40 | TEST_URL);
    assert!(err.message.contains("attempt 1"), "{err:?}");
    assert_eq!(server.gets().len(), gets, "nothing may be downloaded");
    assert_eq!(
        omaha_log(&server).last().unwrap(),
        &format!("3/9/{}", 40 | TEST_URL)
    );
    assert_eq!(node.cgpt_pts(Slot::B), (0, 0, 0));
    assert_eq!(node.pref("payload-attempt-number").as_deref(), Some("1"));
    drop(daemon);

    // A different response (the right hash): a fresh state, installed.
    server.push(Reply::Update(good.clone()));
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    let outcome = daemon.run_once().await;
    assert!(
        matches!(outcome, Outcome::Updated { .. }),
        "{outcome:?} {:?}",
        daemon.handle().last_error()
    );
    let sig = node.pref("current-response-signature").unwrap();
    assert!(sig.contains(&hex::encode(good.sha256)), "{sig}");
    // update_engine counts the completed download as attempt 1.
    assert_eq!(node.pref("payload-attempt-number").as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_at_the_current_url() {
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    let (_, _, payload) = fixture::small_payload();
    // Mirror 0 serves a damaged copy (same size), mirror 1 the real one.
    let mut damaged = payload.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0xff;
    server.serve_file(&format!("m0/{PAYLOAD_NAME}"), damaged);
    server.serve_file(&format!("m1/{PAYLOAD_NAME}"), payload.clone());
    let mut spec = UpdateSpec::for_payload("3600.0.0", &server.files_url(), PAYLOAD_NAME, payload);
    spec.codebases = vec![
        format!("{}m0/", server.files_url()),
        format!("{}m1/", server.files_url()),
    ];
    assert!(spec.disable_payload_backoff);

    server.push(Reply::Update(spec.clone()));
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    assert!(matches!(daemon.run_once().await, Outcome::Failed(_)));
    drop(daemon);
    assert_eq!(node.pref("current-url-index").as_deref(), Some("1"));
    assert_eq!(node.pref("backoff-expiry-time").as_deref(), Some("0"));

    // Restarted, the same offer: straight to mirror 1.
    let before = server.gets().len();
    server.push(Reply::Update(spec));
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    let outcome = daemon.run_once().await;
    assert!(
        matches!(outcome, Outcome::Updated { .. }),
        "{outcome:?} {:?}",
        daemon.handle().last_error()
    );
    let paths: Vec<String> = server.gets()[before..]
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(paths, [format!("/files/m1/{PAYLOAD_NAME}")]);
}
