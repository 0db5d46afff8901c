//! `etcd-lock` against a real etcd (Debian's etcd-server) on 127.0.0.1.

mod common;

use std::time::{Duration, Instant};

use common::{Etcd, Node, free_port, locksmithctl};
use coordinator::config::KeyValues;
use coordinator::lock::etcd::{EtcdClient, EtcdLock};
use coordinator::{Config, semaphore};

fn admin(url: &str, group: Option<&str>) -> EtcdLock {
    let mut kv: KeyValues = [("LOCKSMITHD_ENDPOINT", url)].into_iter().collect();
    if let Some(g) = group {
        kv.set("LOCKSMITHD_GROUP", g);
    }
    let config = Config::from_values(&kv).unwrap();
    EtcdLock::new(EtcdClient::new(&config).unwrap(), group, "test-admin")
}

async fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn twenty_nodes_share_two_slots() {
    let etcd = Etcd::start();
    let out = locksmithctl(&etcd.url, &["set-max", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let conf = format!(
        "REBOOT_STRATEGY=etcd-lock\nLOCKSMITHD_ENDPOINT={}\n",
        etcd.url
    );
    let mut nodes: Vec<Node> = (0..20)
        .map(|i| Node::new(dir.path(), &format!("node{i:02}"), &conf))
        .collect();
    let lock = admin(&etcd.url, None);
    let peak = common::contend(&mut nodes, 2, Duration::from_millis(250), || async {
        lock.read().await.unwrap().0.holders().to_vec()
    })
    .await;
    assert_eq!(peak, 2, "two slots should have been used at once");
    let (sem, _) = lock.read().await.unwrap();
    assert_eq!((sem.semaphore, sem.max, sem.holders()), (2, 2, &[][..]));
    let status = locksmithctl(&etcd.url, &["status"]);
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        "Available: 2\nMax: 2\n"
    );
}

#[tokio::test]
async fn dead_holder_keeps_the_lock_until_it_returns_or_an_admin_unlocks() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let conf = format!(
        "REBOOT_STRATEGY=etcd-lock\nLOCKSMITHD_ENDPOINT={}\nLOCKSMITHD_GROUP=web tier\n",
        etcd.url
    );
    let lock = admin(&etcd.url, Some("web tier"));
    let holders = || async { lock.read().await.unwrap().0.holders().to_vec() };
    let mut a = Node::new(dir.path(), "aaaa", &conf);
    a.need_reboot();
    a.start();
    wait_for("a to reboot", 10, || a.rebooted()).await;
    a.kill(); // killed mid-reboot: the machine never comes back on its own
    assert_eq!(lock.key(), semaphore::key(Some("web tier")));
    assert!(lock.key().ends_with("/groups/web+tier/semaphore"));

    let mut b = Node::new(dir.path(), "bbbb", &conf);
    b.need_reboot();
    b.start();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!b.rebooted(), "b rebooted while a held the only slot");
    assert_eq!(holders().await, ["aaaa"]);
    assert!(b.conf().contains("STATE=reboot-planned"), "{}", b.conf());

    // a comes back and passes its health gate: it releases, b goes.
    a.come_back();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(holders().await, ["aaaa"], "released before the health gate");
    a.pass_health_gate();
    wait_for("b to reboot", 10, || b.rebooted()).await;
    b.kill(); // and b dies mid-reboot too

    let mut c = Node::new(dir.path(), "cccc", &conf);
    c.need_reboot();
    c.start();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!c.rebooted());
    // The admin lists the holders and force-releases the dead one.
    let list = locksmithctl(&etcd.url, &["-group=web tier", "status"]);
    assert_eq!(
        String::from_utf8_lossy(&list.stdout),
        "Available: 0\nMax: 1\n\nMACHINE ID\nbbbb\n"
    );
    let unlock = locksmithctl(&etcd.url, &["--group", "web tier", "unlock", "bbbb"]);
    assert!(
        unlock.status.success(),
        "{}",
        String::from_utf8_lossy(&unlock.stderr)
    );
    wait_for("c to reboot", 10, || c.rebooted()).await;
    assert_eq!(holders().await, ["cccc"]);
    let again = locksmithctl(&etcd.url, &["--group", "web tier", "unlock", "bbbb"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("bbbb does not hold the lock"));
}

#[tokio::test]
async fn holder_that_restarts_steady_with_nothing_to_do_releases() {
    let etcd = Etcd::start();
    let lock = admin(&etcd.url, None);
    lock.update(|s| s.lock("stale")).await.unwrap().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let conf = format!(
        "REBOOT_STRATEGY=etcd-lock\nLOCKSMITHD_ENDPOINT={}\nREBOOT_WINDOW_START=04:00\nREBOOT_WINDOW_LENGTH=1m\n",
        etcd.url
    );
    let mut n = Node::new(dir.path(), "stale", &conf);
    n.pass_health_gate();
    n.start();
    // Released at once, whatever the window says (Flatcar#408).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lock.read().await.unwrap().0.holders().is_empty() {
        assert!(Instant::now() < deadline, "stale lock never released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(n.log().contains("reboot lock released"), "{}", n.log());
    assert!(!n.rebooted());
}

#[tokio::test]
async fn closed_window_takes_no_lock_and_does_not_reboot() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    // A one-minute window twelve hours from now (local time, as the daemon reads it).
    let start = jiff::Zoned::now()
        .checked_add(jiff::SignedDuration::from_hours(12))
        .unwrap();
    let conf = format!(
        "REBOOT_STRATEGY=etcd-lock\nLOCKSMITHD_ENDPOINT={}\nREBOOT_WINDOW_START={}\nREBOOT_WINDOW_LENGTH=1m\n",
        etcd.url,
        start.strftime("%H:%M")
    );
    let mut n = Node::new(dir.path(), "patient", &conf);
    n.need_reboot();
    n.start();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!n.rebooted());
    assert!(
        admin(&etcd.url, None)
            .read()
            .await
            .unwrap()
            .0
            .holders()
            .is_empty()
    );
    assert!(
        n.conf()
            .contains("STRATEGY=etcd-lock\nSTATE=reboot-planned"),
        "{}",
        n.conf()
    );
}

#[tokio::test]
async fn unreachable_etcd_is_reported_and_retried_without_reboot() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let conf = format!("REBOOT_STRATEGY=etcd-lock\nLOCKSMITHD_ENDPOINT=http://127.0.0.1:{port}\n");
    let mut n = Node::new(dir.path(), "lonely", &conf);
    n.need_reboot();
    n.start();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log = n.log();
    let want = format!("lock server unreachable at http://127.0.0.1:{port}");
    assert!(
        log.matches(&want).count() >= 2,
        "no clear, repeated error: {log}"
    );
    assert!(log.contains("not rebooting"), "{log}");
    assert!(!n.rebooted());
    assert!(n.exited().is_none(), "the daemon must keep retrying");
    // etcd appears: the retry succeeds and the node reboots.
    let _etcd = Etcd::start_on(port);
    wait_for("reboot after etcd came up", 10, || n.rebooted()).await;
}

#[tokio::test]
async fn etcd_auth_is_used_and_a_wrong_password_never_reboots() {
    let etcd = Etcd::start();
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &etcd.url])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ctl(&["user", "add", "root:s3cret"]);
    ctl(&["auth", "enable"]);
    let dir = tempfile::tempdir().unwrap();
    let base = format!(
        "REBOOT_STRATEGY=etcd-lock\nLOCKSMITHD_ENDPOINT={}\nLOCKSMITHD_ETCD_USERNAME=root\n",
        etcd.url
    );
    let mut wrong = Node::new(
        dir.path(),
        "wrong",
        &format!("{base}LOCKSMITHD_ETCD_PASSWORD=guess\n"),
    );
    wrong.need_reboot();
    wrong.start();
    let mut right = Node::new(
        dir.path(),
        "right",
        &format!("{base}LOCKSMITHD_ETCD_PASSWORD=s3cret\n"),
    );
    right.need_reboot();
    right.start();
    wait_for("the authenticated node to reboot", 10, || right.rebooted()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!wrong.rebooted());
    assert!(
        wrong
            .log()
            .contains("etcd authentication as \"root\" failed"),
        "{}",
        wrong.log()
    );
}
