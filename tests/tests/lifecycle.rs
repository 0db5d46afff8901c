//! The whole A/B life cycle: the real daemon installs from the in-process Omaha
//! server, GRUB's gptprio rules (`cgpt::slot::boot_next`) pick the slot at each
//! "reboot" of the disk image, and the real health gate (`health::run_node`, what
//! `update-agent health-gate` runs) blesses the slot or falls back.

use std::os::unix::fs::PermissionsExt;

use cgpt::Slot;
use e2e::fixture::{self, BOARD, Node, PAYLOAD_NAME, RUNNING, USR_MIB};
use e2e::{OmahaServer, Reply, UpdateSpec, omaha_log};
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
        let script = |name: &str, body: &str| {
            let p = node.path(&format!("/test-bin/{name}"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        // systemd stand-in: the boot always settles; reboots are only recorded.
        script("systemctl", "exit 0");
        script(
            "reboot",
            &format!("echo reboot >> {}", node.path("/reboots.log").display()),
        );
        let life = Life {
            server,
            node,
            payload,
            boots: 0,
        };
        life.configure(Slot::A);
        life
    }

    fn configure(&self, booted: Slot) {
        let bin = self.node.path("/test-bin");
        self.node.add_config(&format!(
            "[install]\nbooted_slot = \"{booted:?}\"\n\n[health]\nsystemctl = [\"{0}/systemctl\"]\n\
             reboot_command = [\"{0}/reboot\"]\nsettle_timeout_secs = 5\ncheck_timeout_secs = 5\n",
            bin.display()
        ));
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

    /// A reboot: GRUB picks a slot; the node comes up with that slot's /usr
    /// (release file), a new boot id and an empty /run.
    fn reboot(&mut self) -> Slot {
        self.boots += 1;
        let mut disk = cgpt::FileDisk::open_rw(&self.node.disk).unwrap();
        let entry = cgpt::slot::boot_next(&mut disk).expect("GRUB finds a bootable slot");
        let slot = Slot::from_label(&entry.label).unwrap();
        let version = if slot == Slot::A { RUNNING } else { NEW };
        std::fs::write(
            self.node.path("/usr/share/flatcar/release"),
            format!("FLATCAR_RELEASE_VERSION={version}\nFLATCAR_RELEASE_BOARD={BOARD}\n"),
        )
        .unwrap();
        std::fs::write(
            self.node.path("/proc/sys/kernel/random/boot_id"),
            format!("3a2f4d8e-0000-4000-8000-{:012}\n", self.boots + 1),
        )
        .unwrap();
        let _ = std::fs::remove_dir_all(self.node.path("/run"));
        self.configure(slot);
        slot
    }

    async fn gate(&self) -> Outcome {
        health::run_node(&Root::new(self.node.root()), None)
            .await
            .unwrap()
    }

    fn check(&self, kind: &str, name: &str, body: &str) {
        let p = self
            .node
            .path(&format!("/etc/update-agent/health.d/{kind}/{name}"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn reboots_issued(&self) -> usize {
        std::fs::read_to_string(self.node.path("/reboots.log")).map_or(0, |s| s.lines().count())
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
