//! HTTPS end to end: the in-process server speaks TLS with a certificate
//! from a test CA, the agent trusts that CA through `omaha.ca_bundle`.
//!
//! - an https update check redirected to http is refused, naming both URLs,
//!   and the http server never sees a request;
//! - an https payload URL redirected to http fails the install before a
//!   byte is written: the target is never made bootable, the booted slot is
//!   unchanged, the http server sees nothing;
//! - a whole install over https works, and `DOWNLOAD_USER`/`DOWNLOAD_PASSWORD`
//!   go out over https only.

use cgpt::Slot;
use e2e::fixture::{self, Node, PAYLOAD_NAME};
use e2e::{OmahaServer, Reply, UpdateSpec, omaha_log, test_ca_pem};
use update_agent::config::Root;
use update_agent::daemon::{Daemon, Outcome};
use update_agent::fsm::Operation;

/// The TestOmahaUrl flag: SERVER is not the public server.
const TEST_URL: u32 = 0x1000_0000;
/// `Authorization` for `DOWNLOAD_USER=fleet`, `DOWNLOAD_PASSWORD=s3cret`.
const BASIC_AUTH: &str = "Basic ZmxlZXQ6czNjcmV0";

/// A node whose `SERVER` is `server`, trusting the test CA, with download
/// credentials set in `/etc/flatcar/update.conf`.
fn node_for(server: &OmahaServer) -> Node {
    let node = Node::new(&server.update_url());
    let ca = node.path("/etc/update-agent/test-ca.pem");
    std::fs::write(&ca, test_ca_pem()).unwrap();
    node.add_config("[omaha]\nca_bundle = \"/etc/update-agent/test-ca.pem\"\n");
    let conf = node.path("/etc/flatcar/update.conf");
    std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
    std::fs::write(conf, "DOWNLOAD_USER=fleet\nDOWNLOAD_PASSWORD=s3cret\n").unwrap();
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_check_redirected_to_http_is_refused() {
    let tls = OmahaServer::start_tls().await;
    let plain = OmahaServer::start().await;
    let node = node_for(&tls);
    tls.push(Reply::Redirect {
        status: 302,
        location: plain.update_url(),
    });
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    let Outcome::Failed(err) = daemon.run_once().await else {
        panic!("the check must fail")
    };
    assert_eq!(err.kind, "redirect_refused", "{err:?}");
    assert!(err.message.contains(&tls.update_url()), "{err:?}");
    assert!(err.message.contains(&plain.update_url()), "{err:?}");
    assert!(err.message.contains("insecure"), "{err:?}");
    assert_eq!(err.code, 2000 | TEST_URL);
    assert!(
        plain.requests().is_empty(),
        "http server was contacted: {:?}",
        plain.requests()
    );
    // The error event still went out, over https.
    assert_eq!(
        omaha_log(&tls),
        ["check", &format!("3/0/{}", 2000 | TEST_URL)]
    );
    assert_eq!(daemon.handle().status().operation, Operation::Idle);
    assert_eq!(node.cgpt_pts(Slot::B), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_payload_redirected_to_http_fails_the_install() {
    let tls = OmahaServer::start_tls().await;
    let plain = OmahaServer::start().await;
    let node = node_for(&tls);
    let (_, _, payload) = fixture::small_payload();
    // Were the redirect followed, the http server would deliver the real
    // payload and the install would succeed.
    plain.serve_file(PAYLOAD_NAME, payload.clone());
    tls.redirect_file(
        PAYLOAD_NAME,
        &format!("{}{PAYLOAD_NAME}", plain.files_url()),
    );
    tls.push(Reply::Update(UpdateSpec::for_payload(
        "3600.0.0",
        &tls.files_url(),
        PAYLOAD_NAME,
        payload,
    )));
    let a = node.slot_hash(Slot::A);

    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    let Outcome::Failed(err) = daemon.run_once().await else {
        panic!("the install must fail")
    };
    assert_eq!(err.kind, "redirect_refused", "{err:?}");
    assert!(
        err.message
            .contains(&format!("{}{PAYLOAD_NAME}", tls.files_url())),
        "{err:?}"
    );
    assert!(
        err.message
            .contains(&format!("{}{PAYLOAD_NAME}", plain.files_url())),
        "{err:?}"
    );
    assert!(plain.requests().is_empty(), "{:?}", plain.requests());
    // Fatal at once: no retry of a refused redirect.
    let tls_gets = tls.gets();
    assert_eq!(tls_gets.len(), 1, "{tls_gets:?}");
    // The credentials went to the https URL only.
    assert_eq!(tls_gets[0].header("authorization"), Some(BASIC_AUTH));

    assert_eq!(daemon.handle().status().operation, Operation::Idle);
    assert_eq!(node.slot_hash(Slot::A), a, "booted slot changed");
    assert_eq!(node.cgpt_pts(Slot::A), (1, 0, 1));
    assert_eq!(node.cgpt_pts(Slot::B), (0, 0, 0), "target made bootable");
    assert_eq!(node.kernel_dir_listing(), ["vmlinuz-a"]);
    assert!(!node.exists("/run/update_engine_autoupdate_completed"));
    assert_eq!(node.pref("previous-version").as_deref(), Some(""));
    let log = omaha_log(&tls);
    assert_eq!(log.first().map(String::as_str), Some("check"), "{log:?}");
    assert!(log.last().unwrap().starts_with("3/0/"), "{log:?}");
}

/// An https server whose answer names a plain-http codebase: refused at
/// once, before any download (the http server sees nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_server_with_an_http_codebase_is_refused() {
    let tls = OmahaServer::start_tls().await;
    let plain = OmahaServer::start().await;
    let node = node_for(&tls);
    let (_, _, payload) = fixture::small_payload();
    plain.serve_file(PAYLOAD_NAME, payload.clone());
    tls.push(Reply::Update(UpdateSpec::for_payload(
        "3600.0.0",
        &plain.files_url(),
        PAYLOAD_NAME,
        payload,
    )));
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    let Outcome::Failed(err) = daemon.run_once().await else {
        panic!("the update must be refused")
    };
    assert_eq!(err.kind, "insecure_payload_url", "{err:?}");
    assert_eq!(err.code, 34 | TEST_URL, "{err:?}");
    assert!(err.message.contains(&plain.files_url()), "{err:?}");
    assert!(plain.requests().is_empty(), "{:?}", plain.requests());
    assert_eq!(
        omaha_log(&tls),
        ["check", &format!("3/0/{}", 34 | TEST_URL)]
    );
    assert_eq!(node.cgpt_pts(Slot::B), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_over_https_with_custom_ca_and_credentials_only_over_https() {
    let (usr, kernel, payload) = fixture::small_payload();

    // Over https: TLS with the test CA, credentials sent.
    let tls = OmahaServer::start_tls().await;
    let node = node_for(&tls);
    tls.serve_file(PAYLOAD_NAME, payload.clone());
    tls.push(Reply::Update(UpdateSpec::for_payload(
        "3600.0.0",
        &tls.files_url(),
        PAYLOAD_NAME,
        payload,
    )));
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
    assert_eq!(&node.read_slot(Slot::B)[..usr.len()], &usr[..]);
    assert_eq!(
        std::fs::read(node.path("/boot/flatcar/vmlinuz-b")).unwrap(),
        *kernel
    );
    assert_eq!(node.cgpt_pts(Slot::B), (2, 1, 0));
    assert_eq!(omaha_log(&tls), ["check", "13/1", "14/1", "3/1"]);
    let tls_gets = tls.gets();
    assert_eq!(tls_gets.len(), 1);
    assert_eq!(tls_gets[0].header("authorization"), Some(BASIC_AUTH));
    // Omaha POSTs never carry them.
    assert!(
        tls.requests()
            .iter()
            .filter(|r| r.method == "POST")
            .all(|r| r.header("authorization").is_none())
    );

    // Over plain http, same credentials configured: never sent.
    let plain = OmahaServer::start().await;
    let node = node_for(&plain);
    plain.serve_file(PAYLOAD_NAME, payload.clone());
    plain.push(Reply::Update(UpdateSpec::for_payload(
        "3600.0.0",
        &plain.files_url(),
        PAYLOAD_NAME,
        payload,
    )));
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    assert!(matches!(daemon.run_once().await, Outcome::Updated { .. }));
    let plain_gets = plain.gets();
    assert_eq!(plain_gets.len(), 1);
    assert!(
        plain
            .requests()
            .iter()
            .all(|r| r.header("authorization").is_none()),
        "credentials sent over http: {:?}",
        plain.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_without_the_ca_is_unreachable() {
    // The negative control for the CA bundle: same server, CA not trusted.
    let tls = OmahaServer::start_tls().await;
    let node = Node::new(&tls.update_url());
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    let Outcome::Failed(err) = daemon.run_once().await else {
        panic!("an untrusted certificate must fail the check")
    };
    assert_eq!(err.kind, "unreachable", "{err:?}");
    assert!(tls.requests().is_empty(), "{:?}", tls.requests());
}
