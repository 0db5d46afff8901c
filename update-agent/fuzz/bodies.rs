//! The fuzz targets' bodies, shared with `tests/fuzz_corpus.rs`, which
//! replays the saved corpora on stable Rust in every test run.

use update_agent::config::FlatcarConfig;
use update_agent::config::flatcar::parse_key_values;
use update_agent::config::settings::{Fragment, Settings};

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
