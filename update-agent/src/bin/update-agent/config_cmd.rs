//! `update-agent config show|check|reference`: the merged settings with
//! their origins, a validation without starting anything, and the
//! configuration reference.

use std::path::Path;

use anyhow::bail;
use update_agent::config::flatcar::{CONF_KEYS, FlatcarConfig, SERVER, SERVER_DISABLED};
use update_agent::config::settings::{Layers, Shown};
use update_agent::config::{Root, reference};

/// Every key with its value and origin: the agent's settings, then the
/// update.conf keys.
fn collect(root: &Root, extra: Option<&Path>) -> anyhow::Result<(Layers, Vec<Shown>)> {
    let layers = Layers::load(root, extra)?;
    layers.settings()?;
    let conf = FlatcarConfig::load(root)?;
    check_server(&conf)?;
    let mut shown = layers.shown();
    shown.extend(CONF_KEYS.iter().map(|k| Shown {
        key: k.name.to_string(),
        value: conf.get(k.name).map(str::to_string),
        origin: conf.source_of(k.name).map(|p| root.node_path(p)),
    }));
    Ok((layers, shown))
}

/// `SERVER` must be an http(s) URL or `disabled`: a typo would otherwise
/// only show at the first check.
fn check_server(conf: &FlatcarConfig) -> anyhow::Result<()> {
    let server = conf.server();
    if server == SERVER_DISABLED {
        return Ok(());
    }
    let Some(file) = conf.source_of(SERVER.name) else {
        return Ok(()); // the public server
    };
    let file = file.display();
    match reqwest::Url::parse(server) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(()),
        Ok(url) => bail!(
            "invalid SERVER in {file}: scheme {:?} is not http or https",
            url.scheme()
        ),
        Err(e) => bail!(
            "invalid SERVER in {file}: {server:?} is not a URL ({e}); use `{SERVER_DISABLED}` to turn updates off"
        ),
    }
}

/// `config show`: a table (or JSON) of key, value, origin.
pub(crate) fn show(root: &Root, extra: Option<&Path>, json: bool) -> anyhow::Result<()> {
    let (layers, shown) = collect(root, extra)?;
    if json {
        let keys: Vec<serde_json::Value> = shown.iter().map(json_entry).collect();
        let files: Vec<String> = layers
            .node_files()
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let doc = serde_json::json!({ "files": files, "keys": keys });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let value = |s: &Shown| s.value.clone().unwrap_or_else(|| "(unset)".into());
    let origin = |s: &Shown| {
        s.origin
            .as_ref()
            .map_or_else(|| "default".into(), |p| p.display().to_string())
    };
    let kw = shown.iter().map(|s| s.key.len()).max().unwrap_or(3);
    let vw = shown
        .iter()
        .map(|s| value(s).len())
        .max()
        .unwrap_or(5)
        .min(48);
    println!("{:kw$}  {:vw$}  ORIGIN", "KEY", "VALUE");
    for s in &shown {
        println!("{:kw$}  {:vw$}  {}", s.key, value(s), origin(s));
    }
    Ok(())
}

fn json_entry(s: &Shown) -> serde_json::Value {
    // Settings values are TOML text that is JSON too; update.conf values
    // are plain strings.
    let value = match &s.value {
        None => serde_json::Value::Null,
        Some(v) if s.key.contains('.') => {
            serde_json::from_str(v).unwrap_or_else(|_| v.clone().into())
        }
        Some(v) => v.clone().into(),
    };
    serde_json::json!({
        "key": s.key,
        "value": value,
        "origin": s.origin.as_ref().map(|p| p.display().to_string()),
    })
}

/// `config check`: validates every file; prints what was read.
pub(crate) fn check(root: &Root, extra: Option<&Path>) -> anyhow::Result<()> {
    let (layers, _) = collect(root, extra)?;
    let files: Vec<String> = layers
        .node_files()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    if files.is_empty() {
        println!("configuration ok (no settings files: defaults)");
    } else {
        println!("configuration ok: {}", files.join(", "));
    }
    Ok(())
}

/// `config reference`: `docs/configuration.md`.
pub(crate) fn print_reference() {
    print!("{}", reference::markdown());
}
