//! Keys: a keyring of trusted public keys (Ed25519 native, RSA-2048/4096
//! for Flatcar compatibility) with a revocation list, and signing keys.
//!
//! Keyring directory layout: every `*.pub` / `*.pem` file is a public key
//! (SPKI PEM for either type, PKCS#1 `RSA PUBLIC KEY` PEM, or a raw 32-byte /
//! 64-hex-char Ed25519 key). A file named `revoked` lists SHA-256
//! fingerprints (hex of the SPKI DER, one a line, `#` comments) of keys that
//! must no longer be trusted. A missing or empty keyring is an error.

use crate::error::{PayloadError, Result};
use crate::proto::{Signature, Signatures};
use crate::sha::sha256;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use prost::Message;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use std::collections::HashSet;
use std::fmt;
use std::path::Path;

/// A trusted public key.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    Rsa(RsaPublicKey),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), hex::encode(self.fingerprint()))
    }
}

impl PublicKey {
    pub fn kind(&self) -> &'static str {
        match self {
            PublicKey::Ed25519(_) => "ed25519",
            PublicKey::Rsa(k) if k.size() == 512 => "rsa4096",
            PublicKey::Rsa(k) if k.size() == 256 => "rsa2048",
            PublicKey::Rsa(_) => "rsa",
        }
    }

    /// SHA-256 of the SubjectPublicKeyInfo DER: the id used by `revoked`.
    pub fn fingerprint(&self) -> [u8; 32] {
        sha256(&self.spki_der())
    }

    fn spki_der(&self) -> Vec<u8> {
        match self {
            PublicKey::Ed25519(k) => k.to_public_key_der().map(|d| d.as_bytes().to_vec()),
            PublicKey::Rsa(k) => {
                rsa::pkcs8::EncodePublicKey::to_public_key_der(k).map(|d| d.as_bytes().to_vec())
            }
        }
        .unwrap_or_default()
    }

    pub fn to_pem(&self) -> Result<String> {
        let le = rsa::pkcs8::LineEnding::LF;
        match self {
            PublicKey::Ed25519(k) => k.to_public_key_pem(le),
            PublicKey::Rsa(k) => rsa::pkcs8::EncodePublicKey::to_public_key_pem(k, le),
        }
        .map_err(|e| PayloadError::Keyring(format!("encoding public key: {e}")))
    }

    /// Parse a public key file's contents.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(bytes).unwrap_or("").trim();
        if text.contains("PRIVATE KEY") {
            return Err(PayloadError::Keyring(
                "private key found where a public key was expected".into(),
            ));
        }
        if text.contains("-----BEGIN RSA PUBLIC KEY-----") {
            return RsaPublicKey::from_pkcs1_pem(text)
                .map_err(|e| PayloadError::Keyring(format!("bad RSA key: {e}")))
                .and_then(Self::checked_rsa);
        }
        if text.contains("-----BEGIN PUBLIC KEY-----") {
            if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(text) {
                return Ok(PublicKey::Ed25519(k));
            }
            return rsa::pkcs8::DecodePublicKey::from_public_key_pem(text)
                .map_err(|e| PayloadError::Keyring(format!("unsupported public key: {e}")))
                .and_then(Self::checked_rsa);
        }
        let raw: Option<[u8; 32]> = if bytes.len() == 32 {
            bytes.try_into().ok()
        } else {
            hex::decode(text).ok().and_then(|v| v.try_into().ok())
        };
        match raw.map(|r| ed25519_dalek::VerifyingKey::from_bytes(&r)) {
            Some(Ok(k)) => Ok(PublicKey::Ed25519(k)),
            _ => Err(PayloadError::Keyring(
                "unrecognised public key format".into(),
            )),
        }
    }

    fn checked_rsa(k: RsaPublicKey) -> Result<Self> {
        match k.size() {
            256 | 512 => Ok(PublicKey::Rsa(k)),
            n => Err(PayloadError::Keyring(format!(
                "RSA key of {} bits; only 2048 and 4096 are accepted",
                n * 8
            ))),
        }
    }

    /// Verify one raw signature over a 32-byte SHA-256 digest.
    pub fn verify_digest(&self, digest: &[u8; 32], sig: &[u8]) -> bool {
        match self {
            PublicKey::Ed25519(k) => ed25519_dalek::Signature::from_slice(sig)
                .map(|s| k.verify_strict(digest, &s).is_ok())
                .unwrap_or(false),
            PublicKey::Rsa(k) => {
                sig.len() == k.size()
                    && k.verify(Pkcs1v15Sign::new::<sha2::Sha256>(), digest, sig)
                        .is_ok()
            }
        }
    }
}

/// The set of keys trusted to sign payloads.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<(String, PublicKey)>,
    revoked: HashSet<[u8; 32]>,
}

impl Keyring {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_key(mut self, name: impl Into<String>, key: PublicKey) -> Self {
        self.keys.push((name.into(), key));
        self
    }

    pub fn revoke(&mut self, fingerprint: [u8; 32]) {
        self.revoked.insert(fingerprint);
    }

    /// Load every public key of a directory, and its `revoked` list.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            PayloadError::Keyring(format!("cannot read keyring {}: {e}", dir.display()))
        })?;
        let mut ring = Keyring::new();
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name == "revoked" {
                let bytes = std::fs::read(&p)
                    .map_err(|e| PayloadError::Keyring(format!("reading {}: {e}", p.display())))?;
                for line in String::from_utf8_lossy(&bytes).lines() {
                    let line = line.split('#').next().unwrap_or("").trim();
                    if line.is_empty() {
                        continue;
                    }
                    let fp: [u8; 32] = hex::decode(line)
                        .ok()
                        .and_then(|v| v.try_into().ok())
                        .ok_or_else(|| {
                            PayloadError::Keyring(format!("bad fingerprint in revoked: {line}"))
                        })?;
                    ring.revoke(fp);
                }
            } else if name.ends_with(".pub") || name.ends_with(".pem") {
                ring.add_file(&p)?;
            }
        }
        Ok(ring)
    }

    /// Adds the public key in the PEM file `path` (such as Flatcar's
    /// `/usr/share/update_engine/update-payload-key.pub.pem`), named by its
    /// file name. The keyring's revocations apply to it too.
    pub fn add_file(&mut self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path)
            .map_err(|e| PayloadError::Keyring(format!("reading {}: {e}", path.display())))?;
        let key = PublicKey::parse(&bytes)
            .map_err(|e| PayloadError::Keyring(format!("{}: {e}", path.display())))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        self.keys.push((name, key));
        Ok(())
    }

    /// Trusted keys: loaded minus revoked. An empty result is an error.
    pub fn active(&self) -> Result<Vec<&(String, PublicKey)>> {
        let keys: Vec<_> = self
            .keys
            .iter()
            .filter(|(_, k)| !self.revoked.contains(&k.fingerprint()))
            .collect();
        if keys.is_empty() {
            return Err(PayloadError::Keyring(
                "no trusted keys (keyring empty or all keys revoked); refusing to skip signature checks".into(),
            ));
        }
        Ok(keys)
    }

    /// Check a serialized `Signatures` blob over `digest`: any signature by
    /// any trusted key wins. Returns the name of the key that matched.
    pub fn verify_blob(&self, digest: &[u8; 32], blob: &[u8]) -> Result<String, SigCheck> {
        let keys = self.active().map_err(SigCheck::Keyring)?;
        let sigs = Signatures::decode(blob).map_err(|e| SigCheck::Parse(e.to_string()))?;
        if sigs.signatures.is_empty() {
            return Err(SigCheck::Parse("no signatures in the blob".into()));
        }
        for s in &sigs.signatures {
            let data = s.data.as_deref().unwrap_or(&[]);
            let data = match s.unpadded_signature_size {
                Some(n) if (n as usize) <= data.len() => &data[..n as usize],
                Some(_) => continue,
                None => data,
            };
            for (name, key) in &keys {
                if key.verify_digest(digest, data) {
                    return Ok(name.clone());
                }
            }
        }
        Err(SigCheck::Mismatch)
    }
}

/// Why a signature blob did not verify.
#[derive(Debug)]
pub enum SigCheck {
    Keyring(PayloadError),
    Parse(String),
    Mismatch,
}

/// A private key used on the release side.
#[derive(Clone)]
#[allow(clippy::large_enum_variant)]
pub enum SigningKey {
    Ed25519(ed25519_dalek::SigningKey),
    Rsa(Box<RsaPrivateKey>),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({:?})", self.public())
    }
}

impl SigningKey {
    pub fn generate_ed25519() -> Self {
        SigningKey::Ed25519(ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng))
    }

    pub fn generate_rsa(bits: usize) -> Result<Self> {
        RsaPrivateKey::new(&mut rand::rngs::OsRng, bits)
            .map(|k| SigningKey::Rsa(Box::new(k)))
            .map_err(|e| PayloadError::Keyring(format!("RSA keygen: {e}")))
    }

    pub fn parse_pem(text: &str) -> Result<Self> {
        if text.contains("-----BEGIN RSA PRIVATE KEY-----") {
            return RsaPrivateKey::from_pkcs1_pem(text)
                .map(|k| SigningKey::Rsa(Box::new(k)))
                .map_err(|e| PayloadError::Keyring(format!("bad RSA private key: {e}")));
        }
        if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(text) {
            return Ok(SigningKey::Ed25519(k));
        }
        rsa::pkcs8::DecodePrivateKey::from_pkcs8_pem(text)
            .map(|k| SigningKey::Rsa(Box::new(k)))
            .map_err(|e| PayloadError::Keyring(format!("unsupported private key: {e}")))
    }

    pub fn to_pem(&self) -> Result<String> {
        let le = rsa::pkcs8::LineEnding::LF;
        match self {
            SigningKey::Ed25519(k) => k.to_pkcs8_pem(le).map(|s| s.to_string()),
            SigningKey::Rsa(k) => {
                rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(k.as_ref(), le).map(|s| s.to_string())
            }
        }
        .map_err(|e| PayloadError::Keyring(format!("encoding private key: {e}")))
    }

    pub fn public(&self) -> PublicKey {
        match self {
            SigningKey::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
            SigningKey::Rsa(k) => PublicKey::Rsa(k.to_public_key()),
        }
    }

    /// Fixed size of this key's signatures (the padded size in the blob).
    pub fn signature_size(&self) -> usize {
        match self {
            SigningKey::Ed25519(_) => 64,
            SigningKey::Rsa(k) => k.size(),
        }
    }

    pub fn sign_digest(&self, digest: &[u8; 32]) -> Result<Vec<u8>> {
        match self {
            SigningKey::Ed25519(k) => {
                use ed25519_dalek::Signer;
                Ok(k.sign(digest).to_bytes().to_vec())
            }
            SigningKey::Rsa(k) => k
                .sign(Pkcs1v15Sign::new::<sha2::Sha256>(), digest)
                .map_err(|e| PayloadError::Keyring(format!("RSA sign: {e}"))),
        }
    }
}

/// Serialize signatures into a `Signatures` blob. With `v1`, Flatcar's
/// numbering (`version` 2 for the last) and no `unpadded_signature_size`.
pub fn encode_signatures(sigs: &[Vec<u8>], v1: bool) -> Vec<u8> {
    let n = sigs.len() as u32;
    Signatures {
        signatures: sigs
            .iter()
            .enumerate()
            .map(|(i, s)| Signature {
                version: v1.then_some(2 + i as u32 + 1 - n),
                data: Some(s.clone()),
                unpadded_signature_size: (!v1).then_some(s.len() as u32),
            })
            .collect(),
    }
    .encode_to_vec()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// One RSA-2048 test key per test binary (generation is slow).
    pub fn rsa_test_key() -> SigningKey {
        static K: OnceLock<SigningKey> = OnceLock::new();
        K.get_or_init(|| SigningKey::generate_rsa(2048).unwrap())
            .clone()
    }

    #[test]
    fn sign_and_verify_both_kinds_through_pem() {
        for sk in [SigningKey::generate_ed25519(), rsa_test_key()] {
            let sk2 = SigningKey::parse_pem(&sk.to_pem().unwrap()).unwrap();
            let pk = PublicKey::parse(sk2.public().to_pem().unwrap().as_bytes()).unwrap();
            let d = sha256(b"payload");
            let sig = sk2.sign_digest(&d).unwrap();
            assert_eq!(sig.len(), sk.signature_size());
            assert!(pk.verify_digest(&d, &sig));
            assert!(!pk.verify_digest(&sha256(b"other"), &sig));
            let ring = Keyring::new().with_key("k", pk);
            let blob = encode_signatures(&[vec![0; sig.len()], sig], false);
            assert_eq!(ring.verify_blob(&d, &blob).unwrap(), "k");
        }
    }

    #[test]
    fn empty_and_revoked_keyrings_are_errors() {
        let sk = SigningKey::generate_ed25519();
        let d = sha256(b"x");
        let blob = encode_signatures(&[sk.sign_digest(&d).unwrap()], false);
        let e = Keyring::new().verify_blob(&d, &blob).unwrap_err();
        assert!(matches!(e, SigCheck::Keyring(_)));
        let mut ring = Keyring::new().with_key("k", sk.public());
        ring.revoke(sk.public().fingerprint());
        assert!(matches!(
            ring.verify_blob(&d, &blob).unwrap_err(),
            SigCheck::Keyring(_)
        ));
    }

    #[test]
    fn keyring_dir_with_rotation_and_revocation() {
        let dir = tempfile::tempdir().unwrap();
        let old = SigningKey::generate_ed25519();
        let new = SigningKey::generate_ed25519();
        std::fs::write(dir.path().join("old.pub"), old.public().to_pem().unwrap()).unwrap();
        std::fs::write(
            dir.path().join("new.pub"),
            match new.public() {
                PublicKey::Ed25519(k) => hex::encode(k.as_bytes()),
                _ => unreachable!(),
            },
        )
        .unwrap();
        let d = sha256(b"x");
        let by_old = encode_signatures(&[old.sign_digest(&d).unwrap()], false);
        let ring = Keyring::load_dir(dir.path()).unwrap();
        assert_eq!(ring.verify_blob(&d, &by_old).unwrap(), "old.pub");
        std::fs::write(
            dir.path().join("revoked"),
            format!(
                "# rotated out\n{}\n",
                hex::encode(old.public().fingerprint())
            ),
        )
        .unwrap();
        let ring = Keyring::load_dir(dir.path()).unwrap();
        assert!(matches!(
            ring.verify_blob(&d, &by_old).unwrap_err(),
            SigCheck::Mismatch
        ));
        let both = encode_signatures(
            &[old.sign_digest(&d).unwrap(), new.sign_digest(&d).unwrap()],
            false,
        );
        assert_eq!(ring.verify_blob(&d, &both).unwrap(), "new.pub");
    }

    #[test]
    fn missing_keyring_dir_is_an_error() {
        let e = Keyring::load_dir(Path::new("/nonexistent/keys")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("keyring: cannot read keyring /nonexistent/keys"),
            "{e}"
        );
    }

    #[test]
    fn rejects_small_rsa_and_private_keys() {
        let k = RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024).unwrap();
        let pem = rsa::pkcs8::EncodePublicKey::to_public_key_pem(
            &k.to_public_key(),
            rsa::pkcs8::LineEnding::LF,
        )
        .unwrap();
        let e = PublicKey::parse(pem.as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "keyring: RSA key of 1024 bits; only 2048 and 4096 are accepted"
        );
        let sk = SigningKey::generate_ed25519().to_pem().unwrap();
        assert!(PublicKey::parse(sk.as_bytes()).is_err());
    }
}
