#!/bin/bash
# test-root.sh ROOT [SERVER_URL]: a directory that stands for a Flatcar
# node's `/`, for `update-agent --root ROOT` (update-agent/README.md's
# walkthrough). It holds only what the agent reads, and a disk image file
# in place of the boot disk; nothing outside ROOT is written, no root
# privileges are needed. Needs `cgpt` and `payload` (this repository's) on
# PATH.
set -euo pipefail

root=${1:?usage: test-root.sh ROOT [SERVER_URL]}
server=${2:-http://127.0.0.1:8090/v1/update/}
usr_mib=16

if [ -e "$root" ] && [ -n "$(ls -A "$root")" ]; then
	echo "test-root.sh: $root exists and is not empty" >&2
	exit 1
fi
mkdir -p "$root"
cd "$root"
mkdir -p usr/share/flatcar etc/flatcar etc/update-agent/keys boot/flatcar \
	sys/fs/cgroup proc/sys/kernel/random

# What the node runs and where it gets updates: /usr's release file and
# Flatcar's two update.conf files (/etc overrides /usr).
printf 'FLATCAR_RELEASE_VERSION=3510.2.0\nFLATCAR_RELEASE_BOARD=amd64-usr\n' \
	>usr/share/flatcar/release
printf 'SERVER=https://public.update.flatcar-linux.net/v1/update/\nGROUP=stable\n' \
	>usr/share/flatcar/update.conf
printf 'SERVER=%s\n' "$server" >etc/flatcar/update.conf

# The identity the agent sends (machine id, this boot's id) and the cgroup
# v2 marker the agent requires of a node it updates.
od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >etc/machine-id
echo >>etc/machine-id
cat /proc/sys/kernel/random/uuid >proc/sys/kernel/random/boot_id
echo 'cpu io memory pids' >sys/fs/cgroup/cgroup.controllers

# The boot disk: Flatcar's two USR slots in a GPT, USR-A booted and good.
# On a node the agent finds the disk itself (dm-verity and sysfs).
truncate -s $((usr_mib * 2 + 2))M disk.img
cgpt create disk.img
cgpt add -i 3 -b 2048 -s $((usr_mib * 2048)) -t coreos-usr -l USR-A -P 1 -S 1 disk.img
cgpt add -i 4 -b $((2048 + usr_mib * 2048)) -s $((usr_mib * 2048)) -t coreos-usr -l USR-B \
	-P 0 -S 0 disk.img
echo 'kernel of 3510.2.0' >boot/flatcar/vmlinuz-a

# A signing key: the agent trusts the public half; payload signs with the
# private one (keep it out of a real node).
payload keygen signing >/dev/null
mv signing.pub etc/update-agent/keys/

# The agent's own settings (docs/configuration.md): the disk image instead
# of the boot disk, and paths under ROOT for everything else.
cat >etc/update-agent/config.toml <<'EOF'
[install]
slot_device = "/disk.img"
booted_slot = "A"
trusted_keys_dir = "/etc/update-agent/keys"
EOF
echo "test root ready in $PWD (SERVER=$server)"
