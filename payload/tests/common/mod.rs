#![allow(dead_code)]
//! Shared helpers: deterministic images, keys, payload builders.

use payload::generate::{GenOptions, PartitionInput, generate};
use payload::keys::{Keyring, SigningKey};
use payload::write::{BlobStore, Manifest, UnsignedPayload};
use std::sync::OnceLock;

pub const BS: usize = 4096;

/// xorshift64* bytes: incompressible-ish, deterministic.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// Text-like, compressible data.
pub fn text(seed: u64, len: usize) -> Vec<u8> {
    let words = [
        "update", "engine", "payload", "flatcar", "slot", "kernel", "usr", "\n", "sysext", "verity",
    ];
    let r = noise(seed, len / 4 + 1);
    let mut v = Vec::with_capacity(len + 16);
    let mut i = 0;
    while v.len() < len {
        v.extend_from_slice(words[r[i % r.len()] as usize % words.len()].as_bytes());
        v.push(b' ');
        i += 1;
    }
    v.truncate(len);
    v
}

/// An old image: text, noise, zero blocks. 1.5 MiB.
pub fn old_image() -> Vec<u8> {
    let mut v = text(1, 512 * 1024);
    v.extend(noise(2, 512 * 1024));
    v.extend(vec![0u8; 256 * 1024]);
    v.extend(text(3, 256 * 1024));
    v
}

/// The new image: moved blocks, edited text, new noise, zeros. 1.5 MiB.
pub fn new_image() -> Vec<u8> {
    let old = old_image();
    let mut v = Vec::new();
    v.extend_from_slice(&old[512 * 1024..768 * 1024]); // moved noise
    let mut t = old[..512 * 1024].to_vec(); // edited text
    for i in (1000..t.len()).step_by(50_000) {
        t[i..i + 10].copy_from_slice(b"CHANGED!!!");
    }
    v.extend(t);
    v.extend(vec![0u8; 128 * 1024]);
    v.extend(noise(9, 256 * 1024)); // brand new
    v.extend_from_slice(&old[1280 * 1024..1536 * 1024]);
    v.extend(vec![0u8; 128 * 1024]);
    v
}

pub fn ed_key() -> SigningKey {
    static K: OnceLock<SigningKey> = OnceLock::new();
    K.get_or_init(SigningKey::generate_ed25519).clone()
}

pub fn rsa_key() -> SigningKey {
    static K: OnceLock<SigningKey> = OnceLock::new();
    K.get_or_init(|| SigningKey::generate_rsa(2048).unwrap())
        .clone()
}

pub fn ring(keys: &[&SigningKey]) -> Keyring {
    keys.iter().enumerate().fold(Keyring::new(), |r, (i, k)| {
        r.with_key(format!("key{i}"), k.public())
    })
}

pub fn build(parts: &[PartitionInput<'_>], opts: &GenOptions, keys: &[SigningKey]) -> Vec<u8> {
    let u = generate(parts, opts).unwrap();
    let mut out = Vec::new();
    u.write_with_keys(keys, &mut out).unwrap();
    out
}

pub fn full(name: &str, new: &[u8], opts: &GenOptions, keys: &[SigningKey]) -> Vec<u8> {
    build(
        &[PartitionInput {
            name: name.into(),
            new,
            old: None,
        }],
        opts,
        keys,
    )
}

pub fn delta(new: &[u8], old: &[u8], keys: &[SigningKey]) -> Vec<u8> {
    build(
        &[PartitionInput {
            name: "usr".into(),
            new,
            old: Some(old),
        }],
        &GenOptions::default(),
        keys,
    )
}

/// Sign an arbitrary v2 manifest with the given blobs (for malformed cases).
pub fn sign_manifest(
    m: payload::proto::ManifestV2,
    blobs: &[&[u8]],
    keys: &[SigningKey],
) -> Vec<u8> {
    let mut store = BlobStore::temp().unwrap();
    for b in blobs {
        store.append(b).unwrap();
    }
    let u = UnsignedPayload {
        manifest: Manifest::V2(m),
        blobs: store,
    };
    let mut out = Vec::new();
    u.write_with_keys(keys, &mut out).unwrap();
    out
}

pub fn sha(b: &[u8]) -> [u8; 32] {
    payload::sha::sha256(b)
}
