//! A validated, version-independent view of a manifest. Every structural rule
//! is checked here, before the first byte is written: extents inside the
//! partitions, no overlapping destinations, contiguous data offsets, sizes
//! under the caps, hashes present.

use crate::error::{PayloadError, Result};
use crate::extent_writer::SPARSE_HOLE;
use crate::header::Limits;
use crate::proto::{self, InstallOperation, ManifestV1, ManifestV2, OpType, ReleaseInfo};
use prost::Message;

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

    fn validated(mut self, limits: &Limits) -> Result<Self> {
        let bs = self.block_size;
        if !(512..=(1 << 20)).contains(&bs) || !bs.is_power_of_two() {
            return Err(invalid(format!("block size {bs} not supported")));
        }
        let delta = self.is_delta();
        if self.major == 2 {
            let ok = if delta {
                (2..=9).contains(&self.minor) || self.minor == MINOR_ZSTD
            } else {
                self.minor == MINOR_FULL || self.minor == MINOR_ZSTD
            };
            if !ok {
                return Err(invalid(format!(
                    "minor version {} not valid for a {} payload",
                    self.minor,
                    if delta { "delta" } else { "full" }
                )));
            }
        }
        let mut names = std::collections::HashSet::new();
        let mut offset = 0u64;
        let mut index = 0usize;
        for p in &mut self.partitions {
            if !names.insert(p.name.clone()) {
                return Err(invalid(format!("partition {} listed twice", p.name)));
            }
            p.first_op = index;
            let new_blocks = p.new_size.div_ceil(bs);
            let old_blocks = p.old.map(|o| o.0.div_ceil(bs));
            let mut dst_ranges: Vec<(u64, u64, usize)> = Vec::new();
            for op in &p.ops {
                let e = |what: String| PayloadError::InvalidOperation {
                    index,
                    partition: p.name.clone(),
                    what,
                };
                let ty = allowed_type(op.r#type, self.major, self.minor, delta).map_err(&e)?;
                if op.dst_extents.is_empty() {
                    return Err(e("no destination extents".into()));
                }
                let mut dst_blocks = 0u64;
                for x in &op.dst_extents {
                    if self.major == 1 && x.start() == SPARSE_HOLE {
                        continue;
                    }
                    let end =
                        extent_end(x, new_blocks).map_err(|w| e(format!("destination {w}")))?;
                    dst_ranges.push((x.start(), end, index));
                    dst_blocks += x.num();
                }
                let has_src = matches!(
                    ty,
                    OpType::SourceCopy | OpType::SourceBsdiff | OpType::BrotliBsdiff
                );
                let in_place = matches!(ty, OpType::Move | OpType::Bsdiff);
                let mut src_blocks = 0u64;
                if has_src || in_place {
                    let limit = if in_place {
                        new_blocks
                    } else {
                        old_blocks.ok_or_else(|| {
                            e("source operation in a partition without old_partition_info".into())
                        })?
                    };
                    if op.src_extents.is_empty() {
                        return Err(e("no source extents".into()));
                    }
                    for x in &op.src_extents {
                        extent_end(x, limit).map_err(|w| e(format!("source {w}")))?;
                        src_blocks = src_blocks
                            .checked_add(x.num())
                            .ok_or_else(|| e("source too large".into()))?;
                    }
                    let src_bytes = src_blocks
                        .checked_mul(bs)
                        .ok_or_else(|| e("source too large".into()))?;
                    if src_bytes > limits.max_op_size {
                        return Err(e(format!(
                            "source of {src_bytes} bytes exceeds the cap of {}",
                            limits.max_op_size
                        )));
                    }
                    if has_src && op.src_sha256_hash.as_ref().map(|h| h.len()) != Some(32) {
                        return Err(e("source hash missing".into()));
                    }
                } else if !op.src_extents.is_empty() {
                    return Err(e("unexpected source extents".into()));
                }
                if matches!(ty, OpType::SourceCopy | OpType::Move) && src_blocks != dst_blocks {
                    return Err(e(format!("copies {src_blocks} blocks into {dst_blocks}")));
                }
                let len = op.data_length.unwrap_or(0);
                let carries_data = !matches!(
                    ty,
                    OpType::Zero | OpType::Discard | OpType::SourceCopy | OpType::Move
                );
                if carries_data {
                    if len == 0 {
                        return Err(e("no data".into()));
                    }
                    let found = op.data_offset.unwrap_or(0);
                    if found != offset {
                        return Err(PayloadError::DataOffsetMismatch {
                            index,
                            partition: p.name.clone(),
                            found,
                            expected: offset,
                        });
                    }
                    if len > limits.max_op_size {
                        return Err(e(format!(
                            "data of {len} bytes exceeds the cap of {}",
                            limits.max_op_size
                        )));
                    }
                    if ty == OpType::Replace && len > dst_blocks.saturating_mul(bs) {
                        return Err(e(format!("{len} bytes of data for {dst_blocks} blocks")));
                    }
                    match &op.data_sha256_hash {
                        None => {
                            return Err(PayloadError::OperationHashMissing {
                                index,
                                partition: p.name.clone(),
                            });
                        }
                        Some(h) if h.len() != 32 => {
                            return Err(e("data hash is not 32 bytes".into()));
                        }
                        Some(_) => {}
                    }
                    offset = offset
                        .checked_add(len)
                        .ok_or_else(|| e("data offsets overflow".into()))?;
                } else if len != 0 || op.data_offset.unwrap_or(0) != 0 && self.major == 2 {
                    return Err(e(format!("{} carries data", ty.name())));
                }
                index += 1;
            }
            dst_ranges.sort_unstable();
            for w in dst_ranges.windows(2) {
                if w[1].0 < w[0].1 {
                    return Err(PayloadError::InvalidOperation {
                        index: w[0].2.max(w[1].2),
                        partition: p.name.clone(),
                        what: "destination extents overlap another operation's".into(),
                    });
                }
            }
        }
        self.total_data = offset;
        match (self.signatures_offset, self.signatures_size) {
            (Some(o), Some(s)) => {
                if o != offset {
                    return Err(PayloadError::PayloadSignatureInvalid(format!(
                        "signature blob at data offset {o}, but the blobs end at {offset}"
                    )));
                }
                if s == 0 || s > limits.max_signature_size {
                    return Err(PayloadError::PayloadSignatureInvalid(format!(
                        "signature blob size {s} outside 1..={}",
                        limits.max_signature_size
                    )));
                }
            }
            (None, None) => {}
            _ => {
                return Err(invalid(
                    "signatures_offset and signatures_size must be set together".into(),
                ));
            }
        }
        Ok(self)
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

fn extent_end(x: &proto::Extent, limit_blocks: u64) -> std::result::Result<u64, String> {
    let (s, n) = (x.start(), x.num());
    if n == 0 {
        return Err(format!("extent at block {s} is empty"));
    }
    match s.checked_add(n) {
        Some(end) if end <= limit_blocks => Ok(end),
        _ => Err(format!(
            "extent {s}+{n} ends past the partition's {limit_blocks} blocks"
        )),
    }
}

fn allowed_type(
    t: i32,
    major: u64,
    minor: u32,
    delta: bool,
) -> std::result::Result<OpType, String> {
    let ty = OpType::try_from(t).map_err(|_| format!("unknown operation type {t}"))?;
    use OpType::*;
    let ok = if major == 1 {
        matches!(ty, Replace | ReplaceBz | Move | Bsdiff)
    } else {
        let ext = minor == MINOR_ZSTD;
        match ty {
            Replace | ReplaceBz | ReplaceXz => true,
            ReplaceZstd => ext,
            SourceCopy | SourceBsdiff => delta,
            Zero | Discard => ext || (delta && minor >= 4),
            BrotliBsdiff => delta && (ext || minor >= 4),
            _ => false,
        }
    };
    if ok {
        Ok(ty)
    } else {
        Err(format!(
            "operation {} not supported in major {major} minor {minor}",
            ty.name()
        ))
    }
}
