//! Extension settings, `oem-release` and a payload's manifest as peeked
//! before verification (body in `bodies.rs`).
#![no_main]
#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::sysext_inputs(data));
