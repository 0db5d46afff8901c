# The scenarios: each starts from a copy of the built disk (USR-A holds
# $V_A, USR-B is empty), boots as often as the story needs and checks, per
# boot, which slot the GRUB rule chose, how the boot ended and what the guest
# reported (VMTEST lines), and the GPT after it. Sourced by run.sh.
# shellcheck shell=bash

SC_NAME="" SC_DISK="" SC_N=0 SC_LOGS=() SC_FAIL=""

fail() {
	SC_FAIL+="    $*"$'\n'
}

# vmtest LINE-PATTERN: the current boot's guest reported a matching line.
# (The serial console ends lines with CR LF; grep -c reads to the end, so
# pipefail never sees tr killed by SIGPIPE.)
seen() { [ "$(tr -d '\r' <"$BOOT_LOG" | grep -a -c -E -- "VMTEST $1")" != 0 ]; }
expect() { seen "$1" || fail "boot $SC_N: expected a guest line /VMTEST $1/"; }
# log PATTERN: any line of the boot's serial log (kernel, initrd, journal).
expect_log() {
	[ "$(tr -d '\r' <"$BOOT_LOG" | grep -a -c -E -- "$1")" != 0 ] ||
		fail "boot $SC_N: expected a console line /$1/"
}
expect_not() { ! seen "$1" || fail "boot $SC_N: unexpected guest line /VMTEST $1/"; }
expect_boot() { # LABEL END
	[ "$BOOT_LABEL" = "$1" ] || fail "boot $SC_N: booted ${BOOT_LABEL:-nothing}, expected $1"
	[ "$BOOT_END" = "$2" ] || fail "boot $SC_N: ended by $BOOT_END, expected $2"
}
expect_slot() { # LABEL P T S
	local i=3
	[ "$1" = USR-B ] && i=4
	local got
	got="$(cgpt_field "$SC_DISK" $i P) $(cgpt_field "$SC_DISK" $i T) $(cgpt_field "$SC_DISK" $i S)"
	[ "$got" = "$2 $3 $4" ] || fail "after boot $SC_N: $1 has P T S = $got, expected $2 $3 $4"
}
# A verified boot: the initrd opened /usr through dm-verity and the guest
# saw the release and the slot the bootloader chose.
expect_verified() { # VERSION
	expect "boot dm=dm-0 usr_part=vda[34] partlabel=$BOOT_LABEL\$"
	expect "boot version=$1\$"
	expect "boot verity=usr 0 [0-9]+ verity V"
	expect "booted-slot=s \"$BOOT_LABEL\""
}
# The status update_engine_client printed at the end of the boot.
expect_status() { expect "client-status CURRENT_OP=$1\$"; }

boot() { # CMDLINE_EXTRA [KILL_PATTERN]
	SC_N=$((SC_N + 1))
	BOOT_LOG=$WORK/logs/$SC_NAME-$SC_N.log
	SC_LOGS+=("$BOOT_LOG")
	boot_once "$SC_DISK" "$IMG/data.img" "$BOOT_LOG" "$1" "${2:-}" || true
	printf '  boot %d: %-6s %-9s %3d s  [%s]\n' "$SC_N" "${BOOT_LABEL:-none}" "$BOOT_END" \
		"${BOOT_SECS:-0}" "$1"
	slot_table "$SC_DISK" | sed 's/^/        /'
}

# On failure: each boot's slot table is above; here the guest's lines of
# our units and the driver, per boot.
dump_logs() {
	local l
	for l in "${SC_LOGS[@]}"; do
		echo "  --- $l"
		cat "$l.boot" 2>/dev/null | sed 's/^/  /'
		grep -a -E 'update-agent|update_engine|update-engine|update-coordinator|health|omaha-test-server|VMTEST|initrd:|Kernel panic|verity' "$l" |
			grep -a -v 'VMTEST watch' | sed 's/^/  | /' | tail -n 150
	done
}

run_scenario() { # NAME
	SC_NAME=$1 SC_N=0 SC_LOGS=() SC_FAIL=""
	SC_DISK=$WORK/run-$SC_NAME.img
	mkdir -p "$WORK/logs"
	rm -f "$WORK/logs/$SC_NAME"-*
	cp --sparse=always "$IMG/disk.img" "$SC_DISK"
	echo
	echo "vm: scenario $SC_NAME"
	"sc_$SC_NAME"
	if [ -n "$SC_FAIL" ]; then
		echo "vm: scenario $SC_NAME FAILED:"
		printf '%s' "$SC_FAIL"
		dump_logs
		return 1
	fi
	rm -f "$SC_DISK"
}

# A staged update of VERSION from A: downloaded, verified, committed; the
# coordinator reboots through logind.
install_from_a() { # VERSION [KILL]
	boot "vmtest.offer=$1" "${2:-}"
	expect_boot USR-A reboot
	expect_verified "$V_A"
	expect "update rc=0"
	expect "watch .*current_operation: UPDATE_STATUS_DOWNLOADING"
	expect "watch .*current_operation: UPDATE_STATUS_UPDATED_NEED_REBOOT"
	# (-update's own status lines: the coordinator may reboot before the
	# driver asks again.)
	expect "client-update CURRENT_OP=UPDATE_STATUS_UPDATED_NEED_REBOOT\$"
	expect "client-update NEW_VERSION=$1\$"
	expect_slot USR-A 1 0 1
	expect_slot USR-B 2 1 0
}

# A→B, blessed by the health gate; the next boot stays on B.
sc_a_to_b() {
	install_from_a "$V_B"
	boot ""
	expect_boot USR-B poweroff
	expect_verified "$V_B"
	expect "gate result=success state=active"
	expect_status UPDATE_STATUS_IDLE
	# The metrics, as uid 65534 reads them: the gate's verdict (persisted
	# by the gate, exported by the daemon), this boot's check, the release.
	expect "metric update_agent_health_gate_verdicts_total\\{verdict=\"blessed\"\\} 1\$"
	expect "metric update_agent_checks_total\\{result=\"no_update\"\\} [1-9]"
	expect "metric update_agent_status\\{status=\"UPDATE_STATUS_IDLE\"\\} 1\$"
	expect "metric update_agent_build_info\\{.*os_version=\"$V_B\".*\\} 1\$"
	expect "metric update_coordinator_state\\{state=\"(starting|running)\"\\} 1\$"
	expect_not "metric curl"
	expect_slot USR-B 2 0 1
	boot ""
	expect_boot USR-B poweroff
	expect_verified "$V_B"
	expect_slot USR-B 2 0 1
}

# A B whose required health check fails: the gate marks it bad and reboots
# into A; the version is deny-listed and not downloaded again.
sc_health_fail() {
	install_from_a "$V_HEALTH_FAIL"
	boot ""
	# The gate reboots before the driver runs: the journal tells.
	expect_boot USR-B reboot
	expect_log "initrd: root=/dev/vda9 usr=/dev/vda4 via dm-verity"
	# The gate names what booted (the daemon may not have started before
	# the gate's reboot).
	expect_log "booted USR-B \\($V_HEALTH_FAIL\\) is on trial"
	expect_log "required check vmtest-fails exited 1"
	expect_log "health gate failed; falling back to USR-A"
	expect_log "update-agent-health-gate.service: Failed with result 'exit-code'"
	expect_slot USR-A 1 0 1
	expect_slot USR-B 0 0 0
	boot "vmtest.offer=$V_HEALTH_FAIL"
	expect_boot USR-A poweroff
	expect_verified "$V_A"
	expect "deny-list $V_HEALTH_FAIL"
	expect "omaha check version=$V_A"
	expect_not "omaha get="
	expect "client-update .*deny list"
	expect_slot USR-A 1 0 1
}

# A B whose kernel cannot boot (its dm-verity root hash does not match its
# /usr: the initrd gives up, the kernel panics): GRUB's rule falls back to A
# once B's one try is spent, and the agent reports the rollback (3/0/44).
sc_boot_fail() {
	install_from_a "$V_BOOT_FAIL"
	boot ""
	expect_boot USR-B panic
	# veritysetup opens it (the root hash is checked lazily); the first
	# read of /usr panics (--panic-on-corruption, as Flatcar's initrd).
	expect_log "device-mapper: verity: .* is corrupted"
	expect_log "Kernel panic - not syncing: dm-verity device corrupted"
	expect_slot USR-B 2 0 0
	boot "vmtest.offer=$V_BOOT_FAIL"
	expect_boot USR-A poweroff
	expect_verified "$V_A"
	expect "omaha check version=$V_A event=3/0/44"
	expect "deny-list $V_BOOT_FAIL"
	expect_not "omaha get="
	expect_slot USR-A 1 0 1
	expect_slot USR-B 0 0 0
}

# After a staged B: B boots once, the gate blesses it.
boot_new_b() {
	boot ""
	expect_boot USR-B poweroff
	expect_verified "$V_B"
	expect "gate result=success state=active"
	expect_slot USR-B 2 0 1
}

# The power is cut (QEMU killed) while the payload download waits at half
# of the payload: A still boots, verified, and the agent resumes the download and
# finishes; B boots and is blessed.
sc_cut_download() {
	local size
	size=$(stat -c %s "$IMG/payloads/$V_B.gz")
	boot "vmtest.offer=$V_B vmtest.stall=$((size / 2))" "VMTEST omaha stalled=1"
	expect_boot USR-A killed
	expect "omaha get=/files/$V_B.gz range=-"
	expect_slot USR-A 1 0 1
	expect_slot USR-B 0 0 0
	boot "vmtest.offer=$V_B"
	expect_boot USR-A reboot
	expect_verified "$V_A"
	expect "update rc=0"
	# The checkpoint and the bytes it covers outlived the power cut: the
	# download resumes with an HTTP Range request instead of starting over.
	expect "omaha get=/files/$V_B.gz range=bytes=[1-9][0-9]*-"
	expect_slot USR-B 2 1 0
	boot_new_b
}

# The power is cut as the engine reports FINALIZING (the image is verified;
# the kernel rename and the GPT commit happen within ~0.1 s of it, so the cut
# lands just before or just after the commit): every following boot is a
# verified slot, and the update ends blessed on B.
sc_cut_commit() {
	boot "vmtest.offer=$V_B" "current_operation: UPDATE_STATUS_FINALIZING"
	expect_boot USR-A killed
	local n
	for n in 1 2; do
		boot "vmtest.offer=$V_B"
		if [ "$BOOT_LABEL" = USR-A ]; then
			echo "        (the cut came before the commit: A again, the agent installs again)"
			expect_boot USR-A reboot
			expect_verified "$V_A"
			expect "update rc=0"
			continue
		fi
		echo "        (the cut came after the commit: B boots)"
		expect_boot USR-B poweroff
		expect_verified "$V_B"
		expect "gate result=success state=active"
		break
	done
	expect_slot USR-B 2 0 1
}
