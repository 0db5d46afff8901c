use super::*;
use std::fs;

fn write(root: &Root, path: &str, text: &str) {
    let p = root.join(path);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

#[test]
fn defaults_work_without_any_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = Settings::load(&Root::new(dir.path())).unwrap();
    assert_eq!(s, Settings::default());
    assert_eq!(s.state_dir, PathBuf::from("/var/lib/update_engine"));
    assert_eq!(
        s.reboot_marker,
        PathBuf::from("/run/update_engine_autoupdate_completed")
    );
    assert_eq!(s.connect_timeout, Duration::from_secs(30));
    assert_eq!(s.schedule, ScheduleConfig::default());
    assert_eq!(s.bandwidth_limit, None);
    assert!(!s.allow_downgrade);
    assert_eq!(s.reboot_command, None);
    assert_eq!(
        s.metrics_socket.as_deref(),
        Some(Path::new("/run/update-agent/public/metrics.sock"))
    );
    assert_eq!(
        s.prefs(&Root::new("/r")).dir(),
        Path::new("/r/var/lib/update_engine/prefs")
    );
}

#[test]
fn layers_merge_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(dir.path());
    write(
        &root,
        "/usr/lib/update-agent/config.d/10-vendor.toml",
        "[schedule]\nperiodic_secs = 3600\nmax_backoff_secs = 7200\n[download]\nbandwidth_limit = 100\n",
    );
    write(
        &root,
        "/usr/lib/update-agent/config.d/20-masked.toml",
        "[install]\nallow_downgrade = true\n",
    );
    // Same name in /etc masks the vendor file.
    write(&root, "/etc/update-agent/config.d/20-masked.toml", "");
    write(
        &root,
        "/etc/update-agent/config.toml",
        "[download]\nbandwidth_limit = 200\n[install]\nslot_device = \"/dev/vda\"\n",
    );
    write(
        &root,
        "/etc/update-agent/config.d/90-admin.toml",
        "[download]\nbandwidth_limit = 0\n[omaha]\nca_bundle = \"/etc/ssl/my.pem\"\n",
    );
    write(&root, "/etc/update-agent/config.d/README", "not toml = [");
    let files = config_files(&root).unwrap();
    let names: Vec<_> = files
        .iter()
        .map(|p| {
            p.strip_prefix(dir.path())
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "usr/lib/update-agent/config.d/10-vendor.toml",
            "etc/update-agent/config.toml",
            "etc/update-agent/config.d/20-masked.toml",
            "etc/update-agent/config.d/90-admin.toml",
        ]
    );
    let s = Settings::load(&root).unwrap();
    assert_eq!(s.schedule.periodic, Duration::from_secs(3600));
    assert_eq!(s.schedule.max_backoff, Duration::from_secs(7200));
    assert_eq!(
        s.bandwidth_limit, None,
        "0 from the last layer means unlimited"
    );
    assert_eq!(s.slot_device, Some(PathBuf::from("/dev/vda")));
    assert_eq!(s.ca_bundle, Some(PathBuf::from("/etc/ssl/my.pem")));
    assert!(!s.allow_downgrade, "masked vendor drop-in is ignored");
}

#[test]
fn rejects_bad_files() {
    let cases: &[(&str, &str)] = &[
        ("[omaha]\nunknown = 1\n", "settings_parse"),
        ("[nosuchsection]\n", "settings_parse"),
        ("[schedule]\nperiodic_secs = \"45m\"\n", "settings_parse"),
        ("not toml", "settings_parse"),
        ("[schedule]\nperiodic_secs = 0\n", "settings_invalid"),
        ("[schedule]\nmax_backoff_secs = 60\n", "settings_invalid"),
        (
            "[schedule]\nperiodic_secs = 60\nperiodic_ms = 500\n",
            "settings_invalid",
        ),
        ("[schedule]\nperiodic_ms = 0\n", "settings_invalid"),
        ("[install]\nslot_device = \"dev/sda\"\n", "settings_invalid"),
        ("[install]\nreboot_command = []\n", "settings_invalid"),
        ("[state]\nstate_dir = \"relative\"\n", "settings_invalid"),
        ("[metrics]\nsocket = \"m.sock\"\n", "settings_invalid"),
        ("[metrics]\nenabled = \"no\"\n", "settings_parse"),
    ];
    for (text, kind) in cases {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        write(&root, MAIN_FILE, text);
        let err = Settings::load(&root).unwrap_err();
        assert_eq!(err.error_kind(), *kind, "{text:?}: {err}");
        if *kind == "settings_parse" {
            assert!(err.to_string().contains("config.toml"), "{err}");
        }
    }
}

#[test]
fn reboot_command_and_schedule_fields() {
    let f = Fragment::parse(
        "[install]\nreboot_command = [\"systemctl\", \"reboot\"]\n[schedule]\nenabled = false\nfirst_check_secs = 5\nfirst_check_fuzz_secs = 0\npayload_backoff = false\n",
    )
    .unwrap();
    let s = Settings::from_fragment(f).unwrap();
    assert_eq!(
        s.reboot_command,
        Some(vec!["systemctl".to_string(), "reboot".to_string()])
    );
    assert!(!s.schedule.enabled);
    assert_eq!(s.schedule.first_check, Duration::from_secs(5));
    assert_eq!(s.schedule.first_check_fuzz, Duration::ZERO);
    assert!(!s.schedule.payload_backoff);
}

#[test]
fn schedule_timers_in_milliseconds() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(dir.path());
    write(
        &root,
        MAIN_FILE,
        "[schedule]\nfirst_check_ms = 50\nfirst_check_fuzz_ms = 0\nperiodic_ms = 300\nperiodic_fuzz_ms = 20\nmax_backoff_ms = 1500\n",
    );
    let s = Settings::load(&root).unwrap();
    assert_eq!(s.schedule.first_check, Duration::from_millis(50));
    assert_eq!(s.schedule.first_check_fuzz, Duration::ZERO);
    assert_eq!(s.schedule.periodic, Duration::from_millis(300));
    assert_eq!(s.schedule.periodic_fuzz, Duration::from_millis(20));
    assert_eq!(s.schedule.max_backoff, Duration::from_millis(1500));
    // A later layer's seconds form replaces the ms form (and back).
    write(
        &root,
        "/etc/update-agent/config.d/50-x.toml",
        "[schedule]\nmax_backoff_secs = 10\nperiodic_secs = 7\n",
    );
    write(
        &root,
        "/etc/update-agent/config.d/60-y.toml",
        "[schedule]\nperiodic_ms = 250\n",
    );
    let s = Settings::load(&root).unwrap();
    assert_eq!(s.schedule.max_backoff, Duration::from_secs(10));
    assert_eq!(s.schedule.periodic, Duration::from_millis(250));
    assert_eq!(s.schedule.first_check, Duration::from_millis(50));
    // Both forms in one file are ambiguous: an error naming the timer.
    write(
        &root,
        "/etc/update-agent/config.d/70-z.toml",
        "[schedule]\nmax_backoff_secs = 10\nmax_backoff_ms = 10\n",
    );
    let err = Settings::load(&root).unwrap_err();
    assert!(err.to_string().contains("max_backoff_secs"), "{err}");
}

/// Every timer takes its unit in the value (`"45s"`, `"500ms"`, `"1h"`, or
/// a bare number of seconds); a later layer's unit-less form replaces an
/// earlier `_secs`/`_ms` one and back; two forms in one file are refused;
/// a value that is not a duration names itself.
#[test]
fn timers_with_units_in_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(dir.path());
    write(
        &root,
        "/usr/lib/update-agent/config.d/10-vendor.toml",
        "[schedule]\nperiodic_secs = 3600\nmark_good_delay_secs = 45\n\
         [omaha]\nconnect_timeout_secs = 5\n[health]\nreboot_window_secs = 60\n",
    );
    write(
        &root,
        MAIN_FILE,
        "[schedule]\nperiodic = \"1h 30m\"\nmax_backoff = \"4h\"\nmark_good_delay = \"500ms\"\n\
         [omaha]\nrequest_timeout = 7\n[download]\nretry_delay = \"2s\"\nlow_speed_time = \"1m\"\n\
         [health]\nsettle_timeout = \"10m\"\ncheck_timeout = \"30s\"\n",
    );
    let s = Settings::load(&root).unwrap();
    assert_eq!(s.schedule.periodic, Duration::from_secs(5400));
    assert_eq!(s.schedule.max_backoff, Duration::from_secs(4 * 3600));
    assert_eq!(s.schedule.mark_good_delay, Duration::from_millis(500));
    assert_eq!(s.connect_timeout, Duration::from_secs(5), "older key kept");
    assert_eq!(s.request_timeout, Duration::from_secs(7));
    assert_eq!(s.download_retry_delay, Duration::from_secs(2));
    assert_eq!(s.low_speed_time, Duration::from_secs(60));
    assert_eq!(s.health.settle_timeout_secs, 600);
    assert_eq!(s.health.check_timeout_secs, 30);
    assert_eq!(s.health.reboot_window_secs, 60);
    // And back: an /etc drop-in's _secs form replaces the unit-less one.
    write(
        &root,
        "/etc/update-agent/config.d/50-x.toml",
        "[schedule]\nperiodic_secs = 7200\n",
    );
    assert_eq!(
        Settings::load(&root).unwrap().schedule.periodic,
        Duration::from_secs(7200)
    );
    write(
        &root,
        "/etc/update-agent/config.d/60-y.toml",
        "[schedule]\nperiodic = \"2h\"\nperiodic_secs = 7200\n",
    );
    let err = Settings::load(&root).unwrap_err();
    assert!(err.to_string().contains("periodic_secs"), "{err}");
    write(
        &root,
        "/etc/update-agent/config.d/60-y.toml",
        "[schedule]\nperiodic = \"soon\"\n",
    );
    let err = crate::error_chain(&Settings::load(&root).unwrap_err());
    assert!(err.contains("\"soon\" is not a duration"), "{err}");
}

#[test]
fn flatcar_payload_key_default_override_and_off() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(dir.path());
    let s = Settings::load(&root).unwrap();
    assert_eq!(
        s.flatcar_payload_key.as_deref(),
        Some(Path::new(
            "/usr/share/update_engine/update-payload-key.pub.pem"
        ))
    );
    write(
        &root,
        "/etc/update-agent/config.toml",
        "[install]\nflatcar_payload_key = \"/etc/flatcar/key.pem\"\n",
    );
    let s = Settings::load(&root).unwrap();
    assert_eq!(
        s.flatcar_payload_key.as_deref(),
        Some(Path::new("/etc/flatcar/key.pem"))
    );
    write(
        &root,
        "/etc/update-agent/config.d/50-off.toml",
        "[install]\nflatcar_payload_key = \"\"\n",
    );
    assert_eq!(Settings::load(&root).unwrap().flatcar_payload_key, None);
    write(
        &root,
        "/etc/update-agent/config.d/60-rel.toml",
        "[install]\nflatcar_payload_key = \"key.pem\"\n",
    );
    let err = Settings::load(&root).unwrap_err().to_string();
    assert!(err.contains("install.flatcar_payload_key"), "{err}");
}

#[test]
fn metrics_socket_setting() {
    let socket = |text: &str| {
        Settings::from_fragment(Fragment::parse(text).unwrap())
            .unwrap()
            .metrics_socket
    };
    assert_eq!(
        socket("[metrics]\nsocket = \"/run/m.sock\"\n"),
        Some(PathBuf::from("/run/m.sock"))
    );
    assert_eq!(socket("[metrics]\nenabled = false\n"), None);
}
