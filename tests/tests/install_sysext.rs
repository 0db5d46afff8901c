//! A whole Flatcar release through the real daemon: USR (a stock v1
//! payload), its kernel, the node's OEM image and the enabled extensions,
//! offered as extra `<package>`s of one Omaha answer (as Flatcar's servers
//! do) and placed where Flatcar's initrd looks for them, all before the
//! commit point.
//!
//! The node is an Azure node with `zfs` enabled in `/etc` (and `python`
//! disabled there); the new image lists `azure` and enables `podman` and
//! `python` by default. The server offers two OEMs and three extensions.

mod sysext_support;

use cgpt::Slot;
use e2e::fixture::{Node, PAYLOAD_NAME, RUNNING};
use e2e::{OmahaServer, Reply, omaha_log};
use sysext_support::*;
use update_agent::config::Root;
use update_agent::daemon::{Daemon, Outcome};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_with_oem_and_extensions_installs() {
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    let before = azure_node(&node);
    let release = Release::new();
    server.push(Reply::Update(release.offer(&server)));
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    let outcome = daemon.run_once().await;
    assert_eq!(
        outcome,
        Outcome::Updated {
            version: NEW.into()
        },
        "{:?}",
        daemon.handle().last_error()
    );
    assert_eq!(node.read_slot(Slot::B), release.usr);
    assert_eq!(node.cgpt_pts(Slot::B), (2, 1, 0), "committed");
    // Exactly the needed images, at the exact paths, with the exact bytes.
    let placed = [
        (
            "/usr/share/oem/sysext/oem-azure-3600.0.0.raw",
            "oem-azure.gz",
        ),
        (
            "/etc/flatcar/sysext/flatcar-zfs-3600.0.0.raw",
            "flatcar-zfs.gz",
        ),
        (
            "/etc/flatcar/sysext/flatcar-podman-3600.0.0.raw",
            "flatcar-podman.gz",
        ),
    ];
    for (path, package) in placed {
        assert!(
            std::fs::read(node.path(path)).unwrap() == release.image(package),
            "{path}"
        );
    }
    // The others were never requested (the server's log).
    let mut fetched: Vec<String> = server
        .gets()
        .iter()
        .map(|r| r.path.trim_start_matches("/files/").to_string())
        .collect();
    fetched.sort();
    fetched.dedup();
    assert_eq!(
        fetched,
        [
            "flatcar-podman.gz",
            "flatcar-zfs.gz",
            PAYLOAD_NAME,
            "oem-azure.gz"
        ]
    );
    // The running version's images stay (the fallback slot boots with
    // them); older ones and disabled extensions' are pruned.
    let after = snapshot(&node);
    for kept in [
        "/usr/share/oem/sysext/oem-azure-3510.2.0.raw",
        "/etc/flatcar/sysext/flatcar-zfs-3510.2.0.raw",
        "/usr/share/oem/oem-release",
        "/etc/flatcar/enabled-sysext.conf",
    ] {
        assert_eq!(after.get(kept), before.get(kept), "{kept}");
    }
    for pruned in [
        "/usr/share/oem/sysext/oem-azure-3400.0.0.raw",
        "/etc/flatcar/sysext/flatcar-python-3510.2.0.raw",
    ] {
        assert!(
            before.contains_key(pruned) && !after.contains_key(pruned),
            "{pruned}"
        );
    }
    // Flatcar's flag files for a node moving to OEM sysexts.
    assert!(node.exists("/usr/share/oem/sysext/active-oem-azure"));
    assert!(node.exists("/usr/share/oem/sysext/migrate-oem-azure"));
    assert!(node.exists("/run/reboot-required"), "kured's file");
    assert_eq!(partials(&node), Vec::<String>::new());
    // The OEM hook ran with the slot and the mounted new image.
    let hook = std::fs::read_to_string(node.path("/oem-hook.log")).unwrap();
    assert_eq!(hook, "B 3600.0.0\n");
    // What Flatcar's initrd will look for when B boots is all there.
    assert_eq!(
        initrd_missing(&node, NEW, &release.defaults),
        Vec::<String>::new()
    );
    // The progress counted every image of the release.
    let status = daemon.handle().status();
    assert_eq!(status.new_size, release.needed_bytes());
    assert_eq!(omaha_log(&server), ["check", "13/1", "14/1", "3/1"]);
    assert_eq!(node.pref("previous-version").as_deref(), Some(RUNNING));
}

/// The OEM partition cannot take the image (here: full, 64 KiB for a
/// 200 KiB image; the flag files still fit): it goes to
/// `/etc/flatcar/oem-sysext`, as Flatcar's postinst falls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oem_image_falls_back_to_etc_when_the_oem_partition_refuses_it() {
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    azure_node(&node);
    let _full = Tmpfs::mount_over(&node, "/usr/share/oem/sysext", "size=64k");
    let release = Release::new();
    server.push(Reply::Update(release.offer(&server)));
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    let outcome = daemon.run_once().await;
    assert!(
        matches!(outcome, Outcome::Updated { .. }),
        "{outcome:?} {:?}",
        daemon.handle().last_error()
    );
    let path = "/etc/flatcar/oem-sysext/oem-azure-3600.0.0.raw";
    assert!(std::fs::read(node.path(path)).unwrap() == release.image("oem-azure.gz"));
    assert_eq!(
        initrd_missing(&node, NEW, &release.defaults),
        Vec::<String>::new()
    );
    assert_eq!(node.cgpt_pts(Slot::B), (2, 1, 0));
    assert_eq!(
        partials(&node),
        Vec::<String>::new(),
        "the failed attempt's file"
    );
    assert!(!node.exists("/usr/share/oem/sysext/oem-azure-3600.0.0.raw"));
}

/// A node without any OEM or extension settings still gets the new image's
/// default extensions; a v2 payload whose image is no file system is not
/// mounted when nothing asks for it (the other e2e tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_extensions_of_the_new_image_are_installed() {
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    let release = Release::new();
    server.push(Reply::Update(release.offer(&server)));
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    let outcome = daemon.run_once().await;
    assert!(matches!(outcome, Outcome::Updated { .. }), "{outcome:?}");
    let mut got = std::fs::read_dir(node.path("/etc/flatcar/sysext"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    got.sort();
    assert_eq!(
        got,
        ["flatcar-podman-3600.0.0.raw", "flatcar-python-3600.0.0.raw"]
    );
    assert!(!node.exists("/usr/share/oem/sysext"), "no OEM on this node");
}
