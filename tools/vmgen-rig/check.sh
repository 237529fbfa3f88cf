#!/bin/bash
# make check: build everything, then run the host tests, the lint checks and
# the in-guest tests of the end-to-end slice. Ends with "N passed, N failed,
# N skipped" and exits non-zero on any failure.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

passed=0 failed=0 skipped=0
ko=/usr/lib/vmgen/vmgenid_vmclock.ko
splat='BUG:|WARNING:|Oops|Call Trace|general protection|RIP:|refcount_t|list_(add|del) corruption|INFO: task .* blocked|soft lockup|rcu_sched self-detected'

pass() { passed=$((passed + 1)); echo "PASS: $1"; }
fail() { failed=$((failed + 1)); echo "FAIL: $1: $2"; echo "FAIL: $1: $2" >>"$log"; }
skip() { skipped=$((skipped + 1)); echo "SKIP: $1: $2"; }
# expect NAME WHY-IF-FALSE COMMAND...: pass if COMMAND succeeds.
expect() {
	local name=$1 why=$2
	shift 2
	if "$@"; then pass "$name"; else fail "$name" "$why"; fi
}

# ---------------------------------------------------------------- build
step "Building the module and the rig" make -C "$top" rig || {
	echo "0 passed, 1 failed"
	exit 1
}

# ---------------------------------------------------------------- host
host_tests() {
	local line
	while IFS= read -r line; do
		case "$line" in
		PASS:*) pass "host: ${line#PASS: }" ;;
		FAIL:*) line=${line#FAIL: }; fail "host: ${line%%: *}" "${line#*: }" ;;
		esac
	done < <("$VMGEN_BUILD/rig/host-test" "$VMGEN_BUILD/rig/vmclock-emu")
}
host_tests

# ---------------------------------------------------------------- lint
# checkpatch and kernel-doc come from Debian's linux-source-6.1, unpacked
# once into the cache (scripts/ only).
kscripts() {
	local tarball=/usr/src/linux-source-6.1.tar.xz ver dir
	ver=$(dpkg-query -W -f='${Version}' linux-source-6.1)
	dir=$VMGEN_CACHE/linux-source-6.1-$ver
	if [ ! -x "$dir/scripts/checkpatch.pl" ]; then
		mkdir -p "$dir.tmp"
		tar -xJf "$tarball" -C "$dir.tmp" --strip-components=1 \
			linux-source-6.1/scripts >>"$log" 2>&1 || return 1
		rm -rf "$dir" && mv "$dir.tmp" "$dir"
	fi
	echo "$dir/scripts"
}

lint() {
	local scripts out lintmod=$VMGEN_BUILD/lint-module
	rm -rf "$lintmod"
	out=$(make -C "$top" module MOD="$lintmod" W=1 C=2 2>&1)
	echo "$out" >>"$log"
	expect "lint: module builds with W=1 and no warning" \
		"$(grep -c 'warning:' <<<"$out") warnings" \
		test -e "$lintmod/vmgenid_vmclock.ko" -a -z "$(grep 'warning:' <<<"$out")"
	expect "lint: sparse (C=2) reports nothing on the driver" \
		"$(grep -E 'vmgenid_vmclock.c:[0-9]+' <<<"$out" | head -3)" \
		test -z "$(grep -E 'vmgenid_vmclock.c:[0-9]+' <<<"$out")"
	if ! scripts=$(kscripts); then
		fail "lint: kernel scripts" "cannot unpack linux-source-6.1 scripts"
		return
	fi
	out=$("$scripts/checkpatch.pl" --strict --no-tree -q -f \
		"$top/drivers/virt/vmgenid_vmclock.c" 2>&1)
	expect "lint: checkpatch --strict is clean on the driver" "$out" test -z "$out"
	out=$("$scripts/checkpatch.pl" --strict --no-tree -q -f \
		"$top/include/uapi/linux/vmclock-abi.h" 2>&1)
	expect "lint: checkpatch --strict is clean on the ABI header" "$out" test -z "$out"
	out=$("$scripts/kernel-doc" -none "$top/drivers/virt/vmgenid_vmclock.c" 2>&1)
	expect "lint: kernel-doc is silent on the driver" "$out" test -z "$out"
}
lint

# ---------------------------------------------------------------- guest
boot() {	# boot VM [rig boot options]
	step "Booting guest '$1'" "$rig" boot "$@"
}

no_splat() {
	local out
	out=$(g "$1" "dmesg | grep -E '$splat'")
	expect "guest $1: no splat in dmesg" "$out" test -z "$out"
}

# One refused probe: write a bad page, insmod, expect one line and no bind.
probe_refused() {
	local name=$1 want=$2 out lines
	shift 2
	"$rig" page probe init "$@" >>"$log" 2>&1
	out=$(g probe "dmesg -C; insmod $ko; test -e $sysdev/driver && echo BOUND;
		dmesg | grep 'vmgenid_vmclock AMZNC10C'; rmmod vmgenid_vmclock")
	lines=$(grep -c 'vmgenid_vmclock AMZNC10C' <<<"$out")
	if grep -q BOUND <<<"$out"; then
		fail "probe refuses $name" "driver bound anyway"
	elif [ "$lines" != 1 ] || ! grep -qE "$want" <<<"$out"; then
		fail "probe refuses $name" "expected one line matching '$want', got: $out"
	else
		pass "probe refuses $name ($(sed 's/.*AMZNC10C:00: //' <<<"$out"))"
	fi
}

probe_tests() {
	boot probe --no-module || { fail "probe tests" "guest did not boot"; return; }
	probe_refused "a page with bad magic" 'bad magic 0xdeadbeef' --magic 0xdeadbeef
	probe_refused "a page with an unknown version" 'unsupported version 2' --version 2
	probe_refused "a page whose size is too short" 'size 64 too small' --size 64
	probe_refused "a page larger than its resource" 'exceeds the 4096-byte resource' --size 8192
	probe_refused "a page without VM_GEN_COUNTER_PRESENT" 'no VM generation counter' --no-gen-counter

	"$rig" page probe init --counter 5 >>"$log" 2>&1
	out=$(g probe "insmod $ko mode=sideways; echo rc=\$?; dmesg | tail -3")
	expect "insmod rejects mode=sideways with a message" "$out" \
		grep -q "rc=[1-9].*invalid for parameter .mode" <<<"$(tr '\n' ' ' <<<"$out")"
	out=$(g probe "insmod $ko poll_interval_ms=1; echo rc=\$?")
	expect "insmod rejects poll_interval_ms=1" "$out" grep -q 'rc=[1-9]' <<<"$out"

	out=$(g probe "insmod $ko && cat $sysdev/generation $sysdev/mode &&
		stat -c %a $sysdev/generation $sysdev/restores $sysdev/mode")
	expect "a good page binds: generation, mode and 0444 attributes" "$out" \
		test "$(tr '\n' ' ' <<<"$out")" = "5 notify 444 444 444 "

	out=$(g probe "rmmod vmgenid_vmclock; insmod $ko mode=poll && cat $sysdev/mode;
		rmmod vmgenid_vmclock")
	expect "mode=poll forces poll mode on a notifying hypervisor" "got $out" \
		test "$out" = poll
	"$rig" page probe init --counter 5 --no-notify >>"$log" 2>&1
	out=$(g probe "insmod $ko mode=notify && cat $sysdev/mode; rmmod vmgenid_vmclock;
		insmod $ko && cat $sysdev/mode")
	expect "mode=notify forces notify mode; auto falls back to poll" \
		"got $(tr '\n' ' ' <<<"$out")" test "$(tr '\n' ' ' <<<"$out")" = "notify poll "

	# rmmod with the notify handler armed, ring the doorbell with nothing
	# bound, load again: none of it may leave a splat.
	out=$(g probe "for i in 1 2 3 4 5; do rmmod vmgenid_vmclock && insmod $ko || echo FAIL; done;
		rmmod vmgenid_vmclock; echo gone")
	"$rig" page probe ring >>"$log" 2>&1
	out+=$'\n'$(g probe "sleep 1; insmod $ko && test -e $sysdev/driver && echo bound")
	expect "rmmod/insmod x6 and a doorbell while unloaded" "$out" \
		test "$(tr '\n' ' ' <<<"$out")" = "gone bound "
	no_splat probe
}

# In-place restores: stop, loadvm, bump, cont (and ring, in notify mode).
# Every restore goes back to the snapshot, where restores was 0 and no
# uevent had been seen, so "exactly one" is restores=1 and one line.
inplace_tests() {	# inplace_tests VM MODE [boot options]
	local vm=$1 mode=$2 ring i out bytes=() gen
	shift 2
	boot "$vm" "$@" || { fail "$mode mode tests" "guest did not boot"; return; }
	expect "$mode mode: the driver picked $mode mode" "got $(g "$vm" cat $sysdev/mode)" \
		test "$(g "$vm" cat $sysdev/mode)" = "$mode"
	g "$vm" "$reader --reseed" >>"$log"
	step "Taking snapshot s0 of '$vm'" "$rig" savevm "$vm" s0 || return
	ring=(); [ "$mode" = poll ] && ring=(--no-ring)
	for i in 1 2; do
		step "Restoring '$vm' from s0 in place (#$i)" \
			"$rig" loadvm "$vm" s0 "${ring[@]}" || continue
		if ! until_true 30 restores_at_least "$vm" 1; then
			fail "$mode mode: restore #$i seen" "restores stayed 0 for 30s"
			continue
		fi
		bytes+=("$(g "$vm" "$reader --once 32")")
		# Nothing to wait on for "no second event": give it 2 s, 20 polls.
		sleep 2
		gen=$(g "$vm" cat $sysdev/generation)
		out=$(g "$vm" "cat $sysdev/restores; wc -l </run/vmgen/uevents;
			dmesg | grep -c 'VM generation $gen: crng reseeded'")
		expect "$mode mode: restore #$i gives one reseed and one uevent" \
			"restores, uevents, reseed lines: $(tr '\n' ' ' <<<"$out")" \
			test "$(tr '\n' ' ' <<<"$out")" = "1 1 1 "
	done
	expect "$mode mode: two loadvm of one snapshot give different getrandom bytes" \
		"both gave '${bytes[0]:-}'" \
		test ${#bytes[@]} = 2 -a -n "${bytes[0]:-}" -a "${bytes[0]:-}" != "${bytes[1]:-}"
	no_splat "$vm"
	"$rig" down "$vm"
}

# Clones: restore two VMs from one state file, both paused, then let them
# run together and read getrandom() at once, before 6.1's own reseed-on-age
# (uptime/2 early on) could separate them. EXPECT is "differ" with the shim
# and "same" for the control without it, which shows the rig reproduces the
# problem and so that "differ" is the shim's doing.
clone_pair() {	# clone_pair ORIGIN STATE STRATEGY LABEL EXPECT
	local origin=$1 state=$2 strategy=$3 label=$4 want=$5 c out
	local clones=("$origin-$strategy-1" "$origin-$strategy-2") gens=() bytes=()
	for c in "${clones[@]}"; do
		step "Restoring clone '$c' ($strategy counter, paused)" \
			"$rig" clone "$state" "$origin" "$c" --strategy "$strategy" --paused ||
			return
	done
	for c in "${clones[@]}"; do
		"$rig" cont "$c" >>"$log" 2>&1
	done
	if [ "$want" = differ ]; then
		for c in "${clones[@]}"; do
			until_true 30 restores_at_least "$c" 1 ||
				fail "$label: $c reseeded" "restores stayed 0 for 30s"
		done
	fi
	for c in "${clones[@]}"; do
		bytes+=("$(g "$c" "$reader --once 32")")
	done
	if [ "$want" = same ]; then
		expect "$label: clones return identical getrandom bytes" \
			"'${bytes[0]:-}' vs '${bytes[1]:-}'" \
			test -n "${bytes[0]:-}" -a "${bytes[0]:-}" = "${bytes[1]:-}"
	else
		expect "$label: the two clones' getrandom bytes differ" \
			"both gave '${bytes[0]:-}'" \
			test -n "${bytes[0]:-}" -a "${bytes[0]:-}" != "${bytes[1]:-}"
		for c in "${clones[@]}"; do
			gens+=("$(g "$c" cat $sysdev/generation)")
			out=$(g "$c" "cat $sysdev/restores; wc -l </run/vmgen/uevents")
			expect "$label: $c saw one restore and one uevent" \
				"restores, uevents: $(tr '\n' ' ' <<<"$out")" \
				test "$(tr '\n' ' ' <<<"$out")" = "1 1 "
		done
	fi
	if [ "$strategy" = random ]; then
		expect "$label: each clone saw its own counter" "${gens[*]}" \
			test "${gens[0]:-}" != "${gens[1]:-}"
	fi
	for c in "${clones[@]}"; do
		no_splat "$c"
	done
	"$rig" down "${clones[@]}"
}

clone_tests() {	# clone_tests ORIGIN LABEL EXPECT STRATEGY... -- [boot options]
	local origin=$1 label=$2 want=$3 strategies=() state
	shift 3
	while [ "$1" != -- ]; do strategies+=("$1"); shift; done
	shift
	state=$VMGEN_RIG_DIR/$origin.state
	boot "$origin" "$@" || { fail "$label" "guest did not boot"; return; }
	if [[ " $* " == *" qemu64 "* ]]; then
		expect "qemu64 guest has neither RDRAND nor RDSEED" "cpuinfo lists them" \
			test "$(g "$origin" "grep -cE 'rdrand|rdseed' /proc/cpuinfo")" = 0
	fi
	g "$origin" "$reader --reseed" >>"$log"
	step "Saving '$origin' to a state file" "$rig" save "$origin" "$state" || return
	for s in "${strategies[@]}"; do
		clone_pair "$origin" "$state" "$s" "$label ($s)" "$want"
	done
	"$rig" down "$origin"
	rm -f "$state"
}

probe_tests
inplace_tests notify notify
inplace_tests poll poll --no-notify
clone_tests ctl "control, no shim" same increment -- --no-module
clone_tests cl "clones" differ increment random --
clone_tests q64 "clones on qemu64" differ increment -- --cpu qemu64

echo "(log: $log, $((SECONDS - t0))s)"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
