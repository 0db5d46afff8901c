#!/usr/bin/env bash
# Run the coordinator fuzz targets with cargo-fuzz on the stable toolchain.
#   coordinator/fuzz/run.sh [SECONDS per target, default 600] [TARGET...]
# cargo-fuzz wants nightly for its sanitizer flags; RUSTC_BOOTSTRAP=1 with
# `-s none` builds libFuzzer's coverage instrumentation on stable (Rust code
# is memory-safe, so the fuzzers look for panics, overflows and runaway
# allocations). New inputs land in corpus/<target>/; minimize before
# committing: `cargo fuzz cmin -s none <target>`.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(etcd_json fleetlock_json)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for t in "${targets[@]}"; do
  cargo fuzz run -s none --release "$t" "corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -max_len=4096
done
