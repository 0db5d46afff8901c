//! Block-device queries (ioctls and sysfs), the only unsafe code of the crate.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

#[allow(unsafe_code)]
mod ioctl {
    // BLKSSZGET = _IO(0x12, 104), BLKGETSIZE64 = _IOR(0x12, 114, size_t).
    nix::ioctl_read_bad!(
        blksszget,
        nix::request_code_none!(0x12, 104),
        std::ffi::c_int
    );
    nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
    // BLKPG = _IO(0x12, 105), which takes a pointer despite its _IO number.
    nix::ioctl_write_ptr_bad!(
        blkpg,
        nix::request_code_none!(0x12, 105),
        super::BlkpgIoctlArg
    );
}

/// `struct blkpg_partition` of <linux/blkpg.h>.
#[repr(C)]
struct BlkpgPartition {
    start: i64,
    length: i64,
    pno: std::ffi::c_int,
    devname: [u8; 64],
    volname: [u8; 64],
}

/// `struct blkpg_ioctl_arg` of <linux/blkpg.h>.
#[repr(C)]
struct BlkpgIoctlArg {
    op: std::ffi::c_int,
    flags: std::ffi::c_int,
    datalen: std::ffi::c_int,
    data: *mut std::ffi::c_void,
}

/// BLKPG_RESIZE_PARTITION.
const BLKPG_RESIZE_PARTITION: std::ffi::c_int = 3;

/// Tells the kernel that partition `pno` of the whole-disk device `disk` now
/// spans `length` bytes from `start` (what Flatcar's cgpt does before writing, so
/// `extend-filesystems` sees the new size without a reboot).
pub fn resize_partition(disk: &File, pno: u32, start: u64, length: u64) -> io::Result<()> {
    let too_big = |_| io::Error::other("partition geometry does not fit the kernel's types");
    let mut part = BlkpgPartition {
        start: i64::try_from(start).map_err(too_big)?,
        length: i64::try_from(length).map_err(too_big)?,
        pno: std::ffi::c_int::try_from(pno).map_err(too_big)?,
        devname: [0; 64],
        volname: [0; 64],
    };
    let arg = BlkpgIoctlArg {
        op: BLKPG_RESIZE_PARTITION,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as std::ffi::c_int,
        data: (&raw mut part).cast(),
    };
    // SAFETY: `arg` and the `part` it points to live across the call; the kernel
    // only reads them.
    #[allow(unsafe_code)]
    unsafe { ioctl::blkpg(disk.as_raw_fd(), &arg) }.map_err(io::Error::from)?;
    Ok(())
}

/// The logical sector size of a block device.
pub fn logical_sector_size(file: &File) -> io::Result<u64> {
    let mut size: std::ffi::c_int = 0;
    // SAFETY: the fd is open for the lifetime of `file`; the kernel writes one int.
    #[allow(unsafe_code)]
    unsafe { ioctl::blksszget(file.as_raw_fd(), &mut size) }.map_err(io::Error::from)?;
    u64::try_from(size).map_err(|_| io::Error::other("negative sector size"))
}

/// The size in bytes of a block device.
pub fn size_bytes(file: &File) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: as above; the kernel writes one u64.
    #[allow(unsafe_code)]
    unsafe { ioctl::blkgetsize64(file.as_raw_fd(), &mut size) }.map_err(io::Error::from)?;
    Ok(size)
}

/// A drive argument resolved to the whole disk plus, for a partition device such
/// as `/dev/sda4`, the partition number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The whole disk (or the image file itself).
    pub disk: PathBuf,
    /// The partition number if a partition device was given.
    pub partition: Option<u32>,
}

/// Turns a partition block device into disk + number through sysfs (what Flatcar's
/// cgpt does with libblkid); anything else is returned as it is.
pub fn resolve(path: &Path) -> io::Result<Target> {
    resolve_in(Path::new("/sys/dev/block"), Path::new("/dev"), path)
}

fn resolve_in(sys_dev_block: &Path, dev_dir: &Path, path: &Path) -> io::Result<Target> {
    let meta = std::fs::metadata(path)?;
    if !meta.file_type().is_block_device() {
        return Ok(Target {
            disk: path.to_owned(),
            partition: None,
        });
    }
    let rdev = meta.rdev();
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    match resolve_sysfs(sys_dev_block, dev_dir, major, minor)? {
        Some((disk, partition)) => Ok(Target {
            disk,
            partition: Some(partition),
        }),
        None => Ok(Target {
            disk: path.to_owned(),
            partition: None,
        }),
    }
}

/// For a partition's device number, the whole disk's device node (under
/// `dev_dir`) and the partition number, read from `sys_dev_block`
/// (`/sys/dev/block`, or a test tree); `None` for a whole disk.
pub fn resolve_sysfs(
    sys_dev_block: &Path,
    dev_dir: &Path,
    major: u64,
    minor: u64,
) -> io::Result<Option<(PathBuf, u32)>> {
    let node = sys_dev_block.join(format!("{major}:{minor}"));
    let partition = match std::fs::read_to_string(node.join("partition")) {
        Ok(s) => s.trim().parse::<u32>().map_err(io::Error::other)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // .../block/sda/sda4 -> the parent directory names the whole disk.
    let real = std::fs::canonicalize(&node)?;
    let parent = real
        .parent()
        .and_then(|p| p.file_name())
        .ok_or_else(|| io::Error::other(format!("no parent disk for {major}:{minor}")))?;
    Ok(Some((dev_dir.join(parent), partition)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_pass_through() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let t = resolve(f.path()).unwrap();
        assert_eq!(
            t,
            Target {
                disk: f.path().to_owned(),
                partition: None
            }
        );
    }

    #[test]
    fn partition_numbers_come_from_sysfs() {
        // A fake sysfs: 259:4 is nvme0n1p4, partition 4 of nvme0n1; 259:0 the disk.
        let root = tempfile::tempdir().unwrap();
        let devices = root.path().join("devices/pci0/nvme/nvme0/nvme0n1");
        std::fs::create_dir_all(devices.join("nvme0n1p4")).unwrap();
        std::fs::write(devices.join("nvme0n1p4/partition"), "4\n").unwrap();
        let by_num = root.path().join("dev/block");
        std::fs::create_dir_all(&by_num).unwrap();
        std::os::unix::fs::symlink(devices.join("nvme0n1p4"), by_num.join("259:4")).unwrap();
        std::os::unix::fs::symlink(&devices, by_num.join("259:0")).unwrap();
        let dev = Path::new("/dev");
        assert_eq!(
            resolve_sysfs(&by_num, dev, 259, 4).unwrap(),
            Some((PathBuf::from("/dev/nvme0n1"), 4))
        );
        assert_eq!(resolve_sysfs(&by_num, dev, 259, 0).unwrap(), None);
    }

    #[test]
    fn missing_file_is_an_error() {
        assert!(resolve(Path::new("/nonexistent/disk.img")).is_err());
    }
}
