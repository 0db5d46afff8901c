//! Multi-image v2 releases: USR, kernel and extension images as partitions
//! of one signed payload, applied in one stream. The node takes its OEM
//! image and its enabled extensions from the payload itself (nothing else
//! is downloaded), and a bad extension partition fails the whole release.

mod sysext_support;

use cgpt::Slot;
use e2e::fixture::{self, BOARD, Node, PAYLOAD_NAME, USR_MIB};
use e2e::{OmahaServer, Reply, UpdateSpec, omaha_log};
use payload::generate::{GenOptions, PartitionInput};
use payload::proto::ReleaseInfo;
use sysext_support::*;
use update_agent::config::Root;
use update_agent::daemon::{Daemon, Outcome};

/// (usr, kernel, [(partition name, image)], payload)
struct MultiRelease {
    usr: Vec<u8>,
    kernel: Vec<u8>,
    images: Vec<(&'static str, Vec<u8>)>,
    payload: Vec<u8>,
}

fn multi_release() -> MultiRelease {
    let usr = fixture::usr_fs_image_with(
        NEW,
        BOARD,
        (USR_MIB << 20) as usize,
        6,
        1 << 20,
        &[
            ("share/flatcar/oems/azure", "azure\n"),
            ("share/flatcar/enabled-sysext.conf", "podman\n"),
        ],
    );
    let kernel = format!("kernel of {NEW}\n").repeat(300).into_bytes();
    let images: Vec<(&str, Vec<u8>)> = ["oem-azure", "oem-gce", "flatcar-zfs", "flatcar-podman"]
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, fixture::image_bytes(200 + i as u64, 160 << 10)))
        .collect();
    let mut parts = vec![
        PartitionInput {
            name: "usr".into(),
            new: &usr,
            old: None,
        },
        PartitionInput {
            name: "kernel".into(),
            new: &kernel,
            old: None,
        },
    ];
    for (name, image) in &images {
        parts.push(PartitionInput {
            name: name.to_string(),
            new: image,
            old: None,
        });
    }
    let opts = GenOptions {
        release: Some(ReleaseInfo {
            version: Some(NEW.into()),
            board: Some(BOARD.into()),
            ..Default::default()
        }),
        ..GenOptions::default()
    };
    let unsigned = payload::generate::generate(&parts, &opts).expect("generate");
    let mut payload = Vec::new();
    unsigned
        .write_with_keys(std::slice::from_ref(fixture::test_key()), &mut payload)
        .expect("sign");
    MultiRelease {
        usr,
        kernel,
        images,
        payload,
    }
}

impl MultiRelease {
    fn image(&self, name: &str) -> &[u8] {
        &self.images.iter().find(|i| i.0 == name).unwrap().1
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extensions_come_from_the_release_payload_itself() {
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    azure_node(&node);
    let rel = multi_release();
    server.serve_file(PAYLOAD_NAME, rel.payload.clone());
    let spec = UpdateSpec::for_payload(NEW, &server.files_url(), PAYLOAD_NAME, &rel.payload);
    server.push(Reply::Update(spec));
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    let outcome = daemon.run_once().await;
    assert!(
        matches!(outcome, Outcome::Updated { .. }),
        "{outcome:?} {:?}",
        daemon.handle().last_error()
    );
    assert_eq!(node.read_slot(Slot::B), rel.usr);
    let kernel = std::fs::read(node.path("/boot/flatcar/vmlinuz-b")).unwrap();
    assert!(kernel == rel.kernel);
    assert_eq!(node.cgpt_pts(Slot::B), (2, 1, 0));
    for (path, part) in [
        ("/usr/share/oem/sysext/oem-azure-3600.0.0.raw", "oem-azure"),
        (
            "/etc/flatcar/sysext/flatcar-zfs-3600.0.0.raw",
            "flatcar-zfs",
        ),
        (
            "/etc/flatcar/sysext/flatcar-podman-3600.0.0.raw",
            "flatcar-podman",
        ),
    ] {
        assert!(
            std::fs::read(node.path(path)).unwrap() == rel.image(part),
            "{path}"
        );
    }
    assert!(!node.exists("/usr/share/oem/sysext/oem-gce-3600.0.0.raw"));
    assert_eq!(partials(&node), Vec::<String>::new());
    assert_eq!(initrd_missing(&node, NEW, "podman\n"), Vec::<String>::new());
    let gets: Vec<String> = server.gets().iter().map(|r| r.path.clone()).collect();
    assert!(gets.iter().all(|p| p.ends_with(PAYLOAD_NAME)), "{gets:?}");
    assert_eq!(omaha_log(&server), ["check", "13/1", "14/1", "3/1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_extension_partition_fails_the_whole_release() {
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    let before = azure_node(&node);
    let rel = multi_release();
    // A byte of the last partition's (flatcar-podman's) last blob flipped,
    // announced with its own hash and size.
    let mut bad = rel.payload.clone();
    let at = bad.len() - 2000;
    bad[at] ^= 0x10;
    server.serve_file(PAYLOAD_NAME, bad.clone());
    let spec = UpdateSpec::for_payload(NEW, &server.files_url(), PAYLOAD_NAME, &bad);
    server.push(Reply::Update(spec));
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    let Outcome::Failed(err) = daemon.run_once().await else {
        panic!("a corrupt extension partition was accepted")
    };
    assert!(
        ["operation_hash_mismatch", "payload_signature_mismatch"].contains(&err.kind.as_str()),
        "{err:?}"
    );
    assert_eq!(node.cgpt_pts(Slot::B), (0, 0, 0), "target made bootable");
    assert_eq!(node.kernel_dir_listing(), ["vmlinuz-a"]);
    assert_eq!(snapshot(&node), before, "extension files changed");
}
