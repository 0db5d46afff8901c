//! Header + manifest parser (v1 and v2) on arbitrary bytes: never panics,
//! never allocates past the limits.
#![no_main]
use libfuzzer_sys::fuzz_target;
use payload::hashing_reader::HashingReader;

fuzz_target!(|data: &[u8]| {
    let mut r = HashingReader::new(std::io::Cursor::new(data));
    let _ = payload::apply::read_metadata(&mut r, None, &payload::Limits::default());
    // Raw manifests too, without a header.
    let _ = payload::plan::Plan::from_v2(data, &payload::Limits::default());
    let _ = payload::plan::Plan::from_v1(data, &payload::Limits::default());
});
