//! Resume state: what is saved after every written operation, and the check
//! that a saved state fits the payload presented on resume.

use super::metadata::Metadata;
use crate::error::{PayloadError, Result};
use crate::sha::ResumableSha256;
use serde::{Deserialize, Serialize};

/// Saved after every operation: enough to resume without re-reading the
/// bytes already applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Hex SHA-256 of the metadata; a resume must present the same payload.
    pub metadata_hash: String,
    /// Offset of the first blob in the file.
    pub data_start: u64,
    /// Global index of the next operation to run.
    pub next_op: usize,
    /// Blob offset (relative to `data_start`) of the next operation.
    pub next_data_offset: u64,
    pub file_hash: ResumableSha256,
    pub signed_hash: ResumableSha256,
}

impl Checkpoint {
    /// File offset to continue downloading from (HTTP `Range: bytes=N-`).
    pub fn resume_offset(&self) -> u64 {
        self.data_start + self.next_data_offset
    }

    /// A resume must present the payload this checkpoint was taken from,
    /// with offsets inside its manifest and hasher states that match them;
    /// anything else is [`PayloadError::CheckpointMismatch`].
    pub(super) fn check_fits(&self, meta: &Metadata) -> Result<()> {
        let bad = |s: &str| Err(PayloadError::CheckpointMismatch(s.into()));
        if hex::encode(meta.metadata_hash) != self.metadata_hash {
            return bad("metadata hash differs");
        }
        if meta.header.data_start() != self.data_start || self.next_op > meta.plan.op_count() {
            return bad("offsets do not fit the manifest");
        }
        let signed_len = self
            .next_data_offset
            .checked_add(meta.header.metadata_size());
        if !self.file_hash.is_consistent()
            || !self.signed_hash.is_consistent()
            || self.file_hash.len() != self.resume_offset()
            || Some(self.signed_hash.len()) != signed_len
        {
            return bad("hasher states do not fit the offsets");
        }
        Ok(())
    }
}
