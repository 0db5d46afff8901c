//! Footprint of the D-Bus service with the scripted engine: RSS after start
//! and during an update, and CPU while idle. Measured on this test process
//! (service + engine + test harness), so the numbers are an upper bound for
//! the service alone; printed for the record, bounded by the assertions.

#[path = "dbus_common.rs"]
mod common;

use std::time::Duration;

use common::{Fixture, Setup};
use e2e::dbus_bus::{gdbus_call, output};
use update_agent::fsm::Operation;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// utime + stime of this process, in clock ticks.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn idle_cpu_is_near_zero_and_rss_is_small() {
    let mut setup = Setup::default();
    for s in setup.script.iter_mut().skip(1).take(200) {
        s.delay = Duration::from_millis(10);
    }
    let f = Fixture::start(setup);
    std::thread::sleep(Duration::from_millis(300));
    let rss_start = rss_kib();

    let t0 = cpu_ticks();
    std::thread::sleep(Duration::from_secs(3));
    let idle_ticks = cpu_ticks() - t0;

    let o = output(&mut gdbus_call(
        f.address(),
        "com.coreos.update1.Manager.AttemptUpdate",
        &[],
    ));
    assert!(o.status.success());
    f.wait_for(Operation::Downloading, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let rss_update = rss_kib();
    f.wait_for(Operation::UpdatedNeedReboot, Duration::from_secs(20));
    eprintln!(
        "footprint: RSS after start {rss_start} KiB, during an update {rss_update} KiB, idle CPU {idle_ticks} ticks in 3 s"
    );
    // 100 ticks per second: at most 3 ticks (1 %) in 3 s of idling.
    assert!(idle_ticks <= 3, "idle CPU {idle_ticks} ticks in 3 s");
    assert!(rss_start < 64 * 1024, "RSS {rss_start} KiB");
    assert!(rss_update < 64 * 1024, "RSS {rss_update} KiB");
}
