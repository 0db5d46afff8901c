//! The operation applier on arbitrary operations and blobs (body in `bodies.rs`).
#![no_main]
#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::apply_op(data));
