#!/usr/bin/env bash
# Run the update-agent fuzz targets (update.conf, the TOML settings layers) with cargo-fuzz on the stable toolchain.
#   update-agent/fuzz/run.sh [SECONDS per target, default 600] [TARGET...]
# cargo-fuzz wants nightly for its sanitizer flags; RUSTC_BOOTSTRAP=1 with
# `-s none` builds libFuzzer's coverage instrumentation on stable (Rust code
# is memory-safe, so the fuzzers look for panics, overflows and runaway
# allocations). New inputs land in corpus/<target>/; minimize before
# committing: `cargo fuzz cmin -s none <target>`.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}; shift || true
targets=("$@"); [ ${#targets[@]} -gt 0 ] || targets=(update_conf settings_toml sysext_inputs)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
for t in "${targets[@]}"; do
  cargo fuzz run -s none --release "$t" "corpus/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536
done
