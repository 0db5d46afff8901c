//! `fleet-lock` against a FleetLock server on 127.0.0.1.

mod common;

use std::time::Duration;

use common::Node;
use common::fleetlock_server::FleetLockServer;

#[tokio::test]
async fn twenty_nodes_share_two_fleetlock_slots() {
    let server = FleetLockServer::start(2);
    let dir = tempfile::tempdir().unwrap();
    let conf = format!(
        "REBOOT_STRATEGY=fleet-lock\nLOCKSMITHD_ENDPOINT={}/\nLOCKSMITHD_GROUP=workers\n",
        server.url
    );
    let mut nodes: Vec<Node> = (0..20)
        .map(|i| Node::new(dir.path(), &format!("fl{i:02}"), &conf))
        .collect();
    let peak = common::contend(&mut nodes, 2, Duration::from_millis(250), || async {
        server.holders("workers")
    })
    .await;
    assert_eq!(peak, 2);
    assert!(server.holders("workers").is_empty());
    assert_eq!(
        server.state.lock().unwrap().bad_requests,
        0,
        "requests broke the protocol"
    );
}

#[tokio::test]
async fn fleetlock_server_down_means_no_reboot() {
    let port = common::free_port();
    let dir = tempfile::tempdir().unwrap();
    let conf = format!("REBOOT_STRATEGY=fleet-lock\nLOCKSMITHD_ENDPOINT=http://127.0.0.1:{port}\n");
    let mut n = Node::new(dir.path(), "alone", &conf);
    n.need_reboot();
    n.start();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(!n.rebooted());
    assert!(
        n.log().contains(&format!(
            "lock server unreachable at http://127.0.0.1:{port}/v1/pre-reboot"
        )),
        "{}",
        n.log()
    );
}
