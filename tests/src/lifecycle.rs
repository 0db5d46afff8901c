//! What changes on a node across a "reboot" of its disk image, for the life
//! cycle tests and the demo: GRUB's gptprio rules pick the slot, the node comes
//! up with that slot's `/usr` (its release file), a new boot id and an empty
//! `/run`, and the agent's settings name the booted slot.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use cgpt::Slot;

use crate::fixture::{BOARD, Node};

/// Writes an executable shell script at node path `path`.
pub fn script(node: &Node, path: &str, body: &str) {
    let p = node.path(path);
    std::fs::create_dir_all(p.parent().expect("a directory")).expect("mkdir");
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Installs the stand-ins the gate calls: a `systemctl` for which every unit is
/// active, and a reboot command that only appends to `/reboots.log`.
pub fn install_stand_ins(node: &Node) {
    script(node, "/test-bin/systemctl", "exit 0");
    let log = node.path("/reboots.log");
    script(
        node,
        "/test-bin/reboot",
        &format!("echo reboot >> {}", log.display()),
    );
}

/// How many reboots the gate asked for.
pub fn reboots_requested(node: &Node) -> usize {
    std::fs::read_to_string(node.path("/reboots.log")).map_or(0, |s| s.lines().count())
}

/// Adds a health check executable (`kind` is `required` or `wanted`).
pub fn add_check(node: &Node, kind: &str, name: &str, body: &str) {
    script(
        node,
        &format!("/etc/update-agent/health.d/{kind}/{name}"),
        body,
    );
}

/// Points the agent at the booted slot and the gate at the stand-ins.
pub fn configure(node: &Node, booted: Slot) {
    let bin: PathBuf = node.path("/test-bin");
    node.add_config(&format!(
        "[install]\nbooted_slot = \"{booted:?}\"\n\n[health]\nsystemctl = [\"{0}/systemctl\"]\n\
         reboot_command = [\"{0}/reboot\"]\nsettle_timeout_secs = 5\ncheck_timeout_secs = 5\n",
        bin.display()
    ));
}

/// Reboots the node: returns the slot GRUB chose. `version_of` gives the release
/// each slot's `/usr` holds; `boot` numbers the boot (for the boot id).
pub fn reboot(
    node: &Node,
    boot: u32,
    version_of: impl Fn(Slot) -> String,
) -> Result<Slot, cgpt::Error> {
    let mut disk = cgpt::FileDisk::open_rw(&node.disk).map_err(|source| cgpt::Error::Io {
        context: format!("opening {}", node.disk.display()),
        source,
    })?;
    let entry = cgpt::slot::boot_next(&mut disk)?;
    let slot = Slot::from_label(&entry.label).expect("USR-A or USR-B");
    let w = |path: &str, text: String| std::fs::write(node.path(path), text).expect("write");
    w(
        "/usr/share/flatcar/release",
        format!(
            "FLATCAR_RELEASE_VERSION={}\nFLATCAR_RELEASE_BOARD={BOARD}\n",
            version_of(slot)
        ),
    );
    w(
        "/proc/sys/kernel/random/boot_id",
        format!("3a2f4d8e-0000-4000-8000-{boot:012}\n"),
    );
    let _ = std::fs::remove_dir_all(node.path("/run"));
    configure(node, slot);
    Ok(slot)
}
