//! A private D-Bus system bus for tests: `dbus-daemon` with the system
//! bus's default policy and the **shipped** `systemd/dbus/com.coreos.update1.conf`,
//! listening on a unix socket in a test directory. Plus helpers to run the
//! independent clients (`gdbus`, `busctl`), `update_engine_client`, and
//! commands as an unprivileged user.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The shipped bus policy.
pub fn shipped_policy() -> PathBuf {
    workspace().join("systemd/dbus/com.coreos.update1.conf")
}

/// Whether the tests run as root (CI does).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The uid/gid used as "an unprivileged user" when running as root.
pub const NOBODY: u32 = 65534;

/// How the policy is adapted for the test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// The shipped file as is. When not running as root, `user="root"` is
    /// replaced by the current user (who then plays root).
    Shipped,
    /// The shipped file with `user="core"` replaced by `user="nobody"`, so
    /// uid 65534 plays the `core` user (requires root).
    CoreIsNobody,
    /// The shipped file as is, plus only `<allow own>` for the current
    /// (non-root) user: the service can start and the current user is the
    /// unprivileged caller.
    OwnOnly,
}

/// A running private bus; killed on drop.
#[derive(Debug)]
pub struct PrivateBus {
    child: Child,
    /// The bus address (`unix:path=...`).
    pub address: String,
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl PrivateBus {
    /// Starts `dbus-daemon` in `dir` (made world-traversable so another uid
    /// can connect).
    pub fn start(dir: &Path, policy: Policy) -> Self {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let shipped = std::fs::read_to_string(shipped_policy()).expect("shipped policy");
        let me = current_user();
        let (policy_text, extra) = match policy {
            Policy::Shipped if is_root() => (shipped, String::new()),
            Policy::Shipped => (
                shipped.replace("user=\"root\"", &format!("user=\"{me}\"")),
                String::new(),
            ),
            Policy::CoreIsNobody => {
                assert!(is_root(), "CoreIsNobody needs root");
                (
                    shipped.replace("user=\"core\"", "user=\"nobody\""),
                    String::new(),
                )
            }
            Policy::OwnOnly => (
                shipped,
                format!("<policy user=\"{me}\"><allow own=\"com.coreos.update1\"/></policy>"),
            ),
        };
        // Test-only: the test's user may read the bus's own statistics
        // (`wait_for_match_rule`); nothing of the service's policy changes.
        let extra = format!(
            "{extra}<policy user=\"{me}\"><allow send_destination=\"org.freedesktop.DBus\" \
             send_interface=\"org.freedesktop.DBus.Debug.Stats\"/></policy>"
        );
        let policy_path = dir.join("com.coreos.update1.conf");
        std::fs::write(&policy_path, policy_text).unwrap();
        let socket = dir.join("system_bus_socket");
        let config = bus_config(&socket, &policy_path, &extra);
        let config_path = dir.join("bus.conf");
        std::fs::write(&config_path, config).unwrap();
        // `--print-address` writes the address once the bus listens: the
        // readiness signal (the socket file exists before that).
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config_path.display()))
            .arg("--nofork")
            .arg("--nopidfile")
            .arg("--print-address")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("dbus-daemon (Debian package dbus-daemon) must be installed");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read dbus-daemon's address");
        assert!(
            line.trim_end().starts_with("unix:"),
            "dbus-daemon did not start listening on {}: printed {line:?}",
            socket.display()
        );
        Self {
            child,
            address: format!("unix:path={}", socket.display()),
        }
    }
}

/// A system-bus configuration listening on `socket`, including the policy
/// file and `extra` rules.
fn bus_config(socket: &Path, policy: &Path, extra: &str) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
<allow user="*"/>
<deny own="*"/>
<deny send_type="method_call"/>
<allow send_type="signal"/>
<allow send_requested_reply="true" send_type="method_return"/>
<allow send_requested_reply="true" send_type="error"/>
<allow receive_type="method_call"/>
<allow receive_type="method_return"/>
<allow receive_type="error"/>
<allow receive_type="signal"/>
<allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
<allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
<allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
<deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
  </policy>
  <include>{policy}</include>
  {extra}
</busconfig>
"#,
        socket = socket.display(),
        policy = policy.display(),
    )
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prefixes `cmd` with `setpriv` to run as uid/gid 65534 without groups.
pub fn as_nobody(program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
        "--",
        program,
    ]);
    c
}

/// Runs `cmd` to completion (stdin closed).
pub fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("spawn")
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `gdbus call` on the service; `args` are the method's arguments in GVariant text.
pub fn gdbus_call(address: &str, method: &str, args: &[&str]) -> Command {
    gdbus_call_as("gdbus", address, method, args, false)
}

/// `gdbus call`, optionally as uid 65534.
pub fn gdbus_call_as(
    program: &str,
    address: &str,
    method: &str,
    args: &[&str],
    nobody: bool,
) -> Command {
    let mut c = if nobody {
        as_nobody(program)
    } else {
        Command::new(program)
    };
    c.args([
        "call",
        "--address",
        address,
        "--dest",
        "com.coreos.update1",
        "--object-path",
        "/com/coreos/update1",
        "--method",
        method,
    ]);
    c.args(args);
    c
}

/// Waits until a connection on the bus has a match rule containing
/// `needle`: a subscriber such as `-watch_for_updates` is ready only once
/// its AddMatch reached the bus (dbus-daemon's Debug.Stats interface says).
pub fn wait_for_match_rule(address: &str, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let o = output(Command::new("gdbus").args([
            "call",
            "--address",
            address,
            "--dest",
            "org.freedesktop.DBus",
            "--object-path",
            "/org/freedesktop/DBus",
            "--method",
            "org.freedesktop.DBus.Debug.Stats.GetAllMatchRules",
        ]));
        assert!(o.status.success(), "GetAllMatchRules: {}", stderr(&o));
        if stdout(&o).contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no match rule with {needle:?} after {timeout:?}: {}",
            stdout(&o)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A background process whose stdout lines are collected.
#[derive(Debug)]
pub struct LineReader {
    child: Child,
    rx: mpsc::Receiver<String>,
    /// Every line read so far.
    pub lines: Vec<String>,
}

impl LineReader {
    /// Spawns `cmd` with stdout piped.
    pub fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let out: ChildStdout = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx2.send(format!("stderr: {line}")).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            rx,
            lines: Vec::new(),
        }
    }

    /// Waits until a line satisfies `pred` (returns it) or `timeout` passes.
    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        if let Some(l) = self.lines.iter().find(|l| pred(l)) {
            return Some(l.clone());
        }
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    let hit = pred(&line);
                    self.lines.push(line.clone());
                    if hit {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Collects whatever arrived within `d`.
    pub fn drain_for(&mut self, d: Duration) {
        let _ = self.wait_for(d, |_| false);
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for LineReader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `update_engine_client`, built once per test binary with the same cargo
/// and profile as the tests (so it is never stale).
pub fn client_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_bin("update_engine_client"))
        .clone()
}

fn build_bin(name: &str) -> PathBuf {
    let bin = build_bins(&["-p", "update-agent", "--bin", name]).join(name);
    assert!(bin.exists(), "{} missing after build", bin.display());
    bin
}

/// `cargo build ARGS` with the same cargo, target directory and profile as
/// the tests (so the binaries are never stale); returns the directory the
/// binaries are in.
pub fn build_bins(args: &[&str]) -> PathBuf {
    // target/<profile>/deps/<test-binary>
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let target_dir = profile_dir.parent().unwrap().to_path_buf();
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace())
        .args(["build", "--quiet"])
        .args(args)
        .env("CARGO_TARGET_DIR", &target_dir);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("cargo build");
    assert!(status.success(), "cargo build {args:?} failed");
    profile_dir
}

/// `update_engine_client ARGS` against the bus at `address`.
/// Its connection retries (Flatcar's 4 × 10 s) are 4 × 20 ms here.
pub fn client(address: &str, args: &[&str]) -> Command {
    let mut c = Command::new(client_bin());
    c.env("DBUS_SYSTEM_BUS_ADDRESS", address)
        .env("UPDATE_ENGINE_CLIENT_RETRY_MS", "20")
        .args(args);
    c
}

/// `update_engine_client ARGS` as uid 65534.
pub fn client_as_nobody(address: &str, args: &[&str]) -> Command {
    let bin = client_bin();
    let mut c = as_nobody(bin.to_str().unwrap());
    c.env("DBUS_SYSTEM_BUS_ADDRESS", address)
        .env("UPDATE_ENGINE_CLIENT_RETRY_MS", "20")
        .args(args);
    c
}

/// The `update-agent` daemon binary, built like [`client_bin`].
pub fn agent_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_bin("update-agent")).clone()
}

/// A child process, killed and reaped when dropped (a failed test leaves
/// no daemon behind).
#[derive(Debug)]
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real daemon for the node at `root` on the bus at `address`, ready:
/// returned once it owns `com.coreos.update1`, with the `gdbus monitor`
/// (started before the daemon, so no signal is missed) for the caller.
pub fn start_agent(root: &Path, address: &str) -> (Killed, LineReader) {
    let mut monitor = LineReader::spawn(Command::new("gdbus").args([
        "monitor",
        "--address",
        address,
        "--dest",
        "com.coreos.update1",
    ]));
    let daemon = spawn_agent(root, address);
    monitor
        .wait_for(Duration::from_secs(30), |l| l.contains("is owned by"))
        .expect("the daemon owns com.coreos.update1");
    (daemon, monitor)
}

/// The real daemon for the node at `root`, serving D-Bus on `address`.
pub fn spawn_agent(root: &Path, address: &str) -> Killed {
    Killed(
        Command::new(agent_bin())
            .arg("--root")
            .arg(root)
            .args(["--bus-address", address])
            .spawn()
            .expect("spawn update-agent"),
    )
}
