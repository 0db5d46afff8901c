//! Extension images that must not make the release bootable: each failure
//! leaves the target slot unbootable, the node's existing extension files
//! byte-for-byte unchanged, no new or half-written file behind, and is
//! reported with its code.

mod sysext_support;

use cgpt::Slot;
use e2e::fixture::{self, Node, PAYLOAD_NAME};
use e2e::{OmahaServer, Reply, UpdateSpec, omaha_log};
use payload::SigningKey;
use sysext_support::*;
use update_agent::config::Root;
use update_agent::daemon::{Daemon, LastError, Outcome};

/// The TestOmahaUrl flag: SERVER is not the public server.
const TEST_URL: u32 = 0x1000_0000;

struct Case {
    server: OmahaServer,
    node: Node,
    release: &'static Release,
}

fn release() -> &'static Release {
    static R: std::sync::OnceLock<Release> = std::sync::OnceLock::new();
    R.get_or_init(Release::new)
}

async fn case() -> Case {
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    azure_node(&node);
    Case {
        server,
        node,
        release: release(),
    }
}

impl Case {
    /// The offer with `name`'s package replaced by `data` (served and
    /// announced as such) and `edit` applied to the announcement.
    fn offer_with(&self, name: &str, data: Vec<u8>, edit: impl Fn(&mut UpdateSpec)) -> UpdateSpec {
        let mut spec = self.release.offer(&self.server);
        self.server.serve_file(name, data.clone());
        let p = spec
            .extra_packages
            .iter_mut()
            .find(|p| p.name == name)
            .unwrap();
        let fresh = UpdateSpec::for_payload(NEW, "", name, &[]).with_package(name, &data);
        *p = fresh.extra_packages[0].clone();
        edit(&mut spec);
        spec
    }

    /// One cycle that must fail with `code` and leave everything as it was.
    async fn fails(&self, spec: UpdateSpec, code: u32) -> LastError {
        let node = &self.node;
        let before = snapshot(node);
        let a = node.slot_hash(Slot::A);
        self.server.push(Reply::Update(spec));
        let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
        let outcome = daemon.run_once().await;
        let Outcome::Failed(err) = outcome else {
            panic!("expected a failure, got {outcome:?}")
        };
        assert_eq!(err.code, code | TEST_URL, "{err:?}");
        assert_eq!(node.slot_hash(Slot::A), a, "booted slot changed");
        assert_eq!(node.cgpt_pts(Slot::A), (1, 0, 1));
        assert_eq!(node.cgpt_pts(Slot::B), (0, 0, 0), "target made bootable");
        assert_eq!(node.kernel_dir_listing(), ["vmlinuz-a"]);
        assert_eq!(snapshot(node), before, "extension files changed");
        assert!(!node.exists("/run/reboot-required"));
        assert_eq!(node.pref("previous-version").unwrap_or_default(), "");
        let log = omaha_log(&self.server);
        assert_eq!(
            log.last().unwrap(),
            &format!("3/0/{}", code | TEST_URL),
            "{log:?}"
        );
        err
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_hash_and_wrong_size() {
    let c = case().await;
    let zfs = c.release.package("flatcar-zfs.gz").to_vec();
    let spec = c.offer_with("flatcar-zfs.gz", zfs.clone(), |s| {
        s.extra_packages[2].sha256.as_mut().unwrap()[0] ^= 1;
    });
    let err = c.fails(spec, 10).await;
    assert_eq!(err.kind, "payload_hash_mismatch", "{err:?}");
    assert!(err.message.contains("flatcar-zfs.gz"), "{err:?}");
    let spec = c.offer_with("flatcar-zfs.gz", zfs, |s| s.extra_packages[2].size -= 1);
    let err = c.fails(spec, 11).await;
    assert!(err.message.contains("size"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_signature_and_corrupt_blob() {
    let c = case().await;
    let stranger = SigningKey::generate_rsa(2048).unwrap();
    let image = c.release.image("oem-azure.gz");
    let signed = fixture::sysext_payload_v1_signed(image, &stranger);
    let err = c
        .fails(c.offer_with("oem-azure.gz", signed, |_| {}), 18)
        .await;
    assert!(err.message.contains("oem-azure.gz"), "{err:?}");
    // One byte of the last blob flipped, announced with its own hash: the
    // signed operation hash no longer matches (checked before the write).
    let mut corrupt = c.release.package("flatcar-podman.gz").to_vec();
    let at = corrupt.len() - 300;
    corrupt[at] ^= 0x40;
    let err = c
        .fails(c.offer_with("flatcar-podman.gz", corrupt, |_| {}), 29)
        .await;
    assert_eq!(err.kind, "operation_hash_mismatch", "{err:?}");
    assert!(err.message.contains("flatcar-podman.gz"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_download_after_the_retries() {
    let c = case().await;
    let spec = c.release.offer(&c.server);
    // More cuts than the node's retries (3).
    c.server.cut_file_after("flatcar-zfs.gz", 1000, 10);
    let err = c.fails(spec, 9).await;
    assert!(err.message.contains("flatcar-zfs.gz"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn needed_package_missing_from_the_answer() {
    let c = case().await;
    let mut spec = c.release.offer(&c.server);
    spec.extra_packages.retain(|p| p.name != "flatcar-zfs.gz");
    let err = c.fails(spec, 5).await;
    assert_eq!(err.kind, "sysext_missing");
    assert!(err.message.contains("flatcar-zfs.gz"), "{err:?}");
}

/// A hostile package name never reaches the file system: the answer is
/// refused when parsed (before any download); a hostile name in the node's
/// own settings is refused before any extension is fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_slashes_or_dots() {
    let c = case().await;
    let spec = c
        .release
        .offer(&c.server)
        .with_package("../oem-azure.gz", b"x");
    c.server.push(Reply::Update(spec));
    let mut daemon = Daemon::new(Root::new(c.node.root()), None).unwrap();
    let Outcome::Failed(err) = daemon.run_once().await else {
        panic!("accepted a package named ../oem-azure.gz")
    };
    assert_eq!(err.kind, "unsafe_package_name", "{err:?}");
    assert!(
        c.server.gets().is_empty(),
        "downloaded from a hostile answer"
    );
    assert_eq!(c.node.cgpt_pts(Slot::B), (0, 0, 0));

    std::fs::write(
        c.node.path("/etc/flatcar/enabled-sysext.conf"),
        "../../boot/x\n",
    )
    .unwrap();
    let err = c.fails(c.release.offer(&c.server), 5).await;
    assert_eq!(err.kind, "sysext_name", "{err:?}");
    let gets: Vec<String> = c.server.gets().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        gets,
        [format!("/files/{PAYLOAD_NAME}")],
        "only USR was fetched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_not_writable_and_disk_full() {
    let c = case().await;
    {
        let _ro = Tmpfs::mount_over(&c.node, "/etc/flatcar/sysext", "ro,size=1m");
        let err = c.fails(c.release.offer(&c.server), 5).await;
        assert_eq!(err.kind, "sysext_place", "{err:?}");
        assert!(err.message.contains("Read-only"), "{err:?}");
    }
    {
        // 64 KiB for 200 KiB images: the write fails midway.
        let _full = Tmpfs::mount_over(&c.node, "/etc/flatcar/sysext", "size=64k");
        let err = c.fails(c.release.offer(&c.server), 5).await;
        assert_eq!(err.kind, "sysext_place", "{err:?}");
        assert!(err.message.contains("No space left"), "{err:?}");
        assert_eq!(partials(&c.node), Vec::<String>::new());
    }
    // The OEM image placed before the failure was removed again.
    assert!(
        !c.node
            .exists("/usr/share/oem/sysext/oem-azure-3600.0.0.raw")
    );
    assert!(!c.node.exists("/usr/share/oem/sysext/active-oem-azure"));
}
