//! etcd v3 JSON gateway answers and the semaphore value in them (body in `bodies.rs`).
#![no_main]
#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::etcd_json(data));
