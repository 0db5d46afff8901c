//! `payload inspect`: what a payload holds, without applying it.

use crate::apply::read_metadata;
use crate::error::{PayloadError, Result};
use crate::hashing_reader::HashingReader;
use crate::header::Limits;
use crate::keys::Keyring;
use crate::proto::{OpType, ReleaseInfo, Signatures};
use prost::Message;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Read;

#[derive(Debug, Clone, Serialize)]
pub struct OpStats {
    pub count: usize,
    pub data_bytes: u64,
    /// Share of all blob bytes, in percent.
    pub data_share: f64,
    pub dst_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionSummary {
    pub name: String,
    pub new_size: u64,
    pub new_sha256: String,
    pub old_size: Option<u64>,
    pub operations: BTreeMap<&'static str, OpStats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SignatureSummary {
    pub size: usize,
    pub version: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub major: u64,
    pub minor: u32,
    pub kind: &'static str,
    pub block_size: u64,
    pub metadata_size: u64,
    pub manifest_size: u64,
    pub data_size: u64,
    pub file_size: u64,
    pub release: Option<ReleaseInfo>,
    pub timestamp: Option<i64>,
    pub partitions: Vec<PartitionSummary>,
    pub metadata_signatures: Vec<SignatureSummary>,
    pub payload_signatures: Vec<SignatureSummary>,
    pub metadata_signed_by: Option<String>,
}

fn sigs(blob: &[u8]) -> Vec<SignatureSummary> {
    Signatures::decode(blob)
        .map(|s| {
            s.signatures
                .iter()
                .map(|s| SignatureSummary {
                    size: s
                        .unpadded_signature_size
                        .map_or(s.data.as_ref().map_or(0, Vec::len), |n| n as usize),
                    version: s.version,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Read a payload's metadata (and signature blobs) from a seekable file.
/// With `keys`, the metadata signature is verified.
pub fn inspect(file: &std::fs::File, keys: Option<&Keyring>) -> Result<Summary> {
    use std::os::unix::fs::FileExt;
    let mut r = HashingReader::new(std::io::BufReader::new(
        file.try_clone()
            .map_err(|e| PayloadError::io("clone", e))?
            .take(u64::MAX),
    ));
    let meta = read_metadata(&mut r, keys, &Limits::default())?;
    let h = meta.header;
    let plan = &meta.plan;
    let mut msig = vec![0u8; h.metadata_signature_size as usize];
    file.read_exact_at(&mut msig, h.metadata_size())
        .map_err(|e| PayloadError::io("reading", e))?;
    let mut psig = Vec::new();
    if let (Some(off), Some(len)) = (plan.signatures_offset, plan.signatures_size) {
        psig = vec![0u8; len as usize];
        file.read_exact_at(&mut psig, h.data_start() + off)
            .map_err(|e| PayloadError::io("reading payload signature", e))?;
    }
    let total = plan.total_data.max(1) as f64;
    let partitions = plan
        .partitions
        .iter()
        .map(|p| {
            let mut ops: BTreeMap<&'static str, OpStats> = BTreeMap::new();
            for op in &p.ops {
                let ty = OpType::try_from(op.r#type)
                    .map(OpType::name)
                    .unwrap_or("UNKNOWN");
                let s = ops.entry(ty).or_insert(OpStats {
                    count: 0,
                    data_bytes: 0,
                    data_share: 0.0,
                    dst_bytes: 0,
                });
                s.count += 1;
                s.data_bytes += op.data_length.unwrap_or(0);
                s.dst_bytes += op
                    .dst_extents
                    .iter()
                    .map(|x| x.num() * plan.block_size)
                    .sum::<u64>();
            }
            for s in ops.values_mut() {
                s.data_share = (s.data_bytes as f64 * 1000.0 / total).round() / 10.0;
            }
            PartitionSummary {
                name: p.name.clone(),
                new_size: p.new_size,
                new_sha256: hex::encode(p.new_hash),
                old_size: p.old.map(|o| o.0),
                operations: ops,
            }
        })
        .collect();
    Ok(Summary {
        major: h.major,
        minor: plan.minor,
        kind: if plan.is_delta() { "delta" } else { "full" },
        block_size: plan.block_size,
        metadata_size: h.metadata_size(),
        manifest_size: h.manifest_size,
        data_size: plan.total_data,
        file_size: file.metadata().map(|m| m.len()).unwrap_or(0),
        release: plan.release.clone(),
        timestamp: plan.timestamp,
        partitions,
        metadata_signatures: sigs(&msig),
        payload_signatures: sigs(&psig),
        metadata_signed_by: meta.metadata_signed_by,
    })
}
