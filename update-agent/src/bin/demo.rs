//! `cargo run --release --bin demo`: a local walk-through of the A/B life cycle on a
//! generated GPT disk image in a temporary directory. Needs nothing but cargo and
//! touches nothing outside its temporary directory.
//!
//! Today it drives the slot logic of the `cgpt` crate directly (install into the
//! inactive slot, flip the attributes, "reboot" through GRUB's gptprio rules, bless
//! or fall back). It grows into the full agent-against-Omaha demo as the agent lands.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use cgpt::image::{Layout, create};
use cgpt::slot::{self, SlotState};
use cgpt::{FileDisk, Slot};

const USR_MIB: u64 = 16;

fn main() -> Result<()> {
    let fail_health = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--fail-health") => true,
        Some(other) => bail!("unknown argument {other:?} (the only option is --fail-health)"),
    };
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let img = dir.path().join("disk.img");
    let layout = Layout::flatcar(USR_MIB);
    create(&img, layout.disk_bytes(16), 512, &layout).context("creating the disk image")?;
    let mut disk = FileDisk::open_rw(&img)?;

    step(
        1,
        &format!(
            "Created a Flatcar-like GPT disk image {} (sparse, 56 MiB)",
            img.display()
        ),
    );
    table(&mut disk)?;
    let booted = boot(&mut disk)?;
    say(&format!(
        "The bootloader (GRUB gptprio rules) boots {booted}."
    ));

    let target = booted.other();
    step(
        2,
        &format!("Installing version 2.0.0 into the inactive slot {target}"),
    );
    slot::mark_unbootable(&mut disk, target)?;
    say(&format!(
        "{target} made unbootable (P0 T0 S0) before the first byte is written."
    ));
    let written = write_image(&img, &mut disk, target, b"release 2.0.0")?;
    say(&format!(
        "Wrote {} MiB into {target} and read it back: every byte matches.",
        written >> 20
    ));
    slot::set_next(&mut disk, target)?;
    say(&format!(
        "Commit point: {target} gets tries=1 successful=0 and the top priority."
    ));
    table(&mut disk)?;

    step(3, "Reboot");
    let booted = boot(&mut disk)?;
    say(&format!("GRUB picks {booted} and spends its one try."));
    table(&mut disk)?;

    step(4, "Health gate on the new slot");
    if fail_health {
        say("A required check fails (--fail-health): the slot is marked bad, the node reboots.");
        slot::mark_bad(&mut disk, booted)?;
        let back = boot(&mut disk)?;
        say(&format!(
            "GRUB falls back to {back}; {booted} stays unbootable."
        ));
        if back == booted {
            bail!("fallback failed: the bad slot was booted again");
        }
    } else {
        say("All required checks pass: the slot is marked good (successful=1, tries=0).");
        slot::mark_good(&mut disk, booted)?;
        let again = boot(&mut disk)?;
        say(&format!(
            "Next boot: GRUB picks {again} again; {} stays as the fallback.",
            booted.other()
        ));
    }

    step(5, "Final slot table");
    table(&mut disk)?;
    say(&format!(
        "Everything happened in {}; it is removed now.",
        dir.path().display()
    ));
    Ok(())
}

fn step(n: u32, text: &str) {
    println!("\n[{n}] {text}");
}

fn say(text: &str) {
    println!("    {text}");
}

fn boot(disk: &mut FileDisk) -> Result<Slot> {
    let entry = slot::boot_next(disk).context("the bootloader found no bootable USR slot")?;
    Slot::from_label(&entry.label).context("booted partition is not USR-A or USR-B")
}

fn table(disk: &mut FileDisk) -> Result<()> {
    println!(
        "    {:<6} {:>5} {:>8} {:>5} {:>10}  PARTUUID",
        "slot", "part", "priority", "tries", "successful"
    );
    for SlotState { slot, entry } in slot::read_slots(disk)? {
        let a = entry.attrs;
        println!(
            "    {:<6} {:>5} {:>8} {:>5} {:>10}  {}",
            slot.label(),
            entry.index,
            a.priority(),
            a.tries(),
            u8::from(a.successful()),
            entry.unique_guid
        );
    }
    Ok(())
}

/// Fills the slot's partition with a recognisable image and verifies it by reading
/// it back (the real agent streams a signed payload here).
fn write_image(img: &Path, disk: &mut FileDisk, slot: Slot, tag: &[u8]) -> Result<u64> {
    let [a, b] = slot::read_slots(disk)?;
    let entry = if slot == Slot::A { a.entry } else { b.entry };
    let file = OpenOptions::new().read(true).write(true).open(img)?;
    let start = entry.first_lba * 512;
    let len = entry.sectors() * 512;
    let block: Vec<u8> = tag.iter().cycle().take(1 << 20).copied().collect();
    for off in (0..len).step_by(block.len()) {
        file.write_all_at(&block, start + off)?;
    }
    file.sync_data()?;
    let mut back = vec![0u8; block.len()];
    for off in (0..len).step_by(block.len()) {
        file.read_exact_at(&mut back, start + off)?;
        if back != block {
            bail!("read-back mismatch at byte {off} of {slot}");
        }
    }
    Ok(len)
}
