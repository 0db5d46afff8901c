//! `update_engine_client -json` from the real daemon, validated against
//! `docs/status.schema.json` by Debian's `jsonschema` (the Python reference
//! implementation, an independent reader): idle with a deny list and a
//! scheduled check, after a failed check, and with an update staged.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::dbus_bus::{Policy, PrivateBus, client, output, spawn_agent, stderr, stdout, workspace};
use e2e::fixture::{self, BOARD, Node, USR_MIB};
use e2e::{OmahaServer, Reply};
use serde_json::{Value, json};
use update_agent::denylist::DenyList;

/// Debian's validator when installed there (a pyenv shim may shadow it).
fn jsonschema() -> Command {
    let debian = Path::new("/usr/bin/jsonschema");
    Command::new(if debian.exists() {
        debian
    } else {
        Path::new("jsonschema")
    })
}

/// Whether `text` matches the schema; the validator's complaint if not.
fn validate(text: &str, dir: &Path) -> Result<(), String> {
    let instance = dir.join("status.json");
    std::fs::write(&instance, text).unwrap();
    let v = output(
        jsonschema()
            .arg("-i")
            .arg(&instance)
            .arg(workspace().join("docs/status.schema.json")),
    );
    if v.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", stdout(&v), stderr(&v)))
    }
}

/// `-json`, checked against the schema; the parsed value.
fn status(address: &str, dir: &Path) -> Value {
    let o = output(&mut client(address, &["-json"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    if let Err(e) = validate(&text, dir) {
        panic!("-json does not match the schema:\n{e}\n{text}");
    }
    serde_json::from_str(&text).unwrap()
}

/// Polls `-json` until `ready` holds.
fn status_until(address: &str, dir: &Path, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = status(address, dir);
        if ready(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "never ready: {v:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn now() -> i64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    t.unwrap().as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_status_follows_its_schema_idle_failed_and_staged() {
    let server = OmahaServer::start().await;
    let node = Node::new(&server.update_url());
    // A check is scheduled in an hour (so next_check_time is set) and
    // never happens during the test.
    node.add_config("[schedule]\nfirst_check = \"1h\"\nfirst_check_fuzz = \"0s\"\n");
    DenyList::in_dir(&node.root().join("var/lib/update_engine"))
        .add("3500.0.0", "broke etcd", 1_700_000_000)
        .unwrap();
    let busdir = tempfile::tempdir().unwrap();
    let bus = PrivateBus::start(busdir.path(), Policy::Shipped);
    let started = now();
    let _daemon = spawn_agent(node.root(), &bus.address);
    let dir = tempfile::tempdir().unwrap();

    // Idle. The client waits for the engine to appear on the bus.
    let v = status_until(&bus.address, dir.path(), |v| {
        !v["next_check_time"].is_null()
    });
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["current_operation"], "UPDATE_STATUS_IDLE");
    assert_eq!(v["staged_version"], Value::Null);
    assert_eq!(v["last_error"], Value::Null);
    let next = v["next_check_time"].as_i64().unwrap();
    assert!((started + 3590..=now() + 3600).contains(&next), "{next}");
    assert_eq!(
        v["deny_list"],
        json!([{"version": "3500.0.0", "since": 1_700_000_000, "reason": "broke etcd"}])
    );
    let a = node.cgpt_pts(cgpt::Slot::A);
    assert_eq!(
        v["slots"],
        json!([
            {"label": "USR-A", "priority": a.0, "tries": a.1, "successful": a.2 == 1, "version": "3510.2.0"},
            {"label": "USR-B", "priority": 0, "tries": 0, "successful": false, "version": null},
        ])
    );

    // A failed check: the error decoded.
    server.push(Reply::Status(500));
    let o = output(&mut client(&bus.address, &["-check_for_update"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let v = status_until(&bus.address, dir.path(), |v| {
        !v["last_error"].is_null() && v["current_operation"] == "UPDATE_STATUS_IDLE"
    });
    let e = &v["last_error"];
    assert_eq!(e["name"], "OmahaHttpStatus(500)");
    assert_eq!(e["base_code"], 2500);
    assert_eq!(e["flags"], json!(["TestOmahaUrl"]));
    assert_eq!(
        e["code"].as_u64().unwrap(),
        2500 | u64::from(omaha::ErrorFlags::TEST_OMAHA_URL)
    );

    // An update staged: the new slot, its version, the staged version.
    let usr = fixture::image_bytes(9, (USR_MIB << 20) as usize);
    let payload = node.payload("3600.0.0", BOARD, &usr, b"kernel of 3600.0.0\n");
    server.offer_payload("3600.0.0", &payload);
    let o = output(&mut client(&bus.address, &["-update"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let v = status(&bus.address, dir.path());
    assert_eq!(v["current_operation"], "UPDATE_STATUS_UPDATED_NEED_REBOOT");
    assert_eq!(v["staged_version"], "3600.0.0");
    assert_eq!(v["last_error"], Value::Null, "a later success clears it");
    assert!(v["last_checked_time"].as_i64().unwrap() >= started);
    assert_eq!(
        v["slots"][1],
        json!({"label": "USR-B", "priority": 2, "tries": 1, "successful": false, "version": "3600.0.0"})
    );
    assert_eq!(v["slots"][0]["version"], "3510.2.0");

    // The validator is not a rubber stamp: a changed schema_version and a
    // slot with an unknown field are refused.
    let mut bad = v.clone();
    bad["schema_version"] = 2.into();
    assert!(validate(&bad.to_string(), dir.path()).is_err());
    let mut bad = v;
    bad["slots"][0]["extra"] = true.into();
    assert!(validate(&bad.to_string(), dir.path()).is_err());
}
