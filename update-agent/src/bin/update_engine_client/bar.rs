//! The terminal progress bar of `-update` and `-watch_for_updates`: the
//! operation, the release's bytes done and in all, the rate and the time
//! left (indicatif computes the last two from the positions it is given).
//! Only on a terminal; elsewhere the callers print plain lines.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use update_agent::dbus::client::WireStatus;

/// `DOWNLOADING 3815.2.1 [####>----] 12.5 MiB/40.0 MiB 8.1 MiB/s ETA 3s`,
/// the bar as wide as the terminal leaves room for.
pub(crate) const TEMPLATE: &str =
    "{msg} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}";

/// A bar on one of the terminal's streams.
pub(crate) struct Bar(ProgressBar);

impl Bar {
    /// On stdout (`-update`, whose status blocks go there too).
    pub(crate) fn stdout() -> Self {
        Self::on(ProgressDrawTarget::stdout())
    }

    /// On stderr (`-watch_for_updates`, whose log lines go there).
    pub(crate) fn stderr() -> Self {
        Self::on(ProgressDrawTarget::stderr())
    }

    fn on(target: ProgressDrawTarget) -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), target);
        // The template is a constant, checked by a unit test.
        let style = ProgressStyle::with_template(TEMPLATE)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("#>-");
        bar.set_style(style);
        Bar(bar)
    }

    /// Shows `s`.
    pub(crate) fn show(&self, s: &WireStatus) {
        let (done, total) = bytes(s);
        self.0.set_length(total);
        self.0.set_position(done);
        self.0.set_message(label(s));
    }

    /// Runs `f` (which prints) with the bar cleared, then redraws it.
    pub(crate) fn suspend(&self, f: impl FnOnce()) {
        self.0.suspend(f);
    }

    /// Leaves the last state on screen and ends the line.
    pub(crate) fn finish(&self) {
        self.0.finish();
        println!();
    }
}

/// Bytes of the release done and in all: `new_size` (every image of the
/// release) and the progress fraction the engine reports of it.
pub(crate) fn bytes(s: &WireStatus) -> (u64, u64) {
    let total = u64::try_from(s.new_size).unwrap_or(0);
    let p = if s.progress.is_finite() {
        s.progress.clamp(0.0, 1.0)
    } else {
        0.0
    };
    ((p * total as f64).round() as u64, total)
}

/// The operation without its prefix, and the version when known.
pub(crate) fn label(s: &WireStatus) -> String {
    let op = s
        .current_operation
        .strip_prefix("UPDATE_STATUS_")
        .unwrap_or(&s.current_operation);
    if s.new_version == "0.0.0" {
        op.to_string()
    } else {
        format!("{op} {}", s.new_version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(op: &str, progress: f64, size: i64) -> WireStatus {
        WireStatus {
            last_checked_time: 0,
            progress,
            current_operation: op.into(),
            new_version: "3815.2.1".into(),
            new_size: size,
        }
    }

    #[test]
    fn bytes_and_label_from_the_status() {
        let s = status("UPDATE_STATUS_DOWNLOADING", 0.25, 4_000_000);
        assert_eq!(bytes(&s), (1_000_000, 4_000_000));
        assert_eq!(label(&s), "DOWNLOADING 3815.2.1");
        assert_eq!(bytes(&status("UPDATE_STATUS_IDLE", f64::NAN, -1)), (0, 0));
        assert_eq!(bytes(&status("X", 7.0, 10)), (10, 10));
        let idle = WireStatus {
            new_version: "0.0.0".into(),
            ..status("UPDATE_STATUS_IDLE", 0.0, 0)
        };
        assert_eq!(label(&idle), "IDLE");
    }

    #[test]
    fn the_template_is_valid() {
        assert!(ProgressStyle::with_template(TEMPLATE).is_ok());
    }
}
