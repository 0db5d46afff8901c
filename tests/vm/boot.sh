# The harness as the bootloader: GRUB's gptprio.next rule applied with
# Debian's cgpt (an implementation independent of ours), the chosen slot's
# kernel taken from EFI-SYSTEM with mtools, its dm-verity root hash read at
# offset 0x40 as Flatcar's GRUB does, and one QEMU run per boot (-no-reboot:
# a guest reboot ends the run). Sourced by run.sh.
# shellcheck shell=bash

USR_TYPE=5DFBF5F4-2848-4BAC-AA5E-0D9A20B745A6

cgpt_field() { cgpt show -i "$2" "-$3" "$1"; } # DISK N FLAG

# GRUB's gptprio.next: among USR-typed entries with tries > 0 or successful,
# the strictly highest priority (> 0; the first wins ties); spend one try.
# Prints the partition number.
gptprio_next() { # DISK
	local d=$1 i p t s best="" best_p=0
	for i in $(seq 1 9); do
		[ "$(cgpt_field "$d" "$i" t 2>/dev/null)" = "$USR_TYPE" ] || continue
		p=$(cgpt_field "$d" "$i" P) t=$(cgpt_field "$d" "$i" T) s=$(cgpt_field "$d" "$i" S)
		if { ((t > 0)) || ((s == 1)); } && ((p > best_p)); then
			best=$i best_p=$p
		fi
	done
	[ -n "$best" ] || return 1
	t=$(cgpt_field "$d" "$best" T)
	((t > 0)) && cgpt add -i "$best" -T $((t - 1)) "$d"
	echo "$best"
}

# One line per USR slot: label, priority, tries, successful.
slot_table() { # DISK
	local d=$1 i
	for i in 3 4; do
		printf '  %-6s P=%s T=%s S=%s\n' "$(cgpt_field "$d" "$i" l)" "$(cgpt_field "$d" "$i" P)" \
			"$(cgpt_field "$d" "$i" T)" "$(cgpt_field "$d" "$i" S)"
	done
}

# qemu_accel: kvm when a short probe boot of the first release reaches its
# initrd's mounts within 15 s (a KVM guest hung here once), else tcg. Set
# VM_ACCEL to force one.
qemu_accel() { # DISK DATA
	if [ -n "${VM_ACCEL:-}" ]; then echo "$VM_ACCEL"; return; fi
	[ -w /dev/kvm ] || { echo tcg; return; }
	local probe=$WORK/probe.img
	cp --sparse=always "$1" "$probe"
	BOOT_TIMEOUT=15 ACCEL=kvm boot_once "$probe" "$2" "$WORK/probe.log" "" "initrd: root=" >/dev/null 2>&1
	rm -f "$probe"
	if [ "$BOOT_END" = killed ]; then echo kvm; else echo tcg; fi
}

# boot_once DISK DATA LOG EXTRA_CMDLINE [KILL_PATTERN]: picks the slot, boots
# it, waits until QEMU ends (or kills it -9 once KILL_PATTERN shows in the
# serial log: a power cut). Sets BOOT_SLOT (3/4), BOOT_LABEL and BOOT_END
# (reboot, poweroff, panic, killed, timeout, noslot).
boot_once() {
	local d=$1 data=$2 log=$3 extra=$4 kill_pat=${5:-} part label uuid off kernel hash qpid start
	BOOT_SLOT="" BOOT_LABEL="" BOOT_END=""
	: >"$log"
	if ! part=$(gptprio_next "$d"); then
		BOOT_END=noslot
		return 1
	fi
	label=$(cgpt_field "$d" "$part" l)
	uuid=$(cgpt_field "$d" "$part" u | tr 'A-F' 'a-f')
	BOOT_SLOT=$part BOOT_LABEL=$label
	off=$(partition_offset "$d" 1)
	kernel=$WORK/kernel.boot
	# GRUB: vmlinuz-a for USR-A's GUID, vmlinuz-b for anything else.
	local kname=vmlinuz-b
	[ "$uuid" = "$USR_A_UUID" ] && kname=vmlinuz-a
	rm -f "$kernel"
	if ! mcopy -n -i "$d@@$off" "::flatcar/$kname" "$kernel" 2>>"$log"; then
		echo "bootloader: no flatcar/$kname on EFI-SYSTEM" >>"$log"
		BOOT_END=nokernel
		return 1
	fi
	hash=$(dd if="$kernel" bs=1 skip=64 count=64 status=none)
	local cmdline="console=ttyS0 panic=1 loglevel=4 root=LABEL=ROOT rootflags=rw"
	cmdline+=" mount.usr=/dev/mapper/usr mount.usrflags=ro verity.usr=PARTUUID=$uuid"
	# Flatcar's GRUB appends the hash only when it is 64 lower-case hex digits.
	[[ $hash =~ ^[0-9a-f]{64}$ ]] && cmdline+=" verity.usrhash=$hash"
	cmdline+=" $extra"
	echo "bootloader: $label (partition $part), $kname, cmdline: $cmdline" >>"$log.boot"
	start=$SECONDS
	# QEMU runs as our direct child so that a power cut kills QEMU itself.
	qemu-system-x86_64 \
		-machine "q35,accel=${ACCEL:-tcg}" -cpu "$([ "${ACCEL:-tcg}" = kvm ] && echo "host,-arch-capabilities" || echo max)" -smp 2 -m 1536 \
		-nodefaults -display none -no-reboot -nic none -serial "file:$log" \
		-kernel "$kernel" -initrd "$WORK/img/initrd.img" -append "$cmdline" \
		-drive "file=$d,format=raw,if=virtio,cache=unsafe" \
		-drive "file=$data,format=raw,if=virtio,readonly=on" &
	qpid=$!
	QEMU_PID=$qpid
	local cut="" deadline=$((SECONDS + ${BOOT_TIMEOUT:-300}))
	while kill -0 "$qpid" 2>/dev/null; do
		if [ -n "$kill_pat" ] && grep -a -q -- "$kill_pat" "$log"; then
			cut=killed
		elif ((SECONDS >= deadline)); then
			cut=timeout
		fi
		if [ -n "$cut" ]; then
			kill -KILL "$qpid" 2>/dev/null
			break
		fi
		sleep 0.2
	done
	local rc=0
	wait "$qpid" 2>/dev/null || rc=$?
	QEMU_PID=""
	BOOT_SECS=$((SECONDS - start))
	if [ -n "$cut" ]; then
		BOOT_END=$cut
	elif grep -q "Kernel panic" "$log"; then
		BOOT_END=panic
	elif grep -q "reboot: Restarting system" "$log"; then
		BOOT_END=reboot
	elif grep -q "reboot: Power down" "$log"; then
		BOOT_END=poweroff
	else
		BOOT_END="exit$rc"
	fi
}
