//! The fixed CrAU header (20 bytes for v1, 24 for v2), and the size limits
//! every length read from untrusted bytes is checked against.

use crate::error::{PayloadError, Result};

pub const MAGIC: &[u8; 4] = b"CrAU";
pub const V1_HEADER_SIZE: u64 = 20;
pub const V2_HEADER_SIZE: u64 = 24;

/// Bounds applied before allocating anything a payload asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_manifest_size: u64,
    pub max_signature_size: u64,
    /// Largest blob, and largest source read for a source operation.
    pub max_op_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_manifest_size: 32 << 20,
            max_signature_size: 64 << 10,
            max_op_size: 16 << 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub major: u64,
    pub manifest_size: u64,
    /// Always 0 for v1.
    pub metadata_signature_size: u32,
}

impl Header {
    pub fn size(&self) -> u64 {
        if self.major == 1 {
            V1_HEADER_SIZE
        } else {
            V2_HEADER_SIZE
        }
    }

    /// Header plus manifest: the bytes covered by the metadata signature.
    pub fn metadata_size(&self) -> u64 {
        // Bounded by Limits in `parse`, so no overflow.
        self.size() + self.manifest_size
    }

    /// Offset B of the first data blob.
    pub fn data_start(&self) -> u64 {
        self.metadata_size() + u64::from(self.metadata_signature_size)
    }

    /// Parse the first 20 bytes; for v2 the caller then reads 4 more and
    /// calls [`Header::set_v2_signature_size`].
    pub fn parse_prefix(buf: &[u8; 20], limits: &Limits) -> Result<Self> {
        let magic: [u8; 4] = buf[0..4].try_into().unwrap_or_default();
        if &magic != MAGIC {
            return Err(PayloadError::BadMagic { found: magic });
        }
        let major = u64::from_be_bytes(buf[4..12].try_into().unwrap_or_default());
        if major != 1 && major != 2 {
            return Err(PayloadError::UnsupportedVersion(major));
        }
        let manifest_size = u64::from_be_bytes(buf[12..20].try_into().unwrap_or_default());
        if manifest_size > limits.max_manifest_size {
            return Err(PayloadError::ManifestTooLarge {
                size: manifest_size,
                max: limits.max_manifest_size,
            });
        }
        Ok(Header {
            major,
            manifest_size,
            metadata_signature_size: 0,
        })
    }

    pub fn set_v2_signature_size(&mut self, buf: [u8; 4], limits: &Limits) -> Result<()> {
        let s = u32::from_be_bytes(buf);
        if u64::from(s) > limits.max_signature_size {
            return Err(PayloadError::MetadataSignatureTooLarge {
                size: s.into(),
                max: limits.max_signature_size,
            });
        }
        self.metadata_signature_size = s;
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&self.major.to_be_bytes());
        v.extend_from_slice(&self.manifest_size.to_be_bytes());
        if self.major >= 2 {
            v.extend_from_slice(&self.metadata_signature_size.to_be_bytes());
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(magic: &[u8; 4], major: u64, m: u64) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[..4].copy_from_slice(magic);
        b[4..12].copy_from_slice(&major.to_be_bytes());
        b[12..20].copy_from_slice(&m.to_be_bytes());
        b
    }

    #[test]
    fn header_errors_table() {
        let l = Limits::default();
        let rows: Vec<([u8; 20], &str)> = vec![
            (
                prefix(b"CrAV", 2, 10),
                "bad magic [43, 72, 41, 56], expected \"CrAU\"",
            ),
            (
                prefix(b"CrAU", 3, 10),
                "unsupported payload major version 3",
            ),
            (
                prefix(b"CrAU", 0, 10),
                "unsupported payload major version 0",
            ),
            (
                prefix(b"CrAU", u64::MAX, 10),
                "unsupported payload major version 18446744073709551615",
            ),
            (
                prefix(b"CrAU", 2, 1 << 31),
                "manifest size 2147483648 exceeds the limit of 33554432 bytes",
            ),
            (
                prefix(b"CrAU", 2, 1 << 32),
                "manifest size 4294967296 exceeds the limit of 33554432 bytes",
            ),
            (
                prefix(b"CrAU", 1, u64::MAX),
                "manifest size 18446744073709551615 exceeds the limit of 33554432 bytes",
            ),
        ];
        for (buf, want) in rows {
            assert_eq!(
                Header::parse_prefix(&buf, &l).unwrap_err().to_string(),
                want
            );
        }
        let mut h = Header::parse_prefix(&prefix(b"CrAU", 2, 100), &l).unwrap();
        assert_eq!(
            h.set_v2_signature_size(u32::MAX.to_be_bytes(), &l)
                .unwrap_err()
                .to_string(),
            "metadata signature size 4294967295 exceeds the limit of 65536 bytes"
        );
        h.set_v2_signature_size(73u32.to_be_bytes(), &l).unwrap();
        assert_eq!(h.metadata_size(), 124);
        assert_eq!(h.data_start(), 197);
        assert_eq!(h.encode().len(), 24);
    }
}
