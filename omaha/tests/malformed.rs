//! Table-driven rejection tests: one row per failure mode, asserting the
//! exact error text and the stable error kind.

use omaha::{ErrorCode, MAX_RESPONSE_SIZE, parse_update_check};

/// The Flatcar appid, as update_engine sends it.
const APP: &str = omaha::FLATCAR_APP_ID;

const SHA: &str = "LIkAKVZY2EJFiwTmltiJZLFLA5xT/FodbjVgqkyF/y8=";

/// A valid update response whose parts can be swapped out.
fn doc(app_attrs: &str, urls: &str, manifest_attrs: &str, package: &str, action: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<response protocol="3.0" server="test"><app appid="{{e96281a6-d1af-4bde-9a0a-97b76e56dc57}}"{app_attrs}><updatecheck status="ok"><urls>{urls}</urls><manifest{manifest_attrs}><packages>{package}</packages><actions>{action}</actions></manifest></updatecheck></app></response>"#
    )
}

const URLS: &str = r#"<url codebase="http://h/"></url>"#;
const MANIFEST: &str = r#" version="1.0.0""#;
const PACKAGE: &str = r#"<package name="p.gz" size="100" required="true"></package>"#;

fn action() -> String {
    format!(r#"<action event="postinstall" sha256="{SHA}"></action>"#)
}

fn valid() -> String {
    doc(r#" status="ok""#, URLS, MANIFEST, PACKAGE, &action())
}

fn with_package(package: &str) -> String {
    doc("", URLS, MANIFEST, package, &action())
}

fn with_action(action: &str) -> String {
    doc("", URLS, MANIFEST, PACKAGE, action)
}

#[test]
fn the_base_document_is_valid() {
    parse_update_check(valid().as_bytes(), APP).unwrap();
}

#[test]
fn rejections() {
    let entity_bomb = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<response protocol="3.0"><app status="&lol3;"></app></response>"#;
    let external_entity = r#"<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/shadow">]><response protocol="3.0"><app>&xxe;</app></response>"#;
    let deep = format!(
        r#"<response protocol="3.0">{}{}</response>"#,
        "<a>".repeat(40),
        "</a>".repeat(40)
    );
    let many = format!(
        r#"<response protocol="3.0">{}</response>"#,
        "<a/>".repeat(10_001)
    );
    let full = valid();
    let truncated = &full[..full.rfind("</updatecheck>").unwrap()];

    #[rustfmt::skip]
    let cases: Vec<(&str, String, &str, &str)> = vec![
        // (name, body, exact error text, error kind)
        ("empty", String::new(),
            "empty Omaha response", "empty"),
        ("whitespace only", " \n\t ".into(),
            "empty Omaha response", "empty"),
        ("not XML", "HTTP/1.1 502 Bad Gateway".into(),
            "malformed XML: text outside the root element", "bad_structure"),
        ("html error page", "<html><body>oops</body></html>".into(),
            "not an Omaha response: root element is <html>", "not_a_response"),
        ("json", r#"{"status":"ok"}"#.into(),
            "malformed XML: text outside the root element", "bad_structure"),
        ("truncated mid-document", truncated.into(),
            "truncated XML: <updatecheck> is not closed", "truncated"),
        ("truncated mid-tag", full[..120].into(),
            "malformed XML at byte 78: syntax error: tag not closed: `>` not found before end of input", "malformed_xml"),
        ("mismatched end tag", r#"<response protocol="3.0"><app></ap></response>"#.into(),
            "malformed XML at byte 30: ill-formed document: expected `</app>`, but `</ap>` was found", "malformed_xml"),
        ("two roots", r#"<response protocol="3.0"></response><response protocol="3.0"></response>"#.into(),
            "malformed XML: more than one root element", "bad_structure"),
        ("duplicate attribute", r#"<response protocol="3.0" protocol="3.0"></response>"#.into(),
            "malformed XML at byte 40: error while parsing attribute: position 24: duplicated attribute, previous declaration at position 9", "malformed_xml"),
        ("wrong protocol", full.replace(r#"protocol="3.0""#, r#"protocol="2.0""#),
            r#"unsupported Omaha protocol "2.0", expected 3.0"#, "unsupported_protocol"),
        ("missing protocol", full.replace(r#" protocol="3.0""#, ""),
            "unsupported Omaha protocol (missing), expected 3.0", "unsupported_protocol"),
        ("missing app", r#"<response protocol="3.0"><daystart elapsed_seconds="0"/></response>"#.into(),
            "missing element response/app", "missing_element"),
        ("missing updatecheck status", full.replace(r#"<updatecheck status="ok">"#, "<updatecheck>"),
            "missing attribute status on <updatecheck>", "missing_attribute"),
        ("unknown updatecheck status", full.replace(r#"<updatecheck status="ok">"#, r#"<updatecheck status="restricted">"#),
            r#"Omaha server reported "restricted" on <updatecheck>"#, "server_error"),
        ("bad PollInterval", full.replace(r#"<updatecheck status="ok">"#, r#"<updatecheck status="ok" PollInterval="-5">"#),
            r#"invalid PollInterval attribute "-5" on <updatecheck>: expected a decimal number of seconds"#, "invalid_attribute"),
        ("empty urls", doc("", "", MANIFEST, PACKAGE, &action()),
            "missing element response/app/updatecheck/urls/url", "missing_element"),
        ("missing urls", full.replace(&format!("<urls>{URLS}</urls>"), ""),
            "missing element response/app/updatecheck/urls/url", "missing_element"),
        ("empty codebase", doc("", r#"<url codebase="http://h/"/><url codebase=""/>"#, MANIFEST, PACKAGE, &action()),
            r#"invalid codebase attribute "" on <url>: must not be empty"#, "invalid_attribute"),
        ("missing codebase", doc("", "<url/>", MANIFEST, PACKAGE, &action()),
            "missing attribute codebase on <url>", "missing_attribute"),
        ("missing manifest", full.replace(r#"<manifest version="1.0.0">"#, "<m>").replace("</manifest>", "</m>"),
            "missing element response/app/updatecheck/manifest", "missing_element"),
        ("missing manifest version", doc("", URLS, "", PACKAGE, &action()),
            "missing attribute version on <manifest>", "missing_attribute"),
        ("no package", with_package(""),
            "missing element response/app/updatecheck/manifest/packages/package", "missing_element"),
        ("missing size", with_package(r#"<package name="p.gz"/>"#),
            "missing attribute size on <package>", "missing_attribute"),
        ("bad size", with_package(r#"<package name="p.gz" size="12MB"/>"#),
            r#"invalid size attribute "12MB" on <package>: expected a decimal number of bytes"#, "invalid_attribute"),
        ("negative size", with_package(r#"<package name="p.gz" size="-1"/>"#),
            r#"invalid size attribute "-1" on <package>: expected a decimal number of bytes"#, "invalid_attribute"),
        ("size overflow", with_package(r#"<package name="p.gz" size="18446744073709551616"/>"#),
            r#"invalid size attribute "18446744073709551616" on <package>: expected a decimal number of bytes"#, "invalid_attribute"),
        ("zero payload size", with_package(r#"<package name="p.gz" size="0"/>"#),
            r#"invalid size attribute "0" on <package>: the payload size must be greater than 0"#, "invalid_attribute"),
        ("missing package name", with_package(r#"<package size="1"/>"#),
            "missing attribute name on <package>", "missing_attribute"),
        ("bad sha1", with_package(r#"<package name="p.gz" size="1" hash="abc"/>"#),
            r#"invalid hash attribute "abc" on <package>: expected a base64 SHA-1 digest"#, "invalid_attribute"),
        ("short hash_sha256 (hex)", with_package(r#"<package name="p.gz" size="1" hash_sha256="043bb7c00bece5f1ee2a"/>"#),
            r#"invalid hash_sha256 attribute "043bb7c00bece5f1ee2a" on <package>: expected a hex or base64 SHA-256 digest"#, "invalid_attribute"),
        ("non-hex hash_sha256", with_package(&format!(r#"<package name="p.gz" size="1" hash_sha256="{}"/>"#, "g".repeat(64))),
            r#"invalid hash_sha256 attribute "gggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg" on <package>: expected a hex or base64 SHA-256 digest"#, "invalid_attribute"),
        ("bad sha256 in extra package", with_package(r#"<package name="p.gz" size="1"/><package name="oem-x.gz" size="1" hash_sha256="zz"/>"#),
            r#"invalid hash_sha256 attribute "zz" on <package>: expected a hex or base64 SHA-256 digest"#, "invalid_attribute"),
        ("no postinstall action", with_action(r#"<action event="update"/>"#),
            r#"missing element response/app/updatecheck/manifest/actions/action[@event="postinstall"]"#, "missing_element"),
        ("missing action sha256", with_action(r#"<action event="postinstall"/>"#),
            "missing attribute sha256 on <action>", "missing_attribute"),
        ("sha1-sized action sha256", with_action(r#"<action event="postinstall" sha256="8yZZKNwpVInJ8Xin1XJgWh89CqU="/>"#),
            r#"invalid sha256 attribute "8yZZKNwpVInJ8Xin1XJgWh89CqU=" on <action>: expected a base64 SHA-256 digest"#, "invalid_attribute"),
        ("hex action sha256", with_action(r#"<action event="postinstall" sha256="043bb7c00bece5f1ee2a08431809962301a212aa7ec0260bef9761b2cc05c14a"/>"#),
            r#"invalid sha256 attribute "043bb7c00bece5f1ee2a08431809962301a212aa7ec0260bef9761b2cc05c14a" on <action>: expected a base64 SHA-256 digest"#, "invalid_attribute"),
        ("bad MaxFailureCountPerUrl", with_action(&format!(r#"<action event="postinstall" sha256="{SHA}" MaxFailureCountPerUrl="ten"/>"#)),
            r#"invalid MaxFailureCountPerUrl attribute "ten" on <action>: expected a decimal number"#, "invalid_attribute"),
        ("DOCTYPE entity bomb", entity_bomb.into(),
            "DOCTYPE is not allowed in an Omaha response (entities are never expanded)", "doctype"),
        ("external entity", external_entity.into(),
            "DOCTYPE is not allowed in an Omaha response (entities are never expanded)", "doctype"),
        ("undefined entity in attribute", full.replace(r#"server="test""#, r#"server="&ent;""#),
            "bad escape in attribute server of <response>: at 1..4: unrecognized entity `ent`", "bad_escape"),
        ("undefined entity in text", r#"<response protocol="3.0">&ent;</response>"#.into(),
            "bad escape in text: at 1..4: unrecognized entity `ent`", "bad_escape"),
        ("too deep", deep,
            "XML nested deeper than 32 elements", "too_deep"),
        ("too many elements", many,
            "XML has more than 10000 elements", "too_many_elements"),
        ("oversize", format!("{full}{}", " ".repeat(MAX_RESPONSE_SIZE)),
            "Omaha response too large: 1049045 bytes (limit 1048576)", "too_large"),
    ];

    let mut failures = Vec::new();
    for (name, body, want, kind) in &cases {
        match parse_update_check(body.as_bytes(), APP) {
            Ok(resp) => failures.push(format!("{name}: accepted: {resp:?}")),
            Err(err) => {
                if err.to_string() != *want {
                    failures.push(format!("{name}:\n   got  {err}\n   want {want}"));
                }
                if err.error_kind() != *kind {
                    failures.push(format!("{name}: kind {} != {kind}", err.error_kind()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn invalid_utf8() {
    let mut body = valid().into_bytes();
    body[60] = 0xff;
    let err = parse_update_check(&body, APP).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Omaha response is not valid UTF-8 at byte 60"
    );
    assert_eq!(err.error_kind(), "not_utf8");
}

#[test]
fn exactly_max_size_is_accepted() {
    let full = valid();
    let body = format!("{full}{}", " ".repeat(MAX_RESPONSE_SIZE - full.len()));
    assert_eq!(body.len(), MAX_RESPONSE_SIZE);
    parse_update_check(body.as_bytes(), APP).unwrap();
}

#[test]
fn error_codes_for_event_reports() {
    let cases: &[(&[u8], ErrorCode)] = &[
        (b"", ErrorCode::OmahaRequestEmptyResponse),
        (b"<response", ErrorCode::OmahaRequestXmlParseError),
        (
            b"<!DOCTYPE x><response/>",
            ErrorCode::OmahaRequestXmlParseError,
        ),
        (
            b"<response protocol=\"3.0\"/>",
            ErrorCode::OmahaResponseInvalid,
        ),
    ];
    for (body, want) in cases {
        let err = parse_update_check(body, APP).unwrap_err();
        assert_eq!(err.error_code(), *want, "{err}");
    }
}

#[test]
fn long_values_are_cut_in_messages() {
    let long = "9".repeat(200);
    let body = with_package(&format!(r#"<package name="p.gz" size="{long}"/>"#));
    let err = parse_update_check(body.as_bytes(), APP).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            r#"invalid size attribute "{}..." on <package>: expected a decimal number of bytes"#,
            "9".repeat(64)
        )
    );
}
