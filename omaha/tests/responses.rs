//! One test per reference response (fixtures/), parsed the way the agent
//! will: update-check responses with `parse_update_check`, event responses
//! with `parse_event_response`.

use omaha::{
    ErrorCode, Package, ResponseError, UpdateCheck, UpdateCheckResponse, UpdateInfo,
    parse_event_response, parse_update_check,
};

/// The Flatcar appid, as update_engine sends it.
const APP: &str = omaha::FLATCAR_APP_ID;

fn b64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn hex32(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

#[track_caller]
fn update(body: &str) -> (UpdateCheckResponse, UpdateInfo) {
    update_for(body, APP)
}

#[track_caller]
fn update_for(body: &str, app_id: &str) -> (UpdateCheckResponse, UpdateInfo) {
    let resp = parse_update_check(body.as_bytes(), app_id).unwrap();
    match &resp.outcome {
        UpdateCheck::Update(info) => {
            let info = (**info).clone();
            (resp, info)
        }
        UpdateCheck::NoUpdate => panic!("expected an update, got noupdate"),
    }
}

#[track_caller]
fn server_error(body: &str) -> ResponseError {
    parse_update_check(body.as_bytes(), APP).unwrap_err()
}

// ---- Nebraska (generated-responses/) --------------------------------------

#[test]
fn nebraska_update_ok() {
    let (resp, info) = update(include_str!(
        "fixtures/generated-responses/resp-update-ok.xml"
    ));
    assert_eq!(resp.server.as_deref(), Some("nebraska"));
    assert_eq!(
        resp.app_id.as_deref(),
        Some("{e96281a6-d1af-4bde-9a0a-97b76e56dc57}")
    );
    assert_eq!(resp.poll_interval, None);
    assert_eq!(info.version, "2191.5.0");
    assert_eq!(
        info.urls,
        ["https://update.release.flatcar-linux.net/amd64-usr/2191.5.0/"]
    );
    assert_eq!(
        info.payload_urls(),
        [
            "https://update.release.flatcar-linux.net/amd64-usr/2191.5.0/flatcar_production_update.gz"
        ]
    );
    assert_eq!(
        info.payload,
        Package {
            name: "flatcar_production_update.gz".into(),
            size: 465_881_871,
            sha1: Some(b64("r3nufcxgMTZaxYEqL+x2zIoeClk=").try_into().unwrap()),
            sha256: None,
            required: true,
        }
    );
    assert!(info.extra_packages.is_empty());
    assert_eq!(
        info.postinstall.sha256.to_vec(),
        b64("LIkAKVZY2EJFiwTmltiJZLFLA5xT/FodbjVgqkyF/y8=")
    );
    assert!(info.postinstall.disable_payload_backoff);
    assert!(!info.postinstall.is_delta_payload);
    assert_eq!(info.postinstall.max_failure_count_per_url, 10);
    assert_eq!(info.postinstall.needs_admin, None);
    assert!(info.postinstall.other_attributes.is_empty());
    assert!(!info.is_floor && !info.is_target && info.ignored_manifests == 0);
}

#[test]
fn nebraska_update_ok_with_extra_files_keeps_sysext_packages() {
    let (_, info) = update(include_str!(
        "fixtures/generated-responses/resp-update-ok-with-extra-files.xml"
    ));
    assert_eq!(info.payload.name, "flatcar_production_update.gz");
    assert_eq!(
        info.extra_packages,
        [Package {
            name: "oem-qemu.gz".into(),
            size: 2283,
            sha1: Some(b64("E3rh1aST7bya58HIor4xTqLp+ts=").try_into().unwrap()),
            sha256: Some(hex32(
                "043bb7c00bece5f1ee2a08431809962301a212aa7ec0260bef9761b2cc05c14a"
            )),
            required: false,
        }]
    );
    let oem = info.package("oem-qemu.gz").unwrap();
    assert_eq!(
        info.package_urls(oem),
        ["https://update.release.flatcar-linux.net/amd64-usr/2191.5.0/oem-qemu.gz"]
    );
}

#[test]
fn nebraska_noupdate() {
    let resp = parse_update_check(
        include_bytes!("fixtures/generated-responses/resp-noupdate.xml"),
        APP,
    )
    .unwrap();
    assert_eq!(resp.outcome, UpdateCheck::NoUpdate);
    assert_eq!(resp.server.as_deref(), Some("nebraska"));
}

#[test]
fn nebraska_event_only() {
    let body = include_bytes!("fixtures/generated-responses/resp-event-only.xml");
    let ack = parse_event_response(body, APP).unwrap();
    assert_eq!(ack.event_statuses, ["ok"]);
    assert_eq!(ack.ping_status, None);
    // As an update-check answer it lacks <updatecheck>: update_engine's
    // error 34.
    let err = parse_update_check(body, APP).unwrap_err();
    assert_eq!(err.to_string(), "missing element response/app/updatecheck");
    assert_eq!(err.error_code(), ErrorCode::OmahaResponseInvalid);
}

#[test]
fn nebraska_malformed_request_reply_is_empty_document() {
    let body = include_bytes!("fixtures/generated-responses/resp-malformed-request.xml");
    let err = parse_update_check(body, APP).unwrap_err();
    assert_eq!(err.to_string(), "malformed XML: no root element");
    assert_eq!(err.error_kind(), "bad_structure");
    assert_eq!(err.error_code(), ErrorCode::OmahaRequestXmlParseError);
}

#[test]
fn nebraska_syncer_multi_manifest_uses_first_manifest() {
    let (_, info) = update(include_str!(
        "fixtures/generated-responses/resp-syncer-multi-manifest.xml"
    ));
    assert_eq!(info.version, "3033.2.4");
    assert!(info.is_floor);
    assert_eq!(
        info.floor_reason.as_deref(),
        Some("Required intermediate version")
    );
    assert!(!info.is_target);
    assert_eq!(info.ignored_manifests, 1);
    assert_eq!(info.payload.size, 1000);
}

macro_rules! nebraska_error_tests {
    ($($name:ident: $file:literal => $status:literal,)*) => {$(
        #[test]
        fn $name() {
            let err = server_error(include_str!(concat!("fixtures/generated-responses/", $file)));
            assert_eq!(err.to_string(), concat!("Omaha server reported \"", $status, "\" on <app>"));
            assert_eq!(err.server_status(), Some($status));
            assert_eq!(err.error_kind(), "server_error");
            assert_eq!(err.error_code(), ErrorCode::OmahaResponseInvalid);
        }
    )*};
}

nebraska_error_tests! {
    nebraska_error_could_not_check_updates_stats:
        "resp-error-couldNotCheckUpdatesStats.xml" => "error-couldNotCheckUpdatesStats",
    nebraska_error_instance_registration_failed:
        "resp-error-instanceRegistrationFailed.xml" => "error-instanceRegistrationFailed",
    nebraska_error_max_concurrent_updates:
        "resp-error-maxConcurrentUpdatesLimitReached.xml" => "error-maxConcurrentUpdatesLimitReached",
    nebraska_error_max_timed_out_updates:
        "resp-error-maxTimedOutUpdatesLimitReached.xml" => "error-maxTimedOutUpdatesLimitReached",
    nebraska_error_max_updates_per_period:
        "resp-error-maxUpdatesPerPeriodLimitReached.xml" => "error-maxUpdatesPerPeriodLimitReached",
    nebraska_error_no_package_found:
        "resp-error-noPackageFound.xml" => "error-noPackageFound",
    nebraska_error_unknown_track:
        "resp-error-unknown-track.xml" => "error-failedToRetrieveUpdatePackageInfo",
    nebraska_error_update_in_progress:
        "resp-error-updateInProgressOnInstance.xml" => "error-updateInProgressOnInstance",
    nebraska_error_updates_disabled:
        "resp-error-updatesDisabled.xml" => "error-updatesDisabled",
}

#[test]
fn nebraska_error_unknown_app() {
    // Nebraska answers for the appid that was asked about.
    let body = include_bytes!("fixtures/generated-responses/resp-error-unknown-app.xml");
    let err = parse_update_check(body, "{00000000-0000-0000-0000-000000000000}").unwrap_err();
    assert_eq!(
        err.server_status(),
        Some("error-failedToRetrieveUpdatePackageInfo")
    );
    assert!(!err.is_permanent());
    let err = parse_update_check(body, APP).unwrap_err();
    assert_eq!(err.error_kind(), "app_not_found");
}

#[test]
fn nebraska_error_statuses_on_event_responses_too() {
    let err = parse_event_response(
        include_bytes!("fixtures/generated-responses/resp-error-updatesDisabled.xml"),
        APP,
    )
    .unwrap_err();
    assert_eq!(err.server_status(), Some("error-updatesDisabled"));
}

#[test]
fn updatecheck_error_status_under_ok_app() {
    let body = include_str!("fixtures/generated-responses/resp-noupdate.xml")
        .replace("status=\"noupdate\"", "status=\"error-internal\"");
    let err = server_error(&body);
    assert_eq!(
        err.to_string(),
        "Omaha server reported \"error-internal\" on <updatecheck>"
    );
}

// ---- go-omaha (indented, base64 hash_sha256) -------------------------------

const GO_OMAHA_SHA256: &str = "rKpzj8gKTZqKk/HwPwyLxB6HDBPPO/3YAN2NIpcNdWk=";

#[track_caller]
fn check_go_omaha_update(body: &str) {
    let (resp, info) = update(body);
    assert_eq!(resp.server.as_deref(), Some("go-omaha"));
    assert_eq!(info.version, "9999.0.0");
    assert_eq!(info.urls, ["http://127.0.0.1:18000/packages/"]);
    assert_eq!(
        info.payload_urls(),
        ["http://127.0.0.1:18000/packages/update.gz"]
    );
    assert_eq!(info.payload.name, "update.gz");
    assert_eq!(info.payload.size, 1_048_576);
    assert!(!info.payload.required);
    assert_eq!(
        info.payload.sha256.map(|d| d.to_vec()),
        Some(b64(GO_OMAHA_SHA256))
    );
    assert_eq!(info.postinstall.sha256.to_vec(), b64(GO_OMAHA_SHA256));
    assert!(info.postinstall.disable_payload_backoff);
}

#[test]
fn go_omaha_update_stable() {
    check_go_omaha_update(include_str!(
        "fixtures/go-omaha/updatecheck-3510.2.0-stable.resp.xml"
    ));
}

#[test]
fn go_omaha_update_beta_ondemand() {
    check_go_omaha_update(include_str!(
        "fixtures/go-omaha/updatecheck-3510.2.0-beta-ondemand.resp.xml"
    ));
}

#[test]
fn go_omaha_update_after_rollback() {
    check_go_omaha_update(include_str!(
        "fixtures/go-omaha/updatecheck-rollback-detected.resp.xml"
    ));
}

#[test]
fn go_omaha_noupdate() {
    let resp = parse_update_check(
        include_bytes!("fixtures/go-omaha/updatecheck-9999.0.0-stable-noupdate.resp.xml"),
        APP,
    )
    .unwrap();
    assert_eq!(resp.outcome, UpdateCheck::NoUpdate);
}

#[track_caller]
fn check_go_omaha_event(body: &[u8]) {
    let ack = parse_event_response(body, APP).unwrap();
    assert_eq!(ack.server.as_deref(), Some("go-omaha"));
    assert_eq!(ack.event_statuses, ["ok"]);
}

#[test]
fn go_omaha_event_download_started() {
    check_go_omaha_event(include_bytes!(
        "fixtures/go-omaha/event-13-download-started.resp.xml"
    ));
}

#[test]
fn go_omaha_event_download_finished() {
    check_go_omaha_event(include_bytes!(
        "fixtures/go-omaha/event-14-download-finished.resp.xml"
    ));
}

#[test]
fn go_omaha_event_update_complete() {
    check_go_omaha_event(include_bytes!(
        "fixtures/go-omaha/event-3-update-complete.resp.xml"
    ));
}

#[test]
fn go_omaha_event_error() {
    check_go_omaha_event(include_bytes!(
        "fixtures/go-omaha/event-3-error-hashmismatch-testurlflag.resp.xml"
    ));
}

// ---- production-shaped and update_engine's own sample ----------------------

#[test]
fn ue_rs_production_response_with_oem_packages() {
    let (resp, info) = update(include_str!(
        "fixtures/from-ue-rs-testdata/omaha-response-example.xml"
    ));
    assert_eq!(
        resp.app_id.as_deref(),
        Some("e96281a6-d1af-4bde-9a0a-97b76e56dc57")
    );
    assert_eq!(info.version, "3732.0.0");
    assert_eq!(info.payload.name, "flatcar_production_update.gz");
    assert_eq!(info.payload.size, 382_137_917);
    assert!(info.payload.required);
    let names: Vec<_> = info
        .extra_packages
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["oem-azure.gz", "oem-qemu.gz"]);
    let azure = &info.extra_packages[0];
    assert_eq!(azure.size, 40_897_503);
    assert_eq!(
        azure.sha256,
        Some(hex32(
            "3aed3129de50b959a97e4913ba485bd60e72d2bb6aa377d5ed404103f0680043"
        ))
    );
    assert!(!azure.required);
    assert_eq!(
        info.postinstall.sha256.to_vec(),
        b64("stLG3U/o4Ar8TMHFwT/RWB0iNkaWOO6QtLrq6+AHBbA=")
    );
}

#[test]
fn update_engine_sample_response() {
    // Self-closing tags, an `update` action before `postinstall`, and many
    // attributes update_engine ignores.
    let (resp, info) = update_for(
        include_str!("fixtures/flatcar-update_engine-sample_omaha_v3_response.xml"),
        "{90f229ce-83e2-4faf-8479-e368a34938b1}",
    );
    assert_eq!(resp.server.as_deref(), Some("prod"));
    assert_eq!(info.version, "3095.0.0");
    assert_eq!(info.payload.size, 400_752_559);
    assert!(info.payload.name.starts_with("chromeos_3095.0.0_x86-zgb"));
    let pi = &info.postinstall;
    assert_eq!(
        pi.sha256.to_vec(),
        b64("DIAVxoI+8NpsudUawOA5U92VHlaxQBS3ejN4EPM6T2A=")
    );
    assert!(!pi.is_delta_payload, "IsDeltaPayload=\"false\"");
    assert!(!pi.disable_payload_backoff);
    let keys: Vec<_> = pi.other_attributes.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "ChromeOSVersion",
            "ChromeVersion",
            "IsDelta",
            "MaxDaysToScatter",
            "MetadataSignatureRsa",
            "MetadataSize"
        ]
    );
    assert_eq!(pi.other_attributes["MetadataSize"], "58315");
}

// ---- tolerance -------------------------------------------------------------

const OK_SHA256_B64: &str = "LIkAKVZY2EJFiwTmltiJZLFLA5xT/FodbjVgqkyF/y8=";

#[test]
fn actions_before_packages_unknown_elements_and_attributes() {
    let body = format!(
        r#"<?xml version='1.0' encoding='utf-8'?>
<!-- a comment -->
<response protocol="3.0" server="custom" newattr="x">
  <systemrequirements platform="linux"/>
  <app appid="{{x}}" status="ok"/>
  <app appid="E96281A6-D1AF-4BDE-9A0A-97B76E56DC57" status="ok" cohort="1:2:" extra="y">
    <updatecheck status="ok" PollInterval="3600" foo="bar">
      <manifest version="1.2.3" extra="z">
        <actions>
          <action event="preinstall" sha256="nonsense"/>
          <action event="postinstall" sha256="{OK_SHA256_B64}" MaxFailureCountPerUrl="3"
                  IsDeltaPayload="true" needsadmin="false" deadline="now"/>
        </actions>
        <packages>
          <package name="a.gz" size="7" hash="" fp="1.abc" required="true"/>
          <package name="b.gz" size="0"/>
        </packages>
      </manifest>
      <urls>
        <url codebase="http://one/"/>
        <url codebase="http://two"/>
        <url codebase="https://three/x/"/>
      </urls>
    </updatecheck>
    <unknown><nested/></unknown>
  </app>
  <app appid="second" status="error-ignored"/>
</response>
"#
    );
    let (resp, info) = update(&body);
    assert_eq!(resp.poll_interval, Some(3600));
    assert_eq!(
        info.payload_urls(),
        ["http://one/a.gz", "http://two/a.gz", "https://three/x/a.gz"]
    );
    assert_eq!(info.payload.sha1, None);
    assert_eq!(info.extra_packages.len(), 1);
    assert_eq!(info.extra_packages[0].size, 0);
    assert_eq!(info.postinstall.max_failure_count_per_url, 3);
    assert!(info.postinstall.is_delta_payload);
    assert_eq!(info.postinstall.needs_admin, Some(false));
    assert_eq!(info.postinstall.other_attributes["deadline"], "now");
}

#[test]
fn poll_interval_on_noupdate_and_missing_urls() {
    let body = r#"<response protocol="3.0"><app appid="e96281a6-d1af-4bde-9a0a-97b76e56dc57"><updatecheck status="noupdate" PollInterval="120"/></app></response>"#;
    let resp = parse_update_check(body.as_bytes(), APP).unwrap();
    assert_eq!(resp.outcome, UpdateCheck::NoUpdate);
    assert_eq!(resp.poll_interval, Some(120));
    assert_eq!(
        resp.app_id.as_deref(),
        Some("e96281a6-d1af-4bde-9a0a-97b76e56dc57")
    );
}

#[test]
fn escaped_attribute_values_are_unescaped() {
    let body = format!(
        r#"<response protocol="3.0"><app appid="{APP}" status="ok"><updatecheck status="ok"><urls><url codebase="http://h/p?a=1&amp;b=&#50;&#x33;/"/></urls><manifest version="1"><packages><package name="p" size="1"/></packages><actions><action event="postinstall" sha256="{OK_SHA256_B64}"/></actions></manifest></updatecheck></app></response>"#
    );
    let (_, info) = update(&body);
    assert_eq!(info.urls, ["http://h/p?a=1&b=23/"]);
}
