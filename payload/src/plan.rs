//! A validated, version-independent view of a manifest. Every structural rule
//! is checked here, before the first byte is written: extents inside the
//! partitions, no overlapping destinations, contiguous data offsets, sizes
//! under the caps, hashes present.

use crate::error::{PayloadError, Result};
use crate::header::Limits;
use crate::proto::{self, InstallOperation, ManifestV1, ManifestV2, ReleaseInfo};
use prost::Message;

mod validate;

/// Minor version of full payloads.
pub const MINOR_FULL: u32 = 0;
/// Minor version our delta payloads use (ZERO, SOURCE_* and source hashes).
pub const MINOR_DELTA: u32 = 4;
/// Project minor version: everything of minor 4 plus `REPLACE_ZSTD` (op 64),
/// in full and delta payloads. AOSP tools reject it, by design.
pub const MINOR_ZSTD: u32 = 64;

#[derive(Debug, Clone)]
pub struct PartitionPlan {
    pub name: String,
    pub new_size: u64,
    pub new_hash: [u8; 32],
    pub old: Option<(u64, [u8; 32])>,
    pub ops: Vec<InstallOperation>,
    /// Global index of this partition's first operation.
    pub first_op: usize,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub major: u64,
    pub minor: u32,
    pub block_size: u64,
    pub partitions: Vec<PartitionPlan>,
    pub signatures_offset: Option<u64>,
    pub signatures_size: Option<u64>,
    pub release: Option<ReleaseInfo>,
    pub timestamp: Option<i64>,
    /// Sum of all data blob lengths.
    pub total_data: u64,
}

impl Plan {
    pub fn is_delta(&self) -> bool {
        self.partitions.iter().any(|p| p.old.is_some())
    }

    pub fn op_count(&self) -> usize {
        self.partitions.iter().map(|p| p.ops.len()).sum()
    }

    pub fn from_v2(bytes: &[u8], limits: &Limits) -> Result<Self> {
        let m = ManifestV2::decode(bytes).map_err(PayloadError::ManifestParse)?;
        if !m.deprecated_install_operations.is_empty()
            || !m.deprecated_kernel_install_operations.is_empty()
        {
            return Err(PayloadError::InvalidManifest(
                "v1 operation lists in a v2 manifest".into(),
            ));
        }
        let mut parts = Vec::new();
        for p in m.partitions {
            let new = info(
                p.new_partition_info.as_ref(),
                &p.partition_name,
                "new_partition_info",
            )?
            .ok_or_else(|| {
                invalid(format!(
                    "partition {}: new_partition_info missing",
                    p.partition_name
                ))
            })?;
            let old = info(
                p.old_partition_info.as_ref(),
                &p.partition_name,
                "old_partition_info",
            )?;
            parts.push(PartitionPlan {
                name: p.partition_name,
                new_size: new.0,
                new_hash: new.1,
                old,
                ops: p.operations,
                first_op: 0,
            });
        }
        let plan = Plan {
            major: 2,
            minor: m.minor_version.unwrap_or(0),
            block_size: m.block_size.unwrap_or(4096).into(),
            partitions: parts,
            signatures_offset: m.signatures_offset,
            signatures_size: m.signatures_size,
            release: m.release,
            timestamp: m.max_timestamp,
            total_data: 0,
        };
        plan.validated(limits)
    }

    /// Flatcar's v1: USR operations as partition "usr", the KERNEL procedure
    /// as "kernel"; noop operations and other procedures are ignored.
    pub fn from_v1(bytes: &[u8], limits: &Limits) -> Result<Self> {
        let m = ManifestV1::decode(bytes).map_err(PayloadError::ManifestParse)?;
        let mut parts = Vec::new();
        let new = info(m.new_partition_info.as_ref(), "usr", "new_partition_info")?
            .ok_or_else(|| invalid("partition usr: new_partition_info missing".into()))?;
        parts.push(PartitionPlan {
            name: "usr".into(),
            new_size: new.0,
            new_hash: new.1,
            old: info(m.old_partition_info.as_ref(), "usr", "old_partition_info")?,
            ops: m.partition_operations,
            first_op: 0,
        });
        for pr in m.procedures {
            if pr.r#type.unwrap_or(proto::PROCEDURE_KERNEL) != proto::PROCEDURE_KERNEL {
                if pr.operations.iter().any(|o| o.data_length.unwrap_or(0) > 0) {
                    return Err(invalid("unsupported procedure carries data".into()));
                }
                continue;
            }
            let new = info(pr.new_info.as_ref(), "kernel", "new_info")?
                .ok_or_else(|| invalid("partition kernel: new_info missing".into()))?;
            parts.push(PartitionPlan {
                name: "kernel".into(),
                new_size: new.0,
                new_hash: new.1,
                old: None,
                ops: pr.operations,
                first_op: 0,
            });
        }
        let plan = Plan {
            major: 1,
            minor: 0,
            block_size: m.block_size.unwrap_or(4096).into(),
            partitions: parts,
            signatures_offset: m.signatures_offset,
            signatures_size: m.signatures_size,
            release: None,
            timestamp: None,
            total_data: 0,
        };
        plan.validated(limits)
    }
}

fn invalid(s: String) -> PayloadError {
    PayloadError::InvalidManifest(s)
}

fn info(
    i: Option<&proto::PartitionInfo>,
    part: &str,
    field: &str,
) -> Result<Option<(u64, [u8; 32])>> {
    let Some(i) = i else { return Ok(None) };
    let size = i
        .size
        .ok_or_else(|| invalid(format!("partition {part}: {field} has no size")))?;
    let hash: [u8; 32] = i
        .hash
        .as_deref()
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| invalid(format!("partition {part}: {field} has no 32-byte hash")))?;
    Ok(Some((size, hash)))
}
