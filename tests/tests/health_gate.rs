//! The post-boot health gate against a real GPT disk image (read back with Debian's
//! cgpt), real check executables, a stand-in `systemctl`, a harmless reboot
//! command, and the in-process Omaha server receiving the reports.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cgpt::{FileDisk, Slot};
use e2e::OmahaServer;
use omaha::{Event, RequestKind};
use update_agent::config::Root;
use update_agent::denylist::DenyList;
use update_agent::health::{self, GateEnv, HealthConfig, OmahaReporter, Outcome, RebootResult};
use update_agent::omaha_client::{ClientOptions, OmahaClient};
use update_agent::prefs::{self, Prefs};

const STATE: &str = "/var/lib/update_engine";
const FULL_RESPONSE: &str =
    include_str!("../../omaha/tests/fixtures/generated-responses/resp-update-ok.xml");

struct Node {
    dir: tempfile::TempDir,
}

fn script(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

impl Node {
    /// A node whose disk is a fresh Flatcar-like image (A good, B empty).
    fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let layout = cgpt::image::Layout::flatcar(8);
        cgpt::image::create(
            &dir.path().join("disk.img"),
            layout.disk_bytes(8),
            512,
            &layout,
        )
        .unwrap();
        let n = Node { dir };
        // systemctl stand-in: a unit is active iff listed in <root>/active-units.
        let active = n.path("active-units");
        std::fs::write(&active, "boot-complete.target\n").unwrap();
        script(
            &n.path("bin/systemctl"),
            &format!(r#"grep -qx "$3" {}"#, active.display()),
        );
        script(
            &n.path("bin/reboot"),
            &format!("echo reboot >> {}", n.path("reboots.log").display()),
        );
        n
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn disk(&self) -> FileDisk {
        FileDisk::open_rw(&self.path("disk.img")).unwrap()
    }

    fn prefs(&self) -> Prefs {
        Prefs::new(self.path(&format!("{STATE}/prefs")[1..]))
    }

    fn deny(&self) -> DenyList {
        DenyList::in_dir(&self.path(&STATE[1..]))
    }

    /// What the install does, then what GRUB does on the next boot.
    fn install_and_boot(&self, slot: Slot) {
        cgpt::slot::set_next(&mut self.disk(), slot).unwrap();
        let booted = cgpt::slot::boot_next(&mut self.disk()).unwrap();
        assert_eq!(Slot::from_label(&booted.label), Some(slot));
    }

    fn check(&self, kind: &str, name: &str, body: &str) {
        script(
            &self.path(&format!("etc/update-agent/health.d/{kind}/{name}")),
            body,
        );
    }

    fn env(&self, booted: Slot, version: &str, boot_id: &str) -> GateEnv {
        GateEnv {
            root: Root::new(self.dir.path()),
            disk: self.path("disk.img"),
            booted,
            version: version.into(),
            boot_id: boot_id.into(),
            state_dir: STATE.into(),
            app_id: omaha::FLATCAR_APP_ID.into(),
        }
    }

    fn config(&self) -> HealthConfig {
        HealthConfig {
            systemctl: vec![self.path("bin/systemctl").display().to_string()],
            reboot_command: vec![self.path("bin/reboot").display().to_string()],
            settle_timeout_secs: 2,
            poll_interval_ms: 50,
            check_timeout_secs: 5,
            ..HealthConfig::default()
        }
    }

    /// Real cgpt's view: (priority, tries, successful) of partition `i`.
    fn cgpt(&self, i: u32) -> (u8, u8, u8) {
        let img = self.path("disk.img");
        let field = |f: &str| {
            let o = Command::new("cgpt")
                .args(["show", "-i", &i.to_string(), f])
                .arg(&img)
                .output()
                .unwrap();
            assert!(o.status.success(), "real cgpt failed: {o:?}");
            String::from_utf8(o.stdout)
                .unwrap()
                .trim()
                .parse::<u8>()
                .unwrap()
        };
        (field("-P"), field("-T"), field("-S"))
    }

    fn reboots(&self) -> usize {
        std::fs::read_to_string(self.path("reboots.log")).map_or(0, |s| s.lines().count())
    }
}

async fn reporter(server: &OmahaServer) -> OmahaReporter {
    let client = OmahaClient::new(&server.update_url(), &ClientOptions::default()).unwrap();
    let info = omaha::ClientInfo {
        version: "2.0.0".into(),
        ..Default::default()
    };
    OmahaReporter::new(client, info)
}

fn events(server: &OmahaServer) -> Vec<Event> {
    server
        .requests()
        .iter()
        .filter_map(|r| match &r.omaha_request().kind {
            RequestKind::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_healthy_new_slot_is_blessed_and_reported() {
    let node = Node::new();
    let server = OmahaServer::start().await;
    node.prefs().set(prefs::PREVIOUS_VERSION, "1.0.0").unwrap();
    node.install_and_boot(Slot::B);
    node.check("required", "10-ok", "exit 0");
    node.check("wanted", "50-flaky", "echo not fatal >&2; exit 1");

    let out = health::run(
        &node.env(Slot::B, "2.0.0", "boot-1"),
        &node.config(),
        &reporter(&server).await,
    )
    .await
    .unwrap();
    assert_eq!(out, Outcome::Blessed);
    assert_eq!(node.cgpt(4), (2, 0, 1), "B good and on top");
    assert_eq!(node.cgpt(3), (1, 0, 1), "A kept as the fallback");
    assert_eq!(
        events(&server),
        vec![Event::for_update_check(Some("1.0.0"), "2.0.0")]
    );
    assert_eq!(
        node.prefs()
            .get(prefs::PREVIOUS_VERSION)
            .unwrap()
            .as_deref(),
        Some("")
    );
    let steady = std::fs::read_to_string(node.path("run/update-engine/health/steady")).unwrap();
    assert_eq!(steady, "2.0.0\n");
    assert_eq!(node.reboots(), 0);
}

#[tokio::test]
async fn a_failing_required_check_falls_back_denies_and_reboots_once() {
    let node = Node::new();
    let server = OmahaServer::start().await;
    node.install_and_boot(Slot::B);
    node.check("required", "10-ok", "exit 0");
    node.check("required", "20-etcd", "echo etcd unhealthy >&2; exit 3");

    let env = node.env(Slot::B, "2.0.0", "boot-1");
    let out = health::run(&env, &node.config(), &reporter(&server).await)
        .await
        .unwrap();
    let Outcome::FellBack {
        to,
        failures,
        reboot,
    } = out
    else {
        panic!("{out:?}")
    };
    assert_eq!((to, reboot), (Slot::A, RebootResult::Issued));
    assert_eq!(
        failures,
        vec!["required check 20-etcd exited 3: etcd unhealthy".to_string()]
    );
    assert_eq!(node.cgpt(4), (0, 0, 0), "B can never be chosen again");
    assert_eq!(node.cgpt(3), (1, 0, 1));
    let next = cgpt::slot::boot_next(&mut node.disk()).unwrap();
    assert_eq!(next.label, "USR-A", "the bootloader goes back to A");
    assert!(node.deny().contains("2.0.0").unwrap());
    assert!(
        node.deny().entries().unwrap()[0]
            .reason
            .contains("20-etcd exited 3")
    );
    assert_eq!(events(&server), vec![Event::rollback()]);
    assert_eq!(node.reboots(), 1);

    // Run again in the same boot (say the reboot did not happen): no second reboot.
    let out = health::run(&env, &node.config(), &reporter(&server).await)
        .await
        .unwrap();
    let Outcome::FellBack { reboot, .. } = out else {
        panic!("{out:?}")
    };
    assert!(
        matches!(reboot, RebootResult::Refused(ref why) if why.contains("already rebooted during this boot"))
    );
    assert_eq!(node.reboots(), 1);
}

#[tokio::test]
async fn a_boot_that_never_settles_or_a_dead_unit_fails_the_gate() {
    for (active, required_units, want) in [
        (
            "",
            vec![],
            "the boot did not settle within 2 s: boot-complete.target not active",
        ),
        (
            "boot-complete.target\n",
            vec!["etcd.service".to_string()],
            "required unit etcd.service is not active",
        ),
    ] {
        let node = Node::new();
        std::fs::write(node.path("active-units"), active).unwrap();
        node.install_and_boot(Slot::B);
        let cfg = HealthConfig {
            required_units,
            ..node.config()
        };
        let out = health::run(
            &node.env(Slot::B, "2.0.0", "boot-1"),
            &cfg,
            &health::NoReporter,
        )
        .await
        .unwrap();
        let Outcome::FellBack { failures, .. } = out else {
            panic!("{out:?}")
        };
        assert_eq!(failures, vec![want.to_string()]);
        assert_eq!(node.cgpt(4).0, 0);
    }
}

#[tokio::test]
async fn an_already_good_slot_is_left_alone() {
    let node = Node::new();
    node.check("required", "10-fails", "exit 1");
    let before = std::fs::read(node.path("disk.img")).unwrap();
    let out = health::run(
        &node.env(Slot::A, "1.0.0", "boot-1"),
        &node.config(),
        &health::NoReporter,
    )
    .await
    .unwrap();
    assert_eq!(out, Outcome::AlreadyGood);
    assert!(
        std::fs::read(node.path("disk.img")).unwrap() == before,
        "no write for a good slot"
    );
    assert_eq!(node.reboots(), 0);
}

#[tokio::test]
async fn a_slot_that_died_before_its_gate_is_marked_bad_and_denied() {
    let node = Node::new();
    node.prefs()
        .set(prefs::FULL_RESPONSE, FULL_RESPONSE)
        .unwrap();
    node.install_and_boot(Slot::B);
    // B dies before the gate runs; GRUB's next pass falls back to A.
    let back = cgpt::slot::boot_next(&mut node.disk()).unwrap();
    assert_eq!(back.label, "USR-A");
    let out = health::run(
        &node.env(Slot::A, "1.0.0", "boot-2"),
        &node.config(),
        &health::NoReporter,
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        Outcome::RolledBack {
            failed: Slot::B,
            denied: Some("2191.5.0".into())
        }
    );
    assert_eq!(node.cgpt(4), (0, 0, 0));
    assert!(node.deny().contains("2191.5.0").unwrap());
    // A second run has nothing left to do.
    let out = health::run(
        &node.env(Slot::A, "1.0.0", "boot-2"),
        &node.config(),
        &health::NoReporter,
    )
    .await
    .unwrap();
    assert_eq!(out, Outcome::AlreadyGood);
}

#[tokio::test]
async fn without_a_verified_fallback_the_only_bootable_slot_stays_bootable() {
    let node = Node::new();
    // A was never good (a broken first install): B is all there is.
    cgpt::slot::mark_unbootable(&mut node.disk(), Slot::A).unwrap();
    node.install_and_boot(Slot::B);
    node.check("required", "10-fails", "exit 1");
    let out = health::run(
        &node.env(Slot::B, "2.0.0", "boot-1"),
        &node.config(),
        &health::NoReporter,
    )
    .await
    .unwrap();
    assert_eq!(
        out,
        Outcome::NoFallback {
            failures: vec!["required check 10-fails exited 1".into()]
        }
    );
    assert_eq!(
        node.cgpt(4),
        (1, 0, 1),
        "B kept bootable: GRUB would otherwise find nothing"
    );
    assert_eq!(node.reboots(), 0);
    assert!(cgpt::slot::boot_next(&mut node.disk()).is_ok());
}

#[tokio::test]
async fn the_reboot_guard_bounds_reboots_across_boots() {
    let node = Node::new();
    node.check("required", "10-fails", "exit 1");
    let cfg = HealthConfig {
        max_reboots: 2,
        ..node.config()
    };
    let mut results = Vec::new();
    for boot in 1..=3 {
        // A stays good; each round B is installed again and fails.
        node.install_and_boot(Slot::B);
        let out = health::run(
            &node.env(Slot::B, "2.0.0", &format!("boot-{boot}")),
            &cfg,
            &health::NoReporter,
        )
        .await
        .unwrap();
        let Outcome::FellBack { reboot, .. } = out else {
            panic!("{out:?}")
        };
        results.push(reboot);
    }
    assert_eq!(results[..2], [RebootResult::Issued, RebootResult::Issued]);
    assert!(matches!(&results[2], RebootResult::Refused(why) if why.contains("rebooted 2 times")));
    assert_eq!(node.reboots(), 2);
}

/// A reporter whose server refuses connections (nothing listens on port 9).
fn unreachable_reporter() -> OmahaReporter {
    let client =
        OmahaClient::new("http://127.0.0.1:9/v1/update/", &ClientOptions::default()).unwrap();
    let info = omaha::ClientInfo {
        version: "2.0.0".into(),
        ..Default::default()
    };
    OmahaReporter::new(client, info)
}

/// With no network at gate time the verdict is not lost: `previous-version`
/// is kept, so the daemon's first update check carries the event instead.
#[tokio::test]
async fn an_unreported_verdict_is_left_for_the_next_update_check() {
    // Fallback: the pref equals the old slot's version, which makes the
    // check on the old slot a rollback report (3/0/44). Blessed: the check
    // on the new slot reports the update (3/2).
    let cases = [
        (Some("exit 3"), "1.0.0", Event::rollback()),
        (None, "2.0.0", Event::update_check_reboot("1.0.0")),
    ];
    for (check, next_running, next_event) in cases {
        let node = Node::new();
        node.prefs().set(prefs::PREVIOUS_VERSION, "1.0.0").unwrap();
        node.install_and_boot(Slot::B);
        if let Some(body) = check {
            node.check("required", "20-etcd", body);
        }
        let out = health::run(
            &node.env(Slot::B, "2.0.0", "boot-1"),
            &node.config(),
            &unreachable_reporter(),
        )
        .await
        .unwrap();
        match check {
            Some(_) => assert!(
                matches!(out, Outcome::FellBack { to: Slot::A, .. }),
                "{out:?}"
            ),
            None => assert_eq!(out, Outcome::Blessed),
        }
        let kept = node.prefs().get(prefs::PREVIOUS_VERSION).unwrap();
        assert_eq!(kept.as_deref(), Some("1.0.0"));
        assert_eq!(
            Event::for_update_check(kept.as_deref(), next_running),
            next_event
        );
    }
}
