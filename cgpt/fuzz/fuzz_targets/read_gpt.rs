#![no_main]
//! A disk can hold anything: the GPT readers (vboot's and GRUB's rules) and
//! every verb built on them must answer, never panic, on any bytes.

#[path = "../bodies.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| bodies::read_gpt(data));
