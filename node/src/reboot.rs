//! The reboot call: logind's `Reboot(false)` through `busctl`, or a configured command.

use std::io;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

/// `org.freedesktop.login1.Manager.Reboot(false)` on the system bus.
pub const LOGIND_REBOOT: [&str; 8] = [
    "busctl",
    "call",
    "org.freedesktop.login1",
    "/org/freedesktop/login1",
    "org.freedesktop.login1.Manager",
    "Reboot",
    "b",
    "false",
];

/// [`LOGIND_REBOOT`] as an owned argv, the default reboot command.
pub fn logind_command() -> Vec<String> {
    LOGIND_REBOOT.iter().map(|s| s.to_string()).collect()
}

/// Why a reboot was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum RebootError {
    /// The argv is empty.
    #[error("no reboot command configured")]
    NoCommand,
    /// The command could not be started.
    #[error("reboot command {command:?}")]
    Spawn {
        /// The argv, joined with spaces.
        command: String,
        #[source]
        source: io::Error,
    },
    /// The command ran and failed.
    #[error("reboot command {command:?} exited with {status}")]
    Failed {
        /// The argv, joined with spaces.
        command: String,
        /// How it ended.
        status: ExitStatus,
    },
}

/// Runs the reboot command `argv` (program first) and waits for it; `Ok` once it was accepted
/// (the machine then goes down). Blocking: async callers run it on their blocking pool. The
/// command gets no stdin, so a prompt cannot hang the caller.
pub fn reboot(argv: &[String]) -> Result<(), RebootError> {
    let (program, args) = argv.split_first().ok_or(RebootError::NoCommand)?;
    let command = || argv.join(" ");
    let status = retry_text_busy(|| {
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .status()
    })
    .map_err(|source| RebootError::Spawn {
        command: command(),
        source,
    })?;
    if !status.success() {
        return Err(RebootError::Failed {
            command: command(),
            status,
        });
    }
    Ok(())
}

/// Runs `spawn` again for up to ~200 ms while it fails with ETXTBSY: an executable written a
/// moment ago can still be open for writing in a process forked meanwhile (by another thread
/// of ours, or by a package manager) until that process execs, which takes milliseconds.
pub fn retry_text_busy<T>(mut spawn: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    for _ in 0..20 {
        match spawn() {
            Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(Duration::from_millis(10));
            }
            r => return r,
        }
    }
    spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn reboot_reports_how_the_command_ended() {
        reboot(&sh("true")).unwrap();
        let err = reboot(&sh("exit 3")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "reboot command \"sh -c exit 3\" exited with exit status: 3"
        );
        let err = reboot(&["/nonexistent/reboot".to_string()]).unwrap_err();
        assert!(
            matches!(&err, RebootError::Spawn { source, .. } if source.kind() == io::ErrorKind::NotFound)
        );
        assert!(matches!(reboot(&[]), Err(RebootError::NoCommand)));
    }

    #[test]
    fn retry_text_busy_retries_only_etxtbsy() {
        let mut calls = 0;
        let r: io::Result<u8> = retry_text_busy(|| {
            calls += 1;
            if calls < 3 {
                Err(io::Error::from(io::ErrorKind::ExecutableFileBusy))
            } else {
                Ok(7)
            }
        });
        assert_eq!((r.unwrap(), calls), (7, 3));
        // What a failed exec returns: errno 26 is ETXTBSY on Linux.
        #[cfg(target_os = "linux")]
        assert_eq!(
            io::Error::from_raw_os_error(26).kind(),
            io::ErrorKind::ExecutableFileBusy
        );
        let mut calls = 0;
        let r: io::Result<u8> = retry_text_busy(|| {
            calls += 1;
            Err(io::Error::from(io::ErrorKind::NotFound))
        });
        assert_eq!((r.unwrap_err().kind(), calls), (io::ErrorKind::NotFound, 1));
    }

    #[test]
    fn logind_command_is_the_busctl_call() {
        assert_eq!(logind_command()[..2], ["busctl", "call"]);
        assert_eq!(logind_command().len(), LOGIND_REBOOT.len());
    }
}
