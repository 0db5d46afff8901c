//! Logged-in users: read from utmp (glibc's 384-byte `struct utmp`, `USER_PROCESS` records) and
//! warned on their terminals, as locksmithd broadcasts "System reboot in 5 minutes!".

use std::io::Write as _;
use std::path::{Path, PathBuf};

const RECORD: usize = 384;
const USER_PROCESS: i16 = 7;
const LINE: std::ops::Range<usize> = 8..40;
const USER: std::ops::Range<usize> = 44..76;

/// A login: user name and terminal (`pts/0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub user: String,
    pub line: String,
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Parses utmp records; trailing partial records are ignored.
pub fn parse_utmp(data: &[u8]) -> Vec<Login> {
    data.chunks_exact(RECORD)
        .filter(|r| i16::from_ne_bytes([r[0], r[1]]) == USER_PROCESS)
        .map(|r| Login {
            user: c_string(&r[USER]),
            line: c_string(&r[LINE]),
        })
        .filter(|l| !l.user.is_empty() && !l.line.is_empty())
        .collect()
}

/// Builds one utmp record (tests).
pub fn utmp_record(user: &str, line: &str) -> Vec<u8> {
    let mut r = vec![0u8; RECORD];
    r[0..2].copy_from_slice(&USER_PROCESS.to_ne_bytes());
    r[LINE.start..LINE.start + line.len()].copy_from_slice(line.as_bytes());
    r[USER.start..USER.start + user.len()].copy_from_slice(user.as_bytes());
    r
}

/// utmp and the terminals under a root.
#[derive(Debug, Clone)]
pub struct Users {
    utmp: PathBuf,
    dev: PathBuf,
}

impl Users {
    pub fn new(root: &Path) -> Self {
        Users {
            utmp: root.join("run/utmp"),
            dev: root.join("dev"),
        }
    }

    /// Who is logged in now (nobody when utmp is missing or unreadable).
    pub fn logged_in(&self) -> Vec<Login> {
        std::fs::read(&self.utmp)
            .map(|d| parse_utmp(&d))
            .unwrap_or_default()
    }

    /// Writes `message` to every logged-in terminal; returns the logins found.
    pub fn warn(&self, message: &str) -> Vec<Login> {
        let logins = self.logged_in();
        for l in &logins {
            if l.line.contains("..") {
                continue;
            }
            let tty = self.dev.join(&l.line);
            let written = std::fs::OpenOptions::new()
                .append(true)
                .open(&tty)
                .and_then(|mut f| {
                    f.write_all(format!("\r\nBroadcast message: {message}\r\n").as_bytes())
                });
            if let Err(e) = written {
                tracing::warn!(tty = %tty.display(), error = %e, "could not warn a logged-in user");
            }
        }
        logins
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_warns_user_processes_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("run")).unwrap();
        std::fs::create_dir_all(root.join("dev/pts")).unwrap();
        std::fs::write(root.join("dev/pts/0"), "").unwrap();
        let mut data = utmp_record("core", "pts/0");
        let mut boot = utmp_record("reboot", "~");
        boot[0] = 2; // BOOT_TIME
        data.extend(boot);
        data.extend([0u8; 10]);
        std::fs::write(root.join("run/utmp"), data).unwrap();
        let users = Users::new(root);
        let logins = users.warn("System reboot in 5 minutes!");
        assert_eq!(
            logins,
            [Login {
                user: "core".into(),
                line: "pts/0".into()
            }]
        );
        let tty = std::fs::read_to_string(root.join("dev/pts/0")).unwrap();
        assert!(tty.contains("System reboot in 5 minutes!"), "{tty:?}");
        assert!(Users::new(&root.join("nothing")).logged_in().is_empty());
    }
}
