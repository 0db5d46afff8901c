//! The front of a payload: header, manifest and (v2) metadata signature,
//! authenticated before the manifest is parsed.

use super::checks::sig_err;
use crate::error::{PayloadError, Result};
use crate::hashing_reader::HashingReader;
use crate::header::{Header, Limits};
use crate::keys::Keyring;
use crate::plan::Plan;
use std::io::Read;

/// Parsed, authenticated (v2) metadata.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub header: Header,
    pub plan: Plan,
    pub metadata_hash: [u8; 32],
    pub metadata_signed_by: Option<String>,
}

/// Read header, manifest and metadata signature. With `keys`, the metadata
/// signature (v2) is verified before the manifest is parsed; without, the
/// manifest is parsed unverified (inspection only).
pub fn read_metadata<R: Read>(
    r: &mut HashingReader<R>,
    keys: Option<&Keyring>,
    limits: &Limits,
) -> Result<Metadata> {
    let mut prefix = [0u8; 20];
    r.read_exact_or(&mut prefix, "header")?;
    let mut header = Header::parse_prefix(&prefix, limits)?;
    if header.major == 2 {
        let mut s = [0u8; 4];
        r.read_exact_or(&mut s, "header")?;
        header.set_v2_signature_size(s, limits)?;
    }
    let mut manifest = Vec::new();
    r.read_vec(&mut manifest, header.manifest_size as usize, "manifest")?;
    let metadata_hash = r.signed_hash.digest();
    let mut metadata_signed_by = None;
    if header.major == 2 {
        r.set_signed(false);
        let mut sig = Vec::new();
        r.read_vec(
            &mut sig,
            header.metadata_signature_size as usize,
            "metadata signature",
        )?;
        r.set_signed(true);
        if let Some(keys) = keys {
            if sig.is_empty() {
                return Err(PayloadError::MetadataSignatureMissing);
            }
            metadata_signed_by = Some(keys.verify_blob(&metadata_hash, &sig).map_err(|e| {
                sig_err(
                    e,
                    PayloadError::MetadataSignatureParse,
                    PayloadError::MetadataSignatureMismatch,
                )
            })?);
        }
    }
    let plan = if header.major == 2 {
        Plan::from_v2(&manifest, limits)?
    } else {
        Plan::from_v1(&manifest, limits)?
    };
    Ok(Metadata {
        header,
        plan,
        metadata_hash,
        metadata_signed_by,
    })
}
