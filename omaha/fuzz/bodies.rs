//! The fuzz target's body, shared by the libFuzzer binary (`fuzz_targets/`)
//! and the corpus replay test (`tests/fuzz_corpus.rs`), which runs every
//! saved input on stable Rust in the normal test suite.

use omaha::{LogEscaped, UpdateCheck, UpdateInfo};

/// Appids the responses are parsed for: ours as update_engine sends it and
/// a foreign one, so both "matched" and "not ours" paths run.
const APP_IDS: [&str; 2] = [
    omaha::FLATCAR_APP_ID,
    "{90f229ce-83e2-4faf-8479-e368a34938b1}",
];

/// Every parser on arbitrary bytes: never panics, and what it accepts or
/// says about the input is safe to use and to log.
pub fn parse_response(data: &[u8]) {
    for app_id in APP_IDS {
        match omaha::parse_update_check(data, app_id) {
            Ok(resp) => {
                let got = resp.app_id.as_deref().unwrap_or_default();
                assert!(omaha::same_app_id(got, app_id), "read app {got:?}");
                if let UpdateCheck::Update(info) = &resp.outcome {
                    check_update(info);
                }
            }
            Err(e) => check_error(&e.to_string()),
        }
        match omaha::parse_event_response(data, app_id) {
            Ok(resp) => {
                let got = resp.app_id.as_deref().unwrap_or_default();
                assert!(omaha::same_app_id(got, app_id), "read app {got:?}");
            }
            Err(e) => check_error(&e.to_string()),
        }
    }
    if let Err(e) = omaha::server::parse_request(data) {
        check_error(&e.to_string());
    }
    check_message(&LogEscaped(data).to_string());
}

/// An error message or escaped text holds no control characters, so it
/// cannot forge log lines or drive a terminal.
fn check_message(text: &str) {
    assert!(
        !text.chars().any(char::is_control),
        "control character in {text:?}"
    );
}

/// Error messages are also short, whatever the body: they end up in logs
/// and in the D-Bus `LastError`.
fn check_error(text: &str) {
    check_message(text);
    assert!(text.len() < 2048, "{} byte message", text.len());
}

/// Invariants of an accepted update: every package URL is the codebase plus
/// exactly one path segment, over http(s), on the codebase's host.
fn check_update(info: &UpdateInfo) {
    assert!(!info.urls.is_empty());
    assert!(info.payload.size > 0);
    assert!(!info.version.chars().any(char::is_control));
    for package in std::iter::once(&info.payload).chain(&info.extra_packages) {
        let joined = info.package_urls(package);
        assert_eq!(joined.len(), info.urls.len(), "a codebase was dropped");
        for (codebase, url) in info.urls.iter().zip(&joined) {
            let base = url::Url::parse(codebase).expect("codebase was checked");
            let url = url::Url::parse(url).expect("joined URL parses");
            assert!(matches!(url.scheme(), "http" | "https"), "{url}");
            assert_eq!(url.host_str(), base.host_str(), "{url}");
            assert_eq!(url.port_or_known_default(), base.port_or_known_default());
            assert_eq!(url.query(), base.query(), "{url}");
            assert_eq!(url.fragment(), None, "{url}");
            // The codebase's directory, then exactly one segment.
            let dir = match base.path() {
                p if p.ends_with('/') => p.to_string(),
                p => format!("{p}/"),
            };
            let rest = url
                .path()
                .strip_prefix(dir.as_str())
                .unwrap_or_else(|| panic!("{url} left {codebase}"));
            assert!(
                !rest.is_empty() && !rest.contains('/') && rest != "." && rest != "..",
                "{url}: segment {rest:?}"
            );
        }
    }
}
