//! The structural rules of [`Plan`], checked before the first byte is written.

use super::{MINOR_FULL, MINOR_ZSTD, PartitionPlan, Plan, invalid};
use crate::error::{PayloadError, Result};
use crate::extent_writer::SPARSE_HOLE;
use crate::header::Limits;
use crate::proto::{self, InstallOperation, OpType};

impl Plan {
    /// The plan, once every rule holds; the first broken rule otherwise.
    pub(super) fn validated(mut self, limits: &Limits) -> Result<Self> {
        self.check_versions()?;
        let rules = Rules {
            block_size: self.block_size,
            major: self.major,
            minor: self.minor,
            delta: self.is_delta(),
            limits,
        };
        let mut names = std::collections::HashSet::new();
        let mut cursor = Cursor::default();
        for p in &mut self.partitions {
            if !names.insert(p.name.clone()) {
                return Err(invalid(format!("partition {} listed twice", p.name)));
            }
            p.first_op = cursor.index;
            check_partition(p, &rules, &mut cursor)?;
        }
        self.total_data = cursor.data_offset;
        self.check_signature_blob(limits)?;
        Ok(self)
    }

    /// A supported block size, and (v2) a minor version that fits the kind
    /// of payload.
    fn check_versions(&self) -> Result<()> {
        let bs = self.block_size;
        if !(512..=(1 << 20)).contains(&bs) || !bs.is_power_of_two() {
            return Err(invalid(format!("block size {bs} not supported")));
        }
        if self.major != 2 {
            return Ok(());
        }
        let delta = self.is_delta();
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
        Ok(())
    }

    /// The signature blob follows the last data blob, with a size under the cap.
    fn check_signature_blob(&self, limits: &Limits) -> Result<()> {
        let end = self.total_data;
        match (self.signatures_offset, self.signatures_size) {
            (Some(o), Some(s)) => {
                if o != end {
                    return Err(PayloadError::PayloadSignatureInvalid(format!(
                        "signature blob at data offset {o}, but the blobs end at {end}"
                    )));
                }
                if s == 0 || s > limits.max_signature_size {
                    return Err(PayloadError::PayloadSignatureInvalid(format!(
                        "signature blob size {s} outside 1..={}",
                        limits.max_signature_size
                    )));
                }
                Ok(())
            }
            (None, None) => Ok(()),
            _ => Err(invalid(
                "signatures_offset and signatures_size must be set together".into(),
            )),
        }
    }
}

/// What every operation is checked against.
struct Rules<'a> {
    block_size: u64,
    major: u64,
    minor: u32,
    delta: bool,
    limits: &'a Limits,
}

/// Where the walk over all operations is.
#[derive(Default)]
struct Cursor {
    /// Global index of the next operation.
    index: usize,
    /// Where the next data blob must start.
    data_offset: u64,
}

/// A partition's operations, one by one, then their destinations together:
/// no two operations may write the same block.
fn check_partition(p: &PartitionPlan, rules: &Rules<'_>, cursor: &mut Cursor) -> Result<()> {
    let bs = rules.block_size;
    let mut dst_ranges: Vec<(u64, u64, usize)> = Vec::new();
    for op in &p.ops {
        let check = OpCheck {
            op,
            index: cursor.index,
            partition: &p.name,
            rules,
            new_blocks: p.new_size.div_ceil(bs),
            old_blocks: p.old.map(|o| o.0.div_ceil(bs)),
        };
        check.run(&mut dst_ranges, &mut cursor.data_offset)?;
        cursor.index += 1;
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
    Ok(())
}

/// One operation under the rules.
struct OpCheck<'a> {
    op: &'a InstallOperation,
    index: usize,
    partition: &'a str,
    rules: &'a Rules<'a>,
    /// The partition's size in blocks, new and old.
    new_blocks: u64,
    old_blocks: Option<u64>,
}

impl OpCheck<'_> {
    /// Type, destination, source, then data, in that order (the first broken
    /// rule is the one reported). Adds the destination ranges to
    /// `dst_ranges` and moves `data_offset` past this operation's blob.
    fn run(&self, dst_ranges: &mut Vec<(u64, u64, usize)>, data_offset: &mut u64) -> Result<()> {
        let r = self.rules;
        let ty =
            allowed_type(self.op.r#type, r.major, r.minor, r.delta).map_err(|w| self.err(w))?;
        let dst_blocks = self.destination(dst_ranges)?;
        let src_blocks = self.source(ty)?;
        if matches!(ty, OpType::SourceCopy | OpType::Move) && src_blocks != dst_blocks {
            return Err(self.err(format!("copies {src_blocks} blocks into {dst_blocks}")));
        }
        self.data(ty, dst_blocks, data_offset)
    }

    fn err(&self, what: String) -> PayloadError {
        PayloadError::InvalidOperation {
            index: self.index,
            partition: self.partition.to_owned(),
            what,
        }
    }

    /// Destination extents inside the partition (v1 sparse holes skipped);
    /// returns their size in blocks.
    fn destination(&self, dst_ranges: &mut Vec<(u64, u64, usize)>) -> Result<u64> {
        if self.op.dst_extents.is_empty() {
            return Err(self.err("no destination extents".into()));
        }
        let mut dst_blocks = 0u64;
        for x in &self.op.dst_extents {
            if self.rules.major == 1 && x.start() == SPARSE_HOLE {
                continue;
            }
            let end =
                extent_end(x, self.new_blocks).map_err(|w| self.err(format!("destination {w}")))?;
            dst_ranges.push((x.start(), end, self.index));
            dst_blocks += x.num();
        }
        Ok(dst_blocks)
    }

    /// Source extents: inside the old partition (or the new one for the
    /// in-place v1 MOVE/BSDIFF), under the size cap, with a hash for
    /// SOURCE_*; none for other operations. Returns their size in blocks.
    fn source(&self, ty: OpType) -> Result<u64> {
        let op = self.op;
        let has_src = matches!(
            ty,
            OpType::SourceCopy | OpType::SourceBsdiff | OpType::BrotliBsdiff
        );
        let in_place = matches!(ty, OpType::Move | OpType::Bsdiff);
        if !(has_src || in_place) {
            if !op.src_extents.is_empty() {
                return Err(self.err("unexpected source extents".into()));
            }
            return Ok(0);
        }
        let limit = if in_place {
            self.new_blocks
        } else {
            self.old_blocks.ok_or_else(|| {
                self.err("source operation in a partition without old_partition_info".into())
            })?
        };
        if op.src_extents.is_empty() {
            return Err(self.err("no source extents".into()));
        }
        let mut src_blocks = 0u64;
        for x in &op.src_extents {
            extent_end(x, limit).map_err(|w| self.err(format!("source {w}")))?;
            src_blocks = src_blocks
                .checked_add(x.num())
                .ok_or_else(|| self.err("source too large".into()))?;
        }
        let src_bytes = src_blocks
            .checked_mul(self.rules.block_size)
            .ok_or_else(|| self.err("source too large".into()))?;
        let cap = self.rules.limits.max_op_size;
        if src_bytes > cap {
            return Err(self.err(format!(
                "source of {src_bytes} bytes exceeds the cap of {cap}"
            )));
        }
        if has_src && op.src_sha256_hash.as_ref().map(|h| h.len()) != Some(32) {
            return Err(self.err("source hash missing".into()));
        }
        Ok(src_blocks)
    }

    /// The data blob: present exactly for the operations that carry one,
    /// at `data_offset` (blobs are contiguous), under the cap, with a hash.
    fn data(&self, ty: OpType, dst_blocks: u64, data_offset: &mut u64) -> Result<()> {
        let op = self.op;
        let len = op.data_length.unwrap_or(0);
        let carries_data = !matches!(
            ty,
            OpType::Zero | OpType::Discard | OpType::SourceCopy | OpType::Move
        );
        if !carries_data {
            if len != 0 || op.data_offset.unwrap_or(0) != 0 && self.rules.major == 2 {
                return Err(self.err(format!("{} carries data", ty.name())));
            }
            return Ok(());
        }
        if len == 0 {
            return Err(self.err("no data".into()));
        }
        let found = op.data_offset.unwrap_or(0);
        if found != *data_offset {
            return Err(PayloadError::DataOffsetMismatch {
                index: self.index,
                partition: self.partition.to_owned(),
                found,
                expected: *data_offset,
            });
        }
        let cap = self.rules.limits.max_op_size;
        if len > cap {
            return Err(self.err(format!("data of {len} bytes exceeds the cap of {cap}")));
        }
        if ty == OpType::Replace && len > dst_blocks.saturating_mul(self.rules.block_size) {
            return Err(self.err(format!("{len} bytes of data for {dst_blocks} blocks")));
        }
        match &op.data_sha256_hash {
            None => {
                return Err(PayloadError::OperationHashMissing {
                    index: self.index,
                    partition: self.partition.to_owned(),
                });
            }
            Some(h) if h.len() != 32 => {
                return Err(self.err("data hash is not 32 bytes".into()));
            }
            Some(_) => {}
        }
        *data_offset = data_offset
            .checked_add(len)
            .ok_or_else(|| self.err("data offsets overflow".into()))?;
        Ok(())
    }
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
