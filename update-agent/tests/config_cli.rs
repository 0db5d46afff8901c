//! `update-agent config show|check|reference`, run as the real binary on a
//! layered test root.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn write(root: &Path, path: &str, text: &str) {
    let p = root.join(path.trim_start_matches('/'));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

fn agent(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_update-agent"))
        .args(args)
        .arg("--root")
        .arg(root)
        .output()
        .unwrap()
}

/// Every layer at once: defaults, a vendor drop-in in /usr, the admin's
/// main file and drop-in in /etc, `--config`, and the update.conf files.
fn layered_root() -> (tempfile::TempDir, tempfile::NamedTempFile) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "/usr/lib/update-agent/config.d/10-vendor.toml",
        "[schedule]\nperiodic_secs = 3600\nmax_backoff = \"8h\"\n[download]\nretries = 5\n",
    );
    write(
        root,
        "/etc/update-agent/config.toml",
        "[download]\nretries = 7\nbandwidth_limit = 1000\n[install]\nslot_device = \"/dev/vdb\"\nbooted_slot = \"A\"\n",
    );
    write(
        root,
        "/etc/update-agent/config.d/50-admin.toml",
        "[schedule]\nperiodic = \"30m\"\n",
    );
    write(
        root,
        "/usr/share/flatcar/update.conf",
        "GROUP=stable\nSERVER=https://vendor.example/v1/update/\n",
    );
    write(
        root,
        "/etc/flatcar/update.conf",
        "SERVER=http://127.0.0.1:8080/v1/update/\n",
    );
    write(
        root,
        "/usr/share/flatcar/release",
        "FLATCAR_RELEASE_VERSION=1.0.0\nGROUP=beta\n",
    );
    // --config is a host path, outside the root here.
    let extra = tempfile::NamedTempFile::new().unwrap();
    fs::write(
        extra.path(),
        "[state]\nstate_dir = \"/var/lib/test-agent\"\n",
    )
    .unwrap();
    (dir, extra)
}

fn json_show(root: &Path, extra: &Path) -> serde_json::Value {
    let out = agent(
        root,
        &[
            "config",
            "show",
            "--json",
            "--config",
            extra.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn entry<'a>(doc: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == key)
}

fn origin_and_value(doc: &serde_json::Value, key: &str) -> (serde_json::Value, serde_json::Value) {
    let e = entry(doc, key).unwrap_or_else(|| panic!("{key} not shown"));
    (e["origin"].clone(), e["value"].clone())
}

#[test]
fn show_names_the_layer_of_every_value() {
    let (dir, extra) = layered_root();
    let doc = json_show(dir.path(), extra.path());
    let extra_s = extra.path().display().to_string();
    let cases: [(&str, serde_json::Value, serde_json::Value); 10] = [
        // A later layer's form of a timer replaces the vendor's other form.
        (
            "schedule.periodic",
            "/etc/update-agent/config.d/50-admin.toml".into(),
            "30m".into(),
        ),
        (
            "schedule.max_backoff",
            "/usr/lib/update-agent/config.d/10-vendor.toml".into(),
            "8h".into(),
        ),
        (
            "download.retries",
            "/etc/update-agent/config.toml".into(),
            7.into(),
        ),
        (
            "download.bandwidth_limit",
            "/etc/update-agent/config.toml".into(),
            1000.into(),
        ),
        (
            "state.state_dir",
            extra_s.clone().into(),
            "/var/lib/test-agent".into(),
        ),
        (
            "omaha.connect_timeout",
            serde_json::Value::Null,
            "30s".into(),
        ),
        (
            "omaha.ca_bundle",
            serde_json::Value::Null,
            serde_json::Value::Null,
        ),
        // update.conf: the first file holding the key wins.
        (
            "SERVER",
            "/etc/flatcar/update.conf".into(),
            "http://127.0.0.1:8080/v1/update/".into(),
        ),
        (
            "GROUP",
            "/usr/share/flatcar/update.conf".into(),
            "stable".into(),
        ),
        (
            "FLATCAR_RELEASE_VERSION",
            "/usr/share/flatcar/release".into(),
            "1.0.0".into(),
        ),
    ];
    for (key, origin, value) in cases {
        assert_eq!(origin_and_value(&doc, key), (origin, value), "{key}");
    }
    assert!(
        entry(&doc, "schedule.periodic_secs").is_none(),
        "replaced form shown"
    );
    assert_eq!(
        doc["files"],
        serde_json::json!([
            "/usr/lib/update-agent/config.d/10-vendor.toml",
            "/etc/update-agent/config.toml",
            "/etc/update-agent/config.d/50-admin.toml",
            extra_s,
        ])
    );
    // The table form says the same.
    let out = agent(
        dir.path(),
        &["config", "show", "--config", extra.path().to_str().unwrap()],
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |key: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("{key} missing in\n{text}"))
            .to_string()
    };
    assert!(line("download.retries").ends_with("/etc/update-agent/config.toml"));
    assert!(line("omaha.request_timeout").ends_with("default"));
    assert!(line("omaha.ca_bundle").contains("(unset)"));
}

#[test]
fn check_accepts_a_good_root_and_an_empty_one() {
    let (dir, extra) = layered_root();
    let out = agent(
        dir.path(),
        &[
            "config",
            "check",
            "--config",
            extra.path().to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("/etc/update-agent/config.toml"));
    let empty = tempfile::tempdir().unwrap();
    let out = agent(empty.path(), &["config", "check"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("defaults"));
}

/// Bad input: exit 1, and the message names the file and the key.
#[test]
fn check_names_file_and_key_of_bad_input() {
    let cases: [(&str, &str, &[&str]); 6] = [
        (
            "/etc/update-agent/config.d/50-typo.toml",
            "[schedule]\nperiodc = \"1h\"\n",
            &["50-typo.toml", "unknown field `periodc`"],
        ),
        (
            "/etc/update-agent/config.toml",
            "[download]\nretries = \"many\"\n",
            &["config.toml", "retries = \"many\"", "invalid type"],
        ),
        (
            "/usr/lib/update-agent/config.d/10-v.toml",
            "[install]\nkernel_dir = \"boot\"\n",
            &[
                "install.kernel_dir",
                "(set in /usr/lib/update-agent/config.d/10-v.toml)",
                "not an absolute path",
            ],
        ),
        (
            "/etc/update-agent/config.toml",
            "[schedule]\nperiodic = \"0s\"\n",
            &[
                "schedule.periodic",
                "(set in /etc/update-agent/config.toml)",
                "greater than 0",
            ],
        ),
        (
            "/etc/update-agent/config.toml",
            "[schedule]\nperiodic = \"soon\"\n",
            &["config.toml", "\"soon\" is not a duration"],
        ),
        (
            "/etc/flatcar/update.conf",
            "SERVER=127.0.0.1:8080/v1/update\n",
            &["invalid SERVER in", "etc/flatcar/update.conf"],
        ),
    ];
    for (path, text, wanted) in cases {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), path, text);
        for cmd in ["check", "show"] {
            let out = agent(dir.path(), &["config", cmd]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{path}: {text}: {err}");
            for w in wanted {
                assert!(err.contains(w), "{cmd} {text}: {w:?} missing in {err}");
            }
        }
    }
}

#[test]
fn reference_prints_the_committed_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent(dir.path(), &["config", "reference"]);
    assert!(out.status.success());
    let committed =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md"))
            .unwrap();
    // Not assert_eq: the text is long.
    assert!(
        out.stdout == committed.as_bytes(),
        "config reference differs from docs/configuration.md"
    );
}
