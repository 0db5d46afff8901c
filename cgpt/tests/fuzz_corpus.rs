//! Replays every saved fuzz input (`fuzz/corpus/read_gpt/`, a minimized
//! libFuzzer corpus) through the fuzz target's body on stable Rust, so what the
//! fuzzer covered stays covered by the normal test suite.

#[path = "../fuzz/bodies.rs"]
mod bodies;

#[test]
fn read_gpt_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/read_gpt");
    let mut n = 0;
    let mut read_ok = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        // A panic names the input that caused it.
        let r = std::panic::catch_unwind(|| bodies::read_gpt(&data));
        assert!(r.is_ok(), "{} panicked", path.display());
        n += 1;
        if let Some((mut d, _)) = bodies::disk_from(&data) {
            read_ok += usize::from(cgpt::Gpt::read(&mut d).is_ok());
        }
    }
    // An empty or tiny directory means a broken checkout, not a pass; and the
    // corpus must reach past the "not a GPT" refusals into real tables.
    assert!(n > 50, "only {n} corpus inputs in {}", dir.display());
    assert!(read_ok > 10, "only {read_ok} inputs hold a readable GPT");
}
