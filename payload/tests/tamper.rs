//! Tampering and malformed input: every region of a signed payload, bit by
//! bit and cut by cut, gives its own error, and (v2) the target is unchanged
//! from the failing operation's region on — proven by hashing.

mod common;
use common::*;
use payload::generate::{Compressor, GenOptions};
use payload::proto::{
    Extent, InstallOperation, ManifestV2, OpType, PartitionInfo, PartitionUpdate,
};
use payload::storage::SharedBuffer;
use payload::{Applier, ApplyOptions, Limits, PayloadError, Slot, Slots};
use std::io::Cursor;

const FILL: u8 = 0xA5;

struct Layout {
    metadata_size: usize,
    data_start: usize,
    /// (global op index, file range of its blob, dst byte ranges)
    blobs: Vec<(usize, std::ops::Range<usize>)>,
    dst: Vec<Vec<std::ops::Range<usize>>>,
    sig: std::ops::Range<usize>,
}

fn layout(p: &[u8]) -> Layout {
    let mut r = payload::hashing_reader::HashingReader::new(Cursor::new(p));
    let m = payload::apply::read_metadata(&mut r, None, &Limits::default()).unwrap();
    let ds = m.header.data_start() as usize;
    let mut blobs = Vec::new();
    let mut dst = Vec::new();
    for part in &m.plan.partitions {
        for (k, op) in part.ops.iter().enumerate() {
            if let (Some(o), Some(l)) = (op.data_offset, op.data_length)
                && l > 0
            {
                blobs.push((part.first_op + k, ds + o as usize..ds + (o + l) as usize));
            }
            dst.push(
                op.dst_extents
                    .iter()
                    .map(|x| (x.start() * 4096) as usize..((x.start() + x.num()) * 4096) as usize)
                    .collect(),
            );
        }
    }
    let so = ds + m.plan.signatures_offset.unwrap() as usize;
    Layout {
        metadata_size: m.header.metadata_size() as usize,
        data_start: ds,
        blobs,
        dst,
        sig: so..so + m.plan.signatures_size.unwrap() as usize,
    }
}

/// Apply `p`, return the error and the final target contents.
fn run(p: &[u8], len: usize, old: Option<&[u8]>) -> (PayloadError, Vec<u8>) {
    let t = SharedBuffer::new(vec![FILL; len]);
    let mut slot = Slot::new(t.clone());
    if let Some(o) = old {
        slot = slot.with_source(SharedBuffer::new(o.to_vec()));
    }
    let mut slots = Slots::new();
    slots.insert("usr", slot);
    let e = payload::apply(Cursor::new(p), &mut slots, &ring(&[&ed_key()])).unwrap_err();
    (e, t.contents())
}

/// Ops before `first_bad` wrote the new image; ops from it on left the target alone.
fn assert_untouched_from(l: &Layout, first_bad: usize, target: &[u8], new: &[u8], what: &str) {
    for (i, ranges) in l.dst.iter().enumerate() {
        for r in ranges {
            let got = sha(&target[r.clone()]);
            if i >= first_bad {
                assert_eq!(
                    got,
                    sha(&vec![FILL; r.len()]),
                    "{what}: op {i} region was written"
                );
            } else {
                assert_eq!(
                    got,
                    sha(&new[r.clone()]),
                    "{what}: op {i} region not applied"
                );
            }
        }
    }
}

type Case = (&'static str, Vec<u8>, Option<Vec<u8>>);

fn payloads() -> Vec<Case> {
    let new = new_image();
    let mut v = Vec::new();
    for (name, c) in [
        ("bz", Compressor::Bzip2),
        ("xz", Compressor::Xz),
        ("zstd", Compressor::Zstd),
    ] {
        let opts = GenOptions {
            compressors: vec![c],
            chunk_blocks: 64,
            ..Default::default()
        };
        v.push((name, full("usr", &new, &opts, &[ed_key()]), None));
    }
    v.push((
        "delta",
        delta(&new, &old_image(), &[ed_key()]),
        Some(old_image()),
    ));
    v
}

#[test]
fn flipped_bits_in_every_region() {
    let new = new_image();
    for (name, p, old) in payloads() {
        let l = layout(&p);
        let old = old.as_deref();
        let mut cases: Vec<(usize, &str, Option<usize>)> = vec![
            (0, "bad_magic", None),
            (11, "unsupported_version", None),
            (
                24 + (l.metadata_size - 24) / 2,
                "metadata_signature_mismatch",
                None,
            ),
            (
                l.metadata_size + (l.data_start - l.metadata_size) / 2,
                "metadata_signature_mismatch",
                None,
            ),
            (
                l.sig.start + l.sig.len() / 2,
                "payload_signature_mismatch",
                Some(usize::MAX),
            ),
        ];
        for (idx, r) in &l.blobs {
            cases.push((r.start, "operation_hash_mismatch", Some(*idx)));
            cases.push((r.end - 1, "operation_hash_mismatch", Some(*idx)));
        }
        for (at, kind, first_bad) in cases {
            let mut bad = p.clone();
            bad[at] ^= 1;
            let (e, target) = run(&bad, new.len(), old);
            assert_eq!(e.error_kind(), kind, "{name}: flip at {at}: {e}");
            match first_bad {
                None => assert_eq!(
                    sha(&target),
                    sha(&vec![FILL; new.len()]),
                    "{name}: flip at {at}"
                ),
                Some(usize::MAX) => assert!(target == new, "{name}: data was verified, so applied"),
                Some(i) => {
                    assert!(
                        e.to_string()
                            .starts_with(&format!("operation {i} (usr): data hash mismatch")),
                        "{e}"
                    );
                    assert_eq!(e.flatcar_code(), 29);
                    assert_untouched_from(&l, i, &target, &new, name);
                }
            }
        }
    }
}

#[test]
fn truncated_at_many_offsets() {
    let new = new_image();
    for (name, p, old) in payloads() {
        let l = layout(&p);
        let mut cuts: Vec<usize> = (0..p.len()).step_by(p.len() / 40 + 1).collect();
        cuts.extend([
            1,
            19,
            20,
            23,
            24,
            l.metadata_size,
            l.data_start,
            l.sig.start,
            p.len() - 1,
        ]);
        for (_, r) in &l.blobs {
            cuts.extend([r.start, r.start + 1, r.end - 1]);
        }
        for cut in cuts {
            let (e, target) = run(&p[..cut], new.len(), old.as_deref());
            assert_eq!(e.error_kind(), "truncated", "{name}: cut at {cut}: {e}");
            assert_eq!(e.flatcar_code(), 11);
            assert_eq!(
                e.to_string().split(" while").next().unwrap(),
                format!("payload truncated at byte {cut}")
            );
            // The op whose blob was cut, and all after it, wrote nothing.
            let first_bad = l.blobs.iter().find(|(_, r)| r.end > cut).map(|(i, _)| *i);
            if cut < l.data_start {
                assert_eq!(
                    sha(&target),
                    sha(&vec![FILL; new.len()]),
                    "{name}: cut {cut}"
                );
            } else if let Some(i) = first_bad {
                let first_bad = l.dst[..i].len();
                // Data-less ops between blobs may have run; check data ops only.
                for (j, r) in l
                    .blobs
                    .iter()
                    .filter(|(j, _)| *j >= first_bad)
                    .map(|(j, _)| (*j, &l.dst[*j]))
                {
                    for r in r {
                        assert_eq!(
                            sha(&target[r.clone()]),
                            sha(&vec![FILL; r.len()]),
                            "{name}: cut {cut} op {j}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn trailing_data_size_and_hash_expectations() {
    let new = new_image();
    let p = full("usr", &new, &GenOptions::default(), &[ed_key()]);
    let mut long = p.clone();
    long.push(0);
    let (e, _) = run(&long, new.len(), None);
    assert_eq!(
        e.to_string(),
        format!("payload has trailing data after byte {}", p.len())
    );
    let keys = ring(&[&ed_key()]);
    for (opts, msg, code) in [
        (
            ApplyOptions {
                expected_size: Some(p.len() as u64 + 1),
                ..Default::default()
            },
            format!(
                "payload size mismatch: expected {} bytes, got {}",
                p.len() + 1,
                p.len()
            ),
            11,
        ),
        (
            ApplyOptions {
                expected_sha256: Some([0; 32]),
                ..Default::default()
            },
            format!(
                "payload hash mismatch: expected {}, got {}",
                "0".repeat(64),
                hex::encode(sha(&p))
            ),
            10,
        ),
    ] {
        let mut slots = Slots::new();
        slots.insert("usr", Slot::new(SharedBuffer::default()));
        let e = Applier::new(&keys)
            .options(opts)
            .apply(Cursor::new(&p), &mut slots)
            .unwrap_err();
        assert_eq!(e.to_string(), msg);
        assert_eq!(e.flatcar_code(), code);
    }
}

#[test]
fn keyring_problems_fail_before_reading() {
    let p = full("usr", &new_image(), &GenOptions::default(), &[ed_key()]);
    let mut slots = Slots::new();
    let t = SharedBuffer::default();
    slots.insert("usr", Slot::new(t.clone()));
    let e = payload::apply(Cursor::new(&p), &mut slots, &payload::Keyring::new()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "keyring: no trusted keys (keyring empty or all keys revoked); refusing to skip signature checks"
    );
    assert_eq!(e.flatcar_code(), 18);
    // Signed by a key we do not trust.
    let e = payload::apply(Cursor::new(&p), &mut slots, &ring(&[&rsa_key()])).unwrap_err();
    assert_eq!(e.error_kind(), "metadata_signature_mismatch");
    assert!(t.contents().is_empty());
    // Manifest larger than a (small) cap.
    let keys = ring(&[&ed_key()]);
    let opts = ApplyOptions {
        limits: Limits {
            max_manifest_size: 100,
            ..Default::default()
        },
        ..Default::default()
    };
    let e = Applier::new(&keys)
        .options(opts)
        .apply(Cursor::new(&p), &mut slots)
        .unwrap_err();
    assert!(
        e.to_string().starts_with("manifest size ")
            && e.to_string().ends_with("exceeds the limit of 100 bytes")
    );
    assert_eq!(e.flatcar_code(), 32);
}

fn op(ty: OpType, dst: Vec<Extent>, off: Option<u64>, blob: &[u8]) -> InstallOperation {
    InstallOperation {
        r#type: ty as i32,
        dst_extents: dst,
        data_offset: off,
        data_length: (!blob.is_empty()).then_some(blob.len() as u64),
        data_sha256_hash: (!blob.is_empty()).then(|| sha(blob).to_vec()),
        ..Default::default()
    }
}

fn manifest(ops: Vec<InstallOperation>, size: u64, minor: u32) -> ManifestV2 {
    ManifestV2 {
        block_size: Some(4096),
        minor_version: Some(minor),
        partitions: vec![PartitionUpdate {
            partition_name: "usr".into(),
            new_partition_info: Some(PartitionInfo {
                size: Some(size),
                hash: Some(vec![0; 32]),
            }),
            operations: ops,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn malformed_manifests_table() {
    let b = vec![7u8; 4096];
    let r = |dst: Vec<Extent>, off: u64| op(OpType::Replace, dst, Some(off), &b);
    let e1 = |s, n| vec![Extent::new(s, n)];
    let mut no_hash = r(e1(0, 1), 0);
    no_hash.data_sha256_hash = None;
    let mut zero_with_data = op(OpType::Zero, e1(1, 1), None, &[]);
    zero_with_data.data_length = Some(5);
    let mut unknown = r(e1(0, 1), 0);
    unknown.r#type = 99;
    let mut copy = op(OpType::SourceCopy, e1(0, 1), None, &[]);
    copy.src_extents = e1(0, 1);
    let mut huge = r(e1(0, 1), 0);
    huge.data_length = Some(1 << 32);
    let mut no_new = manifest(vec![r(e1(0, 1), 0)], 8192, 0);
    no_new.partitions[0].new_partition_info = None;
    let mut twice = manifest(vec![r(e1(0, 1), 0)], 8192, 0);
    twice.partitions.push(twice.partitions[0].clone());
    let rows: Vec<(ManifestV2, usize, &str)> = vec![
        (
            manifest(vec![r(e1(1 << 31, 1), 0)], 8192, 0),
            1,
            "operation 0 (usr): destination extent 2147483648+1 ends past the partition's 2 blocks",
        ),
        (
            manifest(vec![r(e1(0, 1 << 32), 0)], 8192, 0),
            1,
            "operation 0 (usr): destination extent 0+4294967296 ends past the partition's 2 blocks",
        ),
        (
            manifest(vec![r(e1(u64::MAX - 1, 5), 0)], 8192, 0),
            1,
            "operation 0 (usr): destination extent 18446744073709551614+5 ends past the partition's 2 blocks",
        ),
        (
            manifest(vec![r(e1(2, 1), 0)], 8192, 0),
            1,
            "operation 0 (usr): destination extent 2+1 ends past the partition's 2 blocks",
        ),
        (
            manifest(vec![r(vec![], 0)], 8192, 0),
            1,
            "operation 0 (usr): no destination extents",
        ),
        (
            manifest(vec![r(e1(0, 0), 0)], 8192, 0),
            1,
            "operation 0 (usr): destination extent at block 0 is empty",
        ),
        (
            manifest(vec![r(e1(0, 1), 0), r(e1(0, 1), 4096)], 8192, 0),
            2,
            "operation 1 (usr): destination extents overlap another operation's",
        ),
        (
            manifest(
                vec![r(vec![Extent::new(0, 1), Extent::new(0, 1)], 0)],
                8192,
                0,
            ),
            1,
            "operation 0 (usr): destination extents overlap another operation's",
        ),
        (
            manifest(vec![r(e1(0, 1), 0), r(e1(1, 1), 0)], 8192, 0),
            2,
            "operation 1 (usr): data offset 0 but the blobs so far end at 4096",
        ),
        (
            manifest(vec![r(e1(0, 1), 4096), r(e1(1, 1), 0)], 8192, 0),
            2,
            "operation 0 (usr): data offset 4096 but the blobs so far end at 0",
        ),
        (
            manifest(vec![no_hash], 8192, 0),
            1,
            "operation 0 (usr): data hash missing",
        ),
        (
            manifest(vec![huge], 8192, 0),
            1,
            "operation 0 (usr): data of 4294967296 bytes exceeds the cap of 16777216",
        ),
        (
            manifest(vec![unknown], 8192, 0),
            1,
            "operation 0 (usr): unknown operation type 99",
        ),
        (
            manifest(vec![copy], 8192, 0),
            0,
            "operation 0 (usr): operation SOURCE_COPY not supported in major 2 minor 0",
        ),
        (
            manifest(
                vec![op(OpType::ReplaceZstd, e1(0, 1), Some(0), &b)],
                8192,
                0,
            ),
            1,
            "operation 0 (usr): operation REPLACE_ZSTD not supported in major 2 minor 0",
        ),
        (
            manifest(vec![r(e1(0, 1), 0), zero_with_data], 8192, 64),
            1,
            "operation 1 (usr): ZERO carries data",
        ),
        (
            manifest(vec![r(e1(0, 1), 0)], 8192, 4),
            1,
            "invalid manifest: minor version 4 not valid for a full payload",
        ),
        (
            no_new,
            1,
            "invalid manifest: partition usr: new_partition_info missing",
        ),
        (twice, 1, "invalid manifest: partition usr listed twice"),
    ];
    for (m, nblobs, msg) in rows {
        let blobs: Vec<&[u8]> = vec![&b[..]; nblobs];
        let p = sign_manifest(m, &blobs, &[ed_key()]);
        let t = SharedBuffer::default();
        let mut slots = Slots::new();
        slots.insert("usr", Slot::new(t.clone()));
        let e = payload::apply(Cursor::new(&p), &mut slots, &ring(&[&ed_key()])).unwrap_err();
        assert_eq!(e.to_string(), msg);
        assert!(t.contents().is_empty(), "{msg}: target written");
        assert!(
            [23, 28, 38].contains(&e.flatcar_code()),
            "{msg}: code {}",
            e.flatcar_code()
        );
    }
}

#[test]
fn header_sizes_near_2_31_and_2_32() {
    for m in [(1u64 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 32, u64::MAX] {
        let mut p = b"CrAU".to_vec();
        p.extend(2u64.to_be_bytes());
        p.extend(m.to_be_bytes());
        p.extend(0u32.to_be_bytes());
        let (e, _) = run(&p, 0, None);
        assert_eq!(
            e.to_string(),
            format!("manifest size {m} exceeds the limit of 33554432 bytes")
        );
    }
    let mut p = b"CrAU".to_vec();
    p.extend(2u64.to_be_bytes());
    p.extend(10u64.to_be_bytes());
    p.extend((1u32 << 31).to_be_bytes());
    let (e, _) = run(&p, 0, None);
    assert_eq!(
        e.to_string(),
        "metadata signature size 2147483648 exceeds the limit of 65536 bytes"
    );
}
