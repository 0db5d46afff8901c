//! Writing signed payloads (v2 with Ed25519/RSA, v1 with RSA for stock
//! Flatcar), re-signing existing payloads, and the two-step HSM flow.

use crate::error::{PayloadError, Result};
use crate::extent_writer::SPARSE_HOLE;
use crate::hashing_reader::HashingReader;
use crate::header::{Header, Limits};
use crate::keys::{SigningKey, encode_signatures};
use crate::proto::{Extent, InstallOperation, ManifestV1, ManifestV2, OpType};
use crate::sha::ResumableSha256;
use prost::Message;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;

/// Data blobs, in operation order: a temp file while generating, or a
/// region of an existing payload when re-signing.
#[derive(Debug)]
pub struct BlobStore {
    file: File,
    offset: u64,
    len: u64,
}

impl BlobStore {
    pub fn temp() -> Result<Self> {
        let file =
            tempfile::tempfile().map_err(|e| PayloadError::io("creating blob temp file", e))?;
        Ok(BlobStore {
            file,
            offset: 0,
            len: 0,
        })
    }

    pub fn region(file: File, offset: u64, len: u64) -> Self {
        BlobStore { file, offset, len }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Append a blob; returns its data offset.
    pub fn append(&mut self, blob: &[u8]) -> Result<u64> {
        let at = self.len;
        self.file
            .write_all_at(blob, self.offset + at)
            .map_err(|e| PayloadError::io("writing blob temp file", e))?;
        self.len += blob.len() as u64;
        Ok(at)
    }

    fn for_each_chunk(&self, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0;
        while off < self.len {
            let n = (self.len - off).min(buf.len() as u64) as usize;
            self.file
                .read_exact_at(&mut buf[..n], self.offset + off)
                .map_err(|e| PayloadError::io("reading blobs", e))?;
            f(&buf[..n])?;
            off += n as u64;
        }
        Ok(())
    }
}

/// A manifest of either major version, without its signature fields.
#[derive(Debug, Clone)]
pub enum Manifest {
    V1(ManifestV1),
    V2(ManifestV2),
}

/// Manifest plus blobs: everything but the signatures.
#[derive(Debug)]
pub struct UnsignedPayload {
    pub manifest: Manifest,
    pub blobs: BlobStore,
}

/// Which hash a signer is asked to sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed {
    /// Hm: header + manifest (v2 only).
    Metadata,
    /// Hp: header + manifest + blobs.
    Payload,
}

/// The digests a payload with the given signature sizes will be signed over.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Digests {
    #[serde(with = "hex_opt")]
    pub metadata: Option<[u8; 32]>,
    #[serde(with = "hex_arr")]
    pub payload: [u8; 32],
}

mod hex_opt {
    pub fn serialize<S: serde::Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(&hex::encode(v)),
            None => s.serialize_none(),
        }
    }
}
mod hex_arr {
    pub fn serialize<S: serde::Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
}

impl UnsignedPayload {
    /// Read an existing payload file back into manifest + blob region (for
    /// re-signing). Signatures are not checked here.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let f = File::open(path)
            .map_err(|e| PayloadError::io(format!("opening {}", path.display()), e))?;
        let mut r = HashingReader::new(std::io::BufReader::new(&f));
        let meta = crate::apply::read_metadata(&mut r, None, &Limits::default())?;
        let h = meta.header;
        let mut raw = vec![0u8; h.manifest_size as usize];
        f.read_exact_at(&mut raw, h.size())
            .map_err(|e| PayloadError::io("reading manifest", e))?;
        let manifest = if h.major == 2 {
            let mut m = ManifestV2::decode(&raw[..]).map_err(PayloadError::ManifestParse)?;
            m.signatures_offset = None;
            m.signatures_size = None;
            Manifest::V2(m)
        } else {
            let mut m = ManifestV1::decode(&raw[..]).map_err(PayloadError::ManifestParse)?;
            let old_sig = m.signatures_offset.take();
            m.signatures_size = None;
            // Drop the old signature's fake operation; `layout` adds a new one.
            m.noop_operations.retain(|o| {
                old_sig.is_none() || o.data_offset != old_sig || o.data_length.unwrap_or(0) == 0
            });
            Manifest::V1(m)
        };
        let file = f
            .try_clone()
            .map_err(|e| PayloadError::io("cloning file", e))?;
        Ok(UnsignedPayload {
            manifest,
            blobs: BlobStore::region(file, h.data_start(), meta.plan.total_data),
        })
    }

    /// Header and manifest for signatures of `sig_sizes` bytes each.
    fn layout(&self, sig_sizes: &[usize]) -> Result<(Vec<u8>, usize)> {
        if sig_sizes.is_empty() {
            return Err(PayloadError::Generate(
                "at least one signing key is required".into(),
            ));
        }
        let v1 = matches!(self.manifest, Manifest::V1(_));
        let zeros: Vec<Vec<u8>> = sig_sizes.iter().map(|&n| vec![0; n]).collect();
        let sig_len = encode_signatures(&zeros, v1).len();
        let (major, manifest) = match &self.manifest {
            Manifest::V2(m) => {
                let mut m = m.clone();
                m.signatures_offset = Some(self.blobs.len());
                m.signatures_size = Some(sig_len as u64);
                (2, m.encode_to_vec())
            }
            Manifest::V1(m) => {
                let mut m = m.clone();
                m.signatures_offset = Some(self.blobs.len());
                m.signatures_size = Some(sig_len as u64);
                // The fake operation old clients use to skip the signature blob.
                m.noop_operations.insert(
                    0,
                    InstallOperation {
                        r#type: OpType::Replace as i32,
                        data_offset: Some(self.blobs.len()),
                        data_length: Some(sig_len as u64),
                        dst_extents: vec![Extent::new(
                            SPARSE_HOLE,
                            (sig_len as u64).div_ceil(4096),
                        )],
                        ..Default::default()
                    },
                );
                (1, m.encode_to_vec())
            }
        };
        let header = Header {
            major,
            manifest_size: manifest.len() as u64,
            metadata_signature_size: if major == 2 { sig_len as u32 } else { 0 },
        };
        let mut meta = header.encode();
        meta.extend_from_slice(&manifest);
        Ok((meta, sig_len))
    }

    /// The hashes to sign (HSM flow step 1).
    pub fn digests(&self, sig_sizes: &[usize]) -> Result<Digests> {
        let (meta, _) = self.layout(sig_sizes)?;
        let mut h = ResumableSha256::new();
        h.update(&meta);
        let metadata = matches!(self.manifest, Manifest::V2(_)).then(|| h.digest());
        self.blobs.for_each_chunk(|c| {
            h.update(c);
            Ok(())
        })?;
        Ok(Digests {
            metadata,
            payload: h.digest(),
        })
    }

    /// Write the signed payload; `sign` returns one signature per size, in order.
    pub fn write_signed(
        &self,
        sig_sizes: &[usize],
        mut sign: impl FnMut(Signed, &[u8; 32]) -> Result<Vec<Vec<u8>>>,
        out: &mut impl Write,
    ) -> Result<()> {
        let v1 = matches!(self.manifest, Manifest::V1(_));
        let (meta, sig_len) = self.layout(sig_sizes)?;
        let d = self.digests(sig_sizes)?;
        let mut encode = |which: Signed, digest: &[u8; 32]| -> Result<Vec<u8>> {
            let sigs = sign(which, digest)?;
            let sizes: Vec<usize> = sigs.iter().map(Vec::len).collect();
            if sizes != sig_sizes {
                return Err(PayloadError::Generate(format!(
                    "signatures of {sizes:?} bytes, expected {sig_sizes:?}"
                )));
            }
            let blob = encode_signatures(&sigs, v1);
            debug_assert_eq!(blob.len(), sig_len);
            Ok(blob)
        };
        let msig = match d.metadata {
            Some(h) => encode(Signed::Metadata, &h)?,
            None => Vec::new(),
        };
        let psig = encode(Signed::Payload, &d.payload)?;
        let w = |out: &mut dyn Write, b: &[u8]| {
            out.write_all(b)
                .map_err(|e| PayloadError::io("writing payload", e))
        };
        w(out, &meta)?;
        w(out, &msig)?;
        self.blobs.for_each_chunk(|c| w(out, c))?;
        w(out, &psig)?;
        out.flush()
            .map_err(|e| PayloadError::io("writing payload", e))
    }

    /// Write without any signature (input to `hash` / `sign` / `insert-signature`).
    pub fn write_unsigned(&self, out: &mut impl Write) -> Result<()> {
        let manifest = match &self.manifest {
            Manifest::V2(m) => m.encode_to_vec(),
            Manifest::V1(m) => m.encode_to_vec(),
        };
        let major = if matches!(self.manifest, Manifest::V1(_)) {
            1
        } else {
            2
        };
        let mut meta = Header {
            major,
            manifest_size: manifest.len() as u64,
            metadata_signature_size: 0,
        }
        .encode();
        meta.extend_from_slice(&manifest);
        let w = |out: &mut dyn Write, b: &[u8]| {
            out.write_all(b)
                .map_err(|e| PayloadError::io("writing payload", e))
        };
        w(out, &meta)?;
        self.blobs.for_each_chunk(|c| w(out, c))?;
        out.flush()
            .map_err(|e| PayloadError::io("writing payload", e))
    }

    /// Sign with local keys.
    pub fn write_with_keys(&self, keys: &[SigningKey], out: &mut impl Write) -> Result<()> {
        if matches!(self.manifest, Manifest::V1(_))
            && keys.iter().any(|k| matches!(k, SigningKey::Ed25519(_)))
        {
            return Err(PayloadError::Generate(
                "major version 1 payloads are signed with RSA keys only".into(),
            ));
        }
        let sizes: Vec<usize> = keys.iter().map(SigningKey::signature_size).collect();
        self.write_signed(
            &sizes,
            |_, d| keys.iter().map(|k| k.sign_digest(d)).collect(),
            out,
        )
    }
}

/// Read a whole stream (used by the CLI for signature files).
pub fn read_all(mut r: impl Read) -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    r.read_to_end(&mut v)?;
    Ok(v)
}
