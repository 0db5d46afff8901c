//! Round trips: full and delta, v1 and v2, every operation type, several
//! images per payload, resume, re-signing and the HSM flow.

mod common;
use common::*;
use payload::generate::{Compressor, GenOptions, PartitionInput};
use payload::proto::{OpType, ReleaseInfo};
use payload::storage::SharedBuffer;
use payload::write::{Signed, UnsignedPayload};
use payload::{Applier, ApplyOptions, Checkpoint, Expectations, Slot, Slots};
use std::io::Cursor;

fn slots1(name: &str, target: &SharedBuffer, source: Option<&SharedBuffer>) -> Slots {
    let mut s = Slots::new();
    let mut slot = Slot::new(target.clone());
    if let Some(src) = source {
        slot = slot.with_source(src.clone());
    }
    s.insert(name, slot);
    s
}

fn op_types(p: &[u8]) -> Vec<OpType> {
    let mut r = payload::hashing_reader::HashingReader::new(Cursor::new(p));
    let m = payload::apply::read_metadata(&mut r, None, &Default::default()).unwrap();
    let mut v: Vec<OpType> = m
        .plan
        .partitions
        .iter()
        .flat_map(|p| p.ops.iter().map(|o| OpType::try_from(o.r#type).unwrap()))
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn full_v2_every_compressor() {
    let new = new_image();
    for comps in [
        vec![],
        vec![Compressor::Xz],
        vec![Compressor::Bzip2],
        vec![Compressor::Zstd],
        vec![Compressor::Xz, Compressor::Bzip2, Compressor::Zstd],
    ] {
        let opts = GenOptions {
            compressors: comps.clone(),
            chunk_blocks: 64,
            ..Default::default()
        };
        let p = full("usr", &new, &opts, &[ed_key()]);
        let t = SharedBuffer::new(vec![0xAA; 100]);
        let report = payload::apply(
            Cursor::new(&p),
            &mut slots1("usr", &t, None),
            &ring(&[&ed_key()]),
        )
        .unwrap();
        assert!(t.contents() == new, "{comps:?}");
        assert_eq!(report.written, vec![("usr".to_string(), new.len() as u64)]);
        let types = op_types(&p);
        for c in &comps {
            let want = match c {
                Compressor::Xz => OpType::ReplaceXz,
                Compressor::Bzip2 => OpType::ReplaceBz,
                Compressor::Zstd => OpType::ReplaceZstd,
            };
            if comps.len() == 1 {
                assert!(types.contains(&want), "{comps:?} -> {types:?}");
            }
        }
        assert!(
            types.contains(&OpType::Replace),
            "noise chunks stay raw: {types:?}"
        );
        assert_eq!(
            report.minor,
            if comps.contains(&Compressor::Zstd) {
                64
            } else {
                0
            }
        );
    }
}

#[test]
fn delta_v2_uses_zero_copy_bsdiff_replace_and_matches() {
    let (old, new) = (old_image(), new_image());
    let p = delta(&new, &old, &[ed_key()]);
    let types = op_types(&p);
    for t in [OpType::Zero, OpType::SourceCopy, OpType::SourceBsdiff] {
        assert!(types.contains(&t), "{t:?} missing from {types:?}");
    }
    assert!(
        types
            .iter()
            .any(|t| matches!(t, OpType::Replace | OpType::ReplaceXz | OpType::ReplaceBz))
    );
    assert!(p.len() < new.len() / 4, "delta is {} bytes", p.len());
    let t = SharedBuffer::new(vec![0x55; new.len()]);
    let src = SharedBuffer::new(old.clone());
    payload::apply(
        Cursor::new(&p),
        &mut slots1("usr", &t, Some(&src)),
        &ring(&[&ed_key()]),
    )
    .unwrap();
    assert!(t.contents() == new);
    // Wrong old slot: source hash error, named operation.
    let mut wrong = old.clone();
    wrong[600 * 1024] ^= 1;
    let t = SharedBuffer::new(vec![0x55; new.len()]);
    let e = payload::apply(
        Cursor::new(&p),
        &mut slots1("usr", &t, Some(&SharedBuffer::new(wrong))),
        &ring(&[&ed_key()]),
    )
    .unwrap_err();
    assert_eq!(e.error_kind(), "source_hash_mismatch", "{e}");
    assert_eq!(e.flatcar_code(), 27);
}

#[test]
fn delta_and_full_with_rsa_key() {
    let (old, new) = (old_image(), new_image());
    let p = delta(&new, &old, &[rsa_key()]);
    let t = SharedBuffer::new(Vec::new());
    let r = payload::apply(
        Cursor::new(&p),
        &mut slots1("usr", &t, Some(&SharedBuffer::new(old))),
        &ring(&[&rsa_key()]),
    )
    .unwrap();
    assert!(t.contents() == new);
    assert_eq!(r.payload_signed_by, "key0");
}

#[test]
fn v1_flatcar_layout_with_kernel_roundtrip() {
    let usr = new_image();
    let kernel = text(7, 300_001); // not a block multiple
    let p = build(
        &[
            PartitionInput {
                name: "usr".into(),
                new: &usr,
                old: None,
            },
            PartitionInput {
                name: "kernel".into(),
                new: &kernel,
                old: None,
            },
        ],
        &GenOptions::flatcar_v1(),
        &[rsa_key()],
    );
    assert_eq!(&p[..12], b"CrAU\0\0\0\0\0\0\0\x01");
    let types = op_types(&p);
    assert!(
        types
            .iter()
            .all(|t| matches!(t, OpType::Replace | OpType::ReplaceBz)),
        "{types:?}"
    );
    let (t, k) = (
        SharedBuffer::new(Vec::new()),
        SharedBuffer::new(vec![1; 500_000]),
    );
    let mut slots = slots1("usr", &t, None);
    let mut ks = Slot::new(k.clone());
    ks.truncate = true;
    slots.insert("kernel", ks);
    let r = payload::apply(Cursor::new(&p), &mut slots, &ring(&[&rsa_key()])).unwrap();
    assert_eq!(r.major, 1);
    assert!(t.contents() == usr);
    assert!(k.contents() == kernel);
    // v1 carries no release info: announced version/board expectations
    // refuse it unless the caller binds the release another way.
    let expect = Expectations {
        version: Some("3600.0.0".into()),
        board: Some("amd64-usr".into()),
        ..Default::default()
    };
    for (v1_unbound, want) in [
        (
            false,
            Err("release check failed: version \"\" in the payload, \"3600.0.0\" expected"),
        ),
        (true, Ok(1)),
    ] {
        let opts = ApplyOptions {
            expect: Expectations {
                v1_unbound,
                ..expect.clone()
            },
            ..Default::default()
        };
        let mut slots = slots1("usr", &SharedBuffer::default(), None);
        slots.skip_missing = true;
        let got = Applier::new(&ring(&[&rsa_key()]))
            .options(opts)
            .apply(Cursor::new(&p), &mut slots)
            .map(|r| r.major)
            .map_err(|e| e.to_string());
        assert_eq!(got, want.map_err(String::from), "v1_unbound {v1_unbound}");
    }
    // v1 with an Ed25519 key is refused.
    let u = payload::generate::generate(
        &[PartitionInput {
            name: "usr".into(),
            new: &usr,
            old: None,
        }],
        &GenOptions::flatcar_v1(),
    )
    .unwrap();
    let e = u.write_with_keys(&[ed_key()], &mut Vec::new()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "generating payload: major version 1 payloads are signed with RSA keys only"
    );
}

#[test]
fn one_manifest_covers_usr_kernel_and_extensions() {
    let (usr, kernel, ext) = (new_image(), text(5, 10_000), noise(6, 40_000));
    let opts = GenOptions {
        release: Some(ReleaseInfo {
            version: Some("4081.2.0".into()),
            app_id: Some("{e96281a6-d1af-4bde-9a0a-97b76e56dc57}".into()),
            board: Some("amd64-usr".into()),
            channel: Some("stable".into()),
        }),
        timestamp: Some(1_700_000_000),
        ..Default::default()
    };
    let p = build(
        &[
            PartitionInput {
                name: "usr".into(),
                new: &usr,
                old: None,
            },
            PartitionInput {
                name: "kernel".into(),
                new: &kernel,
                old: None,
            },
            PartitionInput {
                name: "sysext-docker".into(),
                new: &ext,
                old: None,
            },
        ],
        &opts,
        &[ed_key()],
    );
    let keys = ring(&[&ed_key()]);
    let (t, k, x) = (
        SharedBuffer::default(),
        SharedBuffer::default(),
        SharedBuffer::default(),
    );
    let mut slots = slots1("usr", &t, None);
    slots.insert(
        "kernel",
        Slot {
            truncate: true,
            ..Slot::new(k.clone())
        },
    );
    slots.insert(
        "sysext-docker",
        Slot {
            truncate: true,
            ..Slot::new(x.clone())
        },
    );
    let expect = Expectations {
        version: Some("4081.2.0".into()),
        board: Some("amd64-usr".into()),
        min_timestamp: Some(1_600_000_000),
        ..Default::default()
    };
    let opts = ApplyOptions {
        expect,
        expected_size: Some(p.len() as u64),
        expected_sha256: Some(sha(&p)),
        ..Default::default()
    };
    let r = Applier::new(&keys)
        .options(opts.clone())
        .apply(Cursor::new(&p), &mut slots)
        .unwrap();
    assert!((t.contents(), k.contents(), x.contents()) == (usr.clone(), kernel, ext));
    assert_eq!(
        r.release.unwrap().app_id.unwrap(),
        "{e96281a6-d1af-4bde-9a0a-97b76e56dc57}"
    );

    // Extension without a target: verified and skipped only when asked.
    let mut slots = slots1("usr", &SharedBuffer::default(), None);
    slots.insert("kernel", Slot::new(SharedBuffer::default()));
    let e = payload::apply(Cursor::new(&p), &mut slots, &keys).unwrap_err();
    assert_eq!(e.to_string(), "no target for partition sysext-docker");
    slots.skip_missing = true;
    let r = payload::apply(Cursor::new(&p), &mut slots, &keys).unwrap();
    assert_eq!(r.skipped, vec!["sysext-docker".to_string()]);

    // Release binding and downgrade protection, checked before writing.
    for (exp, msg) in [
        (
            Expectations {
                version: Some("4081.3.0".into()),
                // Only for v1: a v2 payload is still bound.
                v1_unbound: true,
                ..Default::default()
            },
            "release check failed: version \"4081.2.0\" in the payload, \"4081.3.0\" expected",
        ),
        (
            Expectations {
                app_id: Some("other".into()),
                ..Default::default()
            },
            "release check failed: app id \"{e96281a6-d1af-4bde-9a0a-97b76e56dc57}\" in the payload, \"other\" expected",
        ),
        (
            Expectations {
                min_timestamp: Some(1_800_000_000),
                ..Default::default()
            },
            "release check failed: payload timestamp 1700000000 is older than 1800000000 (downgrade)",
        ),
    ] {
        let t = SharedBuffer::new(vec![3; 10]);
        let mut slots = slots1("usr", &t, None);
        slots.skip_missing = true;
        let opts = ApplyOptions {
            expect: exp,
            ..Default::default()
        };
        let e = Applier::new(&keys)
            .options(opts)
            .apply(Cursor::new(&p), &mut slots)
            .unwrap_err();
        assert_eq!(e.to_string(), msg);
        assert_eq!(t.contents(), vec![3; 10]);
    }
}

#[test]
fn resume_from_every_checkpoint() {
    let (old, new) = (old_image(), new_image());
    let p = delta(&new, &old, &[ed_key()]);
    let keys = ring(&[&ed_key()]);
    let mut cps: Vec<Checkpoint> = Vec::new();
    let t = SharedBuffer::default();
    Applier::new(&keys)
        .on_checkpoint(|c| cps.push(c.clone()))
        .apply(
            Cursor::new(&p),
            &mut slots1("usr", &t, Some(&SharedBuffer::new(old.clone()))),
        )
        .unwrap();
    assert!(cps.len() > 4);
    for cp in cps.iter().step_by(2) {
        let cp: Checkpoint = serde_json::from_str(&serde_json::to_string(cp).unwrap()).unwrap();
        // Target holds what was written up to the checkpoint; emulate with a
        // partially written image: only the ops before next_op ran.
        let t = SharedBuffer::default();
        let mut slots = slots1("usr", &t, Some(&SharedBuffer::new(old.clone())));
        let mut first = None;
        Applier::new(&keys)
            .on_checkpoint(|c| {
                if c.next_op == cp.next_op && first.is_none() {
                    first = Some(c.clone());
                }
            })
            .apply(Cursor::new(&p[..cp.resume_offset() as usize]), &mut slots)
            .unwrap_err();
        assert_eq!(first.as_ref(), Some(&cp));
        let start = cp.data_start as usize;
        let r = Applier::new(&keys)
            .resume(
                Cursor::new(&p[..start]),
                Cursor::new(&p[cp.resume_offset() as usize..]),
                &mut slots,
                &cp,
            )
            .unwrap();
        assert!(t.contents() == new);
        assert_eq!(r.payload_sha256, hex::encode(sha(&p)));
    }
    // A checkpoint of another payload is refused.
    let other = delta(&old, &new, &[ed_key()]);
    let cp = &cps[1];
    let e = Applier::new(&keys)
        .resume(
            Cursor::new(&other),
            Cursor::new(&other),
            &mut Slots::new(),
            cp,
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "checkpoint does not belong to this payload: metadata hash differs"
    );
}

#[test]
fn resign_rotate_keys_and_hsm_flow() {
    let new = new_image();
    let dir = tempfile::tempdir().unwrap();
    let unsigned = dir.path().join("u.bin");
    let u = payload::generate::generate(
        &[PartitionInput {
            name: "usr".into(),
            new: &new,
            old: None,
        }],
        &GenOptions::default(),
    )
    .unwrap();
    u.write_unsigned(&mut std::fs::File::create(&unsigned).unwrap())
        .unwrap();
    // Unsigned payloads never apply.
    let e = payload::apply(
        std::fs::File::open(&unsigned).unwrap(),
        &mut slots1("usr", &SharedBuffer::default(), None),
        &ring(&[&ed_key()]),
    )
    .unwrap_err();
    assert_eq!(e.flatcar_code(), 39, "{e}");

    // Two signatures (old RSA + new Ed25519): either keyring accepts it.
    let u = UnsignedPayload::from_file(&unsigned).unwrap();
    let mut both = Vec::new();
    u.write_with_keys(&[rsa_key(), ed_key()], &mut both)
        .unwrap();
    for keys in [ring(&[&rsa_key()]), ring(&[&ed_key()])] {
        let t = SharedBuffer::default();
        payload::apply(Cursor::new(&both), &mut slots1("usr", &t, None), &keys).unwrap();
        assert!(t.contents() == new);
    }

    // HSM: digests first, signatures produced elsewhere, then inserted.
    let d = u.digests(&[64]).unwrap();
    let k = ed_key();
    let (ms, ps) = (
        k.sign_digest(&d.metadata.unwrap()).unwrap(),
        k.sign_digest(&d.payload).unwrap(),
    );
    let mut hsm = Vec::new();
    u.write_signed(
        &[64],
        |w, _| {
            Ok(vec![if w == Signed::Metadata {
                ms.clone()
            } else {
                ps.clone()
            }])
        },
        &mut hsm,
    )
    .unwrap();
    let mut local = Vec::new();
    u.write_with_keys(&[k], &mut local).unwrap();
    assert_eq!(
        hsm, local,
        "Ed25519 is deterministic: same bytes either way"
    );
    // Swapped signatures fail at the metadata check.
    let mut bad = Vec::new();
    u.write_signed(
        &[64],
        |w, _| {
            Ok(vec![if w == Signed::Metadata {
                ps.clone()
            } else {
                ms.clone()
            }])
        },
        &mut bad,
    )
    .unwrap();
    let e = payload::apply(
        Cursor::new(&bad),
        &mut slots1("usr", &SharedBuffer::default(), None),
        &ring(&[&ed_key()]),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "metadata signature does not match any trusted key"
    );
}
