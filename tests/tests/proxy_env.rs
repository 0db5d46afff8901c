//! Proxy variables: the Omaha client honours `http_proxy`/`HTTP_PROXY`,
//! `ALL_PROXY`/`all_proxy` and `NO_PROXY`/`no_proxy` from the environment.
//!
//! The environment is per process (and `set_var` is unsafe), so the parent
//! test re-runs this test binary with the variables set; the child does one
//! update check to `http://update.invalid/` (a name that never resolves) and
//! only the proxy, our test server, can answer it.

use std::process::Command;

use e2e::{OmahaServer, Reply};
use omaha::{ClientInfo, InstallSource, Request, UpdateCheck};
use update_agent::omaha_client::{ClientOptions, OmahaClient};

const CHILD: &str = "E2E_PROXY_CHILD";
const TARGET: &str = "http://update.invalid/v1/update/";
const PROXY_VARS: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// The child half: does nothing unless started by the parent.
#[tokio::test]
async fn proxy_child() {
    let Ok(expect) = std::env::var(CHILD) else {
        return;
    };
    let client = OmahaClient::new(TARGET, &ClientOptions::default()).unwrap();
    let request = Request::update_check(
        ClientInfo {
            version: "1.0.0".into(),
            ..Default::default()
        },
        InstallSource::Scheduler,
        None,
    );
    let result = client.check(&request).await;
    match expect.as_str() {
        "proxied" => assert_eq!(result.unwrap().response.outcome, UpdateCheck::NoUpdate),
        "direct" => assert_eq!(result.unwrap_err().error_kind(), "unreachable"),
        other => panic!("bad {CHILD}={other}"),
    }
}

async fn run_child(vars: &[(&str, String)], expect: &str) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "proxy_child", "--nocapture", "--test-threads=1"]);
    for v in PROXY_VARS {
        cmd.env_remove(v);
    }
    cmd.env_remove("REQUEST_METHOD");
    cmd.env(CHILD, expect);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{vars:?}: child failed\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "child ran no test"
    );
}

#[tokio::test]
async fn proxy_variables_are_honoured() {
    let server = OmahaServer::start().await;
    let proxy = server.base_url();
    for var in ["http_proxy", "HTTP_PROXY", "ALL_PROXY", "all_proxy"] {
        server.push(Reply::NoUpdate);
        run_child(&[(var, proxy.clone())], "proxied").await;
        let r = server.requests().pop().unwrap();
        // A proxied request carries the absolute URL.
        assert_eq!(r.path, TARGET, "{var}");
        assert_eq!(r.method, "POST");
        assert_eq!(r.header("host"), Some("update.invalid"), "{var}");
    }
    let before = server.requests().len();
    for no in ["NO_PROXY", "no_proxy"] {
        run_child(
            &[("http_proxy", proxy.clone()), (no, "update.invalid".into())],
            "direct",
        )
        .await;
    }
    assert_eq!(
        server.requests().len(),
        before,
        "NO_PROXY bypasses the proxy"
    );
}
