#!/usr/bin/env bash
# Benchmarks for the payload crate (see README.md "Benchmarks").
#   payload/bench.sh full    # 1. full apply of a SIZE_MB image vs xz/zstd | tee sha256sum | dd
#   payload/bench.sh delta   # 2-4. an OS-sized pair: two consecutive Debian kernel packages
#                            (linux-image-6.1.0-N-amd64-unsigned, KOLD -> KNEW) unpacked into ext4
#                            images; ours vs zstd --patch-from and xdelta3 (size, time, peak RSS,
#                            apply), then `payload release` with deltas from two earlier
#                            kernels in one command, run twice and compared (deterministic output;
#                            `release` runs only that part)
#   payload/bench.sh wheel   # the same on two PyPI wheel releases, with Debian bsdiff as well
#                            (numpy 2.0.0 -> 2.0.1 by default: Debian bsdiff needs ~1 h on it, and did not
#                            finish scipy 1.13.0 -> 1.13.1 in 48 min; `wheel-images` only builds the images)
# Env: BENCH_DIR (default /tmp/payload-bench), SIZE_MB (1024), ZSTD_LEVEL (19),
#      KOLDER (42), KOLD (44), KNEW (47): the ABI numbers of the kernel packages
#      (the mirror keeps only some: 45 and 46 are gone),
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
# xdelta3 is the one peer Debian does not ship with the test tools; a bench
# run as root fetches it (never the test suite).
command -v xdelta3 >/dev/null || [ "$(id -u)" -ne 0 ] || apt-get install -y -qq xdelta3 >/dev/null
for t in xz zstd bsdiff bspatch xdelta3 mkfs.ext4 dpkg-deb /usr/bin/time; do command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }; done

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

# ext4 image of a directory, sized to fit every pair member. UUID and hash seed
# are fixed as a reproducible OS build fixes them: a random UUID seeds every
# metadata checksum and would make each inode differ between releases.
ext4_of() {
  local dir=$1 img=$2 mb=$3
  truncate -s "${mb}M" "$img"
  mkfs.ext4 -q -F -U 6ba1f5c4-52c5-4c6a-9c52-4f1d3e1f0a01 -E root_owner=0:0,hash_seed=6ba1f5c4-52c5-4c6a-9c52-4f1d3e1f0a02 -d "$dir" "$img"
}

# kernel_img ABI: $W/k-ABI.img holding linux-image-6.1.0-ABI-amd64-unsigned's files.
kernel_img() {
  local abi=$1 img=$W/k-$1.img
  [ -f "$img" ] && return
  local pkg=linux-image-6.1.0-$abi-amd64-unsigned
  mkdir -p "$W/deb"
  (cd "$W/deb" && ls "${pkg}"_*.deb >/dev/null 2>&1 || apt-get download -q "$pkg" >/dev/null)
  rm -rf "$W/kroot-$abi"; mkdir -p "$W/kroot-$abi"
  dpkg-deb -x "$W"/deb/"${pkg}"_*.deb "$W/kroot-$abi"
  local kb; kb=$(du -sk "$W/kroot-$abi" | cut -f1)
  ext4_of "$W/kroot-$abi" "$img" $(( (kb * 12 / 10) / 1024 + 32 ))
}

# run_sized LABEL OUT CMD...: run, then print OUT's size.
run_sized() {
  local label=$1 out=$2; shift 2
  run "$label" "$@"; printf '  %12d bytes\n' "$(stat -c %s "$out")"
}

delta() {
  keys
  local kolder=${KOLDER:-42} kold=${KOLD:-44} knew=${KNEW:-47}
  for abi in "$kolder" "$kold" "$knew"; do kernel_img "$abi"; done
  local older=$W/k-$kolder.img old=$W/k-$kold.img new=$W/k-$knew.img
  echo "== 2. delta Debian kernel 6.1.0-$kold -> 6.1.0-$knew, ext4 images of $(( $(stat -c %s "$new") >> 20 )) MiB ($(nproc) cores)"
  [ -f "$new.zst" ] || zstd -q -T0 -19 --long=31 -c "$new" > "$new.zst"
  printf '%-44s %8s   %8s    ' "full zstd -19 --long=31 (for scale)" "" ""; printf '  %12d bytes\n' "$(stat -c %s "$new.zst")"
  run_sized "payload generate --source (v2 delta)" "$W/kdelta.bin" \
    "$P" generate --target "$new" --source "$old" --key "$W/k.key" -o "$W/kdelta.bin"
  run_sized "zstd --patch-from --long=31 -19" "$W/kdelta.zst" \
    zstd -q -f --patch-from="$old" --long=31 -19 "$new" -o "$W/kdelta.zst"
  run_sized "xdelta3 -9 (-B 1 GiB source window)" "$W/kdelta.xd3" \
    xdelta3 -f -9 -B 1073741824 -e -s "$old" "$new" "$W/kdelta.xd3"
  echo "== 3. delta apply"
  rm -f "$W/kdt.img"
  run "payload apply (delta, every source extent hashed)" "$P" apply "$W/kdelta.bin" --keys "$W/ring" --target "$W/kdt.img" --source "$old" --no-progress; echo
  cmp "$W/kdt.img" "$new"
  run "zstd -d --patch-from" zstd -q -f -d --long=31 --patch-from="$old" "$W/kdelta.zst" -o "$W/kzt.img"; echo
  cmp "$W/kzt.img" "$new"
  run "xdelta3 -d" xdelta3 -f -d -B 1073741824 -s "$old" "$W/kdelta.xd3" "$W/kxt.img"; echo
  cmp "$W/kxt.img" "$new"
  release
}

# release: section 4 alone (`payload/bench.sh release`).
release() {
  keys
  local kolder=${KOLDER:-42} kold=${KOLD:-44} knew=${KNEW:-47}
  for abi in "$kolder" "$kold" "$knew"; do kernel_img "$abi"; done
  local older=$W/k-$kolder.img old=$W/k-$kold.img new=$W/k-$knew.img
  echo "== 4. payload release: full + deltas from 6.1.0-$kolder and 6.1.0-$kold in one command, twice"
  for n in 1 2; do
    rm -rf "$W/rel$n"
    run "payload release (run $n)" "$P" release --target "$new" --version "$knew.0.0" --board amd64-usr \
      --from "$kolder.0.0=$older" --from "$kold.0.0=$old" --key "$W/k.key" --out "$W/rel$n"; echo
  done
  ls -l "$W/rel1" | awk 'NR>1 {printf "  %-44s %12d bytes\n", $9, $5}'
  if diff -r "$W/rel1" "$W/rel2" >/dev/null; then echo "  deterministic: both runs wrote identical files"; else echo "  NOT deterministic" >&2; exit 1; fi
}

# wheel_imgs: $W/OLD_VER.img and $W/NEW_VER.img, the two wheels' files in
# equal-sized ext4 images (also what update-agent/bench/install.sh delta installs).
wheel_imgs() {
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
}

wheel() {
  keys
  wheel_imgs
  local wheel=${WHEEL:-numpy} ov=${OLD_VER:-2.0.0} nv=${NEW_VER:-2.0.1}
  local old=$W/$ov.img new=$W/$nv.img mb=$(( $(stat -c %s "$W/$nv.img") >> 20 ))
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
  wheel) wheel ;;
  wheel-images) wheel_imgs ;;
  release) release ;;
  all) full; delta; wheel ;;
  *) echo "usage: $0 [full|delta|wheel|all]" >&2; exit 2 ;;
esac
