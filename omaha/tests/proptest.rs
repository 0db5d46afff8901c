//! Property tests: the parsers never panic on arbitrary or mutated input, and
//! request attribute escaping round-trips through an XML parser.

use omaha::{
    ClientInfo, InstallSource, Request, UpdateCheck, parse_event_response, parse_update_check,
};
use proptest::prelude::*;

/// The Flatcar appid, as update_engine sends it.
const APP: &str = omaha::FLATCAR_APP_ID;

const SAMPLES: &[&str] = &[
    include_str!("fixtures/generated-responses/resp-update-ok.xml"),
    include_str!("fixtures/generated-responses/resp-update-ok-with-extra-files.xml"),
    include_str!("fixtures/generated-responses/resp-noupdate.xml"),
    include_str!("fixtures/generated-responses/resp-error-noPackageFound.xml"),
    include_str!("fixtures/generated-responses/resp-syncer-multi-manifest.xml"),
    include_str!("fixtures/go-omaha/updatecheck-3510.2.0-stable.resp.xml"),
    include_str!("fixtures/go-omaha/event-3-update-complete.resp.xml"),
    include_str!("fixtures/from-ue-rs-testdata/omaha-response-example.xml"),
    include_str!("fixtures/flatcar-update_engine-sample_omaha_v3_response.xml"),
];

/// Parses with both entry points; checks invariants of accepted updates.
fn parse_all(body: &[u8]) {
    if let Ok(UpdateCheck::Update(info)) = parse_update_check(body, APP).map(|r| r.outcome) {
        assert!(!info.urls.is_empty());
        assert!(info.urls.iter().all(|u| !u.trim().is_empty()));
        assert!(info.payload.size > 0);
        assert!(!info.version.trim().is_empty());
    }
    let _ = parse_event_response(body, APP);
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let snippets = prop::sample::select(vec![
        b"<".to_vec(),
        b">".to_vec(),
        b"/>".to_vec(),
        b"\"".to_vec(),
        b"&".to_vec(),
        b"&amp;".to_vec(),
        b"&#x0;".to_vec(),
        b"&#1114112;".to_vec(),
        b"<!DOCTYPE x>".to_vec(),
        b"<![CDATA[".to_vec(),
        b"]]>".to_vec(),
        b"<!--".to_vec(),
        b"<?pi".to_vec(),
        b"</app>".to_vec(),
        b"<app>".to_vec(),
        b" size=\"-1\"".to_vec(),
        b" status=\"ok\"".to_vec(),
        vec![0xff, 0xfe],
        vec![0xe2, 0x82],
    ]);
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), snippets).prop_map(|(i, s)| Mutation::Insert(i, s)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1usize..128).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

fn apply(mut body: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if body.is_empty() {
            break;
        }
        let len = body.len();
        match m {
            Mutation::Flip(i, b) => body[i % len] = *b,
            Mutation::Insert(i, s) => {
                let at = i % (len + 1);
                body.splice(at..at, s.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let at = i % len;
                let end = (at + n).min(len);
                body.drain(at..end);
            }
            Mutation::Truncate(i) => body.truncate(i % len),
            Mutation::Duplicate(i, n) => {
                let at = i % len;
                let end = (at + n).min(len);
                let chunk = body[at..end].to_vec();
                body.splice(end..end, chunk);
            }
        }
    }
    body
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..2048)) {
        parse_all(&body);
    }

    #[test]
    fn arbitrary_xmlish_text_never_panics(body in "[<>/=\"'a-z0-9 &;#!?\\[\\]-]{0,512}") {
        parse_all(body.as_bytes());
        let wrapped = format!("<response protocol=\"3.0\"><app>{body}</app></response>");
        parse_all(wrapped.as_bytes());
    }

    #[test]
    fn mutated_samples_never_panic(
        sample in prop::sample::select(SAMPLES),
        mutations in prop::collection::vec(mutation(), 1..8),
    ) {
        parse_all(&apply(sample.as_bytes().to_vec(), &mutations));
    }

    #[test]
    fn request_attributes_round_trip(alias in any::<String>(), oem in "\\PC*") {
        let client = ClientInfo {
            version: "1.2.3".into(),
            machine_alias: alias.clone(),
            oem: oem.clone(),
            ..Default::default()
        };
        let xml = Request::ping(client, InstallSource::Scheduler).to_xml();
        let app = find_app_attrs(&xml);
        let keep = |s: &str| -> String {
            s.chars().filter(|&c| c >= ' ' || matches!(c, '\t' | '\n' | '\r')).collect()
        };
        prop_assert_eq!(app.get("machinealias"), Some(&keep(&alias)));
        prop_assert_eq!(app.get("oem"), Some(&keep(&oem)));
        prop_assert!(xml.is_ascii());
    }
}

/// The unescaped attributes of the `<app>` element, via quick-xml.
fn find_app_attrs(xml: &str) -> std::collections::HashMap<String, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    loop {
        match reader
            .read_event()
            .expect("request must be well-formed XML")
        {
            Event::Start(e) if e.name().as_ref() == b"app" => {
                return e
                    .attributes()
                    .map(|a| {
                        let a = a.unwrap();
                        (
                            String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                            a.unescape_value().unwrap().into_owned(),
                        )
                    })
                    .collect();
            }
            Event::Eof => panic!("no <app> in request"),
            _ => {}
        }
    }
}
