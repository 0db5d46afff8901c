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
  [mksquashfs]=squashfs-tools
  [unsquashfs]=squashfs-tools
  [systemd-dissect]=systemd-container
  [/usr/bin/jsonschema]=python3-jsonschema
  [promtool]=prometheus
  [groff]=groff-base
  [fish]=fish
  [zsh]=zsh
)
extra_pkgs=()
source tests/lib/need-tools.sh
need_tools test.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --no-fail-fast "$@"
tests/vm/run.sh
