# shellcheck shell=bash
# Sourced by test.sh and tests/vm/run.sh.
#
# need_tools WHO [APT-GET OPTION...]: installs, as root with apt-get, the
# Debian package of every command in the associative array `tools`
# (command -> package) that is not on PATH, plus the packages listed in the
# array `extra_pkgs` (if set). Not root and something missing: prints the
# apt-get command to run and exits 1. WHO prefixes the messages.
need_tools() {
	local who=$1 cmd pkgs
	shift
	local missing=("${extra_pkgs[@]+"${extra_pkgs[@]}"}")
	for cmd in "${!tools[@]}"; do
		command -v "$cmd" >/dev/null 2>&1 || missing+=("${tools[$cmd]}")
	done
	((${#missing[@]})) || return 0
	pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
	if [[ $(id -u) -ne 0 ]]; then
		echo "$who: missing tools; run as root or install: apt-get install -y $pkgs" >&2
		exit 1
	fi
	echo "$who: installing $pkgs"
	export DEBIAN_FRONTEND=noninteractive
	# shellcheck disable=SC2086
	apt-get install -y -qq "$@" $pkgs >/dev/null ||
		{ apt-get update -qq && apt-get install -y -qq "$@" $pkgs >/dev/null; }
}
