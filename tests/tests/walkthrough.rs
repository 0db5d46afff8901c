//! `update-agent/README.md`'s five-command walkthrough, run as written: the
//! `sh` block after `<!-- walkthrough -->`, line by line, with three
//! substitutions only: the test's own binaries on PATH instead of step 1's
//! `cargo build --release`, a temporary directory for `/tmp/node`, and a
//! free port for 8090. What the text around it promises is checked too:
//! USR-B is tried once at the next boot (Debian's `cgpt` reads the disk),
//! and a second run says the update is already staged.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e::dbus_bus::{build_bins, workspace};

const MARKER: &str = "<!-- walkthrough -->";

/// The walkthrough's command lines (comments dropped).
fn walkthrough() -> Vec<String> {
    let readme = std::fs::read_to_string(workspace().join("update-agent/README.md")).unwrap();
    let after = readme.split_once(MARKER).expect("the walkthrough marker").1;
    let block = after
        .split_once("```sh\n")
        .and_then(|(_, b)| b.split_once("\n```"))
        .expect("a sh block after the marker")
        .0;
    block
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// A background command, killed when the test ends.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bash(line: &str, path: &str) -> Command {
    let mut c = Command::new("bash");
    c.args(["-euo", "pipefail", "-c", line])
        .current_dir(workspace())
        .env("PATH", path)
        .stdin(Stdio::null());
    c
}

fn run(line: &str, path: &str) -> Output {
    let o = bash(line, path).output().expect("run bash");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        o.status.success() || o.status.code() == Some(3),
        "`{line}` failed: {}\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    o
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing answers on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn the_update_agent_readme_walkthrough_works() {
    let lines = walkthrough();
    assert_eq!(lines.len(), 5, "five commands: {lines:#?}");
    assert!(
        lines[0].starts_with("cargo build --release"),
        "{}",
        lines[0]
    );
    let bins = build_bins(&[
        "--bin",
        "update-agent",
        "--bin",
        "payload",
        "--bin",
        "cgpt",
        "--bin",
        "omaha-test-server",
    ]);
    let path = format!("{}:{}", bins.display(), std::env::var("PATH").unwrap());
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("node");
    let port = free_port().to_string();
    let subst = |l: &str| {
        l.replace("/tmp/node", node.to_str().unwrap())
            .replace("8090", &port)
    };

    let mut server = None;
    let mut last = None;
    for line in &lines[1..] {
        let line = subst(line);
        if let Some(bg) = line.strip_suffix(" &") {
            let child = bash(&format!("exec {bg}"), &path)
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn");
            server = Some(Background(child));
            wait_for_port(port.parse().unwrap());
        } else {
            last = Some(run(&line, &path));
        }
    }
    assert!(server.is_some(), "the walkthrough starts a server");
    let out = last.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout.contains("UPDATE_STATUS_UPDATED_NEED_REBOOT 3600.0.0"),
        "{stdout}"
    );
    assert_eq!(pts(&node.join("disk.img"), "4"), (2, 1, 0), "USR-B");
    assert_eq!(pts(&node.join("disk.img"), "3"), (1, 0, 1), "USR-A");

    // Step 5 again: already staged, exit status 3.
    let again = run(&subst(&lines[4]), &path);
    assert_eq!(again.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&again.stdout).contains("already staged"));
}

/// Priority, tries, successful as Debian's `cgpt` reads them.
fn pts(disk: &Path, index: &str) -> (u8, u8, u8) {
    let get = |flag: &str| -> u8 {
        let out = Command::new("/usr/bin/cgpt")
            .args(["show", "-i", index, flag])
            .arg(disk)
            .output()
            .expect("run cgpt (apt-get install cgpt)");
        assert!(out.status.success(), "cgpt: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (get("-P"), get("-T"), get("-S"))
}
