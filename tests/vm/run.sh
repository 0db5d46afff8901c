#!/usr/bin/env bash
# The whole A/B life cycle on real boots (issue 16): QEMU machines with
# Flatcar's disk layout, a Debian kernel and systemd userland, /usr through
# dm-verity, our units on the real system bus, the Omaha server inside the
# guest, and this script as the bootloader between boots. Runs every
# scenario (or those named as arguments) and exits non-zero on any failure.
#
#   tests/vm/run.sh [SCENARIO...]     scenarios: see `scenarios` below
#
# VM_WORK (default target/vm) holds the built images, keyed by a hash of
# their inputs, and each boot's serial log. VM_ACCEL=tcg|kvm skips the KVM
# probe. Needs root (apt-get for missing tools, loop-free image building).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$REPO/tests/vm
cd "$REPO"
# shellcheck source=tests/vm/layout.sh
. "$HERE/layout.sh"
# shellcheck source=tests/vm/boot.sh
. "$HERE/boot.sh"

# command -> Debian package that provides it
declare -A tools=(
	[qemu-system-x86_64]=qemu-system-x86
	[mmdebstrap]=mmdebstrap
	[veritysetup]=cryptsetup-bin
	[mcopy]=mtools
	[mkfs.vfat]=dosfstools
	[busybox]=busybox-static
	[cpio]=cpio
	[depmod]=kmod
	[blkid]=util-linux
	[sgdisk]=gdisk
	[cgpt]=cgpt
	[mkfs.ext4]=e2fsprogs
	[systemctl]=systemd
	[strip]=binutils
	[file]=file
)
extra_pkgs=()
# busybox must be the static one: the initrd has no libc for it.
if command -v busybox >/dev/null && ! file -L "$(command -v busybox)" 2>/dev/null | grep -q static; then
	extra_pkgs+=(busybox-static)
fi
# shellcheck source=../lib/need-tools.sh
source "$REPO/tests/lib/need-tools.sh"
need_tools vm --no-install-recommends
# The kernel package is found through apt's lists.
apt-cache show linux-image-amd64 >/dev/null 2>&1 || apt-get update -qq

t0=$SECONDS
nice -n 10 cargo build -q --bin update-agent --bin update_engine_client --bin cgpt \
	--bin update-coordinator --bin locksmithctl --bin payload --bin omaha-test-server
BIN=$REPO/target/debug

WORK=${VM_WORK:-$REPO/target/vm}
mkdir -p "$WORK"
base_key=$(grep -E '^(suite|packages)=|mmdebstrap|dpkgopt' "$HERE/build-images.sh" | sha256sum | cut -c1-16)
img_key=$( (cat "$HERE/build-images.sh" "$HERE/layout.sh" "$HERE/initramfs-init" && find "$HERE/guest" -type f | sort | xargs cat &&
	cat "$REPO"/systemd/*.service "$REPO"/systemd/dbus/*.conf "$REPO"/systemd/tmpfiles.d/* &&
	for b in update-agent update_engine_client cgpt update-coordinator locksmithctl payload omaha-test-server; do
		cat "$BIN/$b"
	done && echo "$base_key") | sha256sum | cut -c1-16)
if [ ! -e "$WORK/img-$img_key/done" ]; then
	find "$WORK" -maxdepth 1 -name 'img-*' -exec rm -rf {} +
	REPO=$REPO "$HERE/build-images.sh" "$WORK/img-$img_key" "$WORK/base-$base_key" "$BIN"
	touch "$WORK/img-$img_key/done"
fi
ln -sfn "img-$img_key" "$WORK/img"
IMG=$WORK/img
echo "vm: binaries and images ready in $((SECONDS - t0)) s ($IMG)"

# A QEMU of an interrupted run must not outlive it.
QEMU_PID=""
trap 'if [ -n "$QEMU_PID" ]; then kill -KILL "$QEMU_PID" 2>/dev/null; fi' EXIT
ACCEL=$(qemu_accel "$IMG/disk.img" "$IMG/data.img")
export ACCEL
echo "vm: accelerator $ACCEL"

# shellcheck source=tests/vm/scenarios.sh
. "$HERE/scenarios.sh"

all=(a_to_b health_fail boot_fail cut_download cut_commit)
selected=("${@:-${all[@]}}")
failed=() times=()
for s in "${selected[@]}"; do
	start=$SECONDS
	if run_scenario "$s"; then
		times+=("$s: ok in $((SECONDS - start)) s")
	else
		failed+=("$s")
		times+=("$s: FAILED after $((SECONDS - start)) s")
	fi
done
echo
echo "vm: results (accelerator $ACCEL, total $((SECONDS - t0)) s)"
printf '  %s\n' "${times[@]}"
if ((${#failed[@]})); then
	echo "vm: ${#failed[@]} failed: ${failed[*]}"
	exit 1
fi
echo "vm: ${#selected[@]} passed, 0 failed"
