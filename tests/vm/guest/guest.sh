#!/bin/bash
# The scenario driver inside the guest (vmtest.service, started after the
# update engine, the health gate and the coordinator). It reads what to do
# from the kernel command line (vmtest.offer=VERSION, vmtest.stall=BYTES),
# reports facts as `VMTEST key=value` lines (journal -> serial console, read
# by tests/vm/run.sh) and ends the boot: the coordinator reboots after a
# staged update, the health gate reboots after a failed gate, otherwise this
# script powers off.
set -u
data=/run/vmtest
say() { echo "VMTEST $*"; }
arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p" | tail -n 1; }
offer=$(arg vmtest.offer)
stall=$(arg vmtest.stall)

# The partition under /usr, through dm-verity (what the agent must find).
usr_src=$(stat -c %d /usr)
usr_dm=$(basename "$(readlink -f "/sys/dev/block/$((usr_src >> 8)):$((usr_src & 255))")")
usr_part=$(ls "/sys/block/$usr_dm/slaves" 2>/dev/null)
say "boot dm=$usr_dm usr_part=$usr_part partlabel=$(sed -n 's/^PARTNAME=//p' "/sys/class/block/$usr_part/uevent")"
say "boot version=$(sed -n 's/^FLATCAR_RELEASE_VERSION=//p' /usr/share/flatcar/release)"
say "boot verity=$(cat "/sys/block/$usr_dm/dm/name") $(dmsetup status usr 2>/dev/null || echo no-dmsetup)"

gate=update-agent-health-gate.service
say "gate result=$(systemctl show -p Result --value $gate) state=$(systemctl show -p ActiveState --value $gate)"
for u in update-engine.service update-coordinator.service; do
	say "unit $u state=$(systemctl show -p ActiveState --value $u)"
done
if [ "$(systemctl show -p ActiveState --value $gate)" = failed ]; then
	say "gate failed: waiting for its reboot"
	sleep infinity
fi

# The engine answers on the system bus once it owns its name.
for _ in $(seq 1 300); do
	busctl status com.coreos.update1 >/dev/null 2>&1 && break
	sleep 0.2
done
status() {
	update_engine_client -status 2>&1 | sed 's/^/VMTEST client-status /'
	update_engine_client -deny_list 2>&1 | sed 's/^/VMTEST deny-list /'
}
# The metrics, scraped as an unprivileged user (the socket directory and
# modes come from the shipped tmpfiles entry and the daemon).
metrics() {
	local sock
	for sock in metrics coordinator-metrics; do
		setpriv --reuid=65534 --regid=65534 --clear-groups \
			curl -sS --unix-socket "/run/update-agent/public/$sock.sock" http://localhost/metrics 2>&1 |
			grep -E '^(update_agent_(checks_total|health_gate_verdicts_total|build_info|status)|update_coordinator_state)|curl' |
			sed 's/^/VMTEST metric /'
	done
}
status
agent=$(systemctl show -p MainPID --value update-engine.service)
grep -E ' /boot | /etc/flatcar ' "/proc/$agent/mountinfo" | sed 's/^/VMTEST agent-mount /'
say "booted-slot=$(busctl get-property com.coreos.update1 /com/coreos/update1 org.ab_update_engine.Agent1 BootedSlot 2>&1)"
cgpt show -i 3 /dev/vda | sed 's/^/VMTEST cgpt /'
cgpt show -i 4 /dev/vda | sed 's/^/VMTEST cgpt /'

# The Omaha server, inside the guest, from the data disk. Like a real
# server it offers nothing to a node that already runs the offered version
# (the agent would install the same version again into the other slot).
running=$(sed -n 's/^FLATCAR_RELEASE_VERSION=//p' /usr/share/flatcar/release)
if [ -n "$offer" ] && [ "$offer" = "$running" ]; then
	say "offer $offer skipped: the node runs it"
	offer=""
fi
server_args=(--url-file /run/vmtest-url)
[ -n "$offer" ] && server_args+=(--offer "$offer=$data/payloads/$offer.gz")
[ -n "$stall" ] && server_args+=(--stall-at "$stall")
rm -f /run/vmtest-url
systemd-run --quiet --unit=vmtest-omaha --property=StandardOutput=journal "$data/omaha-test-server" "${server_args[@]}"
for _ in $(seq 1 100); do [ -s /run/vmtest-url ] && break; sleep 0.1; done
[ -s /run/vmtest-url ] || { say "error=omaha server did not start"; systemctl poweroff; exit 1; }
# The whole file, made durable: an append lost to an earlier power cut
# leaves NULs without a newline that would swallow the next line.
printf 'GROUP=stable\nREBOOT_STRATEGY=reboot\nSERVER=%s\n' "$(cat /run/vmtest-url)" >/etc/flatcar/update.conf.new
sync /etc/flatcar/update.conf.new
mv /etc/flatcar/update.conf.new /etc/flatcar/update.conf
sync /etc/flatcar

# Every status change the engine signals, while the update runs.
systemd-run --quiet --unit=vmtest-watch --property=StandardOutput=journal \
	/bin/sh -c 'update_engine_client -watch_for_updates 2>&1 | sed -u "s/^/VMTEST watch /"'
say "update start"
update_engine_client -update 2>&1 | sed 's/^/VMTEST client-update /'
rc=${PIPESTATUS[0]}
say "update rc=$rc"
status
metrics
if [ "$rc" = 0 ] && [ -n "$offer" ] && [ -e /run/update_engine_autoupdate_completed ]; then
	say "staged: waiting for the coordinator's reboot"
	sleep infinity
fi
say "poweroff"
systemctl poweroff
