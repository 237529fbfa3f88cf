#!/bin/bash
# make bench: how long a restored clone keeps serving the bytes its sibling
# serves, per mechanism, all in one run; and what the patched kernel's
# per-output check costs.
#
# Stale outputs: a guest loops getrandom(32) across a save (vmgen_stale),
# two clones of it continue together, and every post-restore sample of
# clone 1 that clone 2 also produced is stale. The latency is the time from
# clone 1's first post-restore sample to its first one clone 2 did not
# share (0 when the very first was fresh).
#
# Overhead: on the patched kernel, getrandom(32) calls per second with the
# driver unbound (nothing registered) and bound (the check live), taken
# alternately in one boot; ratio = median(unbound / bound).
#
#   VMGEN_BENCH_REPS=N   pairs of rate runs (default 11)
#   VMGEN_BENCH_RATE_MS  length of one rate run (default 1000)
#   VMGEN_STALE_MS       post-restore sampling window (default 500)
set -uo pipefail
. "$(dirname "$0")/lib.sh"

reps=${VMGEN_BENCH_REPS:-11}
rate_ms=${VMGEN_BENCH_RATE_MS:-1000}
export VMGEN_STALE_MS=${VMGEN_STALE_MS:-500}
drv=/sys/bus/platform/drivers/vmgenid_vmclock
for v in "$reps" "$rate_ms" "$VMGEN_STALE_MS"; do
	[[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "bench: '$v' is not a positive count" >&2; exit 2; }
done

die() {
	echo "bench: $*" >&2
	echo "bench: log: $log" >&2
	exit 1
}

# ---------------------------------------------------------------- build
step "Unpacking Debian's linux-source-6.1 (cached)" ktree || die "no linux-source-6.1"
tree=$(ktree)
step "Building the selftests in-tree" kselftest_build "$tree" || die "selftests build"
step "Building the module and the rig (stock kernel)" make -C "$top" rig \
	KSELFTEST="$VMGEN_BUILD/kselftest" || die "rig build"
step "Building the patched kernel (cached; ~30 min the first time)" \
	"$top/tools/kernel-tree/build.sh" "$VMGEN_CACHE" || die "kernel build"
kout=$("$top/tools/kernel-tree/build.sh" "$VMGEN_CACHE")
step "Building the rig around the patched kernel (=y)" patched_rig y "$kout" ||
	die "patched rig build"

# ---------------------------------------------------------------- stale
declare -A stale lat n1
measure() {	# measure MECHANISM RIG-BUILD [boot options]
	local m=$1
	VMGEN_BUILD=$2
	shift 2
	step "Booting '$m' and sampling across a save" stale_boot "b-$m" "$@" ||
		die "$m: guest did not boot or arm"
	step "Two clones of '$m' continue together" stale_pair "b-$m" ||
		die "$m: $stale_err"
	stale[$m]=$stale_shared lat[$m]=$stale_lat_us n1[$m]=$stale_n
	echo "$m: samples=$stale_n stale=$stale_shared latency_us=$stale_lat_us" >>"$log"
	"$rig" down "b-$m" "b-$m-1" "b-$m-2"
}

stock=$top/build patched=$top/build/patched-y
measure none "$stock" --no-module
measure vmgenid "$stock" --no-module --vmgenid
measure notify "$stock"
measure poll "$stock" --no-notify
measure sync "$patched" --no-module

# ---------------------------------------------------------------- overhead
# ABBA order, so that a drift in the host's speed cancels out.
rate_pair() {	# rate_pair VM: prints "UNBOUND BOUND"
	local a b
	g "$1" "echo AMZNC10C:00 >$drv/unbind" || return 1
	a=$(g "$1" "$reader --rate $rate_ms") || return 1
	g "$1" "echo AMZNC10C:00 >$drv/bind && test -e $sysdev/mode" || return 1
	b=$(g "$1" "$reader --rate $rate_ms") || return 1
	echo "$a $b"
}

overhead() {
	local i r ratios=()
	VMGEN_BUILD=$patched
	"$rig" boot ovh --no-module || return 1
	for i in $(seq "$reps"); do
		r=$(rate_pair ovh) || return 1
		echo "rate pair $i (unbound bound): $r" >>"$log"
		ratios+=("$(awk '{ printf "%.6f", $1 / $2 }' <<<"$r")")
	done
	"$rig" down ovh
	printf '%s\n' "${ratios[@]}" | sort -g | awk '{ v[NR] = $1 }
		END { printf "%.3f\n", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }' \
		>"$VMGEN_RIG_DIR/ratio"
}
step "Measuring the check's cost: $reps alternating pairs of ${rate_ms} ms" overhead ||
	die "overhead runs failed"
ratio=$(cat "$VMGEN_RIG_DIR/ratio")

# ---------------------------------------------------------------- report
desc() {
	case "$1" in
	none) echo "control: no driver, counter moves" ;;
	vmgenid) echo "QEMU vmgenid, new GUID per clone" ;;
	notify) echo "shim, notify mode (stock 6.1)" ;;
	poll) echo "shim, poll mode, 100 ms (stock 6.1)" ;;
	sync) echo "patched random.c, sync check" ;;
	esac
}
echo
printf '%-9s %-36s %8s %8s %14s\n' mechanism "" samples stale "latency (us)"
for m in none vmgenid notify poll sync; do
	l=${lat[$m]}
	[ "$l" = -1 ] && l=">${VMGEN_STALE_MS}000"
	printf '%-9s %-36s %8s %8s %14s\n' "$m" "$(desc "$m")" "${n1[$m]}" "${stale[$m]}" "$l"
done
echo "(samples: clone 1's getrandom(32) calls in the first ${VMGEN_STALE_MS} ms after" \
	"the restore; stale: how many of them clone 2 returned too)"
echo "vmgen bench stale: vmgenid=${stale[vmgenid]} notify=${stale[notify]} poll=${stale[poll]} sync=${stale[sync]}"
echo "vmgen bench overhead: ratio=$ratio"
