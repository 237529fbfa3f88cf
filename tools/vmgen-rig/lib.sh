# Helpers shared by demo.sh and check.sh (sourced, not run).
# shellcheck shell=bash

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/../.." && pwd)
export VMGEN_BUILD=${VMGEN_BUILD:-$top/build}
export VMGEN_CACHE=${VMGEN_CACHE:-/var/cache/vmgen}
export VMGEN_RIG_DIR=${VMGEN_RIG_DIR:-$(mktemp -d /tmp/vmgen-rig.XXXXXX)}
rig=$here/rig
sysdev=/sys/bus/platform/devices/AMZNC10C:00
reader=/usr/lib/vmgen/vmgen-reader
mkdir -p "$VMGEN_BUILD"
log=${log:-$VMGEN_BUILD/$(basename "$0" .sh).log}
: >"$log"
t0=$SECONDS

teardown() {
	"$rig" down >/dev/null 2>&1 || true
	rm -rf "$VMGEN_RIG_DIR"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# step "what" COMMAND...: announce, run with output in the log, time it.
step() {
	local what=$1 start=$SECONDS
	shift
	printf '==> %s ... ' "$what"
	echo "==> $what" >>"$log"
	if "$@" >>"$log" 2>&1; then
		printf 'done (%ds, %ds total)\n' $((SECONDS - start)) $((SECONDS - t0))
		return 0
	fi
	printf 'FAILED (%ds)\n' $((SECONDS - start))
	echo "see $log; its last lines:" >&2
	tail -15 "$log" >&2
	return 1
}

# g NAME CMD runs CMD in guest NAME. The agent takes one line, so lines of
# a multi-line CMD are joined: end each with ; or && or |.
g() {
	local vm=$1
	shift
	"$rig" exec "$vm" "$(tr '\n' ' ' <<<"$*")" 2>>"$log"
}

# until_true SECONDS COMMAND...: poll a condition, bounded.
until_true() {
	local end=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || return 1
		sleep 0.2
	done
}

restores_at_least() {
	[ "$(g "$1" cat $sysdev/restores)" -ge "$2" ] 2>/dev/null
}
