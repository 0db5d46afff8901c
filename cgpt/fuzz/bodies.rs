//! Fuzz bodies, shared by the libFuzzer targets and the corpus replay test
//! (`tests/fuzz_corpus.rs`).
#![allow(dead_code)]

use cgpt::disk::MemDisk;
use cgpt::{Gpt, WriteMode, grub};

const SS: usize = 512;
/// PMBR, two headers, two 32-sector arrays: the smallest disk the readers take.
const MIN_SECTORS: usize = 68;
/// The part of the input that lands at the start of the disk (PMBR, primary
/// header and entries); the rest lands at the end, so both copies are in reach
/// of inputs far smaller than a disk.
const HEAD: usize = 34 * SS;

/// Input layout: byte 0 picks the disk size (68..=131 sectors) and byte 1 the
/// partition a verb acts on; the rest is the first 34 sectors, then the tail.
pub fn disk_from(data: &[u8]) -> Option<(MemDisk, u32)> {
    let (&size, rest) = data.split_first()?;
    let (&part, rest) = rest.split_first()?;
    let sectors = MIN_SECTORS + usize::from(size % 64);
    let mut img = vec![0u8; sectors * SS];
    let (head, tail) = rest.split_at(rest.len().min(HEAD));
    img[..head.len()].copy_from_slice(head);
    let tail = &tail[..tail.len().min(img.len() - HEAD)];
    let at = img.len() - tail.len();
    img[at..].copy_from_slice(tail);
    Some((MemDisk(img), u32::from(part % 130)))
}

/// Reads with both rule sets and runs every writing verb on copies; checks
/// that what the crash-safe writer leaves is read back the same by both.
pub fn read_gpt(data: &[u8]) {
    let Some((disk, part)) = disk_from(data) else {
        return;
    };
    if let Ok(gpt) = Gpt::read(&mut disk.clone()) {
        let _ = gpt.health().to_string();
        let _ = gpt.entries();
        let _ = gpt.entry(part);
        let mut d = disk.clone();
        if gpt.repair(&mut d).is_ok() {
            let back = Gpt::read(&mut d).expect("a repaired table reads back");
            assert!(back.health().is_clean(), "repair left {}", back.health());
        }
        let mut g = gpt.clone();
        if let Ok(e) = g.used_entry(part) {
            let mut a = e.attrs;
            let _ = a.set_tries(1);
            if g.set_attributes(part, a).is_ok() {
                let _ = g.write(&mut disk.clone(), WriteMode::Repair);
            }
        }
    }
    let view = grub::read(&mut disk.clone());
    if let Ok(v) = &view {
        let _ = v.used_entries();
    }
    let mut d = disk.clone();
    if let Ok(chosen) = cgpt::slot::boot_next(&mut d) {
        assert!(view.is_ok(), "next chose a slot GRUB would not read");
        // Whatever next wrote, GRUB still reads and sees the same entry.
        let after = grub::read(&mut d).expect("GRUB reads what next wrote");
        assert!(
            after
                .used_entries()
                .iter()
                .any(|e| e.unique_guid == chosen.unique_guid)
        );
    }
    // A disk that grew by a few sectors: resize must not panic either.
    let mut grown = disk.0.clone();
    grown.resize(grown.len() + usize::from(data[0] % 8) * SS * 8, 0);
    let _ = cgpt::resize::grow(&mut MemDisk(grown), part, 0, |_| Ok(()));
    let _ = cgpt::create::legacy(&mut disk.clone(), cgpt::create::LegacyMode::ChromeOs);
}
