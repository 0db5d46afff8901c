//! Health checks: executables in `health.d/{required,wanted}` directories and
//! systemd units that must be active.
//!
//! Directories are searched in order and a later one masks an earlier file of
//! the same name (`/etc` over `/usr/lib`, as systemd does), so an admin can
//! replace or disable (empty file or symlink to /dev/null) a vendor check.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tracing::{info, warn};

/// One check executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// File name (sort key and what logs show).
    pub name: String,
    /// Where it lives.
    pub path: PathBuf,
}

/// How a check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    Passed,
    Failed { code: Option<i32>, output: String },
    TimedOut,
    NotRunnable(String),
}

/// Lists the checks of `dirs`, sorted by name; later directories mask earlier ones.
/// A missing directory has no checks; a masked check (empty file or /dev/null) is
/// dropped.
pub fn discover(dirs: &[PathBuf]) -> std::io::Result<Vec<Check>> {
    let mut by_name = BTreeMap::new();
    for dir in dirs {
        let read = match std::fs::read_dir(dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in read {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            by_name.insert(
                name.clone(),
                Check {
                    name,
                    path: entry.path(),
                },
            );
        }
    }
    Ok(by_name.into_values().filter(|c| !masked(&c.path)).collect())
}

fn masked(path: &Path) -> bool {
    std::fs::canonicalize(path).is_ok_and(|p| p == Path::new("/dev/null"))
        || std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0)
}

/// The last bytes of a check's output, for the log and the failure reason.
const OUTPUT_TAIL: usize = 2048;

fn spawn(check: &Check) -> std::io::Result<tokio::process::Child> {
    tokio::process::Command::new(&check.path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
}

/// Runs one check with a deadline; its output (stdout and stderr together) is
/// kept for the log.
pub async fn run(check: &Check, timeout: Duration) -> CheckOutcome {
    let executable = std::fs::metadata(&check.path)
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if !executable {
        return CheckOutcome::NotRunnable(format!(
            "{} is not an executable file",
            check.path.display()
        ));
    }
    // Retried briefly on ETXTBSY (a check written a moment ago); the sleep
    // blocks this task for at most ~200 ms, and only in that rare case.
    let child = ab_node::retry_text_busy(|| spawn(check));
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return CheckOutcome::NotRunnable(format!("cannot run {}: {e}", check.path.display()));
        }
    };
    let (mut out, mut err) = (
        child.stdout.take().expect("piped"),
        child.stderr.take().expect("piped"),
    );
    let collect = async {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let _ = tokio::join!(out.read_to_end(&mut a), err.read_to_end(&mut b));
        a.extend_from_slice(&b);
        let status = child.wait().await;
        (status, a)
    };
    match tokio::time::timeout(timeout, collect).await {
        Err(_) => CheckOutcome::TimedOut,
        Ok((Err(e), _)) => {
            CheckOutcome::NotRunnable(format!("waiting for {}: {e}", check.path.display()))
        }
        Ok((Ok(status), output)) if status.success() => {
            info!(check = %check.name, "health check passed");
            let _ = output;
            CheckOutcome::Passed
        }
        Ok((Ok(status), output)) => {
            let text = String::from_utf8_lossy(&output);
            let tail: String = text
                .chars()
                .rev()
                .take(OUTPUT_TAIL)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            CheckOutcome::Failed {
                code: status.code(),
                output: tail.trim().to_string(),
            }
        }
    }
}

/// Words for a failed outcome (`None` when it passed).
pub fn describe(kind: &str, name: &str, outcome: &CheckOutcome) -> Option<String> {
    match outcome {
        CheckOutcome::Passed => None,
        CheckOutcome::Failed {
            code: Some(c),
            output,
        } if output.is_empty() => Some(format!("{kind} check {name} exited {c}")),
        CheckOutcome::Failed {
            code: Some(c),
            output,
        } => Some(format!("{kind} check {name} exited {c}: {output}")),
        CheckOutcome::Failed { code: None, .. } => {
            Some(format!("{kind} check {name} was killed by a signal"))
        }
        CheckOutcome::TimedOut => Some(format!("{kind} check {name} timed out")),
        CheckOutcome::NotRunnable(why) => Some(format!("{kind} check {name}: {why}")),
    }
}

/// Runs every check of `checks` in order and returns the failures in words.
pub async fn run_all(kind: &str, checks: &[Check], timeout: Duration) -> Vec<String> {
    let mut failures = Vec::new();
    for c in checks {
        let outcome = run(c, timeout).await;
        if let Some(why) = describe(kind, &c.name, &outcome) {
            warn!(check = %c.name, kind, reason = %why, "health check failed");
            failures.push(why);
        }
    }
    failures
}

/// Asks systemd whether units are active, through a configurable command
/// (`systemctl` by default) so tests can answer for it.
#[derive(Debug, Clone)]
pub struct UnitProbe {
    /// The command and leading arguments; `is-active --quiet UNIT` is appended.
    pub command: Vec<String>,
}

impl UnitProbe {
    /// Whether `unit` is enabled (`systemctl is-enabled --quiet`), `None`
    /// when the command cannot run.
    pub async fn is_enabled(&self, unit: &str) -> Option<bool> {
        self.ask("is-enabled", unit).await
    }

    /// Whether `unit` is active (the command exits 0).
    pub async fn is_active(&self, unit: &str) -> bool {
        self.ask("is-active", unit).await == Some(true)
    }

    /// `systemctl VERB --quiet UNIT`: whether it exits 0, `None` when it
    /// cannot run.
    async fn ask(&self, verb: &str, unit: &str) -> Option<bool> {
        let (prog, args) = self.command.split_first()?;
        tokio::process::Command::new(prog)
            .args(args)
            .args([verb, "--quiet", unit])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .ok()
            .map(|s| s.success())
    }

    /// The units of `units` that are not active.
    pub async fn inactive(&self, units: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for u in units {
            if !self.is_active(u).await {
                out.push(u.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn later_directories_mask_earlier_ones() {
        let root = tempfile::tempdir().unwrap();
        let (usr, etc) = (root.path().join("usr"), root.path().join("etc"));
        std::fs::create_dir_all(&usr).unwrap();
        std::fs::create_dir_all(&etc).unwrap();
        script(&usr, "20-b", "exit 0");
        script(&usr, "10-a", "exit 0");
        script(&usr, "30-masked", "exit 1");
        std::os::unix::fs::symlink("/dev/null", etc.join("30-masked")).unwrap();
        let over = script(&etc, "20-b", "exit 0");
        let found = discover(&[usr.clone(), etc, root.path().join("missing")]).unwrap();
        let names: Vec<_> = found.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["10-a", "20-b"]);
        assert_eq!(found[1].path, over);
    }

    #[tokio::test]
    async fn outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let t = Duration::from_secs(5);
        let ok = Check {
            name: "ok".into(),
            path: script(dir.path(), "ok", "exit 0"),
        };
        assert_eq!(run(&ok, t).await, CheckOutcome::Passed);
        let bad = Check {
            name: "bad".into(),
            path: script(dir.path(), "bad", "echo etcd unhealthy >&2; exit 3"),
        };
        assert_eq!(
            describe("required", "bad", &run(&bad, t).await).unwrap(),
            "required check bad exited 3: etcd unhealthy"
        );
        let slow = Check {
            name: "slow".into(),
            path: script(dir.path(), "slow", "sleep 5"),
        };
        assert_eq!(
            run(&slow, Duration::from_millis(200)).await,
            CheckOutcome::TimedOut
        );
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "not a program").unwrap();
        let p = Check {
            name: "plain".into(),
            path: plain,
        };
        assert!(matches!(run(&p, t).await, CheckOutcome::NotRunnable(_)));
        let failures = run_all("required", &[ok, bad, p], t).await;
        assert_eq!(failures.len(), 2, "{failures:?}");
    }

    #[tokio::test]
    async fn unit_probe_uses_the_command() {
        let dir = tempfile::tempdir().unwrap();
        // A stand-in for systemctl: only "good.service" is active.
        let fake = script(dir.path(), "systemctl", r#"[ "$3" = good.service ]"#);
        let probe = UnitProbe {
            command: vec![fake.display().to_string()],
        };
        assert!(probe.is_active("good.service").await);
        let units = vec!["good.service".to_string(), "bad.service".to_string()];
        assert_eq!(
            probe.inactive(&units).await,
            vec!["bad.service".to_string()]
        );
        let missing = UnitProbe {
            command: vec!["/nonexistent/systemctl".into()],
        };
        assert!(
            !missing.is_active("good.service").await,
            "an unusable probe never says active"
        );
    }
}
