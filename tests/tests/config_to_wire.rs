//! From a Flatcar-like root directory to the bytes on the wire: the agent
//! reads update.conf, the release file and the identity files, builds the
//! request, and the server sees Flatcar's attributes.

use std::fs;

use e2e::{OmahaServer, Reply};
use omaha::{InstallSource, Request, RequestKind};
use update_agent::config::{NodeIdentity, Root, Settings, set_group};
use update_agent::omaha_client::{ClientOptions, OmahaClient};

fn write(root: &Root, path: &str, text: &str) {
    let p = root.join(path);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

#[tokio::test]
async fn node_identity_reaches_the_server_and_channel_switch_applies_next_check() {
    let server = OmahaServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(dir.path());
    write(
        &root,
        "/usr/share/flatcar/release",
        "FLATCAR_RELEASE_VERSION=3510.2.0\nFLATCAR_RELEASE_BOARD=amd64-usr\nFLATCAR_RELEASE_APPID={e96281a6-d1af-4bde-9a0a-97b76e56dc57}\n",
    );
    write(
        &root,
        "/usr/share/flatcar/update.conf",
        "SERVER=https://public.update.flatcar-linux.net/v1/update/\nGROUP=stable\n",
    );
    write(
        &root,
        "/etc/flatcar/update.conf",
        &format!("SERVER={}\nMACHINE_ALIAS=\"web 1\"\n", server.update_url()),
    );
    write(
        &root,
        "/etc/machine-id",
        "0123456789abcdef0123456789abcdef\n",
    );
    write(
        &root,
        "/proc/sys/kernel/random/boot_id",
        "5a2e0c3d-1f7e-4a4c-9d7e-2b7b7a0f1c11\n",
    );
    write(
        &root,
        "/usr/share/oem/oem-release",
        "ID=qemu\nVERSION_ID=0.0.1\n",
    );
    let settings = Settings::load(&root).unwrap();
    let prefs = settings.prefs(&root);

    for expected_track in ["stable", "beta"] {
        // Re-read everything for each check, as update_engine does.
        let mut id = NodeIdentity::load(&root, &prefs).unwrap();
        id.ensure_aleph_version(&prefs).unwrap();
        let client = OmahaClient::new(
            id.config.server(),
            &ClientOptions::from_settings(&settings, &root),
        )
        .unwrap();
        server.push(Reply::NoUpdate);
        let request = Request::update_check(id.client_info(), InstallSource::Scheduler, None);
        client.check(&request).await.unwrap();

        let recorded = server.requests().pop().unwrap();
        let sent = recorded.omaha_request();
        assert_eq!(sent.client.track, expected_track);
        assert_eq!(sent.client.version, "3510.2.0");
        assert_eq!(sent.client.board, "amd64-usr");
        assert_eq!(sent.client.machine_alias, "web 1");
        assert_eq!(sent.client.oem, "qemu");
        assert_eq!(sent.client.aleph_version, "3510.2.0");
        assert!(matches!(sent.kind, RequestKind::UpdateCheck { .. }));
        let body = String::from_utf8(recorded.body.clone()).unwrap();
        assert!(
            body.contains("bootid=\"{5a2e0c3d-1f7e-4a4c-9d7e-2b7b7a0f1c11}\""),
            "{body}"
        );
        assert!(
            body.contains("machineid=\"0123456789abcdef0123456789abcdef\""),
            "{body}"
        );
        assert!(body.contains("delta_okay=\"false\""), "{body}");
        assert!(id.error_flags().test_omaha_url, "private server");

        set_group(&root, "beta").unwrap();
    }
    // The channel switch kept the admin's other lines.
    let conf = fs::read_to_string(root.join("/etc/flatcar/update.conf")).unwrap();
    assert_eq!(
        conf,
        format!(
            "SERVER={}\nMACHINE_ALIAS=\"web 1\"\nGROUP=beta\n",
            server.update_url()
        )
    );
}
