//! The gate's decisions as pure functions of the slot table and the check
//! results; the executor in [`super`] carries them out.

use cgpt::{Slot, SlotState};

/// What the slot table says before any check runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The booted slot is already good and nothing failed: no check, no write.
    AlreadyGood,
    /// The booted slot is good, but the other slot was given its one try and never
    /// blessed: GRUB fell back to us. The other slot must be marked bad and its
    /// version denied.
    RolledBack { failed: Slot },
    /// The booted slot is on trial (successful=0): run the checks.
    OnTrial,
}

/// A slot GRUB was told to try once (tries=1 set by the install, spent by GRUB)
/// and that nobody blessed: priority > 0, tries 0, successful 0.
fn spent_trial(s: &SlotState) -> bool {
    let a = s.entry.attrs;
    a.priority() > 0 && a.tries() == 0 && !a.successful()
}

/// Classifies the boot from the booted slot and the other slot.
pub fn start(booted: &SlotState, other: &SlotState) -> Start {
    if !booted.entry.attrs.successful() {
        Start::OnTrial
    } else if spent_trial(other) {
        Start::RolledBack { failed: other.slot }
    } else {
        Start::AlreadyGood
    }
}

/// What to do after the checks ran on a slot on trial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every required check passed: successful=1, tries=0, prioritize.
    Bless,
    /// A check failed and the other slot holds a verified image: mark the booted
    /// slot bad (priority 0), make the other slot the next boot, deny the
    /// version, reboot.
    FallBack { to: Slot },
    /// A check failed but there is nothing verified to fall back to. Marking the
    /// booted slot bad would leave GRUB with no bootable slot (it aborts instead
    /// of falling back), so the slot is kept bootable and the failure reported.
    NoFallback,
}

/// Decides after the checks: `failures` is empty when every required check passed.
pub fn verdict(failures: &[String], other: &SlotState) -> Verdict {
    if failures.is_empty() {
        Verdict::Bless
    } else if other.entry.attrs.successful() {
        Verdict::FallBack { to: other.slot }
    } else {
        Verdict::NoFallback
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cgpt::{Attributes, Entry};

    fn state(slot: Slot, p: u8, t: u8, s: bool) -> SlotState {
        SlotState {
            slot,
            entry: Entry {
                index: if slot == Slot::A { 3 } else { 4 },
                type_guid: cgpt::guid::USR_TYPE,
                unique_guid: cgpt::guid::USR_A_UUID,
                first_lba: 0,
                last_lba: 0,
                attrs: Attributes(0).with_pts(p, t, s).unwrap(),
                label: slot.label().into(),
            },
        }
    }

    #[test]
    fn start_table() {
        use Slot::{A, B};
        // (booted P T S, other P T S) -> start
        let rows = [
            ((2, 0, false), (1, 0, true), Start::OnTrial),
            ((2, 0, true), (1, 0, true), Start::AlreadyGood),
            ((1, 0, true), (0, 0, false), Start::AlreadyGood),
            // GRUB spent B's try, B never got blessed, GRUB fell back to A.
            ((1, 0, true), (2, 0, false), Start::RolledBack { failed: B }),
            // B still has its try left (the node has not rebooted yet): not a rollback.
            ((1, 0, true), (2, 1, false), Start::AlreadyGood),
            // B was already marked bad: nothing left to do.
            ((1, 0, true), (0, 0, false), Start::AlreadyGood),
        ];
        for (b, o, want) in rows {
            let got = start(&state(A, b.0, b.1, b.2), &state(B, o.0, o.1, o.2));
            assert_eq!(got, want, "booted {b:?} other {o:?}");
        }
    }

    #[test]
    fn verdict_table() {
        let good_other = state(Slot::A, 1, 0, true);
        let empty_other = state(Slot::A, 0, 0, false);
        assert_eq!(verdict(&[], &good_other), Verdict::Bless);
        assert_eq!(verdict(&[], &empty_other), Verdict::Bless);
        let failed = vec!["required check 10-etcd exited 1".to_string()];
        assert_eq!(
            verdict(&failed, &good_other),
            Verdict::FallBack { to: Slot::A }
        );
        assert_eq!(verdict(&failed, &empty_other), Verdict::NoFallback);
    }
}
