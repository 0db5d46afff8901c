#!/usr/bin/env bash
# Runs the whole test suite. The tests check our output against real tools
# (Debian's cgpt, sgdisk, sfdisk, bspatch, ...); this installs them when missing
# (as root, with apt-get) and then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")"

# command -> Debian package that provides it
declare -A tools=(
  [cgpt]=cgpt
  [sgdisk]=gdisk
  [sfdisk]=fdisk
  [setpriv]=util-linux
  [bspatch]=bsdiff
  [bsdiff]=bsdiff
  [xz]=xz-utils
  [zstd]=zstd
  [mkfs.ext4]=e2fsprogs
  [mount]=mount
  [etcd]=etcd-server
  [etcdctl]=etcd-client
  [dbus-daemon]=dbus
  [gdbus]=libglib2.0-bin
  [busctl]=systemd
  [systemd-analyze]=systemd
  [systemd-tmpfiles]=systemd
  [script]=bsdutils
  [curl]=curl
  [promtool]=prometheus
)
missing=()
for cmd in "${!tools[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${tools[$cmd]}")
done
if ((${#missing[@]})); then
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  if [[ $(id -u) -ne 0 ]]; then
    echo "test.sh: missing tools; run as root or install: apt-get install -y $pkgs" >&2
    exit 1
  fi
  echo "test.sh: installing $pkgs"
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  apt-get install -y -qq $pkgs >/dev/null || { apt-get update -qq && apt-get install -y -qq $pkgs >/dev/null; }
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --no-fail-fast "$@"
tests/vm/run.sh
