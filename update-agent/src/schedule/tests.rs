use super::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

const MIN: u64 = 60;

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

/// Min and max of many samples of `f`.
fn extremes(mut f: impl FnMut(&mut StdRng) -> Duration) -> (u64, u64) {
    let mut r = rng();
    let mut lo = u64::MAX;
    let mut hi = 0;
    for _ in 0..20_000 {
        let s = f(&mut r).as_secs();
        lo = lo.min(s);
        hi = hi.max(s);
    }
    (lo, hi)
}

fn update_info(urls: usize) -> UpdateInfo {
    let body =
        include_bytes!("../../../omaha/tests/fixtures/generated-responses/resp-update-ok.xml");
    let omaha::UpdateCheck::Update(info) = omaha::parse_update_check(body, omaha::FLATCAR_APP_ID)
        .unwrap()
        .outcome
    else {
        panic!("fixture has an update")
    };
    let mut info = *info;
    info.urls = (0..urls)
        .map(|i| format!("https://mirror{i}.example/"))
        .collect();
    info.postinstall.disable_payload_backoff = false;
    info.postinstall.max_failure_count_per_url = 3;
    info
}

#[test]
fn fuzz_matches_fuzz_int() {
    // FuzzInt(v, r) is uniform in [v - r/2, v + r - r/2].
    let cfg = ScheduleConfig::default();
    assert_eq!(
        extremes(|r| first_check_delay(&cfg, r)),
        (2 * MIN, 12 * MIN),
        "first check 2-12 min"
    );
    assert_eq!(
        extremes(|r| fuzz(Duration::from_secs(10), Duration::from_secs(5), r)),
        (8, 13),
        "odd range: lower half rounds down"
    );
    assert_eq!(
        extremes(|r| fuzz(Duration::from_secs(1), Duration::from_secs(10), r)),
        (0, 6),
        "floored at zero"
    );
    assert_eq!(
        fuzz(Duration::from_secs(9), Duration::ZERO, &mut rng()),
        Duration::from_secs(9)
    );
}

#[test]
fn periodic_interval_is_40_to_50_minutes() {
    let cfg = ScheduleConfig::default();
    let (lo, hi) = extremes(|r| next_check(&cfg, Duration::ZERO, None, None, r).delay);
    assert_eq!((lo, hi), (40 * MIN, 50 * MIN));
    let n = next_check(
        &cfg,
        Duration::from_secs(3 * 3600),
        None,
        Some(200),
        &mut rng(),
    );
    assert_eq!(n.interval, 45 * Duration::from_secs(MIN), "success resets");
}

#[test]
fn server_errors_double_up_to_four_hours() {
    let cfg = ScheduleConfig::default();
    let mut interval = Duration::ZERO;
    let mut seen = Vec::new();
    for _ in 0..6 {
        let n = next_check(&cfg, interval, None, Some(503), &mut rng());
        interval = n.interval;
        seen.push(interval.as_secs() / MIN);
        assert!(n.delay >= interval / 2 && n.delay <= interval + interval / 2);
    }
    assert_eq!(seen, [45, 90, 180, 240, 240, 240]);
    // 500 too, but not 502 or 404.
    assert_eq!(
        next_check(&cfg, Duration::from_secs(3600), None, Some(500), &mut rng()).interval,
        Duration::from_secs(7200)
    );
    for status in [404, 502] {
        assert_eq!(
            next_check(
                &cfg,
                Duration::from_secs(3600),
                None,
                Some(status),
                &mut rng()
            )
            .interval,
            Duration::from_secs(45 * MIN)
        );
    }
    // Above 45 min the fuzz is the interval itself (±50 %).
    let (lo, hi) =
        extremes(|r| next_check(&cfg, Duration::from_secs(3600), None, Some(500), r).delay);
    assert_eq!((lo, hi), (3600, 3 * 3600));
}

#[test]
fn poll_interval_wins_and_is_clamped() {
    let cfg = ScheduleConfig::default();
    let n = next_check(
        &cfg,
        Duration::from_secs(7200),
        Some(3600),
        Some(503),
        &mut rng(),
    );
    assert_eq!(n.interval, Duration::from_secs(3600));
    let n = next_check(&cfg, Duration::ZERO, Some(60), None, &mut rng());
    assert_eq!(
        n.interval,
        Duration::from_secs(45 * MIN),
        "raised to periodic"
    );
    let n = next_check(&cfg, Duration::ZERO, Some(86_400), None, &mut rng());
    assert_eq!(n.interval, Duration::from_secs(4 * 3600), "capped");
    let n = next_check(
        &cfg,
        Duration::from_secs(3600),
        Some(0),
        Some(500),
        &mut rng(),
    );
    assert_eq!(
        n.interval,
        Duration::from_secs(7200),
        "PollInterval=0 is ignored"
    );
}

#[test]
fn constants_come_from_config() {
    let cfg = ScheduleConfig {
        periodic: Duration::from_secs(10),
        periodic_fuzz: Duration::ZERO,
        max_backoff: Duration::from_secs(30),
        ..Default::default()
    };
    let mut interval = Duration::ZERO;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let n = next_check(&cfg, interval, None, Some(500), &mut rng());
        interval = n.interval;
        seen.push(n.interval.as_secs());
    }
    assert_eq!(seen, [10, 20, 30, 30]);
}

#[test]
fn payload_backoff_expiry_doubles_to_16_days() {
    let cfg = ScheduleConfig::default();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    assert_eq!(payload_backoff_expiry(&cfg, 0, now, &mut rng()), None);
    for (attempt, days) in [
        (1, 1),
        (2, 2),
        (3, 4),
        (4, 8),
        (5, 16),
        (6, 16),
        (40, 16),
        (u32::MAX, 16),
    ] {
        let (lo, hi) = extremes(|r| {
            payload_backoff_expiry(&cfg, attempt, now, r)
                .unwrap()
                .duration_since(now)
                .unwrap()
        });
        let base = days * 86_400;
        assert!(
            lo >= base - 6 * 3600 && hi <= base + 6 * 3600,
            "attempt {attempt}"
        );
        assert!(hi - lo > 11 * 3600, "attempt {attempt}: fuzz spans ±6 h");
    }
    // Exact FuzzInt(0, r) bounds with a small range.
    let small = ScheduleConfig {
        payload_backoff_fuzz: Duration::from_secs(600),
        payload_backoff_max_days: 2,
        ..Default::default()
    };
    let (lo, hi) = extremes(|r| {
        payload_backoff_expiry(&small, 9, now, r)
            .unwrap()
            .duration_since(now)
            .unwrap()
    });
    assert_eq!((lo, hi), (2 * 86_400 - 300, 2 * 86_400 + 300));
}

#[test]
fn payload_backoff_applies_only_when_allowed() {
    let cfg = ScheduleConfig::default();
    let mut info = update_info(1);
    assert!(payload_backoff_applies(&cfg, &info, false));
    assert!(!payload_backoff_applies(&cfg, &info, true), "dev image");
    info.postinstall.disable_payload_backoff = true;
    assert!(!payload_backoff_applies(&cfg, &info, false));
    info.postinstall.disable_payload_backoff = false;
    info.postinstall.is_delta_payload = true;
    assert!(!payload_backoff_applies(&cfg, &info, false));
    info.postinstall.is_delta_payload = false;
    let off = ScheduleConfig {
        payload_backoff: false,
        ..Default::default()
    };
    assert!(!payload_backoff_applies(&off, &info, false));
}

#[test]
fn payload_state_walks_urls_and_backs_off() {
    let cfg = ScheduleConfig::default();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let info = update_info(2);
    let mut r = rng();
    let mut st = PayloadState::default();
    st.set_response(&info);
    assert_eq!(
        st.current_url(&info).unwrap(),
        "https://mirror0.example/flatcar_production_update.gz"
    );

    // Transfer errors count against the URL; the third moves on.
    for _ in 0..2 {
        st.on_failure(
            ErrorCode::DownloadTransferError,
            &info,
            &cfg,
            true,
            now,
            &mut r,
        );
    }
    assert_eq!((st.url_index, st.url_failure_count), (0, 2));
    st.on_failure(
        ErrorCode::DownloadTransferError,
        &info,
        &cfg,
        true,
        now,
        &mut r,
    );
    assert_eq!((st.url_index, st.url_failure_count), (1, 0));
    assert!(!st.in_backoff(now));

    // A hash mismatch moves on at once; past the last URL the attempt
    // number grows and backoff starts.
    st.on_failure(
        ErrorCode::PayloadHashMismatchError,
        &info,
        &cfg,
        true,
        now,
        &mut r,
    );
    assert_eq!((st.url_index, st.attempt_number), (0, 1));
    assert!(st.in_backoff(now));
    assert!(!st.in_backoff(now + Duration::from_secs(2 * 86_400)));

    // Local errors do not touch the URL state.
    let before = st.clone();
    st.on_failure(
        ErrorCode::PostinstallRunnerError,
        &info,
        &cfg,
        true,
        now,
        &mut r,
    );
    assert_eq!(st, before);

    // A completed download counts as an attempt.
    st.on_download_complete(&cfg, false, now, &mut r);
    assert_eq!(st.attempt_number, 2);
    assert_eq!(st.backoff_expiry, None, "no backoff when not applicable");

    // Same response: state kept. Different response: reset.
    st.set_response(&info);
    assert_eq!(st.attempt_number, 2);
    let mut other = info.clone();
    other.version = "9999.0.0".into();
    other.payload.size += 1;
    st.set_response(&other);
    assert_eq!(st.attempt_number, 0);
    assert_eq!(st.response_signature, response_signature(&other));
}

#[test]
fn failure_classes() {
    assert_eq!(
        classify_failure(ErrorCode::OmahaErrorInHttpResponse),
        FailureAction::CountFailure
    );
    assert_eq!(
        classify_failure(ErrorCode::DownloadInvalidMetadataMagicString),
        FailureAction::NextUrl
    );
    assert_eq!(
        classify_failure(ErrorCode::DownloadOperationHashMissingError),
        FailureAction::NextUrl
    );
    assert_eq!(
        classify_failure(ErrorCode::PostinstallRunnerError),
        FailureAction::Ignore
    );
}

#[test]
fn fuzz_in_milliseconds_below_a_second() {
    let ms = |r: &mut StdRng| fuzz(Duration::from_millis(300), Duration::from_millis(100), r);
    let mut r = rng();
    let (mut lo, mut hi) = (u128::MAX, 0);
    for _ in 0..5_000 {
        let d = ms(&mut r).as_millis();
        lo = lo.min(d);
        hi = hi.max(d);
    }
    assert_eq!((lo, hi), (250, 350));
    // Whole seconds keep FuzzInt's second granularity.
    let d = fuzz(Duration::from_secs(10), Duration::from_secs(5), &mut rng());
    assert_eq!(d.subsec_millis(), 0);
    // A 500/503 backoff from a 300 ms periodic interval: 600 ms ± 300 ms.
    let cfg = ScheduleConfig {
        periodic: Duration::from_millis(300),
        periodic_fuzz: Duration::ZERO,
        max_backoff: Duration::from_millis(1000),
        ..ScheduleConfig::default()
    };
    let n = next_check(&cfg, cfg.periodic, None, Some(503), &mut rng());
    assert_eq!(n.interval, Duration::from_millis(600));
    assert!(n.delay >= Duration::from_millis(300) && n.delay <= Duration::from_millis(900));
    let n = next_check(&cfg, n.interval, None, Some(500), &mut rng());
    assert_eq!(n.interval, Duration::from_millis(1000), "capped");
    let n = next_check(&cfg, n.interval, None, None, &mut rng());
    assert_eq!(n.interval, Duration::from_millis(300));
    assert_eq!(n.delay, Duration::from_millis(300), "no fuzz configured");
}

#[test]
fn restored_state_is_sanitized() {
    let cfg = ScheduleConfig::default();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let info = update_info(2);
    // A restored state for this response with an index past its URLs.
    let mut st = PayloadState {
        response_signature: response_signature(&info),
        attempt_number: 4,
        url_index: 5,
        url_failure_count: 2,
        backoff_expiry: Some(now + Duration::from_secs(86_400)),
    };
    st.set_response(&info);
    assert_eq!(
        (st.url_index, st.url_failure_count, st.attempt_number),
        (0, 0, 4)
    );
    assert!(!st.sanitize_backoff(&cfg, now));
    assert!(st.in_backoff(now));
    // 16 days + 6 h is the farthest a backoff reaches; beyond: dropped.
    st.backoff_expiry = Some(now + Duration::from_secs(16 * 86_400 + 6 * 3600));
    assert!(!st.sanitize_backoff(&cfg, now));
    st.backoff_expiry = Some(now + Duration::from_secs(400 * 86_400));
    assert!(st.sanitize_backoff(&cfg, now));
    assert_eq!(st.backoff_expiry, None);
    assert!(!st.in_backoff(now));
}

#[test]
fn extreme_restored_counts_and_settings_do_not_panic() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let info = update_info(1);
    let mut st = PayloadState {
        response_signature: response_signature(&info),
        attempt_number: u32::MAX,
        url_index: 0,
        url_failure_count: u32::MAX,
        backoff_expiry: None,
    };
    st.set_response(&info);
    // Whatever set_response kept, force the extremes a damaged pref holds.
    st.url_failure_count = u32::MAX;
    st.attempt_number = u32::MAX;
    let cfg = ScheduleConfig {
        payload_backoff_fuzz: Duration::MAX,
        ..ScheduleConfig::default()
    };
    let mut r = rng();
    for backoff in [false, true] {
        st.url_failure_count = u32::MAX;
        st.on_failure(
            ErrorCode::DownloadTransferError,
            &info,
            &cfg,
            backoff,
            now,
            &mut r,
        );
    }
    st.backoff_expiry = Some(now + Duration::from_secs(400 * 86_400));
    assert!(
        !st.sanitize_backoff(&cfg, now),
        "Duration::MAX fuzz keeps it"
    );
}
