//! The operation applier on arbitrary operations and blobs against a small
//! in-memory target and source: errors are fine, panics and writes past the
//! destination extents are not.
#![no_main]
use libfuzzer_sys::fuzz_target;
use payload::ops::{Scratch, execute};
use payload::proto::{InstallOperation, OpType};
use prost::Message;

const BLOCKS: u64 = 16;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let split = (data[0] as usize * 4).min(data.len() - 1);
    let Ok(op) = InstallOperation::decode(&data[1..1 + split]) else { return };
    let blob = &data[1 + split..];
    let Ok(ty) = OpType::try_from(op.r#type) else { return };
    // The applier relies on plan validation for bounds, as the pipeline does.
    let in_range = |xs: &[payload::proto::Extent]| {
        xs.iter().all(|x| x.num() > 0 && x.start().checked_add(x.num()).is_some_and(|e| e <= BLOCKS))
    };
    if !in_range(&op.dst_extents) || !in_range(&op.src_extents) || op.dst_extents.is_empty() {
        return;
    }
    let mut target = vec![0u8; (BLOCKS * 4096) as usize];
    let mut source: Vec<u8> = (0..BLOCKS * 4096).map(|i| i as u8).collect();
    let _ = execute(ty, &op, blob, 4096, &mut target, Some(&mut source), &mut Scratch::default());
    assert_eq!(target.len(), (BLOCKS * 4096) as usize, "wrote past the target");
});
