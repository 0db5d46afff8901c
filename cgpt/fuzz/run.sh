#!/usr/bin/env bash
# Run the cgpt fuzz target with cargo-fuzz on the stable toolchain.
#   cgpt/fuzz/run.sh [SECONDS, default 600] [extra libFuzzer flags...]
# cargo-fuzz wants nightly for its sanitizer flags; RUSTC_BOOTSTRAP=1 with
# `-s none` builds libFuzzer's coverage instrumentation on stable (Rust code
# is memory-safe, so the fuzzer looks for panics, overflows, broken
# invariants and runaway allocations). New inputs land in corpus/read_gpt/;
# minimize before committing: `cargo fuzz cmin -s none read_gpt`.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}; shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
cargo fuzz run -s none --release read_gpt corpus/read_gpt -- \
  -max_total_time="$secs" -rss_limit_mb=2048 -max_len=52000 "$@"
