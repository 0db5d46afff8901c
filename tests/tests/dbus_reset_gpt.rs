//! ResetStatus after an update reverts the GPT priorities (Flatcar leaves the
//! new slot prioritised), and Rollback boots the previous slot; both on a
//! disk image through the real `cgpt::slot` code, checked with GRUB's choice.

#[path = "dbus_common.rs"]
mod common;

use std::path::Path;
use std::time::Duration;

use cgpt::disk::FileDisk;
use cgpt::image::{self, Layout};
use cgpt::slot::{self, Slot};
use common::{Fixture, Setup};
use e2e::dbus_bus::{client, gdbus_call, output, stderr};
use update_agent::dbus::sim::BootDisk;
use update_agent::fsm::Operation;

/// The slot GRUB would boot next (on a copy, since booting spends a try).
fn grub_choice(img: &Path) -> Slot {
    let copy = img.with_extension("copy");
    std::fs::copy(img, &copy).unwrap();
    let entry = slot::boot_next(&mut FileDisk::open_rw(&copy).unwrap()).unwrap();
    Slot::from_label(&entry.label).unwrap()
}

fn priorities(img: &Path) -> (u8, u8) {
    let [a, b] = slot::read_slots(&mut FileDisk::open_ro(img).unwrap()).unwrap();
    (a.entry.attrs.priority(), b.entry.attrs.priority())
}

#[test]
fn reset_status_keeps_the_next_boot_on_the_booted_slot() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let layout = Layout::flatcar(8);
    image::create(&img, layout.disk_bytes(8), 512, &layout).unwrap();
    // Booted from USR-A, which is good.
    slot::mark_good(&mut FileDisk::open_rw(&img).unwrap(), Slot::A).unwrap();
    assert_eq!(grub_choice(&img), Slot::A);

    let f = Fixture::start(Setup {
        boot: Some(BootDisk {
            path: img.clone(),
            booted: Slot::A,
        }),
        ..Setup::default()
    });
    let o = output(&mut gdbus_call(
        f.address(),
        "com.coreos.update1.Manager.AttemptUpdate",
        &[],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
    f.wait_for(Operation::UpdatedNeedReboot, Duration::from_secs(20));
    // The install's commit point (postinst): USR-B boots next, once.
    slot::set_next(&mut FileDisk::open_rw(&img).unwrap(), Slot::B).unwrap();
    assert_eq!(grub_choice(&img), Slot::B, "staged update would boot");

    let o = output(&mut client(f.address(), &["-reset_status"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("ResetStatus succeeded"),
        "{}",
        stderr(&o)
    );
    assert_eq!(f.engine.state().operation(), Operation::Idle);
    assert!(!f.path("/run/update_engine_autoupdate_completed").exists());
    let (a, b) = priorities(&img);
    assert!(a > b, "USR-A priority {a} must be above USR-B {b}");
    assert_eq!(
        grub_choice(&img),
        Slot::A,
        "the next boot stays on the booted slot"
    );
    let [sa, _] = slot::read_slots(&mut FileDisk::open_ro(&img).unwrap()).unwrap();
    assert!(sa.entry.attrs.successful());

    // A second ResetStatus in IDLE is a no-op that succeeds (update_engine).
    let o = output(&mut client(f.address(), &["--reset_status"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(grub_choice(&img), Slot::A);
}

#[test]
fn rollback_refuses_an_empty_slot_and_boots_a_good_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let layout = Layout::flatcar(8);
    image::create(&img, layout.disk_bytes(8), 512, &layout).unwrap();
    slot::mark_good(&mut FileDisk::open_rw(&img).unwrap(), Slot::B).unwrap();
    let f = Fixture::start(Setup {
        boot: Some(BootDisk {
            path: img.clone(),
            booted: Slot::B,
        }),
        ..Setup::default()
    });
    let before = std::fs::read(&img).unwrap();
    // USR-A never booted successfully on a fresh image: refused, disk untouched.
    let mut fresh = slot::read_slots(&mut FileDisk::open_ro(&img).unwrap()).unwrap();
    if !fresh[0].entry.attrs.successful() {
        let o = output(&mut client(f.address(), &["-rollback"]));
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o).contains("USR-A has never booted successfully"),
            "{}",
            stderr(&o)
        );
        assert_eq!(std::fs::read(&img).unwrap(), before);
    }
    // USR-A was good before the update to USR-B: rollback boots it next.
    slot::mark_good(&mut FileDisk::open_rw(&img).unwrap(), Slot::A).unwrap();
    slot::mark_good(&mut FileDisk::open_rw(&img).unwrap(), Slot::B).unwrap();
    assert_eq!(grub_choice(&img), Slot::B);
    let o = output(&mut client(f.address(), &["-rollback"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(grub_choice(&img), Slot::A);
    fresh = slot::read_slots(&mut FileDisk::open_ro(&img).unwrap()).unwrap();
    assert_eq!(
        fresh[0].entry.attrs.tries(),
        1,
        "one try: GRUB falls back to USR-B if USR-A fails"
    );
}
