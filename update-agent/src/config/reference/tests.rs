use super::*;
use crate::config::settings::{Fragment, Settings};
use std::path::PathBuf;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md")
}

/// The committed reference is the generated one. `UPDATE_DOCS=1 cargo test
/// -p update-agent reference` rewrites it.
#[test]
fn committed_reference_is_current() {
    let generated = markdown();
    let path = committed_path();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: run `cargo run -p update-agent -- config reference > docs/configuration.md` \
         (or UPDATE_DOCS=1 cargo test -p update-agent reference)",
        path.display()
    );
}

/// Each documented default, written into a file, gives exactly the
/// settings of no file at all: the reference's defaults are the code's.
#[test]
fn documented_defaults_are_the_defaults() {
    let mut checked = 0;
    for (section, _, keys) in SECTIONS {
        for k in keys.iter() {
            let Some(default) = k.default else { continue };
            let text = format!("[{section}]\n{} = {default}\n", k.key);
            let fragment = Fragment::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let settings = Settings::from_fragment(fragment).unwrap();
            assert_eq!(settings, Settings::default(), "{section}.{}", k.key);
            checked += 1;
        }
    }
    assert!(checked > 30, "only {checked} defaults");
    // The comparison can fail: a value other than the default shows.
    let other = Fragment::parse("[schedule]\nperiodic = \"46m\"\n").unwrap();
    assert_ne!(Settings::from_fragment(other).unwrap(), Settings::default());
}

/// Every key of every table, and every update.conf key, is in the text.
#[test]
fn every_key_is_documented() {
    let text = markdown();
    for (section, _, keys) in SECTIONS {
        assert!(text.contains(&format!("## `[{section}]`")));
        for k in keys.iter() {
            assert!(text.contains(&format!("| `{}` |", k.key)), "{}", k.key);
            assert!(!k.doc.trim().is_empty(), "{section}.{} has no doc", k.key);
        }
    }
    for k in CONF_KEYS {
        assert!(text.contains(&format!("| `{}` |", k.name)));
    }
}
