//! Hand-written prost messages for `update_metadata.proto`, field numbers
//! exactly as AOSP (v2) and Flatcar (v1) use them.
//!
//! Project-specific extensions live in field numbers far above AOSP's range:
//! `DeltaArchiveManifest.release` = 1000 ([`ReleaseInfo`]: version, app id,
//! board, channel). The build timestamp uses AOSP's own `max_timestamp` (14).
//! Every image of a release (USR, kernel, system extensions) is one
//! `PartitionUpdate` of the same manifest.

/// Operation types. Numbers 0..=13 are AOSP's; [`OpType::ReplaceZstd`] is ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum OpType {
    Replace = 0,
    ReplaceBz = 1,
    Move = 2,
    Bsdiff = 3,
    SourceCopy = 4,
    SourceBsdiff = 5,
    Zero = 6,
    Discard = 7,
    ReplaceXz = 8,
    Puffdiff = 9,
    BrotliBsdiff = 10,
    Zucchini = 11,
    Lz4diffBsdiff = 12,
    Lz4diffPuffdiff = 13,
    /// Project extension (not in AOSP): one zstd frame. Only allowed with
    /// [`crate::MINOR_ZSTD`].
    ReplaceZstd = 64,
}

impl OpType {
    pub fn name(self) -> &'static str {
        match self {
            OpType::Replace => "REPLACE",
            OpType::ReplaceBz => "REPLACE_BZ",
            OpType::Move => "MOVE",
            OpType::Bsdiff => "BSDIFF",
            OpType::SourceCopy => "SOURCE_COPY",
            OpType::SourceBsdiff => "SOURCE_BSDIFF",
            OpType::Zero => "ZERO",
            OpType::Discard => "DISCARD",
            OpType::ReplaceXz => "REPLACE_XZ",
            OpType::Puffdiff => "PUFFDIFF",
            OpType::BrotliBsdiff => "BROTLI_BSDIFF",
            OpType::Zucchini => "ZUCCHINI",
            OpType::Lz4diffBsdiff => "LZ4DIFF_BSDIFF",
            OpType::Lz4diffPuffdiff => "LZ4DIFF_PUFFDIFF",
            OpType::ReplaceZstd => "REPLACE_ZSTD",
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct Extent {
    #[prost(uint64, optional, tag = "1")]
    pub start_block: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    pub num_blocks: Option<u64>,
}

impl Extent {
    pub fn new(start: u64, num: u64) -> Self {
        Extent {
            start_block: Some(start),
            num_blocks: Some(num),
        }
    }
    pub fn start(&self) -> u64 {
        self.start_block.unwrap_or(0)
    }
    pub fn num(&self) -> u64 {
        self.num_blocks.unwrap_or(0)
    }
}

/// `PartitionInfo` (v2) / `InstallInfo` (v1): same layout.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PartitionInfo {
    #[prost(uint64, optional, tag = "1")]
    pub size: Option<u64>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub hash: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct InstallOperation {
    #[prost(enumeration = "OpType", required, tag = "1")]
    pub r#type: i32,
    #[prost(uint64, optional, tag = "2")]
    pub data_offset: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    pub data_length: Option<u64>,
    #[prost(message, repeated, tag = "4")]
    pub src_extents: Vec<Extent>,
    #[prost(uint64, optional, tag = "5")]
    pub src_length: Option<u64>,
    #[prost(message, repeated, tag = "6")]
    pub dst_extents: Vec<Extent>,
    #[prost(uint64, optional, tag = "7")]
    pub dst_length: Option<u64>,
    #[prost(bytes = "vec", optional, tag = "8")]
    pub data_sha256_hash: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "9")]
    pub src_sha256_hash: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PartitionUpdate {
    #[prost(string, required, tag = "1")]
    pub partition_name: String,
    #[prost(bool, optional, tag = "2")]
    pub run_postinstall: Option<bool>,
    #[prost(string, optional, tag = "3")]
    pub postinstall_path: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub filesystem_type: Option<String>,
    #[prost(message, optional, tag = "6")]
    pub old_partition_info: Option<PartitionInfo>,
    #[prost(message, optional, tag = "7")]
    pub new_partition_info: Option<PartitionInfo>,
    #[prost(message, repeated, tag = "8")]
    pub operations: Vec<InstallOperation>,
    #[prost(string, optional, tag = "17")]
    pub version: Option<String>,
}

/// Project extension, manifest field 1000: what the engine binds to the Omaha answer.
#[derive(Clone, PartialEq, Eq, serde::Serialize, prost::Message)]
pub struct ReleaseInfo {
    #[prost(string, optional, tag = "1")]
    pub version: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub app_id: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub board: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub channel: Option<String>,
}

/// Major version 2 `DeltaArchiveManifest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ManifestV2 {
    /// v1 leftovers: must be absent; decoded only to reject them.
    #[prost(message, repeated, tag = "1")]
    pub deprecated_install_operations: Vec<InstallOperation>,
    #[prost(message, repeated, tag = "2")]
    pub deprecated_kernel_install_operations: Vec<InstallOperation>,
    #[prost(uint32, optional, tag = "3")]
    pub block_size: Option<u32>,
    #[prost(uint64, optional, tag = "4")]
    pub signatures_offset: Option<u64>,
    #[prost(uint64, optional, tag = "5")]
    pub signatures_size: Option<u64>,
    #[prost(uint32, optional, tag = "12")]
    pub minor_version: Option<u32>,
    #[prost(message, repeated, tag = "13")]
    pub partitions: Vec<PartitionUpdate>,
    #[prost(int64, optional, tag = "14")]
    pub max_timestamp: Option<i64>,
    #[prost(bool, optional, tag = "16")]
    pub partial_update: Option<bool>,
    #[prost(string, optional, tag = "18")]
    pub security_patch_level: Option<String>,
    #[prost(message, optional, tag = "1000")]
    pub release: Option<ReleaseInfo>,
}

/// Flatcar `InstallProcedure`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InstallProcedure {
    /// KERNEL = 0, PCR_POLICY = 1.
    #[prost(int32, optional, tag = "1")]
    pub r#type: Option<i32>,
    #[prost(message, repeated, tag = "2")]
    pub operations: Vec<InstallOperation>,
    #[prost(message, optional, tag = "3")]
    pub old_info: Option<PartitionInfo>,
    #[prost(message, optional, tag = "4")]
    pub new_info: Option<PartitionInfo>,
}

pub const PROCEDURE_KERNEL: i32 = 0;

/// Major version 1 manifest as Flatcar ships it. Fields 1-5 are the same
/// wire fields as [`ManifestV2`]'s (v2 deprecated 1 and 2); they are spelled
/// out in both because each struct mirrors its own `.proto` message field by
/// field, which is what a reviewer checks them against.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ManifestV1 {
    #[prost(message, repeated, tag = "1")]
    pub partition_operations: Vec<InstallOperation>,
    #[prost(message, repeated, tag = "2")]
    pub noop_operations: Vec<InstallOperation>,
    #[prost(uint32, optional, tag = "3")]
    pub block_size: Option<u32>,
    #[prost(uint64, optional, tag = "4")]
    pub signatures_offset: Option<u64>,
    #[prost(uint64, optional, tag = "5")]
    pub signatures_size: Option<u64>,
    #[prost(message, optional, tag = "8")]
    pub old_partition_info: Option<PartitionInfo>,
    #[prost(message, optional, tag = "9")]
    pub new_partition_info: Option<PartitionInfo>,
    #[prost(message, repeated, tag = "10")]
    pub procedures: Vec<InstallProcedure>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Signature {
    #[prost(uint32, optional, tag = "1")]
    pub version: Option<u32>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub data: Option<Vec<u8>>,
    #[prost(fixed32, optional, tag = "3")]
    pub unpadded_signature_size: Option<u32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Signatures {
    #[prost(message, repeated, tag = "1")]
    pub signatures: Vec<Signature>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// A `Signatures` blob holding one signature of `len` bytes.
    fn one_signature(len: usize) -> Vec<u8> {
        Signatures {
            signatures: vec![Signature {
                version: None,
                data: Some(vec![0; len]),
                unpadded_signature_size: Some(len as u32),
            }],
        }
        .encode_to_vec()
    }

    #[test]
    fn ed25519_signature_blob_is_73_bytes() {
        let b = one_signature(64);
        assert_eq!(b.len(), 73);
        assert_eq!(&b[..4], &[0x0a, 0x47, 0x12, 0x40]);
        assert_eq!(b[68], 0x1d);
    }

    #[test]
    fn replace_type_is_always_serialized() {
        let op = InstallOperation {
            r#type: OpType::Replace as i32,
            ..Default::default()
        };
        assert_eq!(op.encode_to_vec(), vec![0x08, 0x00]);
    }

    #[test]
    fn rsa2048_signature_blob_is_267_bytes() {
        assert_eq!(one_signature(256).len(), 267);
    }
}
