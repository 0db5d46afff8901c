//! The mock-server side: requests parse back into the typed `Request` that
//! produced them, and answers are written byte-for-byte in Nebraska's layout.

use omaha::server::{
    Echo, error_response_xml, event_response_xml, parse_request, update_check_response_xml,
};
use omaha::{
    ClientInfo, ErrorCode, ErrorFlags, Event, EventErrorCode, InstallSource, Package,
    PostinstallAction, Request, RequestKind, UpdateCheck, UpdateCheckResponse, UpdateInfo,
    parse_update_check,
};
use proptest::prelude::*;

type KindCheck = fn(&RequestKind) -> bool;

const APP: &str = "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}";

#[test]
fn flatcar_requests_round_trip() {
    let fixtures: &[(&str, KindCheck)] = &[
        (
            include_str!("fixtures/flatcar-style-requests/updatecheck-3510.2.0-stable.xml"),
            |k| matches!(k, RequestKind::UpdateCheck { event } if event.previous_version.as_deref() == Some("0.0.0.0")),
        ),
        (
            include_str!("fixtures/flatcar-style-requests/updatecheck-3510.2.0-beta-ondemand.xml"),
            |k| matches!(k, RequestKind::UpdateCheck { .. }),
        ),
        (
            include_str!(
                "fixtures/flatcar-style-requests/updatecheck-9999.0.0-stable-noupdate.xml"
            ),
            |k| matches!(k, RequestKind::UpdateCheck { event } if event.previous_version.as_deref() == Some("3510.2.0")),
        ),
        (
            include_str!("fixtures/flatcar-style-requests/updatecheck-rollback-detected.xml"),
            |k| matches!(k, RequestKind::UpdateCheck { event } if *event == Event::rollback()),
        ),
        (
            include_str!("fixtures/flatcar-style-requests/event-13-download-started.xml"),
            |k| *k == RequestKind::Event(Event::download_started()),
        ),
        (
            include_str!("fixtures/flatcar-style-requests/event-14-download-finished.xml"),
            |k| *k == RequestKind::Event(Event::download_finished()),
        ),
        (
            include_str!("fixtures/flatcar-style-requests/event-3-update-complete.xml"),
            |k| *k == RequestKind::Event(Event::update_complete()),
        ),
        (
            include_str!(
                "fixtures/flatcar-style-requests/event-3-error-hashmismatch-testurlflag.xml"
            ),
            |k| {
                *k == RequestKind::Event(Event::failure(
                    ErrorCode::PayloadHashMismatchError,
                    ErrorFlags {
                        test_omaha_url: true,
                        ..ErrorFlags::NONE
                    },
                ))
            },
        ),
    ];
    for (fixture, check) in fixtures {
        let req = parse_request(fixture.as_bytes()).unwrap();
        assert!(check(&req.kind), "{:?}", req.kind);
        assert_eq!(req.client.machine_id, "0f2b6c3e1d9a4e7b8c5d6e7f8a9b0c1d");
        assert_eq!(
            req.client.boot_id.as_str(),
            "2a6fbb0a-6f3e-4c57-9a3f-0b5b0c1e9d11"
        );
        assert_eq!(req.client.arch, "x86_64");
        assert_eq!(req.to_xml(), *fixture);
    }
}

#[test]
fn ue_rs_request_parses() {
    let req = parse_request(include_bytes!(
        "fixtures/from-ue-rs-testdata/omaha-request-example.xml"
    ))
    .unwrap();
    assert_eq!(req.client.app_id, "e96281a6-d1af-4bde-9a0a-97b76e56dc57");
    assert_eq!(req.client.oem, "ami");
    assert_eq!(req.client.arch, "x86_64");
    assert_eq!(
        req.kind,
        RequestKind::UpdateCheck {
            event: Event::update_complete()
        }
    );
}

#[test]
fn syncer_request_has_no_event() {
    let err = parse_request(include_bytes!(
        "fixtures/flatcar-style-requests/syncer-updatecheck-multi-manifest.xml"
    ))
    .unwrap_err();
    assert_eq!(err.to_string(), "missing element request/app/event");
    assert_eq!(err.error_kind(), "missing_element");
}

#[test]
fn request_rejections() {
    let cases: &[(&str, &str)] = &[
        ("", "empty Omaha response"),
        (
            "<response/>",
            "not an Omaha request: root element is <response>",
        ),
        ("<request/>", "missing element request/app"),
        (
            "<request><app/></request>",
            "missing attribute appid on <app>",
        ),
        (
            "<request><app appid=\"a\"/></request>",
            "missing element request/app/{updatecheck,event,ping}",
        ),
        (
            "<request installsource=\"cron\"><app appid=\"a\"><ping/></app></request>",
            "invalid installsource attribute on <request>: unknown install source \"cron\"",
        ),
        (
            "<request><app appid=\"a\"><event eventtype=\"3\"/></app></request>",
            "missing attribute eventresult on <event>",
        ),
        (
            "<request><app appid=\"a\"><event eventtype=\"3\" eventresult=\"0\" errorcode=\"x\"/></app></request>",
            "invalid errorcode attribute on <event>: unknown error code \"x\"",
        ),
    ];
    for (body, want) in cases {
        let err = parse_request(body.as_bytes()).unwrap_err();
        // The message and its cause, each printed once.
        let mut chain = err.to_string();
        if let Some(cause) = std::error::Error::source(&err) {
            chain = format!("{chain}: {cause}");
        }
        assert_eq!(chain, *want, "body {body:?}");
    }
}

fn both() -> Echo {
    Echo {
        ping: true,
        event: true,
    }
}

#[track_caller]
fn assert_rewrites(fixture: &str, echo: Echo) {
    let parsed = parse_update_check(fixture.as_bytes(), APP).unwrap();
    assert_eq!(update_check_response_xml(&parsed, echo), fixture.trim_end());
}

#[test]
fn nebraska_layout_update_ok() {
    assert_rewrites(
        include_str!("fixtures/generated-responses/resp-update-ok.xml"),
        both(),
    );
}

#[test]
fn nebraska_layout_extra_files() {
    assert_rewrites(
        include_str!("fixtures/generated-responses/resp-update-ok-with-extra-files.xml"),
        Echo {
            ping: true,
            event: false,
        },
    );
}

#[test]
fn nebraska_layout_noupdate() {
    assert_rewrites(
        include_str!("fixtures/generated-responses/resp-noupdate.xml"),
        both(),
    );
}

#[test]
fn nebraska_layout_event_only() {
    assert_eq!(
        event_response_xml(APP),
        include_str!("fixtures/generated-responses/resp-event-only.xml").trim_end()
    );
}

#[test]
fn nebraska_layout_errors() {
    let cases: &[(&str, &str, &str, Echo)] = &[
        (
            include_str!("fixtures/generated-responses/resp-error-noPackageFound.xml"),
            APP,
            "error-noPackageFound",
            both(),
        ),
        (
            include_str!("fixtures/generated-responses/resp-error-updatesDisabled.xml"),
            APP,
            "error-updatesDisabled",
            both(),
        ),
        (
            include_str!("fixtures/generated-responses/resp-error-unknown-app.xml"),
            "{00000000-0000-0000-0000-000000000000}",
            "error-failedToRetrieveUpdatePackageInfo",
            Echo::default(),
        ),
    ];
    for (fixture, app, status, echo) in cases {
        assert_eq!(error_response_xml(app, status, *echo), fixture.trim_end());
    }
}

#[test]
fn echo_follows_request_kind() {
    let c = ClientInfo::default();
    let s = InstallSource::Scheduler;
    assert_eq!(
        Echo::for_request(&Request::update_check(c.clone(), s, None)),
        both()
    );
    assert_eq!(
        Echo::for_request(&Request::ping(c.clone(), s)),
        Echo {
            ping: true,
            event: false
        }
    );
    assert_eq!(
        Echo::for_request(&Request::event(c, s, Event::download_started())),
        Echo {
            ping: false,
            event: true
        }
    );
}

// ---- round-trip properties --------------------------------------------------

fn text() -> impl Strategy<Value = String> {
    "[ -~\u{e9}\u{1F600}]{0,24}"
}

fn non_blank() -> impl Strategy<Value = String> {
    "[!-~][ -~]{0,23}"
}

/// A plain file name: no `/` or backslash, not `.` or `..`.
fn file_name() -> impl Strategy<Value = String> {
    "[!-.0-\\[\\]-~][ -.0-\\[\\]-~]{0,23}".prop_filter("dot segment", |n| n != "." && n != "..")
}

/// An http(s) codebase.
fn codebase() -> impl Strategy<Value = String> {
    "https?://[a-z]{1,10}(:[0-9]{1,4})?(/[!-~]{0,12})?"
}

/// Our appid, spelled as servers may spell it.
fn app_id() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        APP.to_string(),
        APP.to_uppercase(),
        APP.trim_matches(['{', '}']).to_string(),
    ])
}

fn package(min_size: u64) -> impl Strategy<Value = Package> {
    (
        file_name(),
        min_size..u64::MAX,
        proptest::option::of(any::<[u8; 20]>()),
        proptest::option::of(any::<[u8; 32]>()),
        any::<bool>(),
    )
        .prop_map(|(name, size, sha1, sha256, required)| Package {
            name,
            size,
            sha1,
            sha256,
            required,
        })
}

fn update_info() -> impl Strategy<Value = UpdateInfo> {
    let postinstall = (
        any::<[u8; 32]>(),
        any::<bool>(),
        any::<bool>(),
        any::<u32>(),
        proptest::option::of(any::<bool>()),
        proptest::collection::btree_map("x[A-Za-z0-9_]{0,8}", text(), 0..3),
    )
        .prop_map(
            |(sha256, backoff, delta, max, admin, other)| PostinstallAction {
                sha256,
                disable_payload_backoff: backoff,
                is_delta_payload: delta,
                max_failure_count_per_url: max,
                needs_admin: admin,
                other_attributes: other,
            },
        );
    (
        non_blank(),
        proptest::collection::vec(codebase(), 1..4),
        package(1),
        proptest::collection::vec(package(0), 0..3),
        postinstall,
        any::<bool>(),
        proptest::option::of(text()),
        any::<bool>(),
    )
        .prop_map(
            |(
                version,
                urls,
                payload,
                extra_packages,
                postinstall,
                is_floor,
                floor_reason,
                is_target,
            )| UpdateInfo {
                version,
                urls,
                payload,
                extra_packages,
                postinstall,
                is_floor,
                floor_reason,
                is_target,
                ignored_manifests: 0,
            },
        )
}

fn response() -> impl Strategy<Value = UpdateCheckResponse> {
    (
        proptest::option::of(text()),
        app_id().prop_map(Some),
        proptest::option::of(any::<u32>()),
        proptest::option::of(update_info()),
    )
        .prop_map(
            |(server, app_id, poll_interval, info)| UpdateCheckResponse {
                server,
                app_id,
                poll_interval,
                outcome: match info {
                    None => UpdateCheck::NoUpdate,
                    Some(info) => UpdateCheck::Update(Box::new(info)),
                },
            },
        )
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        text().prop_map(Event::update_check_reboot),
        Just(Event::rollback()),
        Just(Event::download_started()),
        Just(Event::download_finished()),
        Just(Event::update_complete()),
        (0u32..=100, any::<u8>()).prop_filter_map("known code", |(code, flags)| {
            let code = EventErrorCode::from_u32(code)?;
            let base = match code.base {
                omaha::BaseCode::Known(c) => c,
                omaha::BaseCode::OmahaHttpStatus(_) => return None,
            };
            Some(Event::failure(
                base,
                ErrorFlags::from_bits(u32::from(flags) << 24),
            ))
        }),
        (0u16..1000).prop_map(|s| Event::omaha_http_failure(s, ErrorFlags::NONE)),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    let client = (
        (text(), text(), text(), "[a-z0-9_]{1,10}", text()),
        (
            "[a-f0-9-]{0,36}",
            text(),
            text(),
            text(),
            text(),
            text(),
            text(),
        ),
    )
        .prop_map(
            |(
                (updater_version, app_id, version, arch, track),
                (boot, oem, oem_version, aleph_version, machine_id, machine_alias, board),
            )| {
                ClientInfo {
                    // Both values, without another strategy in the tuple.
                    delta_okay: machine_id.len() % 2 == 0,
                    updater_version,
                    app_id,
                    version,
                    arch,
                    track,
                    boot_id: boot.parse().unwrap(),
                    oem,
                    oem_version,
                    aleph_version,
                    machine_id,
                    machine_alias,
                    board,
                }
            },
        );
    let kind = prop_oneof![
        event().prop_map(|event| RequestKind::UpdateCheck { event }),
        Just(RequestKind::Ping),
        event().prop_map(RequestKind::Event),
    ];
    let source = prop_oneof![
        Just(InstallSource::Scheduler),
        Just(InstallSource::OnDemandUpdate)
    ];
    (client, source, kind).prop_map(|(client, install_source, kind)| Request {
        client,
        install_source,
        kind,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn responses_round_trip(resp in response(), ping in any::<bool>(), event in any::<bool>()) {
        let xml = update_check_response_xml(&resp, Echo { ping, event });
        prop_assert_eq!(parse_update_check(xml.as_bytes(), APP).unwrap(), resp);
    }

    #[test]
    fn requests_round_trip(req in request()) {
        let xml = req.to_xml();
        prop_assert_eq!(parse_request(xml.as_bytes()).unwrap(), req);
    }
}
