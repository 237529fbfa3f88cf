#!/bin/bash
# make check: build everything (module, DKMS install, in-tree selftests, the
# rig), then run the host tests, the lint checks, and the in-guest tests:
# probe, DKMS, selftests across restores, notify and poll modes, clones,
# stale output across clones; then the same on the patched kernel (make
# kernel), with its synchronous check and WireGuard; then the quick subset
# of make faults on its debug kernel.
# Ends with "N passed, N failed, N skipped"; exits non-zero on any failure.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

passed=0 failed=0 skipped=0
ko=/usr/lib/vmgen/vmgenid_vmclock.ko

# Results carry the kernel they ran on once more than one is tested.
kname=
pass() { passed=$((passed + 1)); echo "PASS: $kname$1"; }
fail() { failed=$((failed + 1)); echo "FAIL: $kname$1: $2"; echo "FAIL: $kname$1: $2" >>"$log"; }
skip() { skipped=$((skipped + 1)); echo "SKIP: $kname$1: $2"; }
# expect NAME WHY-IF-FALSE COMMAND...: pass if COMMAND succeeds.
expect() {
	local name=$1 why=$2
	shift 2
	if "$@"; then pass "$name"; else fail "$name" "$why"; fi
}

# ---------------------------------------------------------------- build
kver=$("$here/kernel.sh" version)
dkms_ko=/lib/modules/$kver/updates/dkms/vmgenid_vmclock.ko
step "Unpacking Debian's linux-source-6.1 (cached)" ktree &&
	tree=$(ktree) || { echo "0 passed, 1 failed"; exit 1; }
if step "DKMS: add, build and install against Debian's headers" \
	make -C "$top" dkms-install KVER="$kver"; then
	pass "dkms: add/build/install for $kver"
else
	fail "dkms: add/build/install for $kver" "see $log"
	dkms_ko=
fi
if step "Building the selftests in-tree (tools/testing/selftests)" \
	kselftest_build "$tree"; then
	pass "kselftest: vmgen builds in-tree with lib.mk"
else
	fail "kselftest: vmgen builds in-tree with lib.mk" "see $log"
fi
out=$(make -C "$tree/tools/testing/selftests" TARGETS=vmgen \
	O="$VMGEN_BUILD/kselftest-out" run_tests 2>&1)
echo "$out" >>"$log"
expect "kselftest: in-tree run_tests on the host skips cleanly (no device)" \
	"$(grep -E '^(not )?ok' <<<"$out")" \
	test -z "$(grep '^not ok' <<<"$out")" -a -n "$(grep '^ok 2 .*vmgen_restore # SKIP' <<<"$out")"
step "Building the module and the rig" make -C "$top" rig \
	${dkms_ko:+DKMS_MODULE=$dkms_ko} KSELFTEST="$VMGEN_BUILD/kselftest" || {
	echo "$passed passed, $((failed + 1)) failed"
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
	scripts=$tree/scripts
	out=$("$scripts/checkpatch.pl" --strict --no-tree -q -f \
		"$top/drivers/virt/vmgenid_vmclock.c" \
		"$top/tools/vmgen-rig/faults/vmclock_squatter.c" 2>&1)
	expect "lint: checkpatch --strict is clean on the driver and the test module" \
		"$out" test -z "$out"
	out=$("$scripts/checkpatch.pl" --strict --no-tree -q -f \
		"$top/include/uapi/linux/vmclock-abi.h" 2>&1)
	expect "lint: checkpatch --strict is clean on the ABI header" "$out" test -z "$out"
	out=$("$scripts/kernel-doc" -none "$top/drivers/virt/vmgenid_vmclock.c" 2>&1)
	expect "lint: kernel-doc is silent on the driver" "$out" test -z "$out"
	out=$("$scripts/checkpatch.pl" --strict --no-signoff -q \
		"$top/drivers/char/random.c.patch" 2>&1)
	expect "lint: checkpatch --strict is clean on random.c.patch (signoff aside)" \
		"$out" test -z "$out"
	out=$("$scripts/checkpatch.pl" --strict --no-tree -q -f \
		"$top"/tools/testing/selftests/vmgen/*.[ch] 2>&1)
	expect "lint: checkpatch --strict is clean on the selftests" "$out" test -z "$out"
	out=$(for p in "$top/drivers/char/random.c.patch" "$top"/tools/kernel-tree/*.patch; do
		patch -d "$tree" -p1 --dry-run --batch --forward -s <"$p" >/dev/null ||
			echo "$(basename "$p")"; done)
	expect "kernel-tree: every patch applies to pristine linux-source-6.1" \
		"does not apply: $out" test -z "$out"
	rm -rf "$VMGEN_BUILD/patches"
	"$top/tools/kernel-tree/mkseries.sh" "$VMGEN_BUILD/patches" >>"$log" 2>&1
	out=$(diff -r "$top/patches" "$VMGEN_BUILD/patches" 2>&1 | head -5)
	expect "patches/ matches the sources (make patches)" "$out" test -z "$out"
	out=$(/usr/bin/rst2html --strict \
		"$top/Documentation/admin-guide/vmclock-vmgenid.rst" 2>&1 >/dev/null)
	expect "lint: rst2html --strict accepts the admin guide" "$out" test -z "$out"
}
lint

# ---------------------------------------------------------------- guest
boot_extra=()	# --no-module when the driver is built into the kernel
boot() {	# boot VM [rig boot options]
	step "Booting guest '$1'" "$rig" boot "$@" "${boot_extra[@]}"
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
	"$rig" page probe init --no-gen-counter >>"$log" 2>&1
	out=$(g probe "dmesg -C; insmod $ko && cat $sysdev/mode;
		dmesg | grep -c 'no VM generation counter.*nothing to watch'; rmmod vmgenid_vmclock")
	expect "a page without VM_GEN_COUNTER_PRESENT binds idle: mode off, said once" \
		"got $(tr '\n' ' ' <<<"$out")" test "$(tr '\n' ' ' <<<"$out")" = "off 1 "

	"$rig" page probe init --counter 5 >>"$log" 2>&1
	out=$(g probe "insmod $ko mode=sideways; echo rc=\$?; dmesg | tail -3; insmod $ko mode=off; echo rc=\$?")
	expect "insmod rejects mode=sideways (with a message) and mode=off" "$out" \
		grep -q "rc=[1-9].*invalid for parameter .mode.*rc=[1-9]" <<<"$(tr '\n' ' ' <<<"$out")"
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
	"$rig" down probe
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
	# rngd (rng-tools5) feeds the pool from RDRAND: it must survive restores.
	g "$vm" "rngd 2>/dev/null; $reader --reseed" >>"$log"
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
		if [ -n "$kname" ]; then
			out=$(g "$vm" "dmesg | grep -c '$gen_change'")
			expect "$mode mode: restore #$i: random.c reseeded once, driver's check included" \
				"random.c reseed lines: $out" test "$out" = 1
		fi
		out=$(g "$vm" "cat /run/vmgenid/history")
		expect "$mode mode: restore #$i: the example udev rule fired once" \
			"history: $(tr '\n' ' ' <<<"$out"), generation $gen" test "$out" = "$gen"
		expect "$mode mode: restore #$i: rngd still running" "rngd is gone" \
			test -n "$(g "$vm" pidof rngd)"
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
		# FIPS 140-2 fails about 0.08% of good 20000-bit blocks: 0.8
		# expected in 1000, and more than 5 happens with p < 3e-4.
		for c in "${clones[@]}"; do
			out=$(g "$c" "head -c 2500004 /dev/urandom | rngtest -c 1000 2>&1 |
				sed -n 's/.*FIPS 140-2 failures: //p'")
			expect "$label: $c: rngtest over 1000 blocks after the restore, <= 5 failures" \
				"${out:-no rngtest output} failures" test "${out:-99}" -le 5
		done
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

dkms_tests() {
	local out
	if [ -z "$dkms_ko" ]; then
		skip "dkms: module autoloads in the guest" "DKMS install failed"
		return
	fi
	boot dkms --no-module --append vmgen.dkms=1 ||
		{ fail "dkms tests" "guest did not boot"; return; }
	out=$(g dkms "modinfo -F filename vmgenid_vmclock; basename \$(readlink $sysdev/driver)")
	expect "dkms: udev autoloads the DKMS-installed module, which binds" \
		"$(tr '\n' ' ' <<<"$out")" \
		test "$(tr '\n' ' ' <<<"$out")" = "/lib/modules/$kver/updates/dkms/vmgenid_vmclock.ko vmgenid_vmclock "
	"$rig" savevm dkms s0 >>"$log" 2>&1 && "$rig" loadvm dkms s0 >>"$log" 2>&1
	expect "dkms: the DKMS module reseeds on a restore" "restores stayed 0" \
		until_true 30 restores_at_least dkms 1
	no_splat dkms
	"$rig" down dkms
}

# kselftests driven by the rig: vmgen_restore waits in the guest, the rig
# snapshots it while it waits, and restores it; the samples it prints are
# compared here, across two loadvm of one snapshot and across clones.

kst_tap() {	# kst_tap LABEL LOG-TEXT: count the test binary's own results
	local label=$1 line name n=0
	while IFS= read -r line; do
		[[ "$line" =~ ^#\ (not\ )?ok\ [0-9]+\ (.*)$ ]] || continue
		n=$((n + 1))
		name=${BASH_REMATCH[2]}
		if [[ "$name" == *"# SKIP"* ]]; then
			skip "$label: ${name%%# SKIP*}" "${name#*# SKIP }"
		elif [ -n "${BASH_REMATCH[1]}" ]; then
			fail "$label: $name" "not ok"
		else
			pass "$label: $name"
		fi
	done <<<"$2"
	[ "$n" -gt 0 ] || fail "$label" "no TAP results: $(tail -3 <<<"$2")"
}

kst_start() {	# start vmgen_restore in VM, return once it is armed
	g "$1" "rm -f /run/vmgen/kst.ready; cd $kst &&
		VMGEN_RESTORE_TIMEOUT=120 VMGEN_READY_FILE=/run/vmgen/kst.ready
		./run_kselftest.sh -t vmgen:vmgen_restore >/run/vmgen/kst.log 2>&1 &" &&
	until_true 30 g "$1" "test -e /run/vmgen/kst.ready"
}

# kst_collect VM LABEL: wait for vmgen_restore to finish, count its results
# and leave its samples in $samples (not printed: counting must happen in
# this shell, not in a $(...) subshell).
kst_collect() {
	samples=
	if ! until_true 60 g "$1" "grep -qE '^(not )?ok [0-9]+ selftests: vmgen: vmgen_restore' /run/vmgen/kst.log"; then
		fail "$2" "vmgen_restore did not finish"
		return
	fi
	kst_tap "$2" "$(g "$1" cat /run/vmgen/kst.log)"
	samples=$(g "$1" "grep -o 'sample [a-z]*=.*' /run/vmgen/kst.log")
}

kst_compare() {	# kst_compare LABEL SAMPLES-A SAMPLES-B
	local kind a b
	for kind in getrandom urandom uuid; do
		a=$(sed -n "s/^sample $kind=//p" <<<"$2")
		b=$(sed -n "s/^sample $kind=//p" <<<"$3")
		expect "$1: $kind differs" "both '$a'" test -n "$a" -a -n "$b" -a "$a" != "$b"
	done
}

kselftest_tests() {
	local out a b state=$VMGEN_RIG_DIR/kst.state
	boot kst || { fail "kselftests" "guest did not boot"; return; }
	out=$(g kst "cd $kst && ./run_kselftest.sh -t vmgen:vmgen_sysfs")
	echo "$out" >>"$log"
	kst_tap "kselftest vmgen_sysfs" "$out"

	kst_start kst || { fail "kselftest vmgen_restore" "did not arm"; return; }
	g kst "$reader --reseed" >>"$log"
	step "Snapshotting 'kst' while vmgen_restore waits" "$rig" savevm kst s0 || return
	"$rig" loadvm kst s0 >>"$log" 2>&1
	kst_collect kst "kselftest vmgen_restore (loadvm #1)"
	a=$samples
	"$rig" loadvm kst s0 >>"$log" 2>&1
	kst_collect kst "kselftest vmgen_restore (loadvm #2)"
	b=$samples
	kst_compare "kselftest samples, two loadvm of one snapshot" "$a" "$b"

	kst_start kst || { fail "kselftest vmgen_restore (clones)" "did not arm"; return; }
	g kst "$reader --reseed" >>"$log"
	step "Saving 'kst' while vmgen_restore waits" "$rig" save kst "$state" || return
	for c in kst-1 kst-2; do
		"$rig" clone "$state" kst "$c" --paused >>"$log" 2>&1
	done
	"$rig" cont kst-1 >>"$log" 2>&1
	"$rig" cont kst-2 >>"$log" 2>&1
	kst_collect kst-1 "kselftest vmgen_restore (clone 1)"
	a=$samples
	kst_collect kst-2 "kselftest vmgen_restore (clone 2)"
	b=$samples
	kst_compare "kselftest samples, two clones" "$a" "$b"
	"$rig" down kst kst-1 kst-2
	rm -f "$state"
}

# stale_tests VM EXPECT LABEL [boot options]: vmgen_stale loops across a
# save, two clones continue together (lib.sh), and EXPECT says what the
# shared post-restore samples must be: "none" on a kernel that checks the
# counter on every output, "some" for the control with no driver at all.
stale_tests() {
	local vm=$1 want=$2 label=$3
	shift 3
	step "Booting '$vm' and sampling getrandom() across a save" \
		stale_boot "$vm" "$@" "${boot_extra[@]}" ||
		{ fail "stale: $label" "guest did not boot or vmgen_stale did not start"; return; }
	if ! step "Two clones of '$vm' continue together" stale_pair "$vm"; then
		fail "stale: $label" "$stale_err"
		"$rig" down "$vm" "$vm-1" "$vm-2"
		return
	fi
	kst_tap "kselftest vmgen_stale (clone 1)" "$stale_log1"
	kst_tap "kselftest vmgen_stale (clone 2)" "$stale_log2"
	echo "stale $vm: samples=$stale_n shared=$stale_shared latency_us=$stale_lat_us" >>"$log"
	if [ "$want" = none ]; then
		expect "stale: $label: none of $stale_n post-restore samples shared" \
			"$stale_shared shared, fresh after ${stale_lat_us} us" test "$stale_shared" = 0
	else
		expect "stale: $label: clones share post-restore samples ($stale_shared of $stale_n)" \
			"none shared: the test could not see a stale window" test "$stale_shared" -gt 0
	fi
	no_splat "$vm-1"
	no_splat "$vm-2"
	"$rig" down "$vm" "$vm-1" "$vm-2"
}

# ------------------------------------------------------ patched kernel only
# silent_pair STATE TAG [PAGE-CMD]: two paused clones sync-TAG-1/2 whose
# counter the restore leaves alone; PAGE-CMD (say, begin) then runs on each
# clone's page before both continue without a doorbell. Their first bytes
# go to $bytes.
silent_pair() {
	local state=$1 tag=$2 cmd=${3:-} c
	bytes=()
	for c in "sync-$tag-1" "sync-$tag-2"; do
		"$rig" clone "$state" sync "$c" --paused --no-bump >>"$log" 2>&1
		[ -z "$cmd" ] || "$rig" page "$c" "$cmd" >>"$log" 2>&1
	done
	for c in "sync-$tag-1" "sync-$tag-2"; do
		"$rig" cont "$c" --no-ring >>"$log" 2>&1
	done
	for c in "sync-$tag-1" "sync-$tag-2"; do
		bytes+=("$(g "$c" "$reader --once 32")")
	done
}

# "restores, random.c reseed lines" of guest $1, on one line.
sync_counts() {
	g "$1" "cat $sysdev/restores; dmesg | grep -c '$gen_change'" | tr '\n' ' '
}

# Clones that come up in the middle of a hypervisor update: the counter has
# moved but seq_count is still odd, and no doorbell rings. The driver's
# reads give up on an odd seq_count, so until the update finishes only
# random.c's own compare of the bare counter can make the clones differ.
# The control shows such clones otherwise return identical bytes.
sync_tests() {
	local state=$VMGEN_RIG_DIR/sync.state c out
	boot sync || { fail "sync tests" "guest did not boot"; return; }
	out=$(g sync "dmesg | grep -c 'reseed via random.c generation check'")
	expect "the driver registered its counter with random.c" "got '$out'" test "$out" = 1
	g sync "$reader --reseed" >>"$log"
	step "Saving 'sync' for silent clones" "$rig" save sync "$state" || return
	# Control: clones whose counter does not move must still share their
	# output, or the divergence below could be 6.1's own reseed-on-age.
	silent_pair "$state" ctl
	expect "control: silent clones with an unchanged counter return identical bytes" \
		"'${bytes[0]:-}' vs '${bytes[1]:-}'" \
		test -n "${bytes[0]:-}" -a "${bytes[0]:-}" = "${bytes[1]:-}"
	"$rig" down sync-ctl-1 sync-ctl-2
	silent_pair "$state" new begin
	expect "mid-update: the clones' first getrandom bytes already differ" \
		"both gave '${bytes[0]:-}'" \
		test -n "${bytes[0]:-}" -a "${bytes[0]:-}" != "${bytes[1]:-}"
	for c in sync-new-1 sync-new-2; do
		out=$(sync_counts "$c")
		expect "mid-update: $c reseeded once, in random.c, before the driver could act" \
			"restores, random.c reseeds: $out" test "$out" = "0 1 "
		"$rig" page "$c" finish >>"$log" 2>&1
		until_true 10 restores_at_least "$c" 1
		out=$(sync_counts "$c")
		expect "mid-update: $c's driver catches up once the update ends, no second reseed" \
			"restores, random.c reseeds: $out" test "$out" = "1 1 "
		no_splat "$c"
	done
	"$rig" down sync sync-new-1 sync-new-2
	rm -f "$state"
}

handshake_after() {	# handshake_after VM T: poke, true once a's handshake > T
	g "$1" /usr/lib/vmgen/wg-pair poke >/dev/null
	[ "$(g "$1" /usr/lib/vmgen/wg-pair handshake)" -gt "$2" ] 2>/dev/null
}

# WireGuard drops its keypairs on the vmfork chain. With the keys gone,
# the next packet after a restore starts a new handshake; with them kept,
# none is due for 120 s (REKEY_AFTER_TIME).
wireguard_tests() {
	local hs0
	# Under TCG the TSC follows the host's clock, so after loadvm boottime
	# jumps and WireGuard expires its keys by age: the control caught that.
	# HPET follows QEMU's virtual clock, which stops while the VM does.
	boot wg --append clocksource=hpet ||
		{ fail "wireguard tests" "guest did not boot"; return; }
	if ! g wg /usr/lib/vmgen/wg-pair setup >>"$log" ||
	   ! until_true 30 handshake_after wg 0; then
		fail "wireguard: tunnel between two namespaces" "no handshake"
		"$rig" down wg
		return
	fi
	pass "wireguard: tunnel between two namespaces is up"
	hs0=$(g wg /usr/lib/vmgen/wg-pair handshake)
	# Handshake initiations are rate-limited to one per 5 s (REKEY_TIMEOUT).
	sleep 6
	"$rig" savevm wg s0 >>"$log" 2>&1
	# Control: the same restore, unannounced. The keys must survive it, or
	# the test below would pass for reasons of its own (a clock jump).
	"$rig" loadvm wg s0 --no-bump >>"$log" 2>&1
	if until_true 15 handshake_after wg "$hs0"; then
		fail "wireguard: an unannounced restore keeps the keys (control)" \
			"a new handshake happened anyway"
	else
		pass "wireguard: an unannounced restore keeps the keys (control)"
	fi
	"$rig" loadvm wg s0 >>"$log" 2>&1
	expect "wireguard: a restore drops the keys (a new handshake follows)" \
		"latest handshake stayed at $hs0" until_true 30 handshake_after wg "$hs0"
	no_splat wg
	"$rig" down wg
}

stock_tests() {
	probe_tests
	dkms_tests
	kselftest_tests
	inplace_tests notify notify
	inplace_tests poll poll --no-notify
	clone_tests ctl "control, no shim" same increment -- --no-module
	clone_tests cl "clones" differ increment random --
	clone_tests q64 "clones on qemu64" differ increment -- --cpu qemu64
	stale_tests stc some "control, no driver" --no-module
}

# patched_tests y|m KOUT: the slice's tests, and what only a patched kernel
# can pass, on the kernel make kernel built.
patched_tests() {
	local v=$1 kout=$2
	boot_extra=(--no-module)
	[ "$v" = m ] && boot_extra=()
	export VMGEN_BUILD=$top/build/patched-$v
	kname=
	step "Building the rig around the patched kernel (=$v)" patched_rig "$v" "$kout" ||
		{ fail "patched =$v" "rig build"; return; }
	kname="[patched =$v] "
	if [ "$v" = m ]; then
		probe_tests
		clone_tests cl "clones" differ increment --
		stale_tests stm none "the synchronous check, driver =m"
	else
		kselftest_tests
		inplace_tests notify notify
		inplace_tests poll poll --no-notify
		clone_tests cl "clones" differ increment random --
		clone_tests q64 "clones on qemu64" differ increment -- --cpu qemu64
		stale_tests sts none "the synchronous check"
		sync_tests
		wireguard_tests
	fi
	kname=
}

# make faults' quick subset, on the debug kernel (driver =m): each case is
# one result here. It keeps its own rig folder and log (build/faults.log).
fault_tests() {
	local line summary=
	while IFS= read -r line; do
		case "$line" in
		"fault "*" survived "*) pass "$(sed 's/  */ /g' <<<"${line%% survived*}")" ;;
		"fault "*" FAILED "*) fail "$(sed 's/  */ /g' <<<"${line%% FAILED*}")" "${line#* FAILED }" ;;
		"vmgen faults: "*) summary=$line; echo "$line" ;;
		"==> "*) echo "$line" ;;
		esac
	done < <(VMGEN_BUILD=$top/build VMGEN_RIG_DIR=$(mktemp -d /tmp/vmgen-faults.XXXXXX) \
		"$here/faults.sh" --quick 2>&1)
	[ -n "$summary" ] || fail "faults" "faults.sh --quick did not finish; see $top/build/faults.log"
}

stock_tests
if step "Building the patched kernel, driver =y and =m (cached; ~30 min the first time)" \
	"$top/tools/kernel-tree/build.sh" "$VMGEN_CACHE"; then
	kout=$("$top/tools/kernel-tree/build.sh" "$VMGEN_CACHE")
	pass "make kernel: the patched tree builds with the driver =y and =m"
	patched_tests y "$kout"
	patched_tests m "$kout"
	fault_tests
else
	fail "make kernel: the patched tree builds with the driver =y and =m" "see $log"
fi

echo "(log: $log, $((SECONDS - t0))s)"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
