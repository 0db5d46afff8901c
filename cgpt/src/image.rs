//! Creating Flatcar-like disk images (sparse files) for the demo and for tests.
//!
//! Built with the `gpt` crate: creating a fresh table has no ordering or
//! byte-preservation constraints, so the crate serves here.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::Path;

use gpt::disk::LogicalBlockSize;
use gpt::partition::Partition;
use gpt::partition_types::{OperatingSystem, Type};
use uuid::Uuid;

use crate::attrs::Attributes;
use crate::guid;

/// Errors creating an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("creating {path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("writing the GPT")]
    Gpt(#[from] gpt::GptError),
    #[error("layout does not fit: {0}")]
    Layout(String),
}

/// One partition of a [`Layout`].
#[derive(Debug, Clone)]
pub struct PartSpec {
    pub index: u32,
    pub label: &'static str,
    pub type_guid: Uuid,
    pub unique_guid: Uuid,
    /// Size in MiB; 0 = the rest of the disk.
    pub size_mib: u64,
    pub attrs: Attributes,
}

/// A disk layout: partitions placed in order at 1 MiB boundaries from 1 MiB on.
#[derive(Debug, Clone)]
pub struct Layout {
    pub disk_guid: Uuid,
    pub parts: Vec<PartSpec>,
}

impl Layout {
    /// Flatcar's layout scaled down (the reference test image of section 9), with
    /// USR slots of `usr_mib` MiB; a fresh image: USR-A P1 T0 S1, USR-B all zero.
    pub fn flatcar(usr_mib: u64) -> Layout {
        let p = |index, label, ty: u128, uu: u128, size_mib, attrs| PartSpec {
            index,
            label,
            type_guid: Uuid::from_u128(ty),
            unique_guid: Uuid::from_u128(uu),
            size_mib,
            attrs: Attributes(attrs),
        };
        Layout {
            disk_guid: Uuid::from_u128(1),
            parts: vec![
                p(
                    1,
                    "EFI-SYSTEM",
                    0xC12A7328_F81F_11D2_BA4B_00A0C93EC93B,
                    0x11111111_1111_1111_1111_111111111111,
                    8,
                    0,
                ),
                p(
                    2,
                    "BIOS-BOOT",
                    0x21686148_6449_6E6F_744E_656564454649,
                    0x22222222_2222_2222_2222_222222222222,
                    1,
                    0,
                ),
                p(
                    3,
                    "USR-A",
                    guid::USR_TYPE.as_u128(),
                    guid::USR_A_UUID.as_u128(),
                    usr_mib,
                    0x0101 << 48,
                ),
                p(
                    4,
                    "USR-B",
                    guid::USR_TYPE.as_u128(),
                    guid::USR_B_UUID.as_u128(),
                    usr_mib,
                    0,
                ),
                p(
                    6,
                    "OEM",
                    0x0FC63DAF_8483_4772_8E79_3D69D8477DE4,
                    0x66666666_6666_6666_6666_666666666666,
                    8,
                    0,
                ),
                p(
                    7,
                    "OEM-CONFIG",
                    0xC95DC21A_DF0E_4340_8D7B_26CBFA9A03E0,
                    0x77777777_7777_7777_7777_777777777777,
                    4,
                    0,
                ),
                p(
                    9,
                    "ROOT",
                    0x3884DD41_8582_4404_B9A8_E9B84F2DF50E,
                    0x99999999_9999_9999_9999_999999999999,
                    0,
                    0,
                ),
            ],
        }
    }

    /// The disk size that leaves `root_mib` for the last partition.
    pub fn disk_bytes(&self, root_mib: u64) -> u64 {
        let fixed: u64 = self
            .parts
            .iter()
            .map(|p| {
                if p.size_mib == 0 {
                    root_mib
                } else {
                    p.size_mib
                }
            })
            .sum();
        // 1 MiB in front, 1 MiB behind for the backup table.
        (fixed + 2) << 20
    }
}

/// Creates (or overwrites) `path` as a sparse image of `bytes` with `layout`.
pub fn create(
    path: &Path,
    bytes: u64,
    sector_size: u64,
    layout: &Layout,
) -> Result<(), ImageError> {
    let io = |source| ImageError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io)?;
    file.set_len(bytes).map_err(io)?;
    let lb = match sector_size {
        512 => LogicalBlockSize::Lb512,
        4096 => LogicalBlockSize::Lb4096,
        other => {
            return Err(ImageError::Layout(format!(
                "unsupported sector size {other}"
            )));
        }
    };
    let mbr = gpt::mbr::ProtectiveMBR::with_lb_size(
        u32::try_from(bytes / sector_size - 1).unwrap_or(u32::MAX),
    );
    let mut file = file;
    mbr.overwrite_lba0(&mut file)
        .map_err(|e| ImageError::Layout(e.to_string()))?;
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(lb)
        .change_partition_count(true)
        .create_from_device(file, Some(layout.disk_guid))?;

    let mib = (1u64 << 20) / sector_size;
    let sectors = bytes / sector_size;
    let last_usable = sectors - 1 - (16384 / sector_size) - 1;
    let mut next = mib;
    let mut parts = BTreeMap::new();
    for i in 1..=128u32 {
        parts.insert(i, Partition::zero());
    }
    for p in &layout.parts {
        let len = if p.size_mib == 0 {
            last_usable + 1 - next
        } else {
            p.size_mib * mib
        };
        if len == 0 || next + len - 1 > last_usable {
            return Err(ImageError::Layout(format!(
                "partition {} ({}) does not fit",
                p.index, p.label
            )));
        }
        parts.insert(
            p.index,
            Partition {
                part_type_guid: Type {
                    guid: p.type_guid,
                    os: OperatingSystem::None,
                },
                part_guid: p.unique_guid,
                first_lba: next,
                last_lba: next + len - 1,
                flags: p.attrs.0,
                name: p.label.to_string(),
            },
        );
        next += len;
    }
    disk.update_partitions(parts)?;
    let file = disk.write()?;
    file.sync_all().map_err(io)?;
    Ok(())
}
