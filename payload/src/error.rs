//! Typed errors of the payload crate and their mapping to Flatcar's
//! update_engine error codes (`action_processor.h`), so the agent can report
//! them in Omaha events unchanged.

use omaha::ErrorCode;
use std::io;

/// Everything that can go wrong while reading, verifying or applying a payload.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The payload stream failed.
    #[error("reading payload at byte {offset}")]
    Read {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("payload truncated at byte {offset} while reading {what}")]
    Truncated { offset: u64, what: &'static str },
    #[error("bad magic {found:02x?}, expected \"CrAU\"")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported payload major version {0}")]
    UnsupportedVersion(u64),
    #[error("manifest size {size} exceeds the limit of {max} bytes")]
    ManifestTooLarge { size: u64, max: u64 },
    #[error("metadata signature size {size} exceeds the limit of {max} bytes")]
    MetadataSignatureTooLarge { size: u64, max: u64 },
    #[error("payload has no metadata signature")]
    MetadataSignatureMissing,
    #[error("metadata signature blob does not parse: {0}")]
    MetadataSignatureParse(String),
    #[error("metadata signature does not match any trusted key")]
    MetadataSignatureMismatch,
    /// The manifest is not valid protobuf.
    #[error("manifest does not parse")]
    ManifestParse(#[source] prost::DecodeError),
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    #[error("keyring: {0}")]
    Keyring(String),
    #[error(
        "operation {index} ({partition}): data offset {found} but the blobs so far end at {expected}"
    )]
    DataOffsetMismatch {
        index: usize,
        partition: String,
        found: u64,
        expected: u64,
    },
    #[error("operation {index} ({partition}): {what}")]
    InvalidOperation {
        index: usize,
        partition: String,
        what: String,
    },
    #[error("operation {index} ({partition}): data hash missing")]
    OperationHashMissing { index: usize, partition: String },
    #[error(
        "operation {index} ({partition}): data hash mismatch for blob at payload byte {offset}"
    )]
    OperationHashMismatch {
        index: usize,
        partition: String,
        offset: u64,
    },
    #[error(
        "operation {index} ({partition}): source hash mismatch, the old slot is not the expected image"
    )]
    SourceHashMismatch { index: usize, partition: String },
    #[error("operation {index} ({partition}) failed: {what}")]
    OperationFailed {
        index: usize,
        partition: String,
        what: String,
    },
    /// A write to (or read back from) a target failed.
    #[error("writing partition {partition} at byte {offset}")]
    TargetIo {
        partition: String,
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("no target for partition {0}")]
    UnknownPartition(String),
    #[error("payload signature missing: {0}")]
    PayloadSignatureMissing(String),
    #[error("payload signature blob is invalid: {0}")]
    PayloadSignatureInvalid(String),
    #[error("payload signature does not match any trusted key")]
    PayloadSignatureMismatch,
    #[error("payload size mismatch: expected {expected} bytes, got {actual}")]
    PayloadSizeMismatch { expected: u64, actual: u64 },
    #[error("payload has trailing data after byte {offset}")]
    TrailingData { offset: u64 },
    #[error("payload hash mismatch: expected {expected}, got {actual}")]
    PayloadHashMismatch { expected: String, actual: String },
    #[error("partition {partition}: written image hash mismatch")]
    PartitionHashMismatch { partition: String },
    #[error("release check failed: {0}")]
    ReleaseMismatch(String),
    #[error("checkpoint does not belong to this payload: {0}")]
    CheckpointMismatch(String),
    #[error("generating payload: {0}")]
    Generate(String),
    /// Any other I/O, named by what was being done.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl PayloadError {
    /// Flatcar update_engine error code (`action_processor.h`) for this error.
    pub fn error_code(&self) -> ErrorCode {
        use ErrorCode as C;
        use PayloadError::*;
        match self {
            Read { .. } => C::DownloadTransferError,
            Truncated { .. } | PayloadSizeMismatch { .. } | TrailingData { .. } => {
                C::PayloadSizeMismatchError
            }
            BadMagic { .. } | UnsupportedVersion(_) => C::DownloadInvalidMetadataMagicString,
            ManifestTooLarge { .. } | MetadataSignatureTooLarge { .. } => {
                C::DownloadInvalidMetadataSize
            }
            MetadataSignatureMissing => C::DownloadMetadataSignatureMissingError,
            MetadataSignatureParse(_) => C::DownloadMetadataSignatureError,
            MetadataSignatureMismatch => C::DownloadMetadataSignatureMismatch,
            ManifestParse(_) | InvalidManifest(_) => C::DownloadManifestParseError,
            Keyring(_) | PayloadSignatureMismatch => C::DownloadPayloadPubKeyVerificationError,
            DataOffsetMismatch { .. }
            | InvalidOperation { .. }
            | OperationFailed { .. }
            | UnknownPartition(_) => C::DownloadOperationExecutionError,
            OperationHashMissing { .. } => C::DownloadOperationHashMissingError,
            OperationHashMismatch { .. } => C::DownloadOperationHashMismatch,
            SourceHashMismatch { .. } => C::DownloadOperationHashVerificationError,
            TargetIo { .. } => C::DownloadWriteError,
            PayloadSignatureMissing(_) => C::DownloadSignatureMissingInManifest,
            PayloadSignatureInvalid(_) | ReleaseMismatch(_) => C::DownloadPayloadVerificationError,
            PayloadHashMismatch { .. } => C::PayloadHashMismatchError,
            PartitionHashMismatch { partition } if partition == "kernel" => {
                C::NewKernelVerificationError
            }
            PartitionHashMismatch { .. } => C::NewRootfsVerificationError,
            CheckpointMismatch(_) => C::DownloadStateInitializationError,
            Generate(_) | Io { .. } => C::Error,
        }
    }

    /// [`PayloadError::error_code`] as its number.
    pub fn flatcar_code(&self) -> u32 {
        self.error_code().code()
    }

    /// Stable machine-readable name, for metrics and the D-Bus `LastError`.
    pub fn error_kind(&self) -> &'static str {
        use PayloadError::*;
        match self {
            Read { .. } => "read",
            Truncated { .. } => "truncated",
            BadMagic { .. } => "bad_magic",
            UnsupportedVersion(_) => "unsupported_version",
            ManifestTooLarge { .. } => "manifest_too_large",
            MetadataSignatureTooLarge { .. } => "metadata_signature_too_large",
            MetadataSignatureMissing => "metadata_signature_missing",
            MetadataSignatureParse(_) => "metadata_signature_parse",
            MetadataSignatureMismatch => "metadata_signature_mismatch",
            ManifestParse(_) => "manifest_parse",
            InvalidManifest(_) => "invalid_manifest",
            Keyring(_) => "keyring",
            DataOffsetMismatch { .. } => "data_offset_mismatch",
            InvalidOperation { .. } => "invalid_operation",
            OperationHashMissing { .. } => "operation_hash_missing",
            OperationHashMismatch { .. } => "operation_hash_mismatch",
            SourceHashMismatch { .. } => "source_hash_mismatch",
            OperationFailed { .. } => "operation_failed",
            TargetIo { .. } => "target_io",
            UnknownPartition(_) => "unknown_partition",
            PayloadSignatureMissing(_) => "payload_signature_missing",
            PayloadSignatureInvalid(_) => "payload_signature_invalid",
            PayloadSignatureMismatch => "payload_signature_mismatch",
            PayloadSizeMismatch { .. } => "payload_size_mismatch",
            TrailingData { .. } => "trailing_data",
            PayloadHashMismatch { .. } => "payload_hash_mismatch",
            PartitionHashMismatch { .. } => "partition_hash_mismatch",
            ReleaseMismatch(_) => "release_mismatch",
            CheckpointMismatch(_) => "checkpoint_mismatch",
            Generate(_) => "generate",
            Io { .. } => "io",
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        PayloadError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = PayloadError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_flatcar_table() {
        let rows: Vec<(PayloadError, u32, &str)> = vec![
            (PayloadError::BadMagic { found: *b"GZIP" }, 21, "bad_magic"),
            (
                PayloadError::MetadataSignatureMissing,
                39,
                "metadata_signature_missing",
            ),
            (
                PayloadError::MetadataSignatureMismatch,
                26,
                "metadata_signature_mismatch",
            ),
            (
                PayloadError::PayloadSignatureMismatch,
                18,
                "payload_signature_mismatch",
            ),
            (
                PayloadError::PayloadHashMismatch {
                    expected: "a".into(),
                    actual: "b".into(),
                },
                10,
                "payload_hash_mismatch",
            ),
            (
                PayloadError::OperationHashMissing {
                    index: 0,
                    partition: "usr".into(),
                },
                38,
                "operation_hash_missing",
            ),
            (
                PayloadError::PartitionHashMismatch {
                    partition: "kernel".into(),
                },
                16,
                "partition_hash_mismatch",
            ),
            (
                PayloadError::ManifestTooLarge { size: 1, max: 0 },
                32,
                "manifest_too_large",
            ),
        ];
        for (e, code, kind) in rows {
            assert_eq!(e.flatcar_code(), code, "{e}");
            assert_eq!(e.error_kind(), kind, "{e}");
        }
    }
}
