//! The whole A/B life cycle: the real daemon installs from the in-process Omaha
//! server, GRUB's gptprio rules (`cgpt::slot::boot_next`) pick the slot at each
//! "reboot" of the disk image, and the real health gate (`health::run_node`, what
//! `update-agent health-gate` runs) blesses the slot or falls back.

use cgpt::Slot;
use e2e::fixture::{self, BOARD, Node, PAYLOAD_NAME, RUNNING, USR_MIB};
use e2e::{OmahaServer, Reply, UpdateSpec, lifecycle, omaha_log};
use update_agent::config::Root;
use update_agent::daemon::{Daemon, Outcome as InstallOutcome};
use update_agent::denylist::DenyList;
use update_agent::health::{self, Outcome, RebootResult};

const NEW: &str = "3600.0.0";

struct Life {
    server: OmahaServer,
    node: Node,
    payload: Vec<u8>,
    boots: u32,
}

impl Life {
    async fn new() -> Life {
        let server = OmahaServer::start().await;
        let node = Node::new(&server.update_url());
        let usr = fixture::image_bytes(7, (USR_MIB << 20) as usize);
        let payload = node.payload(NEW, BOARD, &usr, b"kernel of 3600.0.0\n");
        server.serve_file(PAYLOAD_NAME, payload.clone());
        lifecycle::install_stand_ins(&node);
        lifecycle::configure(&node, Slot::A);
        Life {
            server,
            node,
            payload,
            boots: 1,
        }
    }

    fn offer(&self) {
        let spec =
            UpdateSpec::for_payload(NEW, &self.server.files_url(), PAYLOAD_NAME, &self.payload);
        self.server.push(Reply::Update(spec));
    }

    async fn check_and_install(&self) -> InstallOutcome {
        let mut daemon = Daemon::new(Root::new(self.node.root()), None).unwrap();
        daemon.run_once().await
    }

    fn reboot(&mut self) -> Slot {
        self.boots += 1;
        let version = |s: Slot| {
            if s == Slot::A {
                RUNNING.to_string()
            } else {
                NEW.to_string()
            }
        };
        lifecycle::reboot(&self.node, self.boots, version).expect("GRUB finds a bootable slot")
    }

    async fn gate(&self) -> Outcome {
        health::run_node(&Root::new(self.node.root()), None)
            .await
            .unwrap()
    }

    fn check(&self, kind: &str, name: &str, body: &str) {
        lifecycle::add_check(&self.node, kind, name, body);
    }

    fn reboots_issued(&self) -> usize {
        lifecycle::reboots_requested(&self.node)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_to_b_with_a_passing_health_gate() {
    let mut life = Life::new().await;
    life.check("required", "10-ok", "exit 0");
    life.offer();
    assert_eq!(
        life.check_and_install().await,
        InstallOutcome::Updated {
            version: NEW.into()
        }
    );
    assert_eq!(life.reboot(), Slot::B);
    assert_eq!(
        life.node.cgpt_pts(Slot::B),
        (2, 0, 0),
        "GRUB spent B's one try"
    );

    assert_eq!(life.gate().await, Outcome::Blessed);
    assert_eq!(life.node.cgpt_pts(Slot::B), (2, 0, 1));
    assert_eq!(
        life.node.cgpt_pts(Slot::A),
        (1, 0, 1),
        "A stays as the fallback"
    );
    assert!(life.node.exists("/run/update-engine/health/steady"));
    // B stays the boot choice from now on, without further writes.
    assert_eq!(life.reboot(), Slot::B);
    assert_eq!(life.gate().await, Outcome::AlreadyGood);
    assert_eq!(
        omaha_log(&life.server),
        ["check", "13/1", "14/1", "3/1", "3/2/0"]
    );
    let reported = life
        .server
        .requests()
        .last()
        .unwrap()
        .omaha_request()
        .clone();
    match reported.kind {
        omaha::RequestKind::Event(e) => assert_eq!(e.previous_version.as_deref(), Some(RUNNING)),
        other => panic!("{other:?}"),
    }
    assert_eq!(life.reboots_issued(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_gate_returns_to_a_and_the_version_is_never_reinstalled() {
    let mut life = Life::new().await;
    life.check("required", "20-app", "echo app unhealthy >&2; exit 1");
    life.offer();
    assert_eq!(
        life.check_and_install().await,
        InstallOutcome::Updated {
            version: NEW.into()
        }
    );
    assert_eq!(life.reboot(), Slot::B);
    let Outcome::FellBack { to, reboot, .. } = life.gate().await else {
        panic!("expected a fallback")
    };
    assert_eq!((to, reboot), (Slot::A, RebootResult::Issued));
    assert_eq!(life.reboots_issued(), 1);
    assert_eq!(life.reboot(), Slot::A, "the node ends on A");
    assert_eq!(life.node.cgpt_pts(Slot::B), (0, 0, 0), "B is bad");
    assert!(
        DenyList::in_dir(&life.node.path("/var/lib/update_engine"))
            .contains(NEW)
            .unwrap()
    );
    assert_eq!(life.gate().await, Outcome::AlreadyGood);

    // The server offers B's version again: it is not installed.
    let b_before = life.node.slot_hash(Slot::B);
    life.offer();
    let outcome = life.check_and_install().await;
    assert!(
        !matches!(outcome, InstallOutcome::Updated { .. }),
        "{outcome:?}"
    );
    assert_eq!(life.node.slot_hash(Slot::B), b_before, "B untouched");
    assert_eq!(life.node.cgpt_pts(Slot::B), (0, 0, 0));
    assert_eq!(life.reboot(), Slot::A);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_dies_before_its_gate_and_the_rollback_is_reported() {
    let mut life = Life::new().await;
    life.offer();
    assert_eq!(
        life.check_and_install().await,
        InstallOutcome::Updated {
            version: NEW.into()
        }
    );
    assert_eq!(life.reboot(), Slot::B);
    // B hangs before the gate runs; the next boot falls back.
    assert_eq!(life.reboot(), Slot::A, "GRUB's tries ran out");
    let Outcome::RolledBack { failed, denied } = life.gate().await else {
        panic!("expected a rollback")
    };
    assert_eq!((failed, denied.as_deref()), (Slot::B, Some(NEW)));
    assert_eq!(life.node.cgpt_pts(Slot::B), (0, 0, 0));
    // The next check reports the rollback as update_engine does: 3/0/44.
    let _ = life.check_and_install().await;
    let check = life
        .server
        .requests()
        .into_iter()
        .rev()
        .find(|r| {
            matches!(
                r.omaha_request().kind,
                omaha::RequestKind::UpdateCheck { .. }
            )
        })
        .unwrap();
    match &check.omaha_request().kind {
        omaha::RequestKind::UpdateCheck { event } => assert_eq!(*event, omaha::Event::rollback()),
        other => panic!("{other:?}"),
    }
    assert_eq!(life.reboots_issued(), 0);
}
