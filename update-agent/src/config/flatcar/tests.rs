use super::*;
use std::fs;

fn write(root: &Root, path: &str, text: &str) {
    let p = root.join(path);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

/// A tempdir laid out like a Flatcar node.
fn node() -> (tempfile::TempDir, Root, Prefs) {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(dir.path());
    write(
        &root,
        RELEASE_FILE,
        "FLATCAR_RELEASE_VERSION=3510.2.0\nFLATCAR_RELEASE_BOARD=amd64-usr\nFLATCAR_RELEASE_APPID={e96281a6-d1af-4bde-9a0a-97b76e56dc57}\n",
    );
    write(
        &root,
        USR_UPDATE_CONF,
        "SERVER=https://public.update.flatcar-linux.net/v1/update/\nGROUP=stable\n",
    );
    write(&root, MACHINE_ID_FILE, "0123456789abcdef0123456789abcdef\n");
    write(
        &root,
        BOOT_ID_FILE,
        "5a2e0c3d-1f7e-4a4c-9d7e-2b7b7a0f1c11\n",
    );
    let prefs = Prefs::new(root.join("/var/lib/update_engine/prefs"));
    (dir, root, prefs)
}

#[test]
fn parse_rules_match_update_engine() {
    let pairs = parse_key_values(
        "A=1\n# comment=x\nno equals\nB=\"quoted\"\nC='single'\nD=\"half\nE= spaced \nA=2\nF=a=b\n\"G\"=x\nH=\"\"\n",
    );
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(kk, _)| kk == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("A"), Some("2"), "later duplicate wins");
    assert_eq!(get("# comment"), Some("x"), "no comment handling");
    assert_eq!(get("B"), Some("quoted"));
    assert_eq!(get("C"), Some("single"));
    assert_eq!(get("D"), Some("\"half"));
    assert_eq!(get("E"), Some(" spaced "), "no trimming");
    assert_eq!(get("F"), Some("a=b"), "split on the first =");
    assert_eq!(get("\"G\""), Some("x"));
    assert_eq!(get("H"), Some(""));
    assert_eq!(get("no equals"), None);
}

#[test]
fn first_file_with_key_wins() {
    let (_d, root, _) = node();
    write(
        &root,
        ETC_UPDATE_CONF,
        "GROUP=beta\nFLATCAR_RELEASE_VERSION=0.0.0\n",
    );
    let c = FlatcarConfig::load(&root).unwrap();
    assert_eq!(c.group(), "beta");
    assert_eq!(c.version(), "0.0.0", "downgrade override from /etc");
    assert_eq!(c.server(), DEFAULT_SERVER);
    assert_eq!(c.board(), "amd64-usr");
    assert_eq!(
        c.source_of("GROUP"),
        Some(root.join(ETC_UPDATE_CONF).as_path())
    );
    assert_eq!(
        c.source_of("SERVER"),
        Some(root.join(USR_UPDATE_CONF).as_path())
    );
}

#[test]
fn defaults_with_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let c = FlatcarConfig::load(&Root::new(dir.path())).unwrap();
    assert_eq!(c.group(), "stable");
    assert_eq!(c.server(), DEFAULT_SERVER);
    assert_eq!(c.app_id(), omaha::FLATCAR_APP_ID);
    assert_eq!(c.version(), "");
    assert_eq!(c.machine_alias(), "");
    assert_eq!(c.download_credentials(), None);
    assert!(!c.updates_disabled());
}

#[test]
fn server_disabled_and_credentials() {
    let c =
        FlatcarConfig::from_texts(["SERVER=disabled\nDOWNLOAD_USER=u\nDOWNLOAD_PASSWORD='p w'\n"]);
    assert!(c.updates_disabled());
    assert_eq!(c.download_credentials(), Some(("u", "p w")));
}

#[test]
fn unreadable_file_is_an_error() {
    let (_d, root, _) = node();
    // A directory where a file is expected cannot be read.
    fs::create_dir_all(root.join(ETC_UPDATE_CONF)).unwrap();
    let err = FlatcarConfig::load(&root).unwrap_err();
    assert_eq!(err.error_kind(), "config_read");
}

#[test]
fn client_info_from_node() {
    let (_d, root, prefs) = node();
    write(&root, ETC_UPDATE_CONF, "MACHINE_ALIAS=web-1\n");
    write(
        &root,
        "/usr/share/oem/oem-release",
        "ID=azure\nVERSION_ID=2.9.1\n",
    );
    let mut id = NodeIdentity::load(&root, &prefs).unwrap();
    id.arch = "x86_64".into();
    let ci = id.client_info();
    assert_eq!(ci.version, "3510.2.0");
    assert_eq!(ci.board, "amd64-usr");
    assert_eq!(ci.track, "stable");
    assert_eq!(ci.machine_id, "0123456789abcdef0123456789abcdef");
    assert_eq!(
        ci.boot_id.to_string(),
        "{5a2e0c3d-1f7e-4a4c-9d7e-2b7b7a0f1c11}"
    );
    assert_eq!(ci.oem, "azure");
    assert_eq!(ci.oem_version, "2.9.1");
    assert_eq!(ci.machine_alias, "web-1");
    assert_eq!(
        ci.aleph_version, "3510.2.0",
        "falls back to the running version"
    );
    assert_eq!(ci.app_id, omaha::FLATCAR_APP_ID);
    assert!(!id.error_flags().test_omaha_url);

    // aleph-version is recorded once and then sticks.
    id.ensure_aleph_version(&prefs).unwrap();
    write(&root, RELEASE_FILE, "FLATCAR_RELEASE_VERSION=3600.0.0\n");
    let id = NodeIdentity::load(&root, &prefs).unwrap();
    assert_eq!(id.client_info().aleph_version, "3510.2.0");
    assert_eq!(id.client_info().version, "3600.0.0");
}

#[test]
fn oem_release_lookup_order() {
    let (_d, root, prefs) = node();
    write(&root, "/oem/oem-release", "ID=qemu\n");
    assert_eq!(NodeIdentity::load(&root, &prefs).unwrap().oem_id, "qemu");
    write(&root, "/usr/share/oem/oem-release", "ID=azure\n");
    assert_eq!(NodeIdentity::load(&root, &prefs).unwrap().oem_id, "azure");
    write(&root, "/etc/oem-release", "ID=gce\n");
    assert_eq!(NodeIdentity::load(&root, &prefs).unwrap().oem_id, "gce");
}

#[test]
fn missing_identity_files_give_empty_values() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(dir.path());
    let id = NodeIdentity::load(&root, &Prefs::new(dir.path().join("p"))).unwrap();
    assert_eq!(id.machine_id, "");
    assert_eq!(id.oem_id, "");
    assert_eq!(id.client_info().aleph_version, "");
}

#[test]
fn private_server_sets_test_url_flag() {
    let (_d, root, prefs) = node();
    write(
        &root,
        ETC_UPDATE_CONF,
        "SERVER=http://nebraska.local/v1/update/\n",
    );
    let id = NodeIdentity::load(&root, &prefs).unwrap();
    assert!(id.error_flags().test_omaha_url);
}

#[test]
fn set_group_keeps_other_lines() {
    let (_d, root, _) = node();
    write(
        &root,
        ETC_UPDATE_CONF,
        "# my settings\nSERVER=http://x/\nGROUP=stable\nMACHINE_ALIAS=a\nGROUP=old\n",
    );
    set_group(&root, "beta").unwrap();
    assert_eq!(
        fs::read_to_string(root.join(ETC_UPDATE_CONF)).unwrap(),
        "# my settings\nSERVER=http://x/\nGROUP=beta\nMACHINE_ALIAS=a\n"
    );
    assert_eq!(FlatcarConfig::load(&root).unwrap().group(), "beta");
}

#[test]
fn set_group_creates_file_and_appends() {
    let (_d, root, _) = node();
    set_group(&root, "alpha").unwrap();
    assert_eq!(
        fs::read_to_string(root.join(ETC_UPDATE_CONF)).unwrap(),
        "GROUP=alpha\n"
    );
    write(&root, ETC_UPDATE_CONF, "SERVER=http://x/");
    set_group(&root, "edge").unwrap();
    assert_eq!(
        fs::read_to_string(root.join(ETC_UPDATE_CONF)).unwrap(),
        "SERVER=http://x/\nGROUP=edge\n"
    );
}

#[test]
fn set_group_rejects_bad_values() {
    let (_d, root, _) = node();
    for bad in ["", "beta\nSERVER=http://evil/", "a\rb"] {
        let err = set_group(&root, bad).unwrap_err();
        assert_eq!(err.error_kind(), "config_invalid_value", "{bad:?}");
    }
    assert!(!root.join(ETC_UPDATE_CONF).exists());
}
