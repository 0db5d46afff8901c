//! Requests are compared byte-for-byte with the bodies Flatcar's
//! update_engine 0.4.10 sends (fixtures/flatcar-style-requests/).

use omaha::{ClientInfo, ErrorCode, ErrorFlags, Event, InstallSource, Request, RequestKind};

/// The inputs every fixture was generated with.
fn client(version: &str, track: &str) -> ClientInfo {
    ClientInfo {
        version: version.into(),
        arch: "x86_64".into(),
        track: track.into(),
        boot_id: "2a6fbb0a-6f3e-4c57-9a3f-0b5b0c1e9d11\n".parse().unwrap(),
        oem: "qemu".into(),
        oem_version: String::new(),
        aleph_version: "3510.2.0".into(),
        machine_id: "0f2b6c3e1d9a4e7b8c5d6e7f8a9b0c1d".into(),
        machine_alias: String::new(),
        board: "amd64-usr".into(),
        ..Default::default()
    }
}

fn stable() -> ClientInfo {
    client("3510.2.0", "stable")
}

#[track_caller]
fn assert_same(request: &Request, fixture: &str) {
    let got = request.to_xml();
    if got != fixture {
        panic!("request differs from fixture\n--- got\n{got}\n--- want\n{fixture}");
    }
    assert_eq!(request.to_string(), fixture);
}

#[test]
fn update_check_first_boot_pref_missing() {
    let req = Request::update_check(stable(), InstallSource::Scheduler, None);
    assert_same(
        &req,
        include_str!("fixtures/flatcar-style-requests/updatecheck-3510.2.0-stable.xml"),
    );
}

#[test]
fn update_check_on_demand_beta() {
    let req = Request::update_check(
        client("3510.2.0", "beta"),
        InstallSource::OnDemandUpdate,
        None,
    );
    assert_same(
        &req,
        include_str!("fixtures/flatcar-style-requests/updatecheck-3510.2.0-beta-ondemand.xml"),
    );
}

#[test]
fn update_check_after_update_reports_previous_version() {
    let req = Request::update_check(
        client("9999.0.0", "stable"),
        InstallSource::Scheduler,
        Some("3510.2.0"),
    );
    assert_same(
        &req,
        include_str!("fixtures/flatcar-style-requests/updatecheck-9999.0.0-stable-noupdate.xml"),
    );
}

#[test]
fn update_check_rollback_detected() {
    // previous-version pref equals the running version: the new version
    // failed to boot and GRUB fell back.
    let req = Request::update_check(stable(), InstallSource::Scheduler, Some("3510.2.0"));
    assert!(matches!(&req.kind, RequestKind::UpdateCheck { event } if *event == Event::rollback()));
    assert_same(
        &req,
        include_str!("fixtures/flatcar-style-requests/updatecheck-rollback-detected.xml"),
    );
}

#[test]
fn update_check_pref_emptied_sends_empty_previous_version() {
    let xml = Request::update_check(stable(), InstallSource::Scheduler, Some("")).to_xml();
    assert!(xml.contains(
        "        <event eventtype=\"3\" eventresult=\"2\" previousversion=\"\"></event>\n"
    ));
}

#[test]
fn event_download_started() {
    let req = Request::event(
        stable(),
        InstallSource::Scheduler,
        Event::download_started(),
    );
    assert_same(
        &req,
        include_str!("fixtures/flatcar-style-requests/event-13-download-started.xml"),
    );
}

#[test]
fn event_download_finished() {
    let req = Request::event(
        stable(),
        InstallSource::Scheduler,
        Event::download_finished(),
    );
    assert_same(
        &req,
        include_str!("fixtures/flatcar-style-requests/event-14-download-finished.xml"),
    );
}

#[test]
fn event_update_complete() {
    let req = Request::event(stable(), InstallSource::Scheduler, Event::update_complete());
    assert_same(
        &req,
        include_str!("fixtures/flatcar-style-requests/event-3-update-complete.xml"),
    );
}

#[test]
fn event_error_hash_mismatch_with_test_url_flag() {
    let flags = ErrorFlags {
        test_omaha_url: true,
        ..ErrorFlags::NONE
    };
    let event = Event::failure(ErrorCode::PayloadHashMismatchError, flags);
    let req = Request::event(stable(), InstallSource::Scheduler, event);
    assert_same(
        &req,
        include_str!("fixtures/flatcar-style-requests/event-3-error-hashmismatch-testurlflag.xml"),
    );
}

/// The same header and footer as the fixtures, around `body`.
fn wrap(body: &str) -> String {
    let fixture = include_str!("fixtures/flatcar-style-requests/event-3-update-complete.xml");
    fixture.replace(
        "        <event eventtype=\"3\" eventresult=\"1\"></event>\n",
        body,
    )
}

#[test]
fn ping_only_while_reboot_pending() {
    let req = Request::ping(stable(), InstallSource::Scheduler);
    assert_same(&req, &wrap("        <ping active=\"1\"></ping>\n"));
}

#[test]
fn other_event_shapes() {
    let cases: Vec<(Event, &str)> = vec![
        (
            Event::rollback(),
            "<event eventtype=\"3\" eventresult=\"0\" errorcode=\"44\"></event>",
        ),
        (
            Event::failure(ErrorCode::OmahaUpdateDeferredForBackoff, ErrorFlags::NONE),
            "<event eventtype=\"3\" eventresult=\"9\" errorcode=\"40\"></event>",
        ),
        (
            Event::failure(
                ErrorCode::PostinstallRunnerError,
                ErrorFlags {
                    resumed: true,
                    test_image: true,
                    test_omaha_url: true,
                    dev_mode: false,
                },
            ),
            "<event eventtype=\"3\" eventresult=\"0\" errorcode=\"1879048197\"></event>",
        ),
        (
            Event::omaha_http_failure(0, ErrorFlags::NONE),
            "<event eventtype=\"3\" eventresult=\"0\" errorcode=\"2000\"></event>",
        ),
        (
            Event::omaha_http_failure(
                503,
                ErrorFlags {
                    test_omaha_url: true,
                    ..ErrorFlags::NONE
                },
            ),
            "<event eventtype=\"3\" eventresult=\"0\" errorcode=\"268437959\"></event>",
        ),
    ];
    for (event, want) in cases {
        let req = Request::event(stable(), InstallSource::Scheduler, event.clone());
        assert_eq!(
            req.to_xml(),
            wrap(&format!("        {want}\n")),
            "event {event:?}"
        );
    }
}

#[test]
fn attribute_values_are_escaped() {
    let mut c = stable();
    c.machine_alias = "rack <3> & \"row\" caf\u{e9}".into();
    let xml = Request::ping(c, InstallSource::Scheduler).to_xml();
    assert!(
        xml.contains(" machinealias=\"rack &lt;3&gt; &amp; &quot;row&quot; caf&#xE9;\" "),
        "{xml}"
    );
}

#[test]
fn defaults_match_flatcar() {
    let c = ClientInfo::default();
    assert_eq!(c.app_id, "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}");
    assert_eq!(c.updater_version, "update_engine-0.4.10");
    assert_eq!(c.track, "stable");
}
