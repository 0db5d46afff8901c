//! The Omaha response (and request) parsers on arbitrary bytes (body in `bodies.rs`).
#![no_main]
#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::parse_response(data));
