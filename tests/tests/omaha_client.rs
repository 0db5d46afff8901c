//! The agent's Omaha client against the in-process Omaha server, over real
//! HTTP on 127.0.0.1.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use e2e::{OmahaServer, Reply, UpdateSpec};
use omaha::{ClientInfo, ErrorFlags, InstallSource, Request, RequestKind, UpdateCheck};
use update_agent::omaha_client::{ClientOptions, OmahaClient, OmahaClientError};

fn client_info() -> ClientInfo {
    ClientInfo {
        version: "3510.2.0".into(),
        board: "amd64-usr".into(),
        machine_id: "0123456789abcdef0123456789abcdef".into(),
        ..Default::default()
    }
}

fn check_request() -> Request {
    Request::update_check(client_info(), InstallSource::Scheduler, None)
}

fn client_for(url: &str) -> OmahaClient {
    OmahaClient::new(url, &ClientOptions::default()).unwrap()
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../omaha/tests/fixtures/generated-responses")
}

async fn check_err(server: &OmahaServer) -> OmahaClientError {
    client_for(&server.update_url())
        .check(&check_request())
        .await
        .unwrap_err()
}

#[tokio::test]
async fn update_found() {
    let server = OmahaServer::start().await;
    let payload = b"not really a payload".to_vec();
    let spec = UpdateSpec::for_payload(
        "3600.0.0",
        &server.files_url(),
        "flatcar_production_update.gz",
        &payload,
    );
    server.push(Reply::Update(spec.clone()));
    let result = client_for(&server.update_url())
        .check(&check_request())
        .await
        .unwrap();
    let UpdateCheck::Update(info) = &result.response.outcome else {
        panic!("{:?}", result.response)
    };
    assert_eq!(info.version, "3600.0.0");
    assert_eq!(info.payload.size, payload.len() as u64);
    assert_eq!(info.postinstall.sha256, spec.sha256);
    assert!(info.postinstall.disable_payload_backoff);
    assert_eq!(
        info.payload_urls(),
        [format!(
            "{}flatcar_production_update.gz",
            server.files_url()
        )]
    );
    assert!(String::from_utf8(result.body).unwrap().contains("3600.0.0"));

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, OmahaServer::UPDATE_PATH);
    assert_eq!(r.header("Content-Type"), Some("text/xml"));
    let sent = r.omaha_request();
    assert_eq!(sent.client.version, "3510.2.0");
    assert_eq!(sent.client.machine_id, "0123456789abcdef0123456789abcdef");
    assert!(matches!(sent.kind, RequestKind::UpdateCheck { .. }));
    assert_eq!(r.body, check_request().to_xml().into_bytes());
}

#[tokio::test]
async fn no_update_and_poll_interval() {
    let server = OmahaServer::start().await;
    server.push(Reply::NoUpdateWithPollInterval(3600));
    let client = client_for(&server.update_url());
    let r = client.check(&check_request()).await.unwrap();
    assert_eq!(r.response.outcome, UpdateCheck::NoUpdate);
    assert_eq!(r.response.poll_interval, Some(3600));
    // Empty queue: plain noupdate.
    let r = client.check(&check_request()).await.unwrap();
    assert_eq!(r.response.outcome, UpdateCheck::NoUpdate);
    assert_eq!(r.response.poll_interval, None);
}

#[tokio::test]
async fn every_nebraska_error_status_is_surfaced() {
    let server = OmahaServer::start().await;
    let client = client_for(&server.update_url());
    let mut seen = 0;
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
    for path in entries {
        let xml = std::fs::read_to_string(&path).unwrap();
        let status = xml
            .split("status=\"")
            .map(|s| s.split('"').next().unwrap())
            .find(|s| s.starts_with("error-") && *s != "error-internal")
            .unwrap()
            .to_string();
        // Nebraska answers for the appid that was asked about (the
        // unknown-app fixture was an answer to a made-up one).
        let app_id = xml.split("appid=\"").nth(1).unwrap().split('"').next();
        let mut request = check_request();
        request.client.app_id = app_id.unwrap().to_string();
        server.push(Reply::Xml(xml));
        let err = client.check(&request).await.unwrap_err();
        assert_eq!(err.server_status(), Some(status.as_str()), "{path:?}");
        assert_eq!(err.error_kind(), "server_error");
        assert!(err.to_string().contains(&status), "{err}");
        assert_eq!(err.event_error_code(ErrorFlags::NONE).to_u32(), 34);
        assert!(!err.is_backoff_status());
        seen += 1;
    }
    assert_eq!(seen, 10);
}

#[tokio::test]
async fn malformed_answers() {
    let server = OmahaServer::start().await;
    let client = client_for(&server.update_url());
    let cases = [
        ("", 30),
        (
            "<response protocol=\"3.0\"><app status=\"ok\"><updatecheck",
            31,
        ),
        ("<html><body>captive portal</body></html>", 34),
        (
            "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"b\">]><response protocol=\"3.0\"></response>",
            31,
        ),
    ];
    for (xml, code) in cases {
        server.push(Reply::Xml(xml.into()));
        let err = client.check(&check_request()).await.unwrap_err();
        assert!(
            matches!(err, OmahaClientError::Response(_)),
            "{xml:?}: {err:?}"
        );
        assert_eq!(
            err.event_error_code(ErrorFlags::NONE).to_u32(),
            code,
            "{xml:?}: {err}"
        );
    }
    let xml = std::fs::read_to_string(fixtures().join("resp-malformed-request.xml")).unwrap();
    server.push(Reply::Xml(xml));
    let err = client.check(&check_request()).await.unwrap_err();
    assert!(matches!(err, OmahaClientError::Response(_)), "{err:?}");
}

#[tokio::test]
async fn hostile_answers_are_refused_before_any_download() {
    let server = OmahaServer::start().await;
    let client = client_for(&server.update_url());
    let payload = b"payload".to_vec();
    let offer =
        |codebase: &str, name: &str| UpdateSpec::for_payload("3600.0.0", codebase, name, &payload);
    // Another product's app first, ours second: ours is read.
    let ok = std::fs::read_to_string(fixtures().join("resp-update-ok.xml")).unwrap();
    let ours_app = &ok[ok.find("<app").unwrap()..ok.rfind("</app>").unwrap() + 6];
    let their_app = ours_app
        .replace(
            omaha::FLATCAR_APP_ID,
            "{11111111-2222-3333-4444-555555555555}",
        )
        .replace("2191.5.0", "666.0.0");
    let both = ok.replace(ours_app, &format!("{their_app}{ours_app}"));
    server.push(Reply::Xml(both.clone()));
    let r = client.check(&check_request()).await.unwrap();
    let UpdateCheck::Update(info) = r.response.outcome else {
        panic!("{both}")
    };
    assert_eq!(info.version, "2191.5.0");
    // Only theirs: a permanent error, code 34.
    server.push(Reply::Xml(ok.replace(ours_app, &their_app)));
    let err = client.check(&check_request()).await.unwrap_err();
    assert_eq!(err.error_kind(), "app_not_found", "{err}");
    assert_eq!(err.event_error_code(ErrorFlags::NONE).to_u32(), 34);
    // A non-http(s) codebase or a name leaving the codebase: refused at
    // check time, so nothing is ever fetched from them.
    for (spec, kind) in [
        (offer("ftp://127.0.0.1/x/", "p.gz"), "unsupported_codebase"),
        (
            offer(&server.files_url(), "../../etc/passwd"),
            "unsafe_package_name",
        ),
    ] {
        server.push(Reply::Update(spec));
        let err = client.check(&check_request()).await.unwrap_err();
        assert_eq!(err.error_kind(), kind, "{err}");
        let OmahaClientError::Response(inner) = &err else {
            panic!("{err:?}")
        };
        assert!(inner.is_permanent());
    }
    assert!(server.gets().is_empty(), "nothing was downloaded");
}

#[tokio::test]
async fn huge_response_is_rejected_quickly() {
    const HUNDRED_MB: u64 = 100 * 1024 * 1024;
    for content_length in [true, false] {
        let server = OmahaServer::start().await;
        server.push(Reply::Huge {
            size: HUNDRED_MB,
            content_length,
        });
        let start = Instant::now();
        let err = check_err(&server).await;
        let elapsed = start.elapsed();
        assert_eq!(err.error_kind(), "too_large", "{err}");
        assert!(
            elapsed < Duration::from_secs(5),
            "content_length={content_length}: took {elapsed:?}"
        );
        // The client hung up: the server stops well short of 100 MB.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent = server.huge_bytes_sent();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(server.huge_bytes_sent(), sent, "server still sending");
        assert!(sent < HUNDRED_MB / 2, "sent {sent}");
    }
}

#[tokio::test]
async fn http_500_and_503_trigger_backoff() {
    let server = OmahaServer::start().await;
    for (status, backoff) in [(500, true), (503, true), (502, false), (404, false)] {
        server.push(Reply::Status(status));
        let err = check_err(&server).await;
        assert_eq!(err.http_status(), Some(status));
        assert_eq!(err.is_backoff_status(), backoff, "{status}");
        assert_eq!(
            err.event_error_code(ErrorFlags::NONE).to_u32(),
            2000 + u32::from(status)
        );
        assert!(err.to_string().contains(&status.to_string()), "{err}");
    }
}

#[tokio::test]
async fn redirects_are_followed_but_bounded() {
    let server = OmahaServer::start().await;
    // One hop to another path on the same server.
    server.push(Reply::Redirect {
        status: 307,
        location: format!("{}/elsewhere/", server.base_url()),
    });
    server.push(Reply::NoUpdate);
    let client = client_for(&server.update_url());
    let r = client.check(&check_request()).await.unwrap();
    assert_eq!(r.response.outcome, UpdateCheck::NoUpdate);
    let reqs = server.requests();
    assert_eq!(reqs[1].path, "/elsewhere/");
    assert_eq!(reqs[1].method, "POST", "307 keeps the method and body");

    // A redirect to a non-http scheme is not followed; the 3xx is the
    // answer (reqwest stops before asking the policy).
    server.push(Reply::Redirect {
        status: 302,
        location: "file:///etc/shadow".into(),
    });
    let before = server.requests().len();
    let err = check_err(&server).await;
    assert_eq!(err.http_status(), Some(302), "{err:?}");
    assert_eq!(server.requests().len(), before + 1);

    // A loop stops after 10 hops.
    for _ in 0..20 {
        server.push(Reply::Redirect {
            status: 307,
            location: server.update_url(),
        });
    }
    let before = server.requests().len();
    let err = check_err(&server).await;
    assert_eq!(err.error_kind(), "redirect_refused", "{err:?}");
    assert!(err.to_string().contains("too many redirects"), "{err}");
    assert_eq!(server.requests().len() - before, 11);
}

#[tokio::test]
async fn server_down_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/v1/update/");
    let err = client_for(&url).check(&check_request()).await.unwrap_err();
    assert_eq!(err.error_kind(), "unreachable", "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("cannot reach Omaha server"), "{msg}");
    assert!(msg.contains(&addr.to_string()), "{msg}");
    assert_eq!(err.event_error_code(ErrorFlags::NONE).to_u32(), 2000);
}

#[tokio::test]
async fn hangup_and_timeout() {
    let server = OmahaServer::start().await;
    server.push(Reply::Hangup);
    let err = check_err(&server).await;
    assert_eq!(err.error_kind(), "unreachable", "{err:?}");

    server.push(Reply::Delay(
        Duration::from_secs(5),
        Box::new(Reply::NoUpdate),
    ));
    let options = ClientOptions {
        http: update_agent::http::HttpOptions {
            request_timeout: Some(Duration::from_millis(300)),
            ..Default::default()
        },
        ..Default::default()
    };
    let client = OmahaClient::new(&server.update_url(), &options).unwrap();
    let start = Instant::now();
    let err = client.check(&check_request()).await.unwrap_err();
    assert_eq!(err.error_kind(), "timeout", "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn events_and_pings_are_answered_without_using_the_script() {
    let server = OmahaServer::start().await;
    server.push(Reply::Status(500));
    let client = client_for(&server.update_url());
    let event = Request::event(
        client_info(),
        InstallSource::Scheduler,
        omaha::Event::download_started(),
    );
    let answer = client.send_event(&event).await.unwrap();
    assert_eq!(answer.event_statuses, ["ok"]);
    let ping = Request::ping(client_info(), InstallSource::Scheduler);
    client.send_event(&ping).await.unwrap();
    assert_eq!(server.pending_replies(), 1);
    let kinds: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r.omaha_request().kind.clone())
        .collect();
    assert_eq!(
        kinds,
        [
            RequestKind::Event(omaha::Event::download_started()),
            RequestKind::Ping
        ]
    );
}

#[tokio::test]
async fn disabled_and_invalid_server() {
    let err = OmahaClient::new("disabled", &ClientOptions::default()).unwrap_err();
    assert_eq!(err.error_kind(), "disabled");
    let err = OmahaClient::new("ftp://x/", &ClientOptions::default()).unwrap_err();
    assert_eq!(err.error_kind(), "invalid_server_url");
}
