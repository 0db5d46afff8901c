#!/usr/bin/env bash
# Benchmarks for the payload crate (see README.md "Benchmarks").
#   payload/bench.sh full    # 1. full apply of a SIZE_MB image vs xz/zstd | tee sha256sum | dd
#   payload/bench.sh delta   # 2+3. delta size/time on two PyPI wheel releases vs bsdiff and zstd --patch-from
#                            (numpy 2.0.0 -> 2.0.1 by default: Debian bsdiff needs ~1 h on it, and did not
#                            finish scipy 1.13.0 -> 1.13.1 in 48 min)
# Env: BENCH_DIR (default /tmp/payload-bench), SIZE_MB (1024), ZSTD_LEVEL (19),
#      WHEEL (numpy), OLD_VER (2.0.0), NEW_VER (2.0.1), ROUNDS (3: the
#      zstd apply and its pipeline alternate this many times; xz twice).
set -euo pipefail
cd "$(dirname "$0")/.."
W=${BENCH_DIR:-/tmp/payload-bench}
SIZE_MB=${SIZE_MB:-1024}
ZL=${ZSTD_LEVEL:-19}
mkdir -p "$W"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-payload}
cargo build --release -q -p payload
P=$CARGO_TARGET_DIR/release/payload
for t in xz zstd bsdiff bspatch mkfs.ext4 /usr/bin/time; do command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }; done

# run LABEL CMD... : prints "LABEL  seconds  maxRSS-KiB"
run() {
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$W/time.out" "$@" >/dev/null
  read -r secs rss < "$W/time.out"
  printf '%-44s %8.2f s %8d KiB' "$label" "$secs" "$rss"
  echo "$secs" > "$W/last.secs"
}
mbps() { awk -v mb="$1" -v s="$(cat "$W/last.secs")" 'BEGIN{ if (s>0) printf "  %7.1f MB/s\n", mb*1.048576/s; else print "" }'; }

keys() {
  [ -f "$W/k.key" ] || "$P" keygen "$W/k" >/dev/null
  mkdir -p "$W/ring"; cp "$W/k.pub" "$W/ring/"
}

full() {
  keys
  local img=$W/full.img
  if [ ! -f "$img" ]; then
    # Real OS bytes: binaries, libraries and data under /usr, cut to SIZE_MB.
    (tar cf - /usr 2>/dev/null || true) | head -c $((SIZE_MB << 20)) > "$img"
    truncate -s $((SIZE_MB << 20)) "$img"
  fi
  echo "== 1. full apply, ${SIZE_MB} MiB image ($(nproc) cores)"
  [ -f "$W/full-xz.bin" ] || run "generate v2 --aosp (xz+bzip2, 2 MiB chunks)" "$P" generate --aosp --target "$img" --key "$W/k.key" -o "$W/full-xz.bin" && echo
  [ -f "$W/full-zstd.bin" ] || run "generate v2 default (zstd -$ZL, 2 MiB chunks)" "$P" generate --target "$img" --zstd-level "$ZL" --key "$W/k.key" -o "$W/full-zstd.bin" && echo
  [ -f "$img.xz" ] || xz -6 -T2 -c "$img" > "$img.xz"
  [ -f "$img.zst" ] || zstd -q -T2 -"$ZL" -c "$img" > "$img.zst"
  ls -l "$W/full-xz.bin" "$W/full-zstd.bin" "$img.xz" "$img.zst" | awk '{printf "  %-40s %12d bytes\n", $9, $5}'
  rm -f "$W/t.img"
  for _ in $(seq "${ROUNDS:-3}"); do
    run "payload apply (zstd payload)" "$P" apply "$W/full-zstd.bin" --keys "$W/ring" --target "$W/t.img" --no-progress; mbps "$SIZE_MB"
    cmp "$W/t.img" "$img"
    run "zstd -dc | tee >(sha256sum) | dd" bash -c "zstd -q -dc '$img.zst' | tee >(sha256sum >/dev/null) | dd of='$W/t.img' bs=1M conv=notrunc status=none"; mbps "$SIZE_MB"
  done
  for _ in 1 2; do
    run "payload apply (xz+bzip2 payload)" "$P" apply "$W/full-xz.bin" --keys "$W/ring" --target "$W/t.img" --no-progress; mbps "$SIZE_MB"
    cmp "$W/t.img" "$img"
    run "xz -dc | tee >(sha256sum) | dd" bash -c "xz -dc '$img.xz' | tee >(sha256sum >/dev/null) | dd of='$W/t.img' bs=1M conv=notrunc status=none"; mbps "$SIZE_MB"
  done
}

delta() {
  keys
  local wheel=${WHEEL:-numpy} ov=${OLD_VER:-2.0.0} nv=${NEW_VER:-2.0.1}
  for v in "$ov" "$nv"; do
    if [ ! -f "$W/$v.img" ]; then
      mkdir -p "$W/dl-$v" "$W/root-$v"
      pip download -q --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
        -d "$W/dl-$v" "$wheel==$v"
      python3 -m zipfile -e "$W"/dl-"$v"/*.whl "$W/root-$v"
      local kb; kb=$(du -sk "$W/root-$v" | cut -f1)
      local mb=$(( (kb * 13 / 10) / 1024 + 16 ))
      echo "$mb" > "$W/img-mb-$v"
    fi
  done
  local mb; mb=$(sort -n "$W"/img-mb-* | tail -1)
  for v in "$ov" "$nv"; do
    [ -f "$W/$v.img" ] || { truncate -s "${mb}M" "$W/$v.img"; mkfs.ext4 -q -F -E root_owner=0:0 -d "$W/root-$v" "$W/$v.img"; }
  done
  local old=$W/$ov.img new=$W/$nv.img
  echo "== 2. delta $wheel $ov -> $nv, ext4 images of $mb MiB"
  run "payload generate --source (v2 delta)" "$P" generate --target "$new" --source "$old" --key "$W/k.key" -o "$W/delta.bin"; echo "  $(stat -c %s "$W/delta.bin") bytes"
  run "bsdiff (Debian, whole image)" bsdiff "$old" "$new" "$W/delta.bsdiff"; echo "  $(stat -c %s "$W/delta.bsdiff") bytes"
  run "zstd --patch-from --long=31 -19" zstd -q -f --patch-from="$old" --long=31 -19 "$new" -o "$W/delta.zst"; echo "  $(stat -c %s "$W/delta.zst") bytes"
  echo "== 3. delta apply"
  rm -f "$W/dt.img"
  run "payload apply (delta)" "$P" apply "$W/delta.bin" --keys "$W/ring" --target "$W/dt.img" --source "$old" --no-progress; echo
  cmp "$W/dt.img" "$new"
  run "bspatch (Debian)" bspatch "$old" "$W/bt.img" "$W/delta.bsdiff"; echo
  cmp "$W/bt.img" "$new"
  run "zstd -d --patch-from" zstd -q -f -d --long=31 --patch-from="$old" "$W/delta.zst" -o "$W/zt.img"; echo
}

case "${1:-all}" in
  full) full ;;
  delta) delta ;;
  all) full; delta ;;
  *) echo "usage: $0 [full|delta|all]" >&2; exit 2 ;;
esac
