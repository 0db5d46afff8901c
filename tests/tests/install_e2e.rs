//! The agent updates a GPT disk image from slot A to slot B through the
//! real daemon code path (`Daemon::run_once`) against the in-process Omaha
//! server; real `cgpt` and `sgdisk` read the result.

use cgpt::Slot;
use e2e::fixture::{self, BOARD, Node, PAYLOAD_NAME, RUNNING, USR_MIB};
use e2e::{OmahaServer, Reply, omaha_log};
use update_agent::config::Root;
use update_agent::daemon::{Daemon, Outcome};
use update_agent::fsm::Operation;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_a_to_b() {
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    let usr_b = fixture::image_bytes(2, (USR_MIB << 20) as usize);
    let kernel = b"kernel of 3600.0.0\n".repeat(1000);
    let payload = node.payload("3600.0.0", BOARD, &usr_b, &kernel);
    server.offer_payload("3600.0.0", &payload);
    let a_before = node.slot_hash(Slot::A);
    assert_eq!(node.cgpt_pts(Slot::A), (1, 0, 1));
    assert_eq!(node.cgpt_pts(Slot::B), (0, 0, 0));

    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    let handle = daemon.handle();
    let mut rx = handle.subscribe();
    // Read the initial status now: the daemon may move on before the task runs.
    let first = rx.borrow_and_update().clone();
    let watcher = tokio::spawn(async move {
        let mut seen = vec![first];
        while rx.changed().await.is_ok() {
            seen.push(rx.borrow().clone());
        }
        seen
    });
    let outcome = daemon.run_once().await;
    assert_eq!(
        outcome,
        Outcome::Updated {
            version: "3600.0.0".into()
        },
        "{:?}",
        handle.last_error()
    );
    assert_eq!(handle.status().operation, Operation::UpdatedNeedReboot);
    assert_eq!(handle.status().new_version, "3600.0.0");
    assert_eq!(handle.status().new_size, payload.len() as u64);

    // The bytes.
    assert_eq!(node.read_slot(Slot::B), usr_b);
    assert_eq!(node.slot_hash(Slot::A), a_before);
    assert_eq!(
        std::fs::read(node.path("/boot/flatcar/vmlinuz-b")).unwrap(),
        kernel
    );
    assert_eq!(node.kernel_dir_listing(), ["vmlinuz-a", "vmlinuz-b"]);
    // The GPT, read by the real tools.
    assert_eq!(node.cgpt_pts(Slot::A), (1, 0, 1));
    assert_eq!(node.cgpt_pts(Slot::B), (2, 1, 0));
    assert_eq!(node.sgdisk_attrs(Slot::A), "0101000000000000");
    assert_eq!(node.sgdisk_attrs(Slot::B), "0012000000000000");
    // What Flatcar's tools read.
    assert_eq!(node.pref("previous-version").as_deref(), Some(RUNNING));
    assert_eq!(node.pref("aleph-version").as_deref(), Some(RUNNING));
    let full = node.pref("full-response").unwrap();
    assert!(full.contains("version=\"3600.0.0\""), "{full}");
    assert!(node.exists("/run/update_engine_autoupdate_completed"));
    assert!(!node.exists("/var/lib/update_engine/install-checkpoint.json"));
    // The wire.
    assert_eq!(omaha_log(&server), ["check", "13/1", "14/1", "3/1"]);
    let gets = server.gets();
    assert_eq!(gets.len(), 1);
    assert_eq!(gets[0].path, format!("/files/{PAYLOAD_NAME}"));

    // The published statuses: Flatcar's sequence, progress never going back.
    drop(daemon);
    drop(handle);
    let seen = watcher.await.unwrap();
    let mut ops: Vec<Operation> = seen.iter().map(|s| s.operation).collect();
    ops.dedup();
    assert_eq!(
        ops,
        [
            Operation::Idle,
            Operation::CheckingForUpdate,
            Operation::UpdateAvailable,
            Operation::Downloading,
            Operation::Verifying,
            Operation::Finalizing,
            Operation::UpdatedNeedReboot
        ]
    );
    let mut last = 0.0;
    for s in seen
        .iter()
        .skip_while(|s| s.operation != Operation::Downloading)
    {
        assert!(s.progress >= last, "progress went back: {seen:?}");
        last = s.progress;
    }
    let fin = seen
        .iter()
        .find(|s| s.operation == Operation::Finalizing)
        .unwrap();
    assert_eq!(fin.progress, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_update_leaves_everything() {
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    server.push(Reply::NoUpdate);
    let mut daemon = Daemon::new(Root::new(node.root()), None).unwrap();
    assert_eq!(daemon.run_once().await, Outcome::NoUpdate);
    assert_eq!(daemon.handle().status().operation, Operation::Idle);
    assert_eq!(node.cgpt_pts(Slot::B), (0, 0, 0));
    assert_eq!(omaha_log(&server), ["check"]);
}
