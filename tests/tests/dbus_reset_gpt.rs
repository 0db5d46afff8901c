//! ResetStatus, Rollback and the deny list through the real daemon
//! (`update-agent` on a private `dbus-daemon` with the shipped policy),
//! driven by `update_engine_client`, checked on the disk image with GRUB's
//! choice and the real `cgpt`.
//!
//! ResetStatus after an update was staged reverts the GPT (Flatcar leaves
//! the new slot prioritised) and clears what marks the update as installed:
//! the next check neither deny-lists the version nor reports a rollback
//! (3/0/44) to the server.

use std::path::Path;

use cgpt::disk::FileDisk;
use cgpt::slot::{self, Slot};
use e2e::dbus_bus::{Killed, Policy, PrivateBus, client, output, start_agent, stderr, stdout};
use e2e::fixture::{self, BOARD, Node, RUNNING, USR_MIB};
use e2e::{OmahaServer, Reply, omaha_log};
use update_agent::denylist::DenyList;

/// The slot GRUB would boot next (on a copy, since booting spends a try).
fn grub_choice(img: &Path) -> Slot {
    let copy = img.with_extension("copy");
    std::fs::copy(img, &copy).unwrap();
    let entry = slot::boot_next(&mut FileDisk::open_rw(&copy).unwrap()).unwrap();
    Slot::from_label(&entry.label).unwrap()
}

/// The real daemon on a private bus (killed on drop).
struct Agent {
    _daemon: Killed,
    bus: PrivateBus,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start(node: &Node) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bus = PrivateBus::start(dir.path(), Policy::Shipped);
        let (daemon, _) = start_agent(node.root(), &bus.address);
        Self {
            _daemon: daemon,
            bus,
            _dir: dir,
        }
    }

    fn client(&self, args: &[&str]) -> std::process::Output {
        output(&mut client(&self.bus.address, args))
    }
}

/// A node whose server offers 3600.0.0 (the next check takes it).
fn staged_node(server: &OmahaServer) -> Node {
    let node = Node::new(&server.update_url());
    node.add_config("[schedule]\nenabled = false\n");
    offer_update(server, &node);
    node
}

fn offer_update(server: &OmahaServer, node: &Node) {
    let usr = fixture::image_bytes(4, (USR_MIB << 20) as usize);
    let payload = node.payload("3600.0.0", BOARD, &usr, b"kernel of 3600.0.0\n");
    server.offer_payload("3600.0.0", &payload);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_status_reverts_the_staged_update_without_a_false_rollback() {
    let server = OmahaServer::start().await;
    let node = staged_node(&server);
    let agent = Agent::start(&node);
    let o = agent.client(&["-update"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(node.cgpt_pts(Slot::B), (2, 1, 0));
    assert_eq!(grub_choice(&node.disk), Slot::B, "staged update would boot");
    assert_eq!(node.pref("previous-version").as_deref(), Some(RUNNING));

    let o = agent.client(&["-reset_status"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("ResetStatus succeeded"),
        "{}",
        stderr(&o)
    );
    // The one revert: the target unbootable, the booted slot untouched.
    assert_eq!(node.cgpt_pts(Slot::B), (0, 0, 0));
    assert_eq!(node.cgpt_pts(Slot::A), (1, 0, 1));
    assert_eq!(grub_choice(&node.disk), Slot::A);
    assert!(!node.exists("/run/update_engine_autoupdate_completed"));
    assert_eq!(node.pref("previous-version").as_deref(), Some(""));
    assert_eq!(node.pref("update-agent-installed-version"), None);
    let status = agent.client(&["-status"]);
    assert!(
        stdout(&status).contains("CURRENT_OP=UPDATE_STATUS_IDLE"),
        "{}",
        stdout(&status)
    );

    // The next check: no rollback event, nothing deny-listed.
    server.push(Reply::NoUpdate);
    let checks_before = omaha_log(&server).len();
    let o = agent.client(&["-update"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let log = omaha_log(&server);
    assert_eq!(log[checks_before..], ["check"], "{log:?}");
    assert!(
        !log.iter().any(|l| l.ends_with("/44") || l.contains("/44")),
        "a rollback was reported: {log:?}"
    );
    let deny = DenyList::in_dir(&node.path("/var/lib/update_engine"));
    assert_eq!(deny.entries().unwrap(), vec![]);

    // A second ResetStatus in IDLE is a no-op that succeeds (update_engine).
    let o = agent.client(&["--reset_status"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(grub_choice(&node.disk), Slot::A);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_refuses_an_empty_slot_and_boots_a_good_previous_one() {
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    node.add_config("[schedule]\nenabled = false\n");
    let agent = Agent::start(&node);
    let before = std::fs::read(&node.disk).unwrap();
    // USR-B never booted successfully: refused, disk untouched.
    let o = agent.client(&["-rollback"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("USR-B has never booted successfully"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(&node.disk).unwrap(), before);
    // USR-B was good before (an earlier release): rollback boots it next.
    slot::mark_good(&mut FileDisk::open_rw(&node.disk).unwrap(), Slot::B).unwrap();
    slot::mark_good(&mut FileDisk::open_rw(&node.disk).unwrap(), Slot::A).unwrap();
    assert_eq!(grub_choice(&node.disk), Slot::A);
    let o = agent.client(&["-rollback"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(grub_choice(&node.disk), Slot::B);
    let (_, tries, successful) = node.cgpt_pts(Slot::B);
    assert_eq!(
        (tries, successful),
        (1, 0),
        "one try: GRUB falls back to USR-A if USR-B fails"
    );
}

/// A rolled-back version is refused with the flag that allows it again,
/// and `-undeny` allows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeny_allows_a_denied_version_again() {
    let server = OmahaServer::start().await;
    let node = staged_node(&server);
    let deny = DenyList::in_dir(&node.path("/var/lib/update_engine"));
    std::fs::create_dir_all(node.path("/var/lib/update_engine")).unwrap();
    deny.add("3600.0.0", "rolled back", 1).unwrap();
    let agent = Agent::start(&node);
    let o = agent.client(&["-update"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("update_engine_client -undeny 3600.0.0"),
        "{}",
        stderr(&o)
    );
    assert_eq!(node.cgpt_pts(Slot::B), (0, 0, 0));

    let o = agent.client(&["-undeny", "3600.0.0"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("3600.0.0 removed from the deny list"),
        "{}",
        stderr(&o)
    );
    let o = agent.client(&["-undeny=3600.0.0"]);
    assert!(
        stderr(&o).contains("was not on the deny list"),
        "{}",
        stderr(&o)
    );
    assert_eq!(deny.entries().unwrap(), vec![]);
    offer_update(&server, &node);
    let o = agent.client(&["-update"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(node.cgpt_pts(Slot::B), (2, 1, 0));
}
