//! SHA-256 whose state can be saved in a checkpoint and restored, so an
//! interrupted download resumes without re-reading what it already hashed.
//! The compression function is `sha2::compress256` (hardware accelerated
//! where available); only buffering and padding live here.

use serde::{Deserialize, Serialize};
use sha2::digest::generic_array::GenericArray;

const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Resumable SHA-256. `Serialize` gives the state stored in checkpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumableSha256 {
    state: [u32; 8],
    /// Bytes not yet compressed (< 64), hex in JSON.
    #[serde(with = "hex_bytes")]
    pending: Vec<u8>,
    total: u64,
}

impl Default for ResumableSha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl ResumableSha256 {
    pub fn new() -> Self {
        ResumableSha256 {
            state: H0,
            pending: Vec::with_capacity(64),
            total: 0,
        }
    }

    /// Number of bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.total += data.len() as u64;
        if !self.pending.is_empty() {
            let take = (64 - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() < 64 {
                return;
            }
            let block = GenericArray::clone_from_slice(&self.pending);
            sha2::compress256(&mut self.state, &[block]);
            self.pending.clear();
        }
        let mut chunks = data.chunks_exact(64);
        for c in &mut chunks {
            sha2::compress256(
                &mut self.state,
                std::slice::from_ref(GenericArray::from_slice(c)),
            );
        }
        self.pending.extend_from_slice(chunks.remainder());
    }

    /// The digest of everything hashed so far; the hasher can keep going.
    pub fn digest(&self) -> [u8; 32] {
        let mut state = self.state;
        let mut tail = self.pending.clone();
        tail.push(0x80);
        while tail.len() % 64 != 56 {
            tail.push(0);
        }
        tail.extend_from_slice(&(self.total.wrapping_mul(8)).to_be_bytes());
        for c in tail.chunks_exact(64) {
            sha2::compress256(
                &mut state,
                std::slice::from_ref(GenericArray::from_slice(c)),
            );
        }
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(state) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    /// Rejects states that could not have come from [`update`](Self::update).
    pub fn is_consistent(&self) -> bool {
        self.pending.len() < 64 && self.total % 64 == self.pending.len() as u64
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

/// One-shot SHA-256.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_sha2_for_all_split_points() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in [0, 1, 55, 56, 63, 64, 65, 128, 300] {
            for split in [0, 1, 63, 64, 100] {
                let split = split.min(len);
                let mut h = ResumableSha256::new();
                h.update(&data[..split]);
                let saved: ResumableSha256 =
                    serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
                let mut h = saved;
                h.update(&data[split..len]);
                assert_eq!(h.digest(), sha256(&data[..len]), "len {len} split {split}");
                assert!(h.is_consistent());
            }
        }
    }

    #[test]
    fn empty_digest() {
        assert_eq!(
            hex::encode(ResumableSha256::new().digest()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
