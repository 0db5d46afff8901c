//! Hostile servers: answers that must never reach the downloader or the
//! log as they are (another product's app, package names that leave the
//! codebase, non-http(s) codebases, characters XML forbids).

use omaha::{LogEscaped, ResponseError, UpdateCheck, UpdateInfo, parse_update_check};

/// The Flatcar appid, as update_engine sends it.
const APP: &str = omaha::FLATCAR_APP_ID;
const SHA: &str = "LIkAKVZY2EJFiwTmltiJZLFLA5xT/FodbjVgqkyF/y8=";

/// One `<app>` offering `version` from `codebase` as package `name`.
fn app(appid: &str, version: &str, codebase: &str, name: &str) -> String {
    format!(
        r#"<app appid="{appid}" status="ok"><updatecheck status="ok"><urls><url codebase="{codebase}"></url></urls><manifest version="{version}"><packages><package name="{name}" size="100" required="true"></package></packages><actions><action event="postinstall" sha256="{SHA}"></action></actions></manifest></updatecheck></app>"#
    )
}

fn response(apps: &[String]) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><response protocol="3.0" server="test">{}</response>"#,
        apps.concat()
    )
}

fn ours(codebase: &str, name: &str) -> String {
    response(&[app(APP, "4000.0.0", codebase, name)])
}

#[track_caller]
fn update(body: &str) -> UpdateInfo {
    match parse_update_check(body.as_bytes(), APP).unwrap().outcome {
        UpdateCheck::Update(info) => *info,
        UpdateCheck::NoUpdate => panic!("noupdate"),
    }
}

#[track_caller]
fn refused(body: &str) -> ResponseError {
    parse_update_check(body.as_bytes(), APP).unwrap_err()
}

#[test]
fn another_products_app_first_is_skipped() {
    let other = app(
        "{11111111-2222-3333-4444-555555555555}",
        "666.0.0",
        "https://evil.example/",
        "other_product.gz",
    );
    let body = response(&[
        other,
        app(APP, "4000.0.0", "https://good.example/f/", "flatcar.gz"),
    ]);
    let info = update(&body);
    assert_eq!(info.version, "4000.0.0");
    assert_eq!(info.payload_urls(), ["https://good.example/f/flatcar.gz"]);
}

#[test]
fn appid_matches_without_braces_and_case() {
    for spelling in [
        "{E96281A6-D1AF-4BDE-9A0A-97B76E56DC57}",
        "e96281a6-d1af-4bde-9a0a-97b76e56dc57",
        "E96281A6-D1AF-4BDE-9A0A-97B76E56DC57",
    ] {
        let body = response(&[app(spelling, "4000.0.0", "http://h/", "p.gz")]);
        let resp = parse_update_check(body.as_bytes(), APP).unwrap();
        assert_eq!(resp.app_id.as_deref(), Some(spelling));
    }
}

#[test]
fn only_other_apps_is_a_permanent_error() {
    let body = response(&[
        app(
            "{11111111-2222-3333-4444-555555555555}",
            "1",
            "http://h/",
            "p",
        ),
        r#"<app status="ok"></app>"#.to_string(),
    ]);
    let err = refused(&body);
    assert_eq!(
        err.to_string(),
        r#"Omaha response has no <app> for appid "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}" (found ["{11111111-2222-3333-4444-555555555555}", ""]); not retryable"#
    );
    assert_eq!(err.error_kind(), "app_not_found");
    assert_eq!(err.error_code(), omaha::ErrorCode::OmahaResponseInvalid);
    assert!(err.is_permanent());
}

#[test]
fn package_names_that_leave_the_codebase_are_refused() {
    let cases = [
        ("../../../etc/x.gz", "it contains a path separator"),
        ("a/b.gz", "it contains a path separator"),
        ("a\\b.gz", "it contains a path separator"),
        ("..", "it is a relative path component"),
        (".", "it is a relative path component"),
        ("", "it is empty"),
        ("p&#10;.gz", "it contains control characters"),
    ];
    for (name, reason) in cases {
        let err = refused(&ours("https://h/base/", name));
        assert_eq!(err.error_kind(), "unsafe_package_name", "{name:?}: {err}");
        assert!(err.to_string().contains(reason), "{name:?}: {err}");
        assert!(err.is_permanent());
    }
    // Extra packages too: postinst downloads them from the same codebases.
    let body = ours("https://h/base/", "p.gz").replace(
        "</packages>",
        r#"<package name="../oem-x.gz" size="1"></package></packages>"#,
    );
    assert_eq!(refused(&body).error_kind(), "unsafe_package_name");
}

#[test]
fn package_names_are_one_percent_encoded_segment() {
    let cases = [
        (
            "p.gz?token=1#frag",
            "https://h/base/p.gz%3Ftoken%3D1%23frag",
        ),
        ("%2e%2e", "https://h/base/%252e%252e"),
        ("a b.gz", "https://h/base/a%20b.gz"),
        ("...", "https://h/base/..."),
    ];
    for (name, want) in cases {
        let name_xml = name.replace('&', "&amp;");
        let info = update(&ours("https://h/base", &name_xml));
        assert_eq!(info.payload.name, name);
        assert_eq!(info.payload_urls(), [want], "{name:?}");
    }
}

#[test]
fn non_http_codebases_are_refused_while_parsing() {
    for codebase in [
        "ftp://h/base/",
        "file:///var/lib/",
        "gopher://h/",
        "data:,x",
        "/relative/",
        "h/base/",
        "http://h&#9;x/",
    ] {
        let err = refused(&ours(codebase, "p.gz"));
        assert_eq!(
            err.error_kind(),
            "unsupported_codebase",
            "{codebase}: {err}"
        );
        assert!(err.is_permanent(), "{codebase}");
        assert!(err.to_string().ends_with("not retryable"), "{err}");
    }
    let err = refused(&ours("ftp://h/base/", "p.gz"));
    assert_eq!(
        err.to_string(),
        r#"refusing codebase "ftp://h/base/": scheme "ftp" is not http or https; not retryable"#
    );
    // One bad codebase among good ones spoils the answer: the server is
    // not to be trusted with the fallback list either.
    let body = ours("https://h/", "p.gz")
        .replace("</urls>", r#"<url codebase="file:///etc/"></url></urls>"#);
    assert_eq!(refused(&body).error_kind(), "unsupported_codebase");
}

#[test]
fn characters_xml_forbids_are_refused() {
    let good = ours("https://h/", "p.gz");
    let raw_attr = good.replace("4000.0.0", "4000\u{7}");
    let raw_comment = good.replace("<urls>", "<!-- \u{1b}[31m --><urls>");
    let at = |body: &str, c: char| body.find(c).unwrap();
    let cases = [
        // (what, body, error text)
        (
            "reference in an attribute",
            good.replace("4000.0.0", "4000&#1;"),
            "character U+0001 in attribute version of <manifest> is not allowed in XML 1.0".into(),
        ),
        (
            "hex reference in text",
            good.replace("<urls>", "<urls>&#x1b;[2J"),
            "character U+001B in text is not allowed in XML 1.0".into(),
        ),
        (
            "raw in an attribute",
            raw_attr.clone(),
            format!(
                "character U+0007 at byte {} is not allowed in XML 1.0",
                at(&raw_attr, '\u{7}')
            ),
        ),
        (
            "raw in a comment",
            raw_comment.clone(),
            format!(
                "character U+001B at byte {} is not allowed in XML 1.0",
                at(&raw_comment, '\u{1b}')
            ),
        ),
        (
            "U+FFFF reference",
            good.replace("4000.0.0", "&#xFFFF;"),
            "character U+FFFF in attribute version of <manifest> is not allowed in XML 1.0".into(),
        ),
    ];
    for (what, body, want) in cases {
        let err = refused(&body);
        assert_eq!(err.to_string(), want, "{what}");
        assert_eq!(err.error_kind(), "forbidden_char", "{what}");
        assert_eq!(
            err.error_code(),
            omaha::ErrorCode::OmahaRequestXmlParseError
        );
    }
    // Tab, CR and LF are XML characters: fine in text.
    update(&good.replace("<urls>", "<urls>&#9;&#10;&#13;\t\n"));
    // A bidi override in an element name is not an XML name.
    let err = refused(&good.replace("<urls>", "<x\u{202e}y/><urls>"));
    assert_eq!(err.error_kind(), "bad_name");
    assert!(err.to_string().contains(r#""x\u{202e}y""#), "{err}");
}

#[test]
fn values_that_end_up_in_logs_carry_no_control_characters() {
    // LF and C1 controls are XML characters but would forge log lines.
    for version in ["1&#10;ERROR fake", "1\u{85}2", "1&#x9b;31m"] {
        let err = refused(&ours("https://h/", "p.gz").replace("4000.0.0", version));
        assert_eq!(err.error_kind(), "invalid_attribute", "{version:?}");
    }
    let err = refused(&response(&[app(APP, "1", "https://h/", "p")]).replace(
        r#"status="ok"><updatecheck"#,
        r#"status="error-&#10;INFO update installed"><updatecheck"#,
    ));
    assert!(!err.to_string().contains('\n'), "{err}");
    // The tokenizer quotes the document in its messages (found by fuzzing).
    let err = refused("<response protocol=\"3.0\"><app></a\nINFO: fake\u{85}></app></response>");
    assert_eq!(
        err.to_string(),
        r"malformed XML at byte 30: ill-formed document: expected `</app>`, but `</a\nINFO: fake\u{85}>` was found"
    );
    let long = format!(
        "<response protocol=\"3.0\"><a></{}></response>",
        "b".repeat(100_000)
    );
    assert!(refused(&long).to_string().len() < 300);
    let body = "<response>\u{1b}[2J\n</response>\u{ff}";
    assert_eq!(
        LogEscaped(body.as_bytes()).to_string(),
        r"<response>\u{1b}[2J\n</response>ÿ"
    );
}
