//! The parallel apply pipeline (reader → hash-checking decompression workers
//! → in-order writer) on payloads bigger than its in-flight budget: it stops
//! at the first bad blob or failing write, writes nothing after it, and its
//! checkpoints never run ahead of the target.

mod common;
use common::*;
use payload::generate::{Compressor, GenOptions};
use payload::storage::SharedBuffer;
use payload::{Applier, PayloadError, Slot, Slots, Storage};
use std::io::Cursor;

const FILL: u8 = 0xA5;
const CHUNK: usize = 2 << 20;

/// 48 MiB in 24 ops of 2 MiB: twice `apply::IN_FLIGHT` in destination bytes.
fn big() -> (Vec<u8>, Vec<u8>) {
    let mut img = text(7, 40 << 20);
    img.extend(noise(8, 8 << 20));
    let opts = GenOptions {
        compressors: vec![Compressor::Zstd],
        zstd_level: 1,
        ..Default::default()
    };
    assert!(img.len() as u64 >= 2 * payload::apply::IN_FLIGHT);
    let p = full("usr", &img, &opts, &[ed_key()]);
    (img, p)
}

/// File range of op `i`'s blob.
fn blob_range(p: &[u8], i: usize) -> std::ops::Range<usize> {
    let mut r = payload::hashing_reader::HashingReader::new(Cursor::new(p));
    let m = payload::apply::read_metadata(&mut r, None, &Default::default()).unwrap();
    let op = &m.plan.partitions[0].ops[i];
    let s = (m.header.data_start() + op.data_offset.unwrap()) as usize;
    s..s + op.data_length.unwrap() as usize
}

fn check_prefix_written(target: &[u8], img: &[u8], ops_written: usize) {
    for (i, (t, n)) in target.chunks(CHUNK).zip(img.chunks(CHUNK)).enumerate() {
        if i < ops_written {
            assert!(t == n, "op {i} not written");
        } else {
            assert!(
                t.iter().all(|&b| b == FILL),
                "op {i} written after the failure"
            );
        }
    }
}

#[test]
fn big_payload_applies_with_ordered_checkpoints() {
    let (img, p) = big();
    let t = SharedBuffer::new(vec![FILL; img.len()]);
    let mut slots = Slots::new();
    slots.insert("usr", Slot::new(t.clone()));
    let mut next = Vec::new();
    let mut progress = Vec::new();
    Applier::new(&ring(&[&ed_key()]))
        .on_checkpoint(|c| next.push(c.next_op))
        .on_progress(|pr| progress.push(pr.bytes_read))
        .apply(Cursor::new(&p), &mut slots)
        .unwrap();
    assert!(t.contents() == img);
    assert_eq!(next, (1..=img.len() / CHUNK).collect::<Vec<_>>());
    assert!(progress.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn stops_at_the_first_bad_blob_and_writes_nothing_after_it() {
    let (img, mut p) = big();
    for bad in [0usize, 1, 10, 23] {
        let r = blob_range(&p, bad);
        let mid = (r.start + r.end) / 2;
        p[mid] ^= 0x10;
        let t = SharedBuffer::new(vec![FILL; img.len()]);
        let mut slots = Slots::new();
        slots.insert("usr", Slot::new(t.clone()));
        let mut next = Vec::new();
        let e = Applier::new(&ring(&[&ed_key()]))
            .on_checkpoint(|c| next.push(c.next_op))
            .apply(Cursor::new(&p), &mut slots)
            .unwrap_err();
        assert!(
            matches!(e, PayloadError::OperationHashMismatch { index, .. } if index == bad),
            "{e:?}"
        );
        assert_eq!(next, (1..=bad).collect::<Vec<_>>());
        check_prefix_written(&t.contents(), &img, bad);
        p[mid] ^= 0x10;
    }
}

/// Storage whose writes fail at and after `fail_at`.
struct Failing {
    inner: SharedBuffer,
    fail_at: u64,
}

impl Storage for Failing {
    fn read_exact_at(&mut self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        if offset + buf.len() as u64 > self.fail_at {
            return Err(std::io::Error::other("injected write error"));
        }
        self.inner.write_all_at(buf, offset)
    }
    fn capacity(&mut self) -> std::io::Result<Option<u64>> {
        Ok(None)
    }
}

#[test]
fn stops_at_the_first_failing_write() {
    let (img, p) = big();
    let t = SharedBuffer::new(vec![FILL; img.len()]);
    let mut slots = Slots::new();
    slots.insert(
        "usr",
        Slot::new(Failing {
            inner: t.clone(),
            fail_at: 5 * CHUNK as u64 + 1,
        }),
    );
    let mut next = Vec::new();
    let e = Applier::new(&ring(&[&ed_key()]))
        .on_checkpoint(|c| next.push(c.next_op))
        .apply(Cursor::new(&p), &mut slots)
        .unwrap_err();
    assert!(
        matches!(e, PayloadError::TargetIo { offset, .. } if offset == 5 * CHUNK as u64),
        "{e:?}"
    );
    assert_eq!(next, (1..=5).collect::<Vec<_>>());
    check_prefix_written(&t.contents(), &img, 5);
}

#[test]
fn truncated_stream_writes_what_came_before() {
    let (img, p) = big();
    let cut = blob_range(&p, 12).start + 100;
    let t = SharedBuffer::new(vec![FILL; img.len()]);
    let mut slots = Slots::new();
    slots.insert("usr", Slot::new(t.clone()));
    let e = payload::apply(Cursor::new(&p[..cut]), &mut slots, &ring(&[&ed_key()])).unwrap_err();
    assert!(matches!(e, PayloadError::Truncated { .. }), "{e:?}");
    check_prefix_written(&t.contents(), &img, 12);
}
