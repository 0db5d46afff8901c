//! Replays every saved fuzz input (`fuzz/corpus/<target>/`, minimized
//! libFuzzer corpora) through the fuzz targets' bodies on stable Rust, so
//! what the fuzzers covered stays covered by the normal test suite.

#[path = "../fuzz/bodies.rs"]
mod bodies;

use std::path::Path;

fn replay(target: &str, body: fn(&[u8]), at_least: usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        // A panic names the input that caused it.
        let r = std::panic::catch_unwind(|| body(&data));
        assert!(r.is_ok(), "{} panicked", path.display());
        n += 1;
    }
    // An empty directory means a broken checkout, not a pass.
    assert!(n >= at_least, "{target}: only {n} corpus inputs");
}

#[test]
fn update_conf_corpus() {
    replay("update_conf", bodies::update_conf, 50);
}

#[test]
fn settings_toml_corpus() {
    replay("settings_toml", bodies::settings_toml, 50);
}

#[test]
fn sysext_inputs_corpus() {
    replay("sysext_inputs", bodies::sysext_inputs, 50);
}
