//! Replays every saved fuzz input (`fuzz/corpus/<target>/`, a minimized
//! libFuzzer corpus seeded with the reference responses) through the fuzz
//! target's body on stable Rust, so what the fuzzer covered stays covered
//! by the normal test suite.

#[path = "../fuzz/bodies.rs"]
mod bodies;

use std::path::Path;

#[test]
fn parse_response_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse_response");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        // A panic names the input that caused it.
        let r = std::panic::catch_unwind(|| bodies::parse_response(&data));
        assert!(r.is_ok(), "{} panicked", path.display());
        n += 1;
    }
    // The corpus holds hundreds of inputs: a near-empty directory means a
    // broken checkout, not a pass.
    assert!(n > 100, "only {n} corpus inputs in {}", dir.display());
}
