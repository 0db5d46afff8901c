//! The executor in-process with tokio's paused clock: window waits and user postponement.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use coordinator::config::{Backoff, Strategy};
use coordinator::fsm::Policy;
use coordinator::lock::AnyLock;
use coordinator::node::{NodeError, Rebooter, Signals};
use coordinator::users::{Users, utmp_record};
use coordinator::window::Window;
use coordinator::{Clock, Coordinator, Outcome};
use jiff::Zoned;
use tokio::time::Instant;

/// Wall clock = a fixed start plus tokio's (paused, auto-advancing) time.
struct FakeClock {
    base: Zoned,
    start: Instant,
}

impl Clock for FakeClock {
    fn now(&self) -> Zoned {
        let elapsed = jiff::SignedDuration::try_from(self.start.elapsed()).unwrap();
        self.base.checked_add(elapsed).unwrap()
    }
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Instant>>>);

impl Rebooter for Recorder {
    async fn reboot(&self) -> Result<(), NodeError> {
        self.0.lock().unwrap().push(Instant::now());
        Ok(())
    }
}

struct Needed;
impl Signals for Needed {
    fn reboot_needed(&self) -> bool {
        true
    }
    fn steady(&self) -> bool {
        true
    }
}

fn coordinator(
    root: &std::path::Path,
    window: Option<Window>,
    base: &str,
) -> Coordinator<AnyLock, Recorder, Needed, FakeClock> {
    let tz = jiff::tz::TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
    Coordinator {
        policy: Policy {
            strategy: Strategy::Reboot,
            backoff: Backoff {
                min: Duration::from_secs(5),
                max: Duration::from_secs(300),
            },
            poll: Duration::from_secs(5),
            user_delay: Duration::from_secs(300),
        },
        window,
        lock: AnyLock::None,
        rebooter: Recorder::default(),
        signals: Needed,
        clock: FakeClock {
            base: base
                .parse::<jiff::civil::DateTime>()
                .unwrap()
                .to_zoned(tz)
                .unwrap(),
            start: Instant::now(),
        },
        users: Users::new(root),
        conf_root: Some(root.to_owned()),
        metrics: coordinator::metrics::Metrics::new(),
    }
}

#[tokio::test(start_paused = true)]
async fn closed_window_delays_the_reboot_until_it_opens() {
    let dir = tempfile::tempdir().unwrap();
    // Thursday 2024-05-02 01:00 local; the window opens Thursday 04:00.
    let c = coordinator(
        dir.path(),
        Some(Window::parse("Thu 04:00", "30m").unwrap()),
        "2024-05-02T01:00",
    );
    let start = Instant::now();
    assert_eq!(c.run().await.unwrap(), Outcome::RebootRequested);
    let at = c.rebooter.0.lock().unwrap()[0] - start;
    assert!(
        at >= Duration::from_secs(3 * 3600) && at < Duration::from_secs(3 * 3600 + 2),
        "rebooted after {at:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn open_window_and_no_users_reboot_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(
        dir.path(),
        Some(Window::parse("04:00", "1h").unwrap()),
        "2024-05-02T04:30",
    );
    let start = Instant::now();
    c.run().await.unwrap();
    assert!(c.rebooter.0.lock().unwrap()[0] - start < Duration::from_millis(10));
    let conf =
        std::fs::read_to_string(dir.path().join("run/update-engine/coordinator.conf")).unwrap();
    assert_eq!(conf, "NAME=locksmithd\nSTRATEGY=reboot\nSTATE=rebooting\n");
}

#[tokio::test(start_paused = true)]
async fn logged_in_users_are_warned_and_the_reboot_postponed_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("run")).unwrap();
    std::fs::create_dir_all(dir.path().join("dev/pts")).unwrap();
    std::fs::write(dir.path().join("dev/pts/3"), "").unwrap();
    std::fs::write(dir.path().join("run/utmp"), utmp_record("core", "pts/3")).unwrap();
    let c = coordinator(dir.path(), None, "2024-05-02T12:00");
    let start = Instant::now();
    c.run().await.unwrap();
    let at = c.rebooter.0.lock().unwrap()[0] - start;
    assert!(
        at >= Duration::from_secs(300) && at < Duration::from_secs(301),
        "rebooted after {at:?}"
    );
    let tty = std::fs::read_to_string(dir.path().join("dev/pts/3")).unwrap();
    assert!(tty.contains("System reboot in 5 minutes!"), "{tty:?}");
}
