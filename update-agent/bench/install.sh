#!/usr/bin/env bash
# Install benchmarks of the agent (`update-agent --once`) from a payload
# served on 127.0.0.1 by a small Omaha server that counts the bytes it sends.
#   update-agent/bench/install.sh [full]  # a SIZE_MB (1024) USR image vs the shell pipeline
#                                         # `curl | zstd -dc | tee >(sha256sum) | dd` on the same data
#   update-agent/bench/install.sh delta   # one release (numpy OLD_VER -> NEW_VER in ext4 images, see
#                                         # payload/bench.sh wheel-images) offered as the full payload and
#                                         # `delta-3510.2.0.gz`: the agent with deltas off vs on
# Prints wall time, peak RSS and, for delta, the bytes downloaded of each file.
# Env: BENCH_DIR (default /tmp/agent-bench), SIZE_MB (1024), ZSTD_LEVEL (3),
#      ROUNDS (3: the two sides alternate this many times), PORT (18089).
set -euo pipefail
cd "$(dirname "$0")/../.."
MODE=${1:-full}
W=${BENCH_DIR:-/tmp/agent-bench}
SIZE_MB=${SIZE_MB:-1024}
ZL=${ZSTD_LEVEL:-3}
PORT=${PORT:-18089}
RUNNING=3510.2.0
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-agent}
for t in curl zstd python3 sgdisk cgpt /usr/bin/time; do command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }; done
cargo build --release -q -p update-agent --bin update-agent
cargo build --release -q -p payload --bin payload
A=$CARGO_TARGET_DIR/release/update-agent
P=$CARGO_TARGET_DIR/release/payload
mkdir -p "$W"
R=$W/root
rm -rf "$R"; mkdir -p "$R/etc/update-agent/keys" "$R/usr/share/flatcar" "$R/boot/flatcar" "$R/srv"
[ -f "$W/k.key" ] || "$P" keygen "$W/k" >/dev/null
cp "$W/k.pub" "$R/etc/update-agent/keys/"

# disk USR_MIB: $R/disk.img in Flatcar's layout with USR slots of USR_MIB.
disk() {
  python3 - "$R/disk.img" "$1" <<'PY'
import subprocess, sys
path, usr = sys.argv[1], int(sys.argv[2])
size = (8 + 1 + 2 * usr + 8 + 4 + 16 + 2) << 20
# Written with zeros, not sparse: a real partition's blocks exist, and
# otherwise whoever writes the slot first pays for the file system's
# block allocation and extent conversion.
with open(path, "wb") as f:
    zeros = bytes(8 << 20)
    for _ in range(size // len(zeros)):
        f.write(zeros)
    f.write(bytes(size % len(zeros)))
parts = [("EFI-SYSTEM", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", 8), ("BIOS-BOOT", "21686148-6449-6E6F-744E-656564454649", 1),
         ("USR-A", "5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6", usr), ("USR-B", "5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6", usr)]
args = ["sgdisk", "-Z", path]
for i, (label, ty, mib) in enumerate(parts, 1):
    args += [f"-n{i}:0:+{mib}M", f"-t{i}:{ty}", f"-c{i}:{label}"]
subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
subprocess.run(["cgpt", "add", "-i", "3", "-S1", "-P1", path], check=True)
PY
  sync
}
part_off() { echo $(( $(cgpt show -i "$1" -b "$R/disk.img") * 512 )); }

# serve PKG...: an Omaha server on $PORT answering every check with these
# files of $R/srv as packages (the first the required full payload), with
# Nebraska's attributes: size and hex hash_sha256, the full payload's
# base64 SHA-256 on the postinstall action. Each GET appends "path bytes"
# to $W/served.log.
serve() {
  python3 - "$R/srv" "$W/served.log" "$PORT" "$@" <<'PY' & SRV=$!
import base64, hashlib, http.server, os, sys
srv, log, port, pkgs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
def sha(name):
    h = hashlib.sha256()
    with open(os.path.join(srv, name), "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""): h.update(b)
    return h.digest()
digests = {p: sha(p) for p in pkgs}
req = ['required="true"'] + [""] * len(pkgs)
lines = "".join(f'<package name="{p}" size="{os.path.getsize(os.path.join(srv, p))}" hash_sha256="{digests[p].hex()}" {r}></package>'
                for p, r in zip(pkgs, req))
xml = ('<?xml version="1.0" encoding="UTF-8"?><response protocol="3.0" server="nebraska"><daystart elapsed_seconds="0"></daystart>'
       '<app appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}" status="ok"><ping status="ok"></ping><updatecheck status="ok">'
       f'<urls><url codebase="http://127.0.0.1:{port}/"></url></urls><manifest version="9999.0.0"><packages>{lines}</packages>'
       f'<actions><action event="postinstall" sha256="{base64.b64encode(digests[pkgs[0]]).decode()}" DisablePayloadBackoff="true">'
       '</action></actions></manifest></updatecheck></app></response>').encode()
class H(http.server.SimpleHTTPRequestHandler):
    def __init__(s, *a, **k): super().__init__(*a, directory=srv, **k)
    def log_message(s, *a): pass
    def copyfile(s, src, dst):
        n = 0
        for b in iter(lambda: src.read(1 << 16), b""):
            dst.write(b); n += len(b)
        with open(log, "a") as f: f.write(f"{s.path} {n}\n")
    def do_POST(s):
        s.rfile.read(int(s.headers.get("Content-Length", 0)))
        s.send_response(200); s.send_header("Content-Type", "text/xml"); s.send_header("Content-Length", str(len(xml)))
        s.end_headers(); s.wfile.write(xml)
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
  trap 'kill $SRV 2>/dev/null' EXIT
  # Ready when the server answers an update check.
  for _ in $(seq 100); do curl -sf -o /dev/null -d '<request/>' "http://127.0.0.1:$PORT/v1/update/" && return; sleep 0.1; done
  echo "the Omaha server did not answer" >&2; exit 1
}

node_files() {
  cat > "$R/etc/update-agent/config.toml" <<TOML
[install]
slot_device = "/disk.img"
booted_slot = "A"
trusted_keys_dir = "/etc/update-agent/keys"
[state]
state_dir = "/var/lib/update_engine"
reboot_marker = "/run/update_engine_autoupdate_completed"
TOML
  echo 0123456789abcdef0123456789abcdef > "$R/etc/machine-id"
  mkdir -p "$R/proc/sys/kernel/random" && cat /proc/sys/kernel/random/boot_id > "$R/proc/sys/kernel/random/boot_id"
  printf 'FLATCAR_RELEASE_VERSION=%s\nFLATCAR_RELEASE_BOARD=amd64-usr\n' "$RUNNING" > "$R/usr/share/flatcar/release"
  mkdir -p "$R/sys/fs/cgroup" && echo "cpu io memory" > "$R/sys/fs/cgroup/cgroup.controllers"
  printf 'SERVER=http://127.0.0.1:%s/v1/update/\n' "$PORT" > "$R/usr/share/flatcar/update.conf"
}

run() {
  local label=$1; shift
  sync  # the previous run's dirty pages are written back before this one starts
  /usr/bin/time -f "%e %M" -o "$W/time.out" "$@" >/dev/null
  read -r secs rss < "$W/time.out"
  printf '%-52s %8.2f s %8d KiB peak RSS' "$label" "$secs" "$rss"
}

# fresh_target: USR-B unbootable and zeroed, no agent state, no new kernel.
fresh_target() {
  rm -rf "$R/var" "$R/run" "$R/boot/flatcar/vmlinuz-b"
  cgpt add -i 4 -P0 -T0 -S0 "$R/disk.img"
  dd if=/dev/zero of="$R/disk.img" bs=1M seek="$(part_off 4)" oflag=seek_bytes conv=notrunc \
    count=$(( $(cgpt show -i 4 -s "$R/disk.img") * 512 )) iflag=count_bytes status=none
}

# agent_installed IMG: the agent committed USR-B and it holds IMG's bytes.
agent_installed() {
  cgpt show -i 4 -P "$R/disk.img" | grep -qx 2 || { echo "agent did not commit" >&2; exit 1; }
  cmp -s -n "$(stat -c %s "$1")" "$1" <(tail -c +$(( $(part_off 4) + 1 )) "$R/disk.img") \
    || { echo "USR-B does not hold the new image" >&2; exit 1; }
}

full() {
  local img=$W/usr-$SIZE_MB.img pl=$W/payload-$SIZE_MB.bin
  if [ ! -f "$img" ]; then
    (tar cf - /usr 2>/dev/null || true) | head -c $((SIZE_MB << 20)) > "$img"
    truncate -s $((SIZE_MB << 20)) "$img"
  fi
  head -c 8M /dev/urandom > "$W/vmlinuz"
  [ -f "$pl" ] || "$P" generate --target "$img" --kernel "$W/vmlinuz" --zstd-level "$ZL" \
    --version 9999.0.0 --board amd64-usr --key "$W/k.key" -o "$pl"
  [ -f "$img.zst" ] || zstd -q -T2 -"$ZL" -c "$img" > "$img.zst"
  ln -sf "$pl" "$R/srv/payload"; ln -sf "$img.zst" "$R/srv/img.zst"
  disk $((SIZE_MB + 2)); node_files; serve payload
  echo "== install of a ${SIZE_MB} MiB USR image from 127.0.0.1 ($(nproc) cores), payload $(stat -c %s "$pl") bytes"
  # Both inputs in the page cache, so neither side pays for a cold read.
  cat "$pl" "$img.zst" > /dev/null
  for _ in $(seq "${ROUNDS:-3}"); do
    fresh_target
    run "update-agent --once (download+verify+apply+commit)" env RUST_LOG=warn "$A" --root "$R" --once; echo
    agent_installed "$img"
    run "curl | zstd -dc | tee >(sha256sum) | dd" bash -c \
      "curl -s http://127.0.0.1:$PORT/img.zst | zstd -q -dc | tee >(sha256sum >/dev/null) | dd of='$R/disk.img' bs=1M seek=$(part_off 4) oflag=seek_bytes conv=notrunc status=none"
    echo
  done
}

delta() {
  local wb=$W/wheel ov=${OLD_VER:-2.0.0} nv=${NEW_VER:-2.0.1}
  BENCH_DIR=$wb payload/bench.sh wheel-images
  local old=$wb/$ov.img new=$wb/$nv.img
  # A kernel that changes between the releases in 1 of its 8 MiB.
  [ -f "$W/vmlinuz-old" ] || head -c 8M /dev/urandom > "$W/vmlinuz-old"
  [ -f "$W/vmlinuz-new" ] || { cp "$W/vmlinuz-old" "$W/vmlinuz-new"
    head -c 1M /dev/urandom | dd of="$W/vmlinuz-new" bs=1M seek=3 conv=notrunc status=none; }
  rm -rf "$W/rel"
  "$P" release --target "$new" --kernel "$W/vmlinuz-new" --from "$RUNNING=$old,$W/vmlinuz-old" \
    --version 9999.0.0 --board amd64-usr --key "$W/k.key" --out "$W/rel" >/dev/null 2>&1
  ln -sf "$W/rel/flatcar_production_update.gz" "$W/rel/delta-$RUNNING.gz" "$R/srv/"
  disk $(( ($(stat -c %s "$new") >> 20) + 2 )); node_files; serve flatcar_production_update.gz "delta-$RUNNING.gz"
  # The booted slot and kernel are the old release.
  dd if="$old" of="$R/disk.img" bs=1M seek="$(part_off 3)" oflag=seek_bytes conv=notrunc status=none
  cp "$W/vmlinuz-old" "$R/boot/flatcar/vmlinuz-a"
  cp "$R/etc/update-agent/config.toml" "$W/config.toml"
  echo "== ${WHEEL:-numpy} $ov -> $nv in $(( $(stat -c %s "$new") >> 20 )) MiB ext4 images + an 8 MiB kernel, from 127.0.0.1 ($(nproc) cores)"
  cat "$W"/rel/* > /dev/null
  for _ in $(seq "${ROUNDS:-3}"); do
    # Loopback, and a 100 Mbit/s link (the agent's own bandwidth cap).
    for limit in 0 12500000; do
      for deltas in false true; do
        fresh_target; : > "$W/served.log"
        { cat "$W/config.toml"; printf '[download]\ndeltas = %s\nbandwidth_limit = %s\n' "$deltas" "$limit"; } \
          > "$R/etc/update-agent/config.toml"
        run "deltas = $deltas, $([ "$limit" = 0 ] && echo loopback || echo "$((limit / 125000)) Mbit/s")" \
          env RUST_LOG=warn "$A" --root "$R" --once
        agent_installed "$new"
        awk '{ n[$1] += $2; t += $2 } END { printf "  %10d bytes:", t; for (p in n) printf " %s %d", p, n[p]; print "" }' "$W/served.log"
      done
    done
  done
}

case "$MODE" in
  full) full ;;
  delta) delta ;;
  *) echo "usage: $0 [full|delta]" >&2; exit 2 ;;
esac
