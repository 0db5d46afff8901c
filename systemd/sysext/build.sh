#!/usr/bin/env bash
# Builds a systemd-sysext image of the agent for a Flatcar node, where /usr
# is read-only and there is no cargo: the binaries, units, D-Bus policy and
# tmpfiles config under usr/, with the extension-release file Flatcar's
# systemd-sysext accepts (ID=flatcar, SYSEXT_LEVEL=1.0, x86-64).
#
#   systemd/sysext/build.sh [--bin-dir DIR] [--out FILE] [--version VERSION]
#
# --bin-dir: where update-agent, update_engine_client, update-coordinator and
#            locksmithctl are (default: `cargo build --release`, target/release)
# --out:     the image (default target/sysext/update-agent.raw); the file name
#            without .raw is the extension's name
# --version: VERSION_ID in the extension-release file (default: the crate's)
# Needs mksquashfs (Debian: squashfs-tools). Deploying: README "On a Flatcar node".
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BIN_DIR= OUT=$REPO/target/sysext/update-agent.raw
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/Cargo.toml" | head -1)
while (($#)); do
	case $1 in
	--bin-dir) BIN_DIR=$2 ;;
	--out) OUT=$2 ;;
	--version) VERSION=$2 ;;
	*) echo "usage: $0 [--bin-dir DIR] [--out FILE] [--version VERSION]" >&2; exit 2 ;;
	esac
	shift 2
done
command -v mksquashfs >/dev/null || { echo "missing mksquashfs (apt-get install squashfs-tools)" >&2; exit 1; }
if [[ -z $BIN_DIR ]]; then
	cargo build --release --quiet --manifest-path "$REPO/Cargo.toml" -p update-agent -p coordinator
	BIN_DIR=${CARGO_TARGET_DIR:-$REPO/target}/release
fi
for b in update-agent update_engine_client update-coordinator locksmithctl; do
	[[ -x $BIN_DIR/$b ]] || { echo "missing $BIN_DIR/$b (cargo build --release -p update-agent -p coordinator)" >&2; exit 1; }
done
NAME=$(basename "$OUT" .raw)
[[ $NAME =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "bad extension name: $NAME" >&2; exit 2; }

tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
chmod 755 "$tree"
u=$tree/usr
install -D -m755 "$BIN_DIR/update-agent" "$u/sbin/update-agent"
install -D -m755 "$BIN_DIR/update-coordinator" "$u/sbin/update-coordinator"
# The same paths as Flatcar's: the extension's files take their place.
install -D -m755 "$BIN_DIR/update_engine_client" "$u/bin/update_engine_client"
install -D -m755 "$BIN_DIR/locksmithctl" "$u/bin/locksmithctl"
for unit in "$REPO"/systemd/*.service; do
	install -D -m644 "$unit" "$u/lib/systemd/system/$(basename "$unit")"
done
install -D -m644 "$REPO/systemd/dbus/com.coreos.update1.conf" "$u/share/dbus-1/system.d/com.coreos.update1.conf"
for xml in "$REPO"/systemd/dbus/*.xml; do
	install -D -m644 "$xml" "$u/share/dbus-1/interfaces/$(basename "$xml")"
done
install -D -m644 "$REPO/systemd/tmpfiles.d/update-engine.conf" "$u/lib/tmpfiles.d/update-engine.conf"
install -d "$u/share/update-agent/trusted-keys.d"
# systemd-sysext merges an image only when this matches the host's
# os-release: Flatcar's ID and SYSEXT_LEVEL (ARCHITECTURE is checked too).
install -D -m644 /dev/stdin "$u/lib/extension-release.d/extension-release.$NAME" <<REL
ID=flatcar
SYSEXT_LEVEL=1.0
ARCHITECTURE=x86-64
VERSION_ID=$VERSION
REL
mkdir -p "$(dirname "$OUT")"
# Reproducible: root-owned, fixed timestamps.
mksquashfs "$tree" "$OUT" -all-root -noappend -quiet -no-progress -mkfs-time 0 -all-time 0 >/dev/null
echo "$OUT"
