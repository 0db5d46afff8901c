//! Property tests: generators round-trip on arbitrary block mixes, and
//! arbitrary or mutated input never panics the reader.

mod common;
use common::*;
use payload::generate::{Compressor, GenOptions, PartitionInput};
use payload::storage::SharedBuffer;
use payload::{Slot, Slots};
use proptest::prelude::*;
use std::io::Cursor;

#[derive(Debug, Clone)]
enum B {
    Zero,
    Noise(u64),
    Text(u64),
    Old(usize),
    EditedOld(usize, usize),
}

fn block(b: &B, old: &[u8]) -> Vec<u8> {
    let nb = old.len() / BS;
    match b {
        B::Zero => vec![0; BS],
        B::Noise(s) => noise(*s, BS),
        B::Text(s) => text(*s, BS),
        B::Old(i) => old[(i % nb) * BS..(i % nb + 1) * BS].to_vec(),
        B::EditedOld(i, at) => {
            let mut v = old[(i % nb) * BS..(i % nb + 1) * BS].to_vec();
            v[at % BS] ^= 0x5A;
            v
        }
    }
}

fn blocks() -> impl Strategy<Value = Vec<B>> {
    prop::collection::vec(
        prop_oneof![
            Just(B::Zero),
            any::<u64>().prop_map(B::Noise),
            any::<u64>().prop_map(B::Text),
            any::<usize>().prop_map(B::Old),
            (any::<usize>(), any::<usize>()).prop_map(|(a, b)| B::EditedOld(a, b)),
        ],
        1..48,
    )
}

fn apply(p: &[u8], old: Option<&[u8]>) -> payload::Result<Vec<u8>> {
    let t = SharedBuffer::default();
    let mut slot = Slot::new(t.clone());
    if let Some(o) = old {
        slot = slot.with_source(SharedBuffer::new(o.to_vec()));
    }
    let mut slots = Slots::new();
    slots.insert("usr", slot);
    payload::apply(Cursor::new(p), &mut slots, &ring(&[&ed_key()]))?;
    Ok(t.contents())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn delta_roundtrip(old_spec in blocks(), new_spec in blocks(), tail in 0usize..BS) {
        let seed: Vec<u8> = text(99, 8 * BS);
        let old: Vec<u8> = old_spec.iter().flat_map(|b| block(b, &seed)).collect();
        let mut new: Vec<u8> = new_spec.iter().flat_map(|b| block(b, &old)).collect();
        new.truncate(new.len() - tail.min(new.len() - 1));
        let opts = GenOptions { diff_blocks: 8, chunk_blocks: 8, ..Default::default() };
        let p = build(&[PartitionInput { name: "usr".into(), new: &new, old: Some(&old) }], &opts, &[ed_key()]);
        let got = apply(&p, Some(&old)).unwrap();
        prop_assert!(got[..new.len()] == new[..]);
    }

    #[test]
    fn full_roundtrip(spec in blocks(), zstd in any::<bool>()) {
        let seed: Vec<u8> = text(98, 8 * BS);
        let new: Vec<u8> = spec.iter().flat_map(|b| block(b, &seed)).collect();
        let mut opts = GenOptions { chunk_blocks: 4, ..Default::default() };
        if zstd { opts.compressors.push(Compressor::Zstd); }
        let p = full("usr", &new, &opts, &[ed_key()]);
        prop_assert!(apply(&p, None).unwrap() == new);
    }

    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..400), v2 in any::<bool>()) {
        if bytes.len() >= 12 {
            bytes[..4].copy_from_slice(b"CrAU");
            bytes[4..12].copy_from_slice(&(if v2 { 2u64 } else { 1 }).to_be_bytes());
        }
        prop_assert!(apply(&bytes, None).is_err());
    }

    #[test]
    fn mutated_manifest_never_panics(pos in any::<usize>(), val in any::<u8>()) {
        // Unverified parse path (inspect): mutate inside the manifest.
        static P: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let p = P.get_or_init(|| full("usr", &new_image(), &GenOptions { chunk_blocks: 32, ..Default::default() }, &[ed_key()]));
        let mut p = p.clone();
        let m = u64::from_be_bytes(p[12..20].try_into().unwrap()) as usize;
        let orig = p[24 + pos % m];
        p[24 + pos % m] = val;
        let mut r = payload::hashing_reader::HashingReader::new(Cursor::new(&p));
        let _ = payload::apply::read_metadata(&mut r, None, &Default::default());
        prop_assert_eq!(apply(&p, None).is_ok(), orig == val);
    }
}
