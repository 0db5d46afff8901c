#!/usr/bin/env bash
# Builds everything the VM scenarios boot, from Debian packages and this
# workspace's binaries only:
#
#   base/      mmdebstrap'd userland (minbase + systemd, dbus, udev) and the
#              Debian kernel with its modules (cached, keyed by the package
#              list and the suite)
#   out/       initrd.img            busybox-static, veritysetup, blkid, modules
#              usr-<V>.img, .hash    a release's /usr as ext4 + dm-verity tree
#              vmlinuz-<V>           the kernel with that root hash at 0x40
#              payloads/<V>.gz       signed payloads (the project's `payload`)
#              disk.img              the Flatcar layout, USR-A = first release
#              data.img              the guest's second disk: payloads, the
#                                    Omaha server, the scenario driver
#
# Usage: build-images.sh OUT_DIR BASE_CACHE_DIR BIN_DIR
set -euo pipefail
out=$1 base=$2 bin=$3
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/vm/layout.sh
. "$here/layout.sh"

suite=bookworm
# curl: the guest scrapes the metrics sockets as a Prometheus exporter would.
packages=systemd,systemd-sysv,dbus,udev,dmsetup,curl
log() { echo "vm-build: $*" >&2; }

# --- the Debian userland and kernel (slow part, cached) --------------------
build_base() {
	[ -e "$base/done" ] && return
	rm -rf "$base" && mkdir -p "$base"
	log "mmdebstrap $suite ($packages)"
	mmdebstrap --quiet --variant=minbase --include="$packages" \
		--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
		--dpkgopt='path-exclude=/usr/lib/udev/hwdb.d/*' \
		"$suite" "$base/rootfs.tar"
	log "kernel package"
	local kpkg
	kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
	[ -n "$kpkg" ] || { log "no linux-image-amd64 in apt's lists (apt-get update?)"; exit 1; }
	(cd "$base" && apt-get download "$kpkg" 2>/dev/null)
	mkdir -p "$base/kernel" && dpkg-deb -x "$base"/linux-image-*.deb "$base/kernel"
	rm -f "$base"/linux-image-*.deb
	touch "$base/done"
}

# --- initramfs ---------------------------------------------------------------
copy_with_libs() { # BINARY DESTROOT
	local f
	install -D -m755 "$1" "$2/bin/$(basename "$1")"
	for f in $(ldd "$1" | grep -o '/[^ ]*'); do
		install -D -m755 "$f" "$2$f"
	done
}

build_initrd() {
	local kv root mods m
	kv=$(ls "$base/kernel/lib/modules")
	root=$(mktemp -d "$out/initrd.XXXX")
	mkdir -p "$root"/{bin,sbin,proc,sys,dev,run,sysroot,modules,etc}
	cp /bin/busybox "$root/bin/busybox"
	copy_with_libs "$(command -v veritysetup)" "$root"
	copy_with_libs "$(command -v blkid)" "$root"
	install -m755 "$here/initramfs-init" "$root/init"
	depmod -b "$base/kernel" "$kv"
	mods=$(for m in virtio_pci virtio_blk ext4 dm_verity vfat nls_cp437 nls_ascii loop; do
		modprobe -d "$base/kernel" -S "$kv" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
	done | awk '!seen[$0]++')
	: >"$root/modules.order"
	for m in $mods; do
		cp "$m" "$root/modules/"
		basename "$m" >>"$root/modules.order"
	done
	(cd "$root" && find . | cpio --quiet -o -H newc) | gzip -1 >"$out/initrd.img"
	rm -rf "$root"
	cp "$base/kernel/boot/vmlinuz-$kv" "$out/vmlinuz"
}

# --- the userland: one tree, split into ROOT (/etc, /var) and USR ------------
build_tree() {
	local t=$out/tree
	rm -rf "$t" && mkdir -p "$t"
	tar -C "$t" -xf "$base/rootfs.tar"
	# Our binaries, units and bus policy, as README's deploy section says.
	install -m755 "$bin/update-agent" "$t/usr/sbin/update-agent"
	install -m755 "$bin/update_engine_client" "$t/usr/bin/update_engine_client"
	install -m755 "$bin/cgpt" "$t/usr/bin/cgpt"
	install -m755 "$bin/update-coordinator" "$t/usr/sbin/update-coordinator"
	install -m755 "$bin/locksmithctl" "$t/usr/bin/locksmithctl"
	strip "$t/usr/sbin/update-agent" "$t/usr/bin/update_engine_client" "$t/usr/bin/cgpt" \
		"$t/usr/sbin/update-coordinator" "$t/usr/bin/locksmithctl"
	install -m644 "$REPO"/systemd/*.service "$t/usr/lib/systemd/system/"
	install -m644 "$REPO/systemd/dbus/com.coreos.update1.conf" "$t/usr/share/dbus-1/system.d/"
	install -m644 "$REPO/systemd/tmpfiles.d/update-engine.conf" "$t/usr/lib/tmpfiles.d/"
	install -d "$t/usr/share/update-agent/trusted-keys.d"
	install -m644 "$out/release.pub" "$t/usr/share/update-agent/trusted-keys.d/vmtest.pub"
	systemctl --root="$t" --quiet enable update-engine.service update-agent-health-gate.service \
		update-coordinator.service
	# The node's own configuration (ROOT's /etc) and the scenario driver.
	cp -a "$here/guest/etc/." "$t/etc/"
	install -m644 "$here/guest/vmtest.service" "$t/etc/systemd/system/vmtest.service"
	systemctl --root="$t" --quiet enable vmtest.service
	systemctl --root="$t" --quiet mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
		fstrim.timer getty@tty1.service serial-getty@ttyS0.service systemd-timesyncd.service 2>/dev/null || true
	echo vmtest >"$t/etc/hostname"
	echo 5b3c2e0e5e3b4e9f9d6a0c1b2a3d4e5f >"$t/etc/machine-id"
	mkdir -p "$t/boot" "$t/oem"
}

# A release's USR image: ext4 of the tree's /usr + the dm-verity hash tree.
build_usr() { # VERSION [health-fail]
	local v=$1 img=$out/usr-$1.img stage blocks
	stage=$out/usr-stage
	rm -rf "$stage" && cp -a "$out/tree/usr" "$stage"
	mkdir -p "$stage/share/flatcar"
	printf 'FLATCAR_RELEASE_VERSION=%s\nFLATCAR_RELEASE_BOARD=amd64-usr\n' "$v" >"$stage/share/flatcar/release"
	printf 'GROUP=stable\n' >"$stage/share/flatcar/update.conf"
	if [ "${2:-}" = health-fail ]; then
		install -D -m755 /dev/stdin "$stage/lib/update-agent/health.d/required/vmtest-fails" <<-'EOF'
			#!/bin/sh
			echo "vmtest: this release's required check fails" >&2
			exit 1
		EOF
	fi
	rm -f "$img"
	mkfs.ext4 -q -F -b 4096 -L USR -U clear -E root_owner=0:0 \
		-d "$stage" "$img" "$((USR_FS_MIB))M"
	resize2fs -M "$img" >/dev/null 2>&1
	blocks=$(dumpe2fs -h "$img" 2>/dev/null | awk -F: '/^Block count/{gsub(/ /,"",$2); print $2}')
	truncate -s "$((blocks * 4096))" "$img"
	veritysetup format --hash-offset="$((blocks * 4096))" --data-blocks="$blocks" "$img" "$img" |
		awk '/^Root hash:/{print $3}' >"$out/usr-$v.hash"
	rm -rf "$stage"
	# The kernel carries its USR's root hash at 0x40, where Flatcar's GRUB
	# reads it (a "bad" release gets a wrong one and cannot boot).
	cp "$out/vmlinuz" "$out/vmlinuz-$v"
	local h
	h=$(cat "$out/usr-$v.hash")
	[ "${2:-}" = boot-fail ] && h=$(echo "$h" | tr '0-9a-f' '1-9a-f0')
	printf %s "$h" | dd of="$out/vmlinuz-$v" bs=1 seek=64 conv=notrunc status=none
	log "USR $v: $((blocks * 4096 / 1048576)) MiB fs, root hash $(cat "$out/usr-$v.hash")"
}

build_payload() { # VERSION
	mkdir -p "$out/payloads"
	"$bin/payload" generate --target "$out/usr-$1.img" --kernel "$out/vmlinuz-$1" \
		--zstd-level 3 --key "$out/release.key" --version "$1" --board amd64-usr \
		-o "$out/payloads/$1.gz" >/dev/null
}

# --- the disk: Flatcar's layout, USR-A holds the first release ---------------
build_disk() { # FIRST_VERSION
	local d=$out/disk.img esp root
	rm -f "$d" && truncate -s "${DISK_MIB}M" "$d"
	sgdisk -U "$DISK_GUID" \
		-n 1:2048:+"$ESP_MIB"M -c 1:EFI-SYSTEM -t 1:C12A7328-F81F-11D2-BA4B-00A0C93EC93B \
		-n 3:0:+"$USR_MIB"M -c 3:USR-A -t 3:5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6 -u 3:"$USR_A_UUID" \
		-n 4:0:+"$USR_MIB"M -c 4:USR-B -t 4:5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6 -u 4:"$USR_B_UUID" \
		-n 6:0:+"$OEM_MIB"M -c 6:OEM -t 6:0FC63DAF-8483-4772-8E79-3D69D8477DE4 \
		-n 9:0:0 -c 9:ROOT -t 9:3884DD41-8582-4404-B9A8-E9B84F2DF50E "$d" >/dev/null
	cgpt add -i 3 -P 1 -T 0 -S 1 "$d"
	cgpt add -i 4 -P 0 -T 0 -S 0 "$d"
	# EFI-SYSTEM: flatcar/vmlinuz-a.
	esp=$out/esp.img
	rm -f "$esp" && truncate -s "${ESP_MIB}M" "$esp"
	mkfs.vfat -n EFI-SYSTEM "$esp" >/dev/null
	mmd -i "$esp" ::flatcar
	mcopy -i "$esp" "$out/vmlinuz-$1" ::flatcar/vmlinuz-a
	put_partition "$d" 1 "$esp"
	put_partition "$d" 3 "$out/usr-$1.img"
	# OEM: empty ext4. ROOT: the tree without /usr (Flatcar's /etc and /var).
	mkfs.ext4 -q -F -L OEM "$out/oem.img" "${OEM_MIB}M"
	put_partition "$d" 6 "$out/oem.img"
	root=$out/root-stage
	rm -rf "$root" && cp -a "$out/tree" "$root" && rm -rf "${root:?}/usr" && mkdir "$root/usr"
	local rsize
	rsize=$(($(partition_bytes "$d" 9) / 1048576))
	mkfs.ext4 -q -F -L ROOT -E root_owner=0:0 -d "$root" "$out/root.img" "${rsize}M"
	put_partition "$d" 9 "$out/root.img"
	rm -rf "$root" "$esp" "$out/root.img" "$out/oem.img"
}

# --- the guest's second disk -------------------------------------------------
build_data() {
	local s=$out/data-stage
	rm -rf "$s" && mkdir -p "$s"
	cp -a "$out/payloads" "$s/"
	install -m755 "$bin/omaha-test-server" "$s/omaha-test-server"
	strip "$s/omaha-test-server"
	install -m755 "$here/guest/guest.sh" "$s/guest.sh"
	local kib
	kib=$(($(du -sk "$s" | cut -f1) * 5 / 4 + 32768))
	mkfs.ext4 -q -F -L VMDATA -d "$s" "$out/data.img" "${kib}K"
	rm -rf "$s"
}

mkdir -p "$out"
build_base
[ -e "$out/release.key" ] || "$bin/payload" keygen "$out/release" >/dev/null
build_initrd
build_tree
build_usr "$V_A"
build_usr "$V_B"
build_usr "$V_HEALTH_FAIL" health-fail
build_usr "$V_BOOT_FAIL" boot-fail
for v in "$V_B" "$V_HEALTH_FAIL" "$V_BOOT_FAIL"; do build_payload "$v"; done
build_disk "$V_A"
build_data
rm -rf "$out/tree"
log "done: $(du -sh --apparent-size "$out" | cut -f1) in $out"
