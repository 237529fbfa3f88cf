#!/bin/bash
# make demo: boot a guest with the shim loaded and a getrandom reader
# running, save it as a snapshot, restore it as two clones the way
# Firecracker does (both see the same incremented counter), and report what
# each clone's kernel and udev did.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

clones=(clone-a clone-b)
state=$VMGEN_RIG_DIR/origin.state

step "Building the module and the rig (first run: Debian rootfs, ~1 min)" \
	make -C "$top" rig
step "Booting guest 'origin' under TCG with vmgenid_vmclock and vmgen-reader" \
	"$rig" boot origin --reader
gen_before=$(g origin cat $sysdev/generation)
mode=$(g origin cat $sysdev/mode)
step "Letting vmgen-reader sample getrandom() for a moment" \
	until_true 30 g origin "[ \$(wc -l </run/vmgen/reader.log) -ge 10 ]"
# Reseed just before the snapshot, so that 6.1's own reseed-on-age cannot
# separate the clones before the shim does (check.sh's control shows that
# without the shim they then return identical bytes).
snapshot_origin() {
	g origin "$reader --reseed" && "$rig" save origin "$state"
}
step "Reseeding, then snapshotting 'origin' (stop, migrate to a file)" \
	snapshot_origin
for c in "${clones[@]}"; do
	step "Restoring clone '$c' (load, counter += 1, continue, notify)" \
		"$rig" clone "$state" origin "$c" --strategy increment
done
for c in "${clones[@]}"; do
	step "Waiting for '$c' to reseed and sample again" until_true 30 \
		g "$c" "grep -q \"^[0-9]* \$(cat $sysdev/generation) \" /run/vmgen/reader.log && [ \$(cat $sysdev/restores) -ge 1 ]"
done

reseeded=0 uevents=0 firsts=()
printf '\n%-22s' ""
for c in "${clones[@]}"; do printf '%-34s' "$c"; done
printf '\n'
row() { printf '%-22s' "$1"; shift; for v in "$@"; do printf '%-34s' "$v"; done; printf '\n'; }
cols_after=() cols_mode=() cols_log=() cols_ev=() cols_first=()
for c in "${clones[@]}"; do
	after=$(g "$c" cat $sysdev/generation)
	cols_after+=("$gen_before -> $after")
	cols_mode+=("$(g "$c" cat $sysdev/mode)")
	if g "$c" "dmesg | grep -q 'VM generation $after: crng reseeded'"; then
		cols_log+=("yes"); reseeded=$((reseeded + 1))
	else
		cols_log+=("no")
	fi
	if g "$c" "grep -qx '$after' /run/vmgen/uevents"; then
		cols_ev+=("yes (VMCLOCK_GENERATION=$after)"); uevents=$((uevents + 1))
	else
		cols_ev+=("no")
	fi
	first=$(g "$c" "awk '\$2 == \"$after\" { print \$3; exit }' /run/vmgen/reader.log")
	firsts+=("$first")
	cols_first+=("${first:-none}")
done
row "counter" "${cols_after[@]}"
row "mode" "${cols_mode[@]}"
row "kernel logged reseed" "${cols_log[@]}"
row "udev saw NEW_VMGENID" "${cols_ev[@]}"
row "first getrandom(16)" "${cols_first[@]}"
printf '(origin before the snapshot: generation %s, %s mode)\n\n' \
	"$gen_before" "$mode"

diverged=yes
for ((i = 0; i < ${#firsts[@]}; i++)); do
	[ -n "${firsts[i]}" ] || diverged=no
	for ((j = i + 1; j < ${#firsts[@]}; j++)); do
		[ "${firsts[i]}" != "${firsts[j]}" ] || diverged=no
	done
done
echo "vmgen demo: clones=${#clones[@]} reseeded=$reseeded uevents=$uevents diverged=$diverged"
[ "$reseeded" = "${#clones[@]}" ] && [ "$uevents" = "${#clones[@]}" ] &&
	[ "$diverged" = yes ]
