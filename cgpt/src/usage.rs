//! `cgpt`'s usage texts, in vboot cgpt's words where the command exists
//! there. In the library so that the man page and completions (`cargo run
//! -p e2e --bin gen-docs`) are generated from the text `cgpt` prints.

/// `cgpt` alone: the commands.
pub const TOP: &str = "
Usage: cgpt COMMAND [OPTIONS] DRIVE

Supported COMMANDs:

    create           Create or reset GPT headers and tables
    add              Add, edit or remove a partition entry
    boot             Edit the PMBR sector for legacy BIOSes
    show             Show partition table and entries
    repair           Repair damaged GPT headers and tables
    find             Locate a partition by its GUID
    prioritize       Reorder the priority of all USR (or kernel) partitions
    legacy           Switch between GPT and Legacy GPT
    next             Choose the next USR partition to boot, as GRUB's gptprio.next
    resize           Grow a partition into free space (after the disk grew)

DRIVE is a disk image, a whole-disk device, or a partition device such as
/dev/sda4 (meaning the disk /dev/sda with -i 4).

For more detailed usage on a specific command, use \"cgpt COMMAND -h\"

";

/// `cgpt add -h` (with the type aliases).
pub fn add() -> String {
    format!(
        "
Usage: cgpt add [OPTIONS] DRIVE

Add, edit, or remove a partition entry.

Options:
  -i NUM       Specify partition (default is next available)
  -b NUM       First block (a.k.a. start of partition)
  -s NUM       Size (in blocks)
  -t GUID      Partition Type GUID
  -u GUID      Partition Unique ID
  -l LABEL     Label
  -S NUM       set Successful flag (0|1)
  -T NUM       set Tries flag (0-15)
  -P NUM       set Priority flag (0-15)
  -R NUM       set Required flag (0|1)
  -B NUM       set Legacy Boot flag (0|1)
  -A NUM       set raw 16-bit attribute value (bits 48-63)

Use the -i option to modify an existing partition.
The -b, -s, and -t options must be given for new partitions.

The partition type may also be given as one of these aliases:

{}    coreos-usr  Flatcar/CoreOS USR (also flatcar-usr, coreos-rootfs)

Flatcar's aliases are accepted too: coreos-resize, coreos-reserved,
coreos-root-raid (and flatcar-*), bios, linux-data, linux-swap, linux-boot,
linux-home, linux-lvm, linux-raid, linux-reserved, mswin-data, chromeos-data.

",
        crate::guid::alias_help()
    )
}

/// `cgpt show -h`.
pub const SHOW: &str = "
Usage: cgpt show [OPTIONS] DRIVE

Display the GPT table.

Options:
  -n           Numeric output only.
  -v           Verbose output.
  -q           Quick output.
  -i NUM       Show specified partition only, with format:
                 -b  beginning sector
                 -s  partition size (in sectors)
                 -t  type GUID
                 -u  unique GUID
                 -l  label
                 -S  Successful flag
                 -T  Tries flag
                 -P  Priority flag
                 -R  Required flag
                 -B  Legacy Boot flag
                 -A  raw 16-bit attribute value (bits 48-63)
  -d           Debug output (including invalid headers)

";

/// `cgpt repair -h`.
pub const REPAIR: &str = "
Usage: cgpt repair [OPTIONS] DRIVE

Repair damaged GPT headers and tables.

Options:
  -v           Verbose

";

/// `cgpt prioritize -h`.
pub const PRIORITIZE: &str = "
Usage: cgpt prioritize [OPTIONS] DRIVE

Reorder the priority of all active USR partitions (or, on a disk without
any, ChromeOS kernel partitions), with no duplicates.

Options:
  -i NUM       Highest priority to partition NUM (default none)
  -P NUM       Highest priority value to use (default: number of groups)
  -f           Friends of the -i partition get the same priority

With no options this will keep the existing order but compact the
priorities.

";

/// `cgpt next -h`.
pub const NEXT: &str = "
Usage: cgpt next DRIVE

Choose the USR partition to boot exactly as Flatcar's GRUB gptprio.next does:
among USR partitions with tries > 0 or successful=1, the highest priority
(> 0) wins, ties going to the lowest index; its tries drop by one. Prints the
chosen partition's unique GUID (lower case). Fails when none is eligible,
and, since the table is read with GRUB's own rules, wherever GRUB would fail
to read it.

";

/// `cgpt find -h`.
pub const FIND: &str = "
Usage: cgpt find [OPTIONS] DRIVE

Find a partition by its UUID, label or type.

Options:
  -t GUID      Search for partitions of this type (or alias)
  -u GUID      Search for a partition with this unique ID
  -l LABEL     Search for a label
  -n           Print only the partition number
  -1           Fail unless there is exactly one match
  -v           Be verbose

";

/// `cgpt create -h`.
pub const CREATE: &str = "
Usage: cgpt create [OPTIONS] DRIVE

Create or reset an empty GPT.

Options:
  -z           Zero the sectors of the GPT table and entries
  -p NUM       Size (in blocks) of the disk to pad between the
                 primary GPT header and its entries, default 0

";

/// `cgpt boot -h`.
pub const BOOT: &str = "
Usage: cgpt boot [OPTIONS] DRIVE

Edit the PMBR sector for legacy BIOSes

Options:
  -i NUM       Set bootable partition
  -b FILE      Install bootloader code in the PMBR
  -p           Create legacy PMBR partition table

With no options, it will just print the PMBR boot guid

";

/// `cgpt legacy -h`.
pub const LEGACY: &str = "
Usage: cgpt legacy [OPTIONS] DRIVE

Switch GPT header signature to \"CHROMEOS\".

Options:
  -e           Switch GPT header signature back to \"EFI PART\"
  -p           Switch primary GPT header signature to \"IGNOREME\"

";

/// `cgpt resize -h`.
pub const RESIZE: &str = "
Usage: cgpt resize [OPTIONS] PARTITION

Resize the given partition if it has free space to grow into, moving the
backup GPT to the end of a grown disk first. The default minimum size to
grow by is 2MB. PARTITION is a partition device (/dev/sda9); for a disk
image give the image and -i NUM.

Options:
  -m NUM       Do nothing unless partition can grow by NUM bytes
  -i NUM       Partition number (for disk images)

";

/// Each command's name, one-line summary and usage text, in [`TOP`]'s
/// order.
pub fn commands() -> Vec<(&'static str, &'static str, String)> {
    TOP.lines()
        .filter_map(|l| {
            let l = l.strip_prefix("    ")?;
            let (name, about) = l.split_once(' ')?;
            let text = match name {
                "create" => CREATE.into(),
                "add" => add(),
                "boot" => BOOT.into(),
                "show" => SHOW.into(),
                "repair" => REPAIR.into(),
                "find" => FIND.into(),
                "prioritize" => PRIORITIZE.into(),
                "legacy" => LEGACY.into(),
                "next" => NEXT.into(),
                "resize" => RESIZE.into(),
                _ => return None,
            };
            Some((name, about.trim(), text))
        })
        .collect()
}
