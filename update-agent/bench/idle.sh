#!/usr/bin/env bash
# Idle footprint of the daemon with metrics on and off: the release
# `update-agent` on a test root, on a private session D-Bus, checks a
# 127.0.0.1 Omaha server once (no update), then sits idle for IDLE_SECS;
# reports VmRSS (/proc/PID/status) at the end and the CPU it used during the
# idle window (utime+stime from /proc/PID/stat). With metrics on, the socket
# is scraped every SCRAPE_SECS as Prometheus would. Modes alternate ROUNDS
# times in the same run.
# Env: BENCH_DIR (/tmp/agent-idle), IDLE_SECS (60), SCRAPE_SECS (15), ROUNDS (2), PORT (18090).
set -euo pipefail
cd "$(dirname "$0")/../.."
W=${BENCH_DIR:-/tmp/agent-idle}
IDLE=${IDLE_SECS:-60}
SCRAPE=${SCRAPE_SECS:-15}
PORT=${PORT:-18090}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-agent}
for t in curl python3 dbus-daemon; do command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }; done
cargo build --release -q -p update-agent --bin update-agent
A=$CARGO_TARGET_DIR/release/update-agent
mkdir -p "$W"
R=$W/root
rm -rf "$R"; mkdir -p "$R/etc/update-agent/keys" "$R/usr/share/flatcar" "$R/sys/fs/cgroup"
printf 'FLATCAR_RELEASE_VERSION=3510.2.0\nFLATCAR_RELEASE_BOARD=amd64-usr\n' > "$R/usr/share/flatcar/release"
printf 'SERVER=http://127.0.0.1:%s/v1/update/\n' "$PORT" > "$R/usr/share/flatcar/update.conf"
echo "cpu io memory" > "$R/sys/fs/cgroup/cgroup.controllers"
mkdir -p "$R/proc/sys/kernel/random"
echo 0123456789abcdef0123456789abcdef > "$R/etc/machine-id"
echo 3a2f4d8e-0000-4000-8000-000000000001 > "$R/proc/sys/kernel/random/boot_id"
cat > "$R/etc/update-agent/config.toml" <<TOML
[schedule]
first_check = "1s"
first_check_fuzz = "0s"
[state]
state_dir = "/var/lib/update_engine"
reboot_marker = "/run/update_engine_autoupdate_completed"
[health]
slot_verdict = "gate"
TOML

# Omaha: every check gets noupdate; each POST is logged.
cat > "$W/server.py" <<PY
import http.server
xml = b'<?xml version="1.0" encoding="UTF-8"?><response protocol="3.0"><daystart elapsed_seconds="0"/><app appid="{e96281a6-d1af-4bde-9a0a-97b76e56dc57}" status="ok"><updatecheck status="noupdate"/></app></response>'
class H(http.server.BaseHTTPRequestHandler):
    def log_message(s, *a): pass
    def do_POST(s):
        s.rfile.read(int(s.headers.get("Content-Length", 0)))
        with open("$W/posts", "a") as f: f.write("post\n")
        s.send_response(200); s.send_header("Content-Type", "text/xml"); s.send_header("Content-Length", str(len(xml))); s.end_headers(); s.wfile.write(xml)
http.server.ThreadingHTTPServer(("127.0.0.1", $PORT), H).serve_forever()
PY
python3 "$W/server.py" & SRV=$!
BUS=$(dbus-daemon --session --print-address=1 --print-pid=1 --fork | head -n 2)
BUS_ADDR=$(echo "$BUS" | sed -n 1p); BUS_PID=$(echo "$BUS" | sed -n 2p)
AGENT=
trap 'kill $SRV $BUS_PID $AGENT 2>/dev/null || true' EXIT
TCK=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

measure() {
  local mode=$1 flag=()
  [ "$mode" = off ] && flag=(--no-metrics)
  rm -rf "$R/var" "$R/run" "$W/posts"
  RUST_LOG=warn "$A" --root "$R" --bus-address "$BUS_ADDR" "${flag[@]}" 2>"$W/agent-$mode.log" & AGENT=$!
  for _ in $(seq 200); do [ -s "$W/posts" ] && break; sleep 0.05; done
  [ -s "$W/posts" ] || { echo "the agent never checked" >&2; cat "$W/agent-$mode.log" >&2; exit 1; }
  sleep 2  # the check's response handled, back to IDLE
  local t0 s0 sock=$R/run/update-agent/public/metrics.sock
  t0=$(ticks "$AGENT"); s0=$(date +%s.%N)
  local end=$(( $(date +%s) + IDLE ))
  while [ "$(date +%s)" -lt "$end" ]; do
    if [ "$mode" = on ]; then
      curl -sf --unix-socket "$sock" http://localhost/metrics -o /dev/null || { echo "scrape failed" >&2; exit 1; }
    fi
    sleep "$SCRAPE"
  done
  local t1 s1 rss
  t1=$(ticks "$AGENT"); s1=$(date +%s.%N); rss=$(rss_kib "$AGENT")
  kill "$AGENT"; wait "$AGENT" 2>/dev/null || true; AGENT=
  python3 -c "
import sys
t0,t1,s0,s1,tck,rss=map(float,sys.argv[1:7])
print(f'metrics {sys.argv[7]:3}: VmRSS {rss/1024:6.1f} MiB after {s1-s0:5.1f} s idle, CPU {100*(t1-t0)/tck/(s1-s0):5.2f} % ({int(t1-t0)} ticks)')
" "$t0" "$t1" "$s0" "$s1" "$TCK" "$rss" "$mode"
}

echo "== idle update-agent ($(nproc) cores), ${IDLE} s idle after one no-update check, scrape every ${SCRAPE} s when on"
for _ in $(seq "${ROUNDS:-2}"); do
  measure off
  measure on
done
