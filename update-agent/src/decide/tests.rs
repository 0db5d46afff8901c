use super::*;

fn info(version: &str) -> UpdateInfo {
    let body =
        include_bytes!("../../../omaha/tests/fixtures/generated-responses/resp-update-ok.xml");
    let omaha::UpdateCheck::Update(info) = omaha::parse_update_check(body, omaha::FLATCAR_APP_ID)
        .unwrap()
        .outcome
    else {
        panic!("fixture has an update")
    };
    let mut info = *info;
    info.version = version.into();
    info.postinstall.disable_payload_backoff = false;
    info
}

fn denied(version: &str) -> Denied {
    Denied {
        version: version.into(),
        since: 0,
        reason: "rolled back".into(),
    }
}

/// (offered, running, denied, allow_downgrade, backoff until now + secs,
/// expected kind or Ok)
type Row<'a> = (
    &'a str,
    &'a str,
    Result<Option<Denied>, &'a str>,
    bool,
    Option<u64>,
    Result<(), &'a str>,
);

#[test]
fn offer_table() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let schedule = ScheduleConfig::default();
    let rows: Vec<Row> = vec![
        ("3600.0.0", "3510.2.0", Ok(None), false, None, Ok(())),
        ("3600.0.0", "3510.2.0", Ok(None), false, Some(0), Ok(())),
        ("3510.2.0", "3510.2.0", Ok(None), false, None, Ok(())),
        (
            "3400.0.0",
            "3510.2.0",
            Ok(None),
            false,
            None,
            Err("downgrade_refused"),
        ),
        ("3400.0.0", "3510.2.0", Ok(None), true, None, Ok(())),
        (
            "3600.0.0",
            "3510.2.0",
            Ok(Some(denied("3600.0.0"))),
            true,
            None,
            Err("deny_listed"),
        ),
        (
            "3600.0.0",
            "3510.2.0",
            Err("EIO"),
            false,
            None,
            Err("deny_listed"),
        ),
        // The deny list wins over a backoff.
        (
            "3600.0.0",
            "3510.2.0",
            Ok(Some(denied("3600.0.0"))),
            false,
            Some(600),
            Err("deny_listed"),
        ),
        (
            "3600.0.0",
            "3510.2.0",
            Ok(None),
            false,
            Some(600),
            Err("payload_backoff"),
        ),
    ];
    for (offered, running, deny, allow, backoff, want) in rows {
        let info = info(offered);
        let mut state = PayloadState::default();
        state.set_response(&info);
        state.attempt_number = 2;
        state.backoff_expiry = backoff.map(|s| now + Duration::from_secs(s));
        let d = deny.as_ref().map(Option::as_ref).map_err(|e| *e);
        let verdict = decide_offer(Offer {
            info: &info,
            server_https: false,
            running,
            board: "amd64-usr",
            denied: d,
            allow_downgrade: allow,
            payload_state: state,
            schedule: &schedule,
            now,
        });
        let what = format!("{offered} on {running}, {deny:?}, allow {allow}, backoff {backoff:?}");
        match (&verdict.result, want) {
            (Ok(a), Ok(())) => {
                assert_eq!(a.target.version, offered, "{what}");
                assert_eq!(a.target.size, info.payload.size, "{what}");
                assert!(verdict.save.is_some(), "{what}: payload state not saved");
            }
            (Err(r), Err(kind)) => {
                assert_eq!(r.error_kind(), kind, "{what}: {r}");
                let policy = kind != "payload_backoff";
                assert_eq!(verdict.save.is_none(), policy, "{what}");
                let code = if policy {
                    ErrorCode::OmahaUpdateIgnoredPerPolicy
                } else {
                    ErrorCode::OmahaUpdateDeferredForBackoff
                };
                assert_eq!(r.error_code(), code, "{what}");
            }
            (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn backoff_message_names_the_attempt_and_time_left() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let info = info("3600.0.0");
    let mut state = PayloadState::default();
    state.set_response(&info);
    state.attempt_number = 3;
    state.backoff_expiry = Some(now + Duration::from_secs(90));
    let v = decide_offer(Offer {
        info: &info,
        server_https: false,
        running: "3510.2.0",
        board: "amd64-usr",
        denied: Ok(None),
        allow_downgrade: false,
        payload_state: state,
        schedule: &ScheduleConfig::default(),
        now,
    });
    assert_eq!(
        v.result.unwrap_err().to_string(),
        "update to 3600.0.0 deferred: payload backoff after attempt 3 for another 90 s"
    );
}

#[test]
fn rollback_table() {
    let boot = |running, previous, installed, staged_on, now| BootRecord {
        running,
        previous_version: previous,
        installed,
        installed_boot_id: staged_on,
        boot_id: now,
    };
    let rows = [
        // Rebooted into the old version after staging 3600: rollback.
        (
            boot("3510", Some("3510"), Some("3600"), Some("b1"), "b2"),
            Some("3600"),
        ),
        // Same boot (ResetStatus or a restart without a reboot): not one.
        (
            boot("3510", Some("3510"), Some("3600"), Some("b1"), "b1"),
            None,
        ),
        // The new version booted: not one.
        (
            boot("3600", Some("3510"), Some("3600"), Some("b1"), "b2"),
            None,
        ),
        // previous-version cleared (reverted) or never set.
        (boot("3510", Some(""), Some("3600"), Some("b1"), "b2"), None),
        (boot("3510", None, Some("3600"), Some("b1"), "b2"), None),
        // Nothing staged by this agent, or no boot id recorded.
        (boot("3510", Some("3510"), None, Some("b1"), "b2"), None),
        (boot("3510", Some("3510"), Some("3600"), None, "b2"), None),
        // This boot's id unknown: no evidence.
        (
            boot("3510", Some("3510"), Some("3600"), Some("b1"), ""),
            None,
        ),
    ];
    for (record, want) in rows {
        assert_eq!(rolled_back_from(record).as_deref(), want, "{record:?}");
    }
}

#[test]
fn an_https_server_never_sends_the_payload_over_http() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut info = info("3600.0.0");
    let schedule = ScheduleConfig::default();
    let offer = |info: &UpdateInfo, https| {
        decide_offer(Offer {
            info,
            server_https: https,
            running: "3510.2.0",
            board: "amd64-usr",
            denied: Ok(None),
            allow_downgrade: false,
            payload_state: PayloadState::default(),
            schedule: &schedule,
            now,
        })
    };
    info.urls = vec!["https://a.example/".into(), "http://b.example/".into()];
    let v = offer(&info, true);
    let e = v.result.unwrap_err();
    assert_eq!(e.error_kind(), "insecure_payload_url");
    assert_eq!(e.error_code(), ErrorCode::OmahaResponseInvalid);
    assert!(e.to_string().contains("http://b.example/"), "{e}");
    assert_eq!(v.save, None);
    // The same answer from an http server, or all-https codebases: taken.
    assert!(offer(&info, false).result.is_ok());
    info.urls.pop();
    assert!(offer(&info, true).result.is_ok());
}

#[test]
fn a_node_that_does_not_know_its_board_takes_nothing() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let info = info("3600.0.0");
    let schedule = ScheduleConfig::default();
    let v = decide_offer(Offer {
        info: &info,
        server_https: false,
        running: "3510.2.0",
        board: "",
        denied: Ok(None),
        allow_downgrade: true,
        payload_state: PayloadState::default(),
        schedule: &schedule,
        now,
    });
    let refusal = v.result.unwrap_err();
    assert_eq!(refusal.error_kind(), "board_unknown");
    assert_eq!(refusal.error_code(), ErrorCode::OmahaUpdateIgnoredPerPolicy);
    assert!(
        refusal.to_string().contains("/etc/flatcar/update.conf"),
        "{refusal}"
    );
    assert_eq!(v.save, None);
}
