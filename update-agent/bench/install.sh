#!/usr/bin/env bash
# Install benchmark: the agent (`update-agent --once`) installs a SIZE_MB
# (default 1024) USR image from a payload served on 127.0.0.1, next to the
# shell pipeline `curl | zstd -dc | tee >(sha256sum) | dd` on the same data
# in the same run. Prints wall time and peak RSS of each.
# Env: BENCH_DIR (default /tmp/agent-bench), SIZE_MB (1024), ZSTD_LEVEL (3),
#      ROUNDS (3: the agent and the pipeline alternate this many times).
set -euo pipefail
cd "$(dirname "$0")/../.."
W=${BENCH_DIR:-/tmp/agent-bench}
SIZE_MB=${SIZE_MB:-1024}
ZL=${ZSTD_LEVEL:-3}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-agent}
for t in curl zstd python3 /usr/bin/time; do command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }; done
cargo build --release -q -p update-agent --bin update-agent
cargo build --release -q -p payload --bin payload
A=$CARGO_TARGET_DIR/release/update-agent
P=$CARGO_TARGET_DIR/release/payload
mkdir -p "$W"
R=$W/root
rm -rf "$R"; mkdir -p "$R/etc/update-agent/keys" "$R/usr/share/flatcar" "$R/boot/flatcar" "$R/srv"

img=$W/usr-$SIZE_MB.img
if [ ! -f "$img" ]; then
  (tar cf - /usr 2>/dev/null || true) | head -c $((SIZE_MB << 20)) > "$img"
  truncate -s $((SIZE_MB << 20)) "$img"
fi
head -c 8M /dev/urandom > "$W/vmlinuz"
[ -f "$W/k.key" ] || "$P" keygen "$W/k" >/dev/null
cp "$W/k.pub" "$R/etc/update-agent/keys/"
pl=$W/payload-$SIZE_MB.bin
[ -f "$pl" ] || "$P" generate --target "$img" --kernel "$W/vmlinuz" --zstd-level "$ZL" \
  --version 9999.0.0 --board amd64-usr --key "$W/k.key" -o "$pl"
[ -f "$img.zst" ] || zstd -q -T2 -"$ZL" -c "$img" > "$img.zst"
ln -sf "$pl" "$R/srv/payload"; ln -sf "$img.zst" "$R/srv/img.zst"

# Disk image: Flatcar layout with USR slots of SIZE_MB + 2 MiB.
python3 - "$R/disk.img" $((SIZE_MB + 2)) <<'PY'
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

PORT=${PORT:-18089}
cat > "$W/server.py" <<PY
import base64, hashlib, http.server, os, sys
pl = "$pl"; size = os.path.getsize(pl)
h = hashlib.sha256()
with open(pl, "rb") as f:
    for b in iter(lambda: f.read(1 << 20), b""): h.update(b)
sha = base64.b64encode(h.digest()).decode()
xml = f'''<?xml version="1.0" encoding="UTF-8"?><response protocol="3.0" server="nebraska"><daystart elapsed_seconds="0"></daystart><app appid="{{e96281a6-d1af-4bde-9a0a-97b76e56dc57}}" status="ok"><ping status="ok"></ping><updatecheck status="ok"><urls><url codebase="http://127.0.0.1:$PORT/"></url></urls><manifest version="9999.0.0"><packages><package name="payload" size="{size}" required="true"></package></packages><actions><action event="postinstall" sha256="{sha}" DisablePayloadBackoff="true"></action></actions></manifest></updatecheck></app></response>'''
class H(http.server.SimpleHTTPRequestHandler):
    def __init__(s, *a, **k): super().__init__(*a, directory="$R/srv", **k)
    def log_message(s, *a): pass
    def do_POST(s):
        s.rfile.read(int(s.headers.get("Content-Length", 0)))
        body = (xml if b"updatecheck" in b"" or True else "").encode()
        s.send_response(200); s.send_header("Content-Type", "text/xml"); s.send_header("Content-Length", str(len(body))); s.end_headers(); s.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", $PORT), H).serve_forever()
PY
python3 "$W/server.py" & SRV=$!
trap 'kill $SRV 2>/dev/null' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/img.zst" -r 0-0 && break; sleep 0.1; done

cat > "$R/etc/update-agent/config.toml" <<TOML
[install]
slot_device = "/disk.img"
booted_slot = "A"
trusted_keys_dir = "/etc/update-agent/keys"
[state]
state_dir = "/var/lib/update_engine"
reboot_marker = "/run/update_engine_autoupdate_completed"
TOML
printf 'FLATCAR_RELEASE_VERSION=3510.2.0\nFLATCAR_RELEASE_BOARD=amd64-usr\n' > "$R/usr/share/flatcar/release"
mkdir -p "$R/sys/fs/cgroup" && echo "cpu io memory" > "$R/sys/fs/cgroup/cgroup.controllers"
printf 'SERVER=http://127.0.0.1:%s/v1/update/\n' "$PORT" > "$R/usr/share/flatcar/update.conf"

run() {
  local label=$1; shift
  sync  # the previous run's dirty pages are written back before this one starts
  /usr/bin/time -f "%e %M" -o "$W/time.out" "$@" >/dev/null
  read -r secs rss < "$W/time.out"
  printf '%-52s %8.2f s %8d KiB peak RSS\n' "$label" "$secs" "$rss"
}
echo "== install of a ${SIZE_MB} MiB USR image from 127.0.0.1 ($(nproc) cores), payload $(stat -c %s "$pl") bytes"
# Both inputs in the page cache, so neither side pays for a cold read.
cat "$pl" "$img.zst" > /dev/null
for _ in $(seq "${ROUNDS:-3}"); do
  rm -rf "$R/var" "$R/run" "$R/boot/flatcar"/*; cgpt add -i 4 -P0 -T0 -S0 "$R/disk.img"
  run "update-agent --once (download+verify+apply+commit)" env RUST_LOG=warn "$A" --root "$R" --once
  cgpt show -i 4 -P "$R/disk.img" | grep -qx 2 || { echo "agent did not commit" >&2; exit 1; }
  OFF=$(( $(cgpt show -i 4 -b "$R/disk.img") * 512 ))
  run "curl | zstd -dc | tee >(sha256sum) | dd" bash -c \
    "curl -s http://127.0.0.1:$PORT/img.zst | zstd -q -dc | tee >(sha256sum >/dev/null) | dd of='$R/disk.img' bs=1M seek=$OFF oflag=seek_bytes conv=notrunc status=none"
done
