//! The fuzz targets' bodies, shared by the libFuzzer binaries
//! (`fuzz_targets/`) and the corpus replay test (`tests/fuzz_corpus.rs`),
//! which runs every saved input on stable Rust in the normal test suite.

use coordinator::lock::{etcd, fleetlock};
use coordinator::semaphore::Semaphore;

/// An etcd v3 JSON gateway answer on arbitrary bytes: the range, txn and
/// auth decoders never panic, and a semaphore value found in a range answer
/// decodes, re-encodes and goes through every semaphore operation without
/// panicking (a hostile or corrupted key must not crash locksmithd).
pub fn etcd_json(data: &[u8]) {
    let _ = etcd::parse_auth_token(data);
    let _ = etcd::parse_txn(data);
    if let Ok(Some(kv)) = etcd::parse_range(data) {
        semaphore(&kv.value);
    }
    // The stored value itself is JSON too: fuzz it directly as well.
    semaphore(data);
}

fn semaphore(value: &[u8]) {
    let Ok(sem) = Semaphore::decode(value) else {
        return;
    };
    let again = Semaphore::decode(&sem.encode()).expect("encode output decodes");
    assert_eq!(again, sem, "encode/decode round trip");
    let mut s = sem.clone();
    let _ = s.lock("fuzz-node");
    let mut s = sem.clone();
    let _ = s.unlock(sem.holders().first().map_or("fuzz-node", String::as_str));
    for max in [1, 2, i64::MAX] {
        let mut s = sem.clone();
        let _ = s.set_max(max);
    }
}

/// A FleetLock refusal body on arbitrary bytes: never panics, and whatever
/// it yields is the body's own `kind` and `value`.
pub fn fleetlock_json(data: &[u8]) {
    if let Some((kind, value)) = fleetlock::parse_refusal(data) {
        let text = String::from_utf8_lossy(data);
        // Both came out of the body (possibly unescaped): a non-empty one
        // cannot appear from nowhere when the body has no escapes.
        if !text.contains('\\') {
            assert!(kind.is_empty() || text.contains(&kind), "{kind:?}");
            assert!(value.is_empty() || text.contains(&value), "{value:?}");
        }
    }
}
