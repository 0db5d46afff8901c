//! The A/B slot model the update agent builds on: two USR partitions labelled
//! USR-A and USR-B, and the four verbs that move boot between them.

use std::fmt;
use std::str::FromStr;

use crate::attrs::Attributes;
use crate::disk::Disk;
use crate::entry::Entry;
use crate::error::Error;
use crate::grub;
use crate::guid::USR_TYPE;
use crate::ops;
use crate::table::{Gpt, WriteMode};

/// One of the two USR slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    A,
    B,
}

impl Slot {
    /// The GPT label Flatcar gives the slot.
    pub fn label(self) -> &'static str {
        match self {
            Slot::A => "USR-A",
            Slot::B => "USR-B",
        }
    }

    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// The kernel file name on the ESP (`vmlinuz-a`/`vmlinuz-b`).
    pub fn kernel_name(self) -> &'static str {
        match self {
            Slot::A => "vmlinuz-a",
            Slot::B => "vmlinuz-b",
        }
    }

    /// The slot a USR entry belongs to, from its label (as flatcar-postinst does).
    pub fn from_label(label: &str) -> Option<Slot> {
        match label {
            "USR-A" | "ROOT-A" => Some(Slot::A),
            "USR-B" | "ROOT-B" => Some(Slot::B),
            _ => None,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl FromStr for Slot {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "A" | "USR-A" => Ok(Slot::A),
            "B" | "USR-B" => Ok(Slot::B),
            _ => Err(format!("unknown slot {s:?} (expected A or B)")),
        }
    }
}

/// A slot's partition and its boot attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotState {
    pub slot: Slot,
    /// The GPT entry (index, unique GUID, extent, attributes).
    pub entry: Entry,
}

impl SlotState {
    /// Whether GRUB would consider it at all.
    pub fn bootable(&self) -> bool {
        let a = self.entry.attrs;
        a.priority() > 0 && (a.tries() > 0 || a.successful())
    }
}

/// Finds the USR-typed entry labelled for `slot`.
pub fn slot_state(gpt: &Gpt, slot: Slot) -> Result<SlotState, Error> {
    gpt.entries()
        .into_iter()
        .find(|e| e.is_usr() && Slot::from_label(&e.label) == Some(slot))
        .map(|entry| SlotState { slot, entry })
        .ok_or(Error::NoSlot(slot.label()))
}

/// The slot whose partition has the given unique GUID (the booted PARTUUID).
pub fn slot_by_guid(gpt: &Gpt, guid: &uuid::Uuid) -> Option<Slot> {
    gpt.entries()
        .into_iter()
        .find(|e| e.is_usr() && e.unique_guid == *guid)
        .and_then(|e| Slot::from_label(&e.label))
}

fn apply_prioritize(gpt: &mut Gpt, index: u32) -> Result<(), Error> {
    for (i, a) in ops::prioritize(&gpt.entries(), &USR_TYPE, Some(index), None, false) {
        gpt.set_attributes(i, a)?;
    }
    Ok(())
}

fn update<D: Disk>(
    disk: &mut D,
    slot: Slot,
    f: impl FnOnce(&mut Gpt, &SlotState) -> Result<(), Error>,
) -> Result<bool, Error> {
    let mut gpt = Gpt::read(disk)?;
    // Flatcar's scripts always repair first; so do we, but through the safe writer.
    if !gpt.health().is_clean() {
        gpt.repair(disk)?;
        gpt = Gpt::read(disk)?;
    }
    let state = slot_state(&gpt, slot)?;
    f(&mut gpt, &state)?;
    gpt.write(disk, WriteMode::RequireClean)
}

/// Makes `slot` unbootable before its contents are overwritten: P0 T0 S0.
pub fn mark_unbootable<D: Disk>(disk: &mut D, slot: Slot) -> Result<bool, Error> {
    update(disk, slot, |gpt, s| {
        gpt.set_attributes(s.entry.index, s.entry.attrs.with_pts(0, 0, false)?)
    })
}

/// flatcar-postinst: try `slot` once on the next boot (S0 T1, then prioritize it).
pub fn set_next<D: Disk>(disk: &mut D, slot: Slot) -> Result<bool, Error> {
    update(disk, slot, |gpt, s| {
        let mut a: Attributes = s.entry.attrs;
        a.set_successful(0)?;
        a.set_tries(1)?;
        gpt.set_attributes(s.entry.index, a)?;
        apply_prioritize(gpt, s.entry.index)
    })
}

/// flatcar-setgoodroot: `slot` booted and is healthy (S1 T0, then prioritize it).
/// Writes nothing when the slot is already good and on top.
pub fn mark_good<D: Disk>(disk: &mut D, slot: Slot) -> Result<bool, Error> {
    update(disk, slot, |gpt, s| {
        let mut a = s.entry.attrs;
        a.set_successful(1)?;
        a.set_tries(0)?;
        gpt.set_attributes(s.entry.index, a)?;
        apply_prioritize(gpt, s.entry.index)
    })
}

/// A slot failed its trial: priority 0 (GRUB never picks it again) and no tries.
pub fn mark_bad<D: Disk>(disk: &mut D, slot: Slot) -> Result<bool, Error> {
    update(disk, slot, |gpt, s| {
        let mut a = s.entry.attrs;
        a.set_priority(0)?;
        a.set_tries(0)?;
        a.set_successful(0)?;
        gpt.set_attributes(s.entry.index, a)
    })
}

/// Both slots' states.
pub fn read_slots<D: Disk>(disk: &mut D) -> Result<[SlotState; 2], Error> {
    let gpt = Gpt::read(disk)?;
    Ok([slot_state(&gpt, Slot::A)?, slot_state(&gpt, Slot::B)?])
}

/// Boots like GRUB: reads the table with GRUB's own rules (so a table GRUB
/// refuses is refused here too), picks the next USR partition and spends one
/// try. The write goes through the crash-safe writer, repairing a bad copy as
/// GRUB would; it is refused if vboot's rules see different entries than
/// GRUB's (we never write a table we would read differently from GRUB).
pub fn boot_next<D: Disk>(disk: &mut D) -> Result<Entry, Error> {
    let view = grub::read(disk)?;
    let choice = ops::choose_next(&view.used_entries())?;
    if let Some(a) = choice.new_attrs {
        let mut gpt = Gpt::read(disk)?;
        if gpt.original != view.entries {
            return Err(Error::ReadersDisagree);
        }
        gpt.set_attributes(choice.entry.index, a)?;
        gpt.write(disk, WriteMode::Repair)?;
    }
    Ok(choice.entry)
}
