//! Which USR slot is booted and where the other one is.
//!
//! update_engine takes the device mounted at `/usr` (through dm-verity) and
//! swaps the last character of its name between `3` and `4`. We instead:
//!
//! 1. find the `/usr` mount in `/proc/self/mountinfo` (its `major:minor`);
//! 2. follow device-mapper (`/sys/dev/block/M:m/slaves/`) down to the backing
//!    partition;
//! 3. map that partition to its disk and partition number through sysfs
//!    (`partition` file, parent directory), as `cgpt::blockdev` does;
//! 4. read the disk's GPT: the booted entry must be USR-typed and labelled
//!    `USR-A`/`USR-B`; the target is the other USR-typed slot of the same
//!    disk, found by label and type.
//!
//! Every path is under the configured [`Root`], so tests use a fake
//! mountinfo and sysfs. `install.slot_device` + `install.booted_slot`
//! override detection (tests and the demo use a disk image file).
//!
//! The target partition is written through the whole disk at the
//! partition's byte offset ([`PartitionStorage`]), which works the same for a
//! block device and an image file.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use cgpt::{FileDisk, Gpt, Slot};

use crate::config::Root;
use crate::config::settings::Settings;

/// Where the update goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotPlan {
    /// The whole disk (host path).
    pub disk: PathBuf,
    /// The running slot.
    pub booted: Slot,
    /// The slot to write.
    pub target: Slot,
    /// Byte offset of the target partition in `disk`.
    pub target_offset: u64,
    /// Byte length of the target partition.
    pub target_len: u64,
    /// Byte offset and length of the booted partition.
    pub booted_extent: (u64, u64),
    /// Kernel directory on the ESP (host path).
    pub kernel_dir: PathBuf,
}

impl SlotPlan {
    /// `vmlinuz-a`/`vmlinuz-b` for the target.
    pub fn target_kernel(&self) -> PathBuf {
        self.kernel_dir.join(self.target.kernel_name())
    }

    /// The running slot's kernel file.
    pub fn booted_kernel(&self) -> PathBuf {
        self.kernel_dir.join(self.booted.kernel_name())
    }
}

/// Why the slots could not be determined.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    /// No `/usr` line in mountinfo.
    #[error("/usr is not a mount point in {}", .0.display())]
    NoUsrMount(PathBuf),
    /// A sysfs or mountinfo file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The device under /usr is not a partition or has odd sysfs data.
    #[error("cannot resolve the device of /usr: {0}")]
    Resolve(String),
    /// The GPT could not be read.
    #[error("reading the GPT of {}", disk.display())]
    Gpt {
        /// The disk.
        disk: PathBuf,
        /// cgpt's error.
        #[source]
        source: cgpt::Error,
    },
    /// The booted partition is not a USR-A/USR-B partition.
    #[error("partition {index} of {} is not a USR-A/USR-B partition", disk.display())]
    NotUsr {
        /// The disk.
        disk: PathBuf,
        /// The partition number.
        index: u32,
    },
    /// `slot_device` without `booted_slot`.
    #[error("install.slot_device needs install.booted_slot")]
    NoBootedSlot,
}

impl SlotError {
    /// A stable name for logs and `LastError`.
    pub fn error_kind(&self) -> &'static str {
        match self {
            Self::NoUsrMount(_) => "no_usr_mount",
            Self::Read { .. } => "sysfs_read",
            Self::Resolve(_) => "device_resolve",
            Self::Gpt { .. } => "gpt_read",
            Self::NotUsr { .. } => "not_usr",
            Self::NoBootedSlot => "no_booted_slot",
        }
    }
}

fn read(path: &Path) -> Result<String, SlotError> {
    std::fs::read_to_string(path).map_err(|source| SlotError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The `major:minor` of the filesystem mounted at `/usr` (the last such
/// line wins, as the last mount covers the earlier ones).
pub fn usr_devno(mountinfo: &str) -> Option<(u32, u32)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let devno = fields.nth(2)?;
            let mount_point = fields.nth(1)?;
            (mount_point == "/usr").then_some(devno)
        })
        .next_back()
        .and_then(|devno| {
            let (a, b) = devno.split_once(':')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
}

/// Follows device-mapper devices down to the partition: a dm device
/// (dm-verity for /usr) has exactly one entry in `slaves/`.
fn backing_devno(root: &Root, mut devno: (u32, u32)) -> Result<(u32, u32), SlotError> {
    for _ in 0..8 {
        let node = root.join(format!("/sys/dev/block/{}:{}", devno.0, devno.1));
        let slaves = node.join("slaves");
        let names: Vec<String> = match std::fs::read_dir(&slaves) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(devno),
            Err(source) => {
                return Err(SlotError::Read {
                    path: slaves,
                    source,
                });
            }
        };
        match names.as_slice() {
            [] => return Ok(devno),
            [one] => {
                let dev = read(&root.join(format!("/sys/class/block/{one}/dev")))?;
                let (a, b) = dev
                    .trim()
                    .split_once(':')
                    .ok_or_else(|| SlotError::Resolve(format!("bad dev file for {one}")))?;
                devno = (
                    a.parse().map_err(|_| SlotError::Resolve(dev.clone()))?,
                    b.parse().map_err(|_| SlotError::Resolve(dev.clone()))?,
                );
            }
            many => {
                return Err(SlotError::Resolve(format!(
                    "/usr is on a device-mapper device with {} backing devices",
                    many.len()
                )));
            }
        }
    }
    Err(SlotError::Resolve("device-mapper nesting too deep".into()))
}

/// The disk (host path under `root`) and partition number of a partition's
/// device number.
fn partition_of(root: &Root, devno: (u32, u32)) -> Result<(PathBuf, u32), SlotError> {
    let sys = root.join("/sys/dev/block");
    let found =
        cgpt::blockdev::resolve_sysfs(&sys, &root.join("/dev"), devno.0.into(), devno.1.into())
            .map_err(|source| SlotError::Read {
                path: sys.join(format!("{}:{}", devno.0, devno.1)),
                source,
            })?;
    found.ok_or_else(|| {
        SlotError::Resolve(format!(
            "block device {}:{} under /usr is not a partition",
            devno.0, devno.1
        ))
    })
}

/// Works out the booted and target slots.
pub fn detect(root: &Root, settings: &Settings) -> Result<SlotPlan, SlotError> {
    let kernel_dir = kernel_dir(root, settings);
    if let Some(dev) = &settings.slot_device {
        let booted = settings.booted_slot.ok_or(SlotError::NoBootedSlot)?;
        return plan_for(root.join(dev), Booted::Slot(booted), kernel_dir);
    }
    let mountinfo_path = root.join("/proc/self/mountinfo");
    let mountinfo = read(&mountinfo_path)?;
    let devno = usr_devno(&mountinfo).ok_or(SlotError::NoUsrMount(mountinfo_path))?;
    let part = backing_devno(root, devno)?;
    let (disk, index) = partition_of(root, part)?;
    plan_for(disk, Booted::Index(index), kernel_dir)
}

/// `/boot/flatcar`, or `/boot/coreos` when a legacy kernel is there (as
/// update_engine does).
fn kernel_dir(root: &Root, settings: &Settings) -> PathBuf {
    let configured = root.join(&settings.kernel_dir);
    if settings.kernel_dir == Path::new(Settings::DEFAULT_KERNEL_DIR) {
        let legacy = root.join("/boot/coreos");
        if legacy.join("vmlinuz-a").exists() || legacy.join("vmlinuz-b").exists() {
            return legacy;
        }
    }
    configured
}

enum Booted {
    Slot(Slot),
    Index(u32),
}

fn plan_for(disk: PathBuf, booted: Booted, kernel_dir: PathBuf) -> Result<SlotPlan, SlotError> {
    let gpt_err = |source| SlotError::Gpt {
        disk: disk.clone(),
        source,
    };
    let mut d = FileDisk::open_ro(&disk).map_err(|source| {
        gpt_err(cgpt::Error::Io {
            context: "open".into(),
            source,
        })
    })?;
    let gpt = Gpt::read(&mut d).map_err(gpt_err)?;
    let booted = match booted {
        Booted::Slot(s) => s,
        Booted::Index(index) => gpt
            .entries()
            .into_iter()
            .find(|e| e.index == index && e.is_usr())
            .and_then(|e| Slot::from_label(&e.label))
            .ok_or_else(|| SlotError::NotUsr {
                disk: disk.clone(),
                index,
            })?,
    };
    let ss = gpt.geometry().sector_size;
    let extent = |slot: Slot| -> Result<(u64, u64), SlotError> {
        let e = cgpt::slot::slot_state(&gpt, slot).map_err(gpt_err)?.entry;
        Ok((e.first_lba * ss, (e.last_lba + 1 - e.first_lba) * ss))
    };
    let booted_extent = extent(booted)?;
    let target = booted.other();
    let (target_offset, target_len) = extent(target)?;
    Ok(SlotPlan {
        disk,
        booted,
        target,
        target_offset,
        target_len,
        booted_extent,
        kernel_dir,
    })
}

/// The boot disk and the slot this boot runs from: the one place of the
/// slot operations outside the install's commit point (used by the daemon,
/// the D-Bus service and the test engine alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootDisk {
    /// The disk (or image) holding the GPT.
    pub path: PathBuf,
    /// The booted USR slot.
    pub booted: Slot,
}

/// Why a [`BootDisk`] operation failed or was refused.
#[derive(Debug, thiserror::Error)]
pub enum BootDiskError {
    /// The GPT could not be read or written.
    #[error("GPT of {}", disk.display())]
    Gpt {
        /// The disk.
        disk: PathBuf,
        /// cgpt's error.
        #[source]
        source: cgpt::Error,
    },
    /// Rollback to a slot that never booted successfully (it may be empty).
    #[error("{0} has never booted successfully; refusing to roll back to it")]
    NeverBooted(&'static str),
}

impl SlotPlan {
    /// The boot disk this plan was made for.
    pub fn boot_disk(&self) -> BootDisk {
        BootDisk {
            path: self.disk.clone(),
            booted: self.booted,
        }
    }
}

impl BootDisk {
    /// Undoes a staged slot switch: the other slot is made unbootable
    /// (P0 T0 S0, `cgpt::slot::mark_unbootable`), so the next boot stays on
    /// the booted slot and the half-trusted target is never tried. This is
    /// the one revert: ResetStatus, a failed commit and the daemon use it.
    pub fn revert_staged(&self) -> Result<(), BootDiskError> {
        let mut disk = self.open()?;
        cgpt::slot::mark_unbootable(&mut disk, self.booted.other())
            .map(drop)
            .map_err(|e| self.gpt(e))
    }

    /// Marks the booted slot good and prioritised (Flatcar's
    /// `flatcar-setgoodroot`); false when it already was.
    pub fn mark_good(&self) -> Result<bool, BootDiskError> {
        let mut disk = self.open()?;
        cgpt::slot::mark_good(&mut disk, self.booted).map_err(|e| self.gpt(e))
    }

    /// Boots the other slot next, once (`set_next`: S0 T1 and prioritised,
    /// so GRUB falls back to this slot if it fails). Refused when the other
    /// slot never booted successfully (it may be empty).
    pub fn rollback(&self) -> Result<(), BootDiskError> {
        let mut disk = self.open()?;
        let other = self.booted.other();
        let [a, b] = cgpt::slot::read_slots(&mut disk).map_err(|e| self.gpt(e))?;
        let state = if other == Slot::A { a } else { b };
        if !state.entry.attrs.successful() {
            return Err(BootDiskError::NeverBooted(other.label()));
        }
        cgpt::slot::set_next(&mut disk, other)
            .map(drop)
            .map_err(|e| self.gpt(e))
    }

    fn gpt(&self, source: cgpt::Error) -> BootDiskError {
        BootDiskError::Gpt {
            disk: self.path.clone(),
            source,
        }
    }

    fn open(&self) -> Result<FileDisk, BootDiskError> {
        FileDisk::open_rw(&self.path).map_err(|source| {
            self.gpt(cgpt::Error::Io {
                context: "open".into(),
                source,
            })
        })
    }
}

/// One partition of a disk, as `payload` storage: positioned I/O shifted by
/// the partition offset and bounded by its length.
#[derive(Debug)]
pub struct PartitionStorage {
    file: File,
    offset: u64,
    len: u64,
}

impl PartitionStorage {
    /// Opens `disk` read-only for the partition at `offset` of `len` bytes
    /// (a delta's source: the booted slot, never written).
    pub fn open_ro(disk: &Path, offset: u64, len: u64) -> io::Result<Self> {
        let file = std::fs::File::open(disk)?;
        Ok(Self { file, offset, len })
    }

    /// Opens `disk` for writing the partition at `offset` of `len` bytes.
    pub fn open(disk: &Path, offset: u64, len: u64) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(disk)?;
        Ok(Self { file, offset, len })
    }

    fn check(&self, offset: u64, n: usize) -> io::Result<u64> {
        let end = offset.checked_add(n as u64);
        match end {
            Some(end) if end <= self.len => Ok(self.offset + offset),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "access at {offset}+{n} is outside the {}-byte partition",
                    self.len
                ),
            )),
        }
    }
}

impl payload::Storage for PartitionStorage {
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let at = self.check(offset, buf.len())?;
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, at)
    }
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let at = self.check(offset, buf.len())?;
        std::os::unix::fs::FileExt::write_all_at(&self.file, buf, at)
    }
    fn capacity(&mut self) -> io::Result<Option<u64>> {
        Ok(Some(self.len))
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use payload::Storage;

    const MOUNTINFO: &str = "\
22 1 8:9 / / rw,relatime shared:1 - ext4 /dev/sda9 rw
23 22 254:0 / /usr ro,relatime shared:2 - ext4 /dev/mapper/usr ro
24 22 0:21 / /proc rw shared:3 - proc proc rw
";

    #[test]
    fn mountinfo_usr() {
        assert_eq!(usr_devno(MOUNTINFO), Some((254, 0)));
        assert_eq!(usr_devno("22 1 8:9 / / rw - ext4 /dev/sda9 rw\n"), None);
        assert_eq!(usr_devno("garbage\n\n1 2\n"), None);
    }

    /// A fake node: /usr on dm-0 (verity) over sda4 (USR-B) of an image.
    fn fake_node(booted_index: u32) -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let img = root.join("/dev/sda");
        std::fs::create_dir_all(img.parent().unwrap()).unwrap();
        let layout = cgpt::image::Layout::flatcar(4);
        cgpt::image::create(&img, layout.disk_bytes(4), 512, &layout).unwrap();
        std::fs::create_dir_all(root.join("/proc/self")).unwrap();
        std::fs::write(root.join("/proc/self/mountinfo"), MOUNTINFO).unwrap();
        let devices = root.join("/sys/devices/pci0/ata1/block/sda");
        let part = devices.join(format!("sda{booted_index}"));
        std::fs::create_dir_all(&part).unwrap();
        std::fs::write(part.join("partition"), format!("{booted_index}\n")).unwrap();
        let dm = root.join("/sys/devices/virtual/block/dm-0");
        std::fs::create_dir_all(dm.join("slaves")).unwrap();
        std::os::unix::fs::symlink(&part, dm.join(format!("slaves/sda{booted_index}"))).unwrap();
        let by_num = root.join("/sys/dev/block");
        std::fs::create_dir_all(&by_num).unwrap();
        std::os::unix::fs::symlink(&dm, by_num.join("254:0")).unwrap();
        std::os::unix::fs::symlink(&part, by_num.join(format!("8:{booted_index}"))).unwrap();
        let class = root.join(format!("/sys/class/block/sda{booted_index}"));
        std::fs::create_dir_all(&class).unwrap();
        std::fs::write(class.join("dev"), format!("8:{booted_index}\n")).unwrap();
        (dir, root)
    }

    #[test]
    fn detects_through_dm_verity() {
        for (index, booted) in [(3, Slot::A), (4, Slot::B)] {
            let (_dir, root) = fake_node(index);
            let plan = detect(&root, &Settings::default()).unwrap();
            assert_eq!(plan.disk, root.join("/dev/sda"));
            assert_eq!(plan.booted, booted);
            assert_eq!(plan.target, booted.other());
            // Layout::flatcar(4): ESP 8 MiB at 1 MiB, BIOS 1 MiB, USR-A 4 MiB, USR-B 4 MiB.
            let a = 10 << 20;
            let b = 14 << 20;
            let want = if booted == Slot::A { b } else { a };
            assert_eq!(plan.target_offset, want);
            assert_eq!(plan.target_len, 4 << 20);
            assert_eq!(
                plan.target_kernel(),
                root.join("/boot/flatcar")
                    .join(booted.other().kernel_name())
            );
        }
    }

    #[test]
    fn non_usr_partition_is_refused() {
        let (_dir, root) = fake_node(6);
        let err = detect(&root, &Settings::default()).unwrap_err();
        assert_eq!(err.error_kind(), "not_usr", "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "partition 6 of {} is not a USR-A/USR-B partition",
                root.join("/dev/sda").display()
            )
        );
    }

    #[test]
    fn override_needs_booted_slot() {
        let (_dir, root) = fake_node(3);
        let mut s = Settings {
            slot_device: Some("/dev/sda".into()),
            ..Settings::default()
        };
        assert_eq!(
            detect(&root, &s).unwrap_err().error_kind(),
            "no_booted_slot"
        );
        s.booted_slot = Some(Slot::B);
        let plan = detect(&root, &s).unwrap();
        assert_eq!((plan.booted, plan.target), (Slot::B, Slot::A));
    }

    #[test]
    fn partition_storage_is_bounded() {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(100).unwrap();
        let mut s = PartitionStorage::open(f.path(), 10, 20).unwrap();
        s.write_all_at(b"abc", 17).unwrap();
        assert!(s.write_all_at(b"abcd", 17).is_err());
        assert_eq!(s.capacity().unwrap(), Some(20));
        let mut buf = [0u8; 3];
        s.read_exact_at(&mut buf, 17).unwrap();
        assert_eq!(&buf, b"abc");
        assert_eq!(&std::fs::read(f.path()).unwrap()[27..30], b"abc");
    }
}
