//! Usage texts, in vboot cgpt's words where the command exists there.

pub const TOP: &str = "
Usage: cgpt COMMAND [OPTIONS] DRIVE

Supported COMMANDs:

    add              Add, edit or remove a partition entry
    show             Show partition table and entries
    repair           Repair damaged GPT headers and tables
    find             Locate a partition by its GUID
    prioritize       Reorder the priority of all USR (or kernel) partitions
    next             Choose the next USR partition to boot, as GRUB's gptprio.next

DRIVE is a disk image, a whole-disk device, or a partition device such as
/dev/sda4 (meaning the disk /dev/sda with -i 4).

For more detailed usage on a specific command, use \"cgpt COMMAND -h\"

";

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

",
        cgpt::guid::alias_help()
    )
}

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

pub const REPAIR: &str = "
Usage: cgpt repair [OPTIONS] DRIVE

Repair damaged GPT headers and tables.

Options:
  -v           Verbose

";

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

pub const NEXT: &str = "
Usage: cgpt next DRIVE

Choose the USR partition to boot exactly as Flatcar's GRUB gptprio.next does:
among USR partitions with tries > 0 or successful=1, the highest priority
(> 0) wins, ties going to the lowest index; its tries drop by one. Prints the
chosen partition's unique GUID (lower case). Fails when none is eligible.

";

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
