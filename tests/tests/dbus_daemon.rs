//! The real daemon (`update-agent`, not a simulated engine) on a private
//! `dbus-daemon` with the shipped policy: Flatcar's `update_engine_client
//! -update` drives a whole update over D-Bus, an independent `gdbus monitor`
//! sees the StatusUpdate signals end in UPDATED_NEED_REBOOT, and the disk image
//! holds the new slot.

use std::time::Duration;

use cgpt::Slot;
use e2e::dbus_bus::{Policy, PrivateBus, client, output, start_agent, stderr, stdout};
use e2e::fixture::{self, BOARD, Node, USR_MIB};
use e2e::{OmahaServer, omaha_log};

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_engine_client_drives_the_real_daemon_to_need_reboot() {
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    // Only the client's AttemptUpdate may start a check.
    node.add_config("[schedule]\nenabled = false\n");
    let usr = fixture::image_bytes(9, (USR_MIB << 20) as usize);
    let payload = node.payload("3600.0.0", BOARD, &usr, b"kernel of 3600.0.0\n");
    server.offer_payload("3600.0.0", &payload);
    let busdir = tempfile::tempdir().unwrap();
    let bus = PrivateBus::start(busdir.path(), Policy::Shipped);
    let (daemon, mut monitor) = start_agent(node.root(), &bus.address);
    let idle_kib = rss_kib(daemon.0.id());

    let o = output(&mut client(&bus.address, &["-update"]));
    assert!(
        o.status.success(),
        "update_engine_client -update failed: {}",
        stderr(&o)
    );
    assert!(
        stdout(&o).contains("CURRENT_OP=UPDATE_STATUS_UPDATED_NEED_REBOOT"),
        "{}",
        stdout(&o)
    );
    monitor
        .wait_for(Duration::from_secs(10), |l| {
            l.contains("StatusUpdate") && l.contains("UPDATE_STATUS_UPDATED_NEED_REBOOT")
        })
        .expect("a watcher sees UPDATED_NEED_REBOOT");
    let busy_kib = rss_kib(daemon.0.id());

    assert_eq!(node.read_slot(Slot::B), usr);
    assert_eq!(node.cgpt_pts(Slot::B), (2, 1, 0));
    assert_eq!(omaha_log(&server), ["check", "13/1", "14/1", "3/1"]);
    let status = output(&mut client(&bus.address, &["-status"]));
    assert!(
        stdout(&status).contains("NEW_VERSION=3600.0.0"),
        "{}",
        stdout(&status)
    );
    eprintln!("update-agent RSS: {idle_kib} KiB idle, {busy_kib} KiB after an update");
}
