//! The fuzz targets' bodies, shared by the libFuzzer binaries
//! (`fuzz_targets/`) and the corpus replay test (`tests/fuzz_corpus.rs`),
//! which runs every saved input on stable Rust in the normal test suite.

/// Header + manifest parser (v1 and v2) on arbitrary bytes: never panics,
/// never allocates past the limits.
pub fn parse_metadata(data: &[u8]) {
    let mut r = payload::hashing_reader::HashingReader::new(std::io::Cursor::new(data));
    let _ = payload::apply::read_metadata(&mut r, None, &payload::Limits::default());
    // Raw manifests too, without a header.
    let _ = payload::plan::Plan::from_v2(data, &payload::Limits::default());
    let _ = payload::plan::Plan::from_v1(data, &payload::Limits::default());
}

/// The operation applier on an arbitrary operation and blob against a
/// small in-memory target and source: errors are fine; panics, writes
/// outside the destination extents and any change to the source are not. The first byte (times 4) is the length of
/// the encoded `InstallOperation`; the rest is its blob.
pub fn apply_op(data: &[u8]) {
    use payload::ops::{Scratch, execute};
    use payload::proto::{Extent, InstallOperation, OpType};
    use prost::Message;

    const BLOCKS: u64 = 16;
    if data.len() < 2 {
        return;
    }
    let split = (data[0] as usize * 4).min(data.len() - 1);
    let Ok(op) = InstallOperation::decode(&data[1..1 + split]) else {
        return;
    };
    let blob = &data[1 + split..];
    let Ok(ty) = OpType::try_from(op.r#type) else {
        return;
    };
    // The applier relies on plan validation for bounds, as the pipeline does.
    let in_range = |xs: &[Extent]| {
        xs.iter()
            .all(|x| x.num() > 0 && x.start().checked_add(x.num()).is_some_and(|e| e <= BLOCKS))
    };
    if !in_range(&op.dst_extents) || !in_range(&op.src_extents) || op.dst_extents.is_empty() {
        return;
    }
    // Patterned (not zero) so a stray write outside the destination shows.
    let before: Vec<u8> = (0..BLOCKS * 4096).map(|i| (i * 7 + 3) as u8).collect();
    let mut target = before.clone();
    let original: Vec<u8> = (0..BLOCKS * 4096).map(|i| i as u8).collect();
    let mut source = original.clone();
    let _ = execute(
        ty,
        &op,
        blob,
        4096,
        &mut target,
        Some(&mut source),
        &mut Scratch::default(),
    );
    assert_eq!(target.len(), before.len(), "target resized");
    assert!(source == original, "the source (old slot) was modified");
    let mut in_dst = vec![false; BLOCKS as usize];
    for x in &op.dst_extents {
        for b in x.start()..x.start() + x.num() {
            in_dst[b as usize] = true;
        }
    }
    for (b, dst) in in_dst.iter().enumerate() {
        let r = b * 4096..(b + 1) * 4096;
        assert!(
            *dst || target[r.clone()] == before[r],
            "block {b} outside the destination written"
        );
    }
}
