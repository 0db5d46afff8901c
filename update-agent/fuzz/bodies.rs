//! The fuzz targets' bodies, shared with `tests/fuzz_corpus.rs`, which
//! replays the saved corpora on stable Rust in every test run.

use std::io::Read;

use update_agent::config::FlatcarConfig;
use update_agent::config::flatcar::parse_key_values;
use update_agent::config::settings::{Fragment, Settings};
use update_agent::install::sysext::{manifest, plan};

/// `update.conf` / `release` text (any bytes an admin or an image could
/// hold): parsing and every value the agent reads never panic, and what
/// the parser returns is what the lookup gives.
pub fn update_conf(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let pairs = parse_key_values(&text);
    let config = FlatcarConfig::from_texts([text.as_ref()]);
    let _ = (
        config.server(),
        config.group(),
        config.version(),
        config.board(),
    );
    let _ = (
        config.app_id(),
        config.machine_alias(),
        config.updates_disabled(),
    );
    let _ = config.download_credentials();
    for (key, _) in &pairs {
        assert!(config.get(key).is_some(), "{key} parsed but not found");
    }
}

/// A settings layer (TOML): parsing, merging with itself and validation
/// never panic; what validates keeps the settings' invariants.
pub fn settings_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(fragment) = Fragment::parse(text) else {
        return;
    };
    let mut merged = fragment.clone();
    merged.merge(fragment);
    if let Ok(s) = Settings::from_fragment(merged) {
        assert!(s.schedule.max_backoff >= s.schedule.periodic);
        assert!(s.state_dir.is_absolute() && s.kernel_dir.is_absolute());
        assert!(!s.connect_timeout.is_zero());
    }
}

/// What the extension step reads: `enabled-sysext.conf` texts (`/etc`'s
/// and the new image's, split at the first NUL), `oem-release`, and a
/// payload's header and manifest, which are read before verification.
/// Never panics; every planned name is a plain file-name part; the peek
/// gives back exactly the bytes it read.
pub fn sysext_inputs(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (etc, image) = text.split_once('\0').unwrap_or((&text, ""));
    if let Ok(names) = plan::enabled_extensions(etc, image) {
        assert!(names.iter().all(|n| plan::valid_name(n)), "{names:?}");
    }
    if let Ok(Some(id)) = plan::oem_id(&text) {
        assert!(plan::valid_name(&id), "{id:?}");
    }
    let (mut replay, names) = manifest::peek_partitions(data).expect("reading a slice");
    let mut back = Vec::new();
    replay.read_to_end(&mut back).expect("reading a slice");
    assert_eq!(back, data, "the peek changed the stream");
    let node = plan::NodeFacts {
        oem_id: Some("azure".into()),
        oem_active: false,
        etc_enabled: etc.to_string(),
    };
    for w in plan::manifest_candidates(&node, &names) {
        assert!(plan::valid_name(&w.name), "{w:?}");
    }
}
