//! The 500/503 backoff of the update-check schedule, end to end: the real
//! daemon loop (`Daemon::run`) with millisecond timers against the
//! in-process server answering 503, 503, 500, then no update twice. The
//! server's request timestamps must show the interval doubling from the
//! periodic one, capped at `max_backoff`, and back to the periodic
//! interval after the successful check.
//!
//! The backed-off delays are fuzzed ±50 % (update_engine's rule), so the
//! daemon's RNG is seeded and the test derives each expected delay from the
//! same seed: the base intervals below are the test's own statement of the
//! doubling and the cap; only the fuzz draw is shared.

use std::time::Duration;

use e2e::fixture::Node;
use e2e::{OmahaServer, Reply, omaha_log};
use rand::SeedableRng;
use rand::rngs::StdRng;
use update_agent::config::Root;
use update_agent::daemon::Daemon;
use update_agent::schedule::fuzz;

const SEED: u64 = 20_261_122;
const MS: fn(u64) -> Duration = Duration::from_millis;
/// The periodic interval and the backoff cap. Large enough that a loaded
/// 2-core CI runner's scheduling noise stays well inside [`SLACK`].
const PERIODIC: u64 = 800;
const CAP: u64 = 4000;
/// How much later than its delay a check may come: the timer starts after
/// the answer was handled (the error event's round trip, settings and
/// identity re-read, two HTTP clients built), plus scheduling.
const SLACK: Duration = Duration::from_millis(1000);
/// The TestOmahaUrl flag.
const TEST_URL: u32 = 0x1000_0000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_double_the_interval_up_to_the_cap() {
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    node.add_config(&format!(
        "[schedule]\nfirst_check_ms = 100\nfirst_check_fuzz_ms = 0\nperiodic_ms = {PERIODIC}\nperiodic_fuzz_ms = 0\nmax_backoff_ms = {CAP}\n",
    ));
    for reply in [
        Reply::Status(503),
        Reply::Status(503),
        Reply::Status(500),
        Reply::NoUpdate,
        Reply::NoUpdate,
    ] {
        server.push(reply);
    }
    let daemon = Daemon::new(Root::new(node.root()), None)
        .unwrap()
        .with_rng_seed(SEED);
    let task = tokio::spawn(daemon.run());

    let checks = |s: &OmahaServer| {
        s.requests()
            .into_iter()
            .filter(|r| {
                r.method == "POST"
                    && matches!(
                        r.omaha_request().kind,
                        omaha::RequestKind::UpdateCheck { .. }
                    )
            })
            .map(|r| r.at)
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while checks(&server).len() < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} checks: {:?}",
            checks(&server).len(),
            omaha_log(&server)
        );
        tokio::time::sleep(MS(20)).await;
    }
    task.abort();
    let at = checks(&server);
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();

    // What update_engine's rule asks for: the periodic interval doubled
    // (2x, 4x), then 8x capped at CAP; a success goes back to the periodic
    // interval (no fuzz configured for it; a backed-off delay is fuzzed by
    // its own size).
    let mut rng = StdRng::seed_from_u64(SEED);
    let _first = fuzz(MS(100), Duration::ZERO, &mut rng);
    let bases = [
        (MS(2 * PERIODIC), MS(2 * PERIODIC)),
        (MS(4 * PERIODIC), MS(4 * PERIODIC)),
        (MS(CAP), MS(CAP)),
        (MS(PERIODIC), Duration::ZERO),
    ];
    let expected: Vec<Duration> = bases
        .iter()
        .map(|&(base, range)| fuzz(base, range, &mut rng))
        .collect();
    for (&(base, _), want) in bases.iter().zip(&expected) {
        assert!(*want >= base / 2 && *want <= base + base / 2);
    }
    eprintln!("gaps {gaps:?}, expected {expected:?}");
    for (i, (gap, want)) in gaps.iter().zip(&expected).enumerate() {
        assert!(
            *gap + MS(20) >= *want && *gap <= *want + SLACK,
            "gap {i}: {gap:?}, expected {want:?} (all gaps {gaps:?}, expected {expected:?})"
        );
    }
    // The test can tell the cap apart: uncapped, the third delay would be
    // fuzz(8x ± 4x) drawn from the same RNG state.
    let mut rng = StdRng::seed_from_u64(SEED);
    let _ = fuzz(MS(100), Duration::ZERO, &mut rng);
    let _ = fuzz(MS(2 * PERIODIC), MS(2 * PERIODIC), &mut rng);
    let _ = fuzz(MS(4 * PERIODIC), MS(4 * PERIODIC), &mut rng);
    let uncapped = fuzz(MS(8 * PERIODIC), MS(8 * PERIODIC), &mut rng);
    assert!(
        uncapped.abs_diff(expected[2]) > SLACK + MS(20),
        "pick another seed: uncapped {uncapped:?} vs capped {:?}",
        expected[2]
    );

    let code = |c: u32| format!("3/0/{}", c | TEST_URL);
    assert_eq!(
        omaha_log(&server)[..8],
        [
            "check".to_string(),
            code(2503),
            "check".into(),
            code(2503),
            "check".into(),
            code(2500),
            "check".into(),
            "check".into()
        ]
    );
}
