#!/bin/bash
# make faults: a broken or hostile hypervisor, storms and teardown, on the
# debug kernel make kernel builds (driver =m; lockdep, DEBUG_ATOMIC_SLEEP,
# kmemleak). Every case checks its own expected behaviour and that no guest
# it used printed a splat (see $splat in lib.sh); kmemleak is scanned after
# the cases that load and unload the driver. One line per case, then
#   vmgen faults: cases=N survived=N splats=N
#
#   faults.sh [--quick] [CASE...]   --quick: the subset make check runs
#                                   (3 s storms, 20 load cycles, 10 restores,
#                                   no cases 11 and 14)
set -uo pipefail
. "$(dirname "$0")/lib.sh"

quick=0 only=()
for a in "$@"; do
	case "$a" in
	--quick) quick=1 ;;
	[1-9]|1[0-4]) only+=("$a") ;;
	*) echo "usage: faults.sh [--quick] [CASE 1..14...]" >&2; exit 2 ;;
	esac
done

ko=/usr/lib/vmgen/vmgenid_vmclock.ko
squatter=/usr/lib/vmgen/vmclock_squatter.ko
kmemleak=/sys/kernel/debug/kmemleak
storm_s=10 cycles=100 nrestores=100 nclones=8
[ "$quick" = 1 ] && storm_s=3 cycles=20 nrestores=10 nclones=3
# During a storm, the driver may make the median shell command answer at
# most respond_ms later than without it, and no answer may take longer
# than stall_ms.
respond_ms=1000 stall_ms=3000
# How much more slab a storm may pin with the driver than without it.
slab_growth_kb=32768

# ---------------------------------------------------------------- build
die() {
	echo "faults: $*; log: $log" >&2
	exit 1
}
step "Unpacking Debian's linux-source-6.1 (cached)" ktree || die "no linux-source-6.1"
tree=$(ktree)
step "Building the selftests in-tree" kselftest_build "$tree" || die "selftests build"
step "Building the debug kernel (cached; ~30 min the first time)" \
	"$top/tools/kernel-tree/build.sh" "$VMGEN_CACHE" || die "kernel build"
kout=$("$top/tools/kernel-tree/build.sh" "$VMGEN_CACHE")
step "Building the rig around it (driver =m)" patched_rig m "$kout" || die "rig build"
export VMGEN_BUILD=$top/build/patched-m

# ---------------------------------------------------------------- helpers
page() { "$rig" page "$@" >>"$log" 2>&1; }
counter() { "$rig" page "$1" show | sed -n 's/^vm_generation_counter //p'; }
attr() { g "$1" "cat $sysdev/$2 2>/dev/null"; }
dmesg_count() { g "$1" "dmesg | grep -c -e '$2'"; }
uevents() { g "$1" "cat /run/vmgen/uevents 2>/dev/null | wc -l"; }
# Shell builtins only: the agent's sh is the one process this starts, so
# that the storm cases time a shell command, not awk starting up.
unreclaimable() {
	g "$1" 'while read -r k v u; do [ "$k" != SUnreclaim: ] || echo "$v"; done </proc/meminfo'
}
# Predicates for until_true, which runs its command again each time.
attr_is() { [ "$(attr "$1" "$2")" = "$3" ]; }
uevents_are() { [ "$(uevents "$1")" = "$2" ]; }
caught_up() { [ "$(attr "$1" generation)" = "$(counter "$1")" ]; }

# While a background job (a storm) runs, ask the guest's agent for its
# unreclaimable slab every half second: prints the median and the slowest
# answer in ms, and the most slab any answer gave, in kB.
answers_while() {	# answers_while PID VM
	local peak=0 t0 kb all=()
	while kill -0 "$1" 2>/dev/null; do
		t0=$EPOCHREALTIME
		kb=$(unreclaimable "$2")
		all+=("$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", (b - a) * 1000 }')")
		[ "${kb:-0}" -gt "$peak" ] && peak=$kb
		sleep 0.5
	done
	echo "answers (ms): ${all[*]}" >>"$log"
	printf '%s\n' "${all[@]:-0}" | sort -n |
		awk -v kb="$peak" '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)], v[NR], kb }'
}

# A fresh page and a freshly loaded driver in VM f.
fresh() {	# fresh [page init options]
	# udev may still be running rules for the last case's uevents.
	g f "rmmod vmgenid_vmclock vmclock_squatter 2>/dev/null; udevadm settle --timeout=30;
		rm -f /run/vmgen/uevents; dmesg -C" >/dev/null
	page f init --counter 5 "$@"
}

# Scan for leaks twice, as kmemleak's documentation advises; any object it
# lists is a splat.
leak_scan() {
	local out
	out=$(VMGEN_EXEC_TIMEOUT=300 g "$1" "echo scan >$kmemleak; sleep 1;
		echo scan >$kmemleak; cat $kmemleak")
	[ -z "$out" ] && return 0
	echo "$out" >>"$log"
	nsplats=$((nsplats + 1))
	fails "kmemleak: $(grep -m1 unreferenced <<<"$out")"
}

# kmemleak's own thread scans a minute after boot and every ten minutes:
# stop it, and forget what boot leaked (not ours), so that leak_scan()
# lists only what the cases leak.
kmemleak_quiet() {
	VMGEN_EXEC_TIMEOUT=300 g "$1" "mount -t debugfs none /sys/kernel/debug;
		echo scan=off >$kmemleak; echo scan >$kmemleak; echo clear >$kmemleak" >>"$log"
}

fails() { why=$1; return 1; }

# --------------------------------------------------------------- cases
# Each case returns 0 or 1 with $why set, and lists the guests it used in
# $vms for the splat check.

refuse() {	# refuse PATTERN PAGE-OPTIONS...: insmod must not bind, one line
	local want=$1 out
	shift
	fresh "$@"
	out=$(g f "insmod $ko; test -e $sysdev/driver && echo BOUND;
		dmesg | grep -c -e '$want'; rmmod vmgenid_vmclock")
	[ "$out" = 1 ] || fails "expected no bind and one '$want' line, got: $(tr '\n' ' ' <<<"$out")"
}
case_1() { refuse 'bad magic 0xdeadbeef' --magic 0xdeadbeef; }
case_2() { refuse 'unsupported version 2' --version 2; }
case_3() { refuse 'exceeds the 4096-byte resource' --size 8192; }
case_4() { refuse 'too small for vm_generation_counter' --size 100; }

case_5() {
	local out
	fresh --no-gen-counter
	out=$(g f "insmod $ko && cat $sysdev/mode; dmesg | grep -c 'nothing to watch'")
	[ "$(tr '\n' ' ' <<<"$out")" = "off 1 " ] ||
		fails "expected mode off and one message, got: $(tr '\n' ' ' <<<"$out")" || return
	"$rig" page f bump --ring >>"$log" 2>&1
	sleep 2
	out="$(attr f restores) $(uevents f) $(dmesg_count f 'nothing to watch')"
	[ "$out" = "0 0 1" ] || fails "a bump with no flag must do nothing: restores, uevents, messages = $out"
}

case_6() {
	local out
	fresh
	g f "insmod $ko" >/dev/null || fails "insmod" || return
	page f begin
	page f ring
	sleep 3
	out="$(attr f generation) $(dmesg_count f 'seq_count stays odd')"
	[ "$out" = "5 1" ] ||
		fails "while odd: expected generation 5 and one message, got $out" || return
	page f finish
	until_true 5 attr_is f generation 6 ||
		fails "generation did not catch up after the update finished" || return
	out="$(attr f restores) $(dmesg_count f 'seq_count is even again') $(uevents f)"
	[ "$out" = "1 1 1" ] || fails "after: restores, recovery messages, uevents = $out"
}

case_7() {
	local out t0=$SECONDS
	fresh
	g f "insmod $ko" >/dev/null || fails "insmod" || return
	page f bump
	# random.c checks the counter before this read's bytes leave.
	out=$(g f "$reader --once 16 >/dev/null; sleep 0.2; dmesg | grep -c '$gen_change'")
	[ "$out" = 1 ] || fails "the synchronous check did not reseed: $out lines" || return
	until_true 5 attr_is f restores 1 ||
		fails "the driver's backstop did not notice within 5 s" || return
	out="$(attr f generation) $(uevents f) $(dmesg_count f "$gen_change")"
	[ "$out" = "6 1 1" ] || fails "generation, uevents, reseed lines = $out"
	echo "case 7: noticed by the backstop within $((SECONDS - t0)) s" >>"$log"
}

# "rig page f ARGS..." in the background: prints what answers_while does.
answers_during() {
	local pid out
	"$rig" page f "$@" >>"$log" 2>&1 &
	pid=$!
	out=$(answers_while "$pid" f)
	wait "$pid" || return 1
	echo "$out"
}

# A storm runs twice, first with the driver unloaded to show what the
# emulated doorbell alone costs the guest (see the GED thread in the
# guest's init). Under TCG an idle answer takes 0.2 to 0.4 s, and during a
# storm with no driver single answers vary from 0.3 to 1.5 s on a slow
# host, so the slowest answer alone says more about the host than about
# the driver. With the driver, the median answer may be at most
# $respond_ms ms slower than without it, no answer may take over
# $stall_ms ms, and the unreclaimable slab may grow at most
# $slab_growth_kb kB more than it did without the driver.
costs_at_most() {	# costs_at_most "BASE-MED BASE-MAX BASE-KB" "MED MAX KB" BEFORE-BASE BEFORE
	local bmed bmax bkb med max kb
	read -r bmed bmax bkb <<<"$1"
	read -r med max kb <<<"$2"
	detail+="answers: median $med ms, slowest $max ms ($bmed and $bmax ms with no driver);"
	detail+=$(printf ' slab peak %+d kB (%+d kB with no driver)' $((kb - $4)) $((bkb - $3)))
	[ $((med - bmed)) -le "$respond_ms" ] ||
		fails "median answer $med ms, $((med - bmed)) ms more than with no driver (bound $respond_ms)" ||
		return
	[ "$max" -le "$stall_ms" ] ||
		fails "slowest answer $max ms (bound $stall_ms; $bmax ms with no driver)" || return
	[ $((kb - $4)) -le $((bkb - $3 + slab_growth_kb)) ] ||
		fails "slab peak grew $((kb - $4)) kB, $((bkb - $3)) kB with no driver loaded"
}

# storm_twice KIND ARGS...: "rig page f KIND ARGS..." with no driver, then
# again with the driver freshly loaded, which stays loaded. Leaves in
# $costs what costs_at_most takes.
storm_twice() {
	local base with b0 b1
	fresh
	b0=$(unreclaimable f)
	base=$(answers_during "$@") || fails "the $1 did not run" || return
	fresh
	g f "insmod $ko" >/dev/null || fails "insmod" || return
	b1=$(unreclaimable f)
	with=$(answers_during "$@") || fails "the $1 did not run" || return
	costs=("$base" "$with" "$b0" "$b1")
}

# How often the driver gave up listening because of a storm.
storm_fallbacks() { dmesg_count f 'notifications in a second: polling'; }

# The generation named by the last uevent udev recorded.
last_uevent() { g "$1" "tail -n 1 /run/vmgen/uevents 2>/dev/null"; }
last_uevent_is() { [ "$(last_uevent "$1")" = "$2" ]; }

case_8() {
	local r u flaps=$((storm_s * 1000)) max final
	storm_twice flap --rate 1000 --seconds "$storm_s" --ring || return
	until_true 5 caught_up f ||
		fails "generation did not settle on the final counter $(counter f)" || return
	r=$(attr f restores)
	# One reseed per 50 ms gap at most, plus the first.
	max=$((storm_s * 1000 / 50 + 2))
	detail="$r reseeds for $flaps flaps; "
	[ "$r" -ge 1 ] && [ "$r" -le "$max" ] ||
		fails "$r reseeds for $flaps flaps (bound $max)" || return
	# One uevent a second at most, plus the first; the last one, sent at
	# most a second after the storm, names the final counter.
	final=$(counter f)
	until_true 10 last_uevent_is f "$final" ||
		fails "the last uevent named $(last_uevent f), not the final counter $final" ||
		return
	u=$(uevents f)
	detail+="$u uevents; "
	[ "$u" -ge 1 ] && [ "$u" -le $((storm_s + 2)) ] ||
		fails "$u uevents for $flaps flaps (bound $((storm_s + 2)))" || return
	costs_at_most "${costs[@]}"
}

case_9() {
	local out
	storm_twice storm --rate 10000 --seconds "$storm_s" || return
	g f "udevadm settle --timeout=30" >/dev/null
	out="$(attr f restores) $(uevents f)"
	# The GED thread coalesces doorbells, so how many notifications
	# reach the driver, and whether it falls back to polling, varies.
	detail="$(storm_fallbacks) storm fallbacks; "
	[ "$out" = "0 0" ] || fails "a storm with no change gave reseeds, uevents = $out" || return
	costs_at_most "${costs[@]}" || return
	# Whatever the storm did, the driver still hears a restore.
	page f bump --ring
	until_true 15 attr_is f restores 1 || fails "no restore seen after the storm"
}

case_10() {
	local pid out
	fresh
	g f "insmod $ko" >/dev/null || fails "insmod" || return
	# Longer than the cycles can take; stopped when they are done.
	"$rig" page f storm --rate 10000 --seconds 600 >>"$log" 2>&1 &
	pid=$!
	out=$(VMGEN_EXEC_TIMEOUT=900 g f "n=0; for i in \$(seq $cycles); do
		rmmod vmgenid_vmclock && insmod $ko && n=\$((n + 1)); done; echo \$n")
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	[ "$out" = "$cycles" ] || fails "$out of $cycles rmmod/insmod cycles succeeded" || return
	detail="$(storm_fallbacks) storm fallbacks"
	page f bump --ring
	until_true 15 attr_is f restores 1 ||
		fails "the driver did not work after the cycles" || return
	leak_scan f
}

case_11() {
	local out state=$VMGEN_RIG_DIR/fv.state
	vms=(fv-1) cleanup=(fv fv-1)
	"$rig" boot fv --vmgenid >>"$log" 2>&1 && kmemleak_quiet fv || fails "boot" || return
	g fv "$reader --reseed; dmesg -C; rm -f /run/vmgen/uevents" >/dev/null
	"$rig" save fv "$state" >>"$log" 2>&1 &&
		"$rig" clone "$state" fv fv-1 >>"$log" 2>&1 || fails "save or clone" || return
	rm -f "$state"
	until_true 10 attr_is fv-1 restores 1 || fails "no restore seen" || return
	sleep 1
	out="$(dmesg_count fv-1 'reseeded due to virtual machine fork') $(dmesg_count fv-1 "$gen_change") $(uevents fv-1)"
	"$rig" down fv
	# vmgenid reseeds on its GUID, random.c on the counter: two reseeds;
	# one uevent (ours: 6.1's vmgenid sends none).
	[ "$out" = "1 1 1" ] || fails "fork reseeds, generation reseeds, uevents = $out"
}

case_12() {
	local out
	fresh
	out=$(g f "insmod $squatter && insmod $ko; basename \$(readlink $sysdev/driver);
		dmesg | grep -c 'bound to vmclock_squatter: the VM generation counter is not watched'")
	[ "$(tr '\n' ' ' <<<"$out")" = "vmclock_squatter 1 " ] ||
		fails "expected the squatter bound and one warning, got: $(tr '\n' ' ' <<<"$out")" || return
	out=$(g f "rmmod vmgenid_vmclock; rmmod vmclock_squatter; insmod $ko;
		basename \$(readlink $sysdev/driver)")
	[ "$out" = vmgenid_vmclock ] || fails "did not bind once the squatter left: $out" || return
	leak_scan f
}

case_13() {
	local i out
	vms=(fr) cleanup=(fr)
	"$rig" boot fr >>"$log" 2>&1 && kmemleak_quiet fr || fails "boot" || return
	"$rig" savevm fr chain >>"$log" 2>&1 || fails "savevm" || return
	for i in $(seq "$nrestores"); do
		"$rig" loadvm fr chain >>"$log" 2>&1 || fails "loadvm #$i" || return
		# Both the reseed and udev's record of the uevent, before the
		# next snapshot: a restore must lose neither.
		until_true 10 attr_is fr restores "$i" ||
			fails "restore #$i: restores is $(attr fr restores)" || return
		until_true 20 uevents_are fr "$i" ||
			fails "restore #$i: udev recorded $(uevents fr) uevents" || return
		"$rig" savevm fr chain >>"$log" 2>&1 || fails "savevm #$i" || return
	done
	out="$(attr fr restores) $(uevents fr) $(attr fr generation)"
	[ "$out" = "$nrestores $nrestores $((nrestores + 1))" ] ||
		fails "restores, uevents, generation = $out"
}

case_14() {
	local c state=$VMGEN_RIG_DIR/fc.state bytes dup
	vms=() cleanup=(fc)
	"$rig" boot fc >>"$log" 2>&1 && kmemleak_quiet fc || fails "boot" || return
	g fc "$reader --reseed" >/dev/null
	"$rig" save fc "$state" >>"$log" 2>&1 || fails "save" || return
	for c in $(seq "$nclones"); do
		"$rig" clone "$state" fc "fc-$c" --paused >>"$log" 2>&1 || fails "clone $c" || return
		vms+=("fc-$c") cleanup+=("fc-$c")
	done
	for c in $(seq "$nclones"); do
		"$rig" cont "fc-$c" >>"$log" 2>&1
	done
	rm -f "$state"
	bytes=$(for c in $(seq "$nclones"); do g "fc-$c" "$reader --once 32"; done)
	echo "$bytes" >>"$log"
	[ "$(grep -c . <<<"$bytes")" = "$nclones" ] || fails "not every clone answered" || return
	dup=$(sort <<<"$bytes" | uniq -d)
	[ -z "$dup" ] || fails "clones share output: $dup"
}

names=([1]="bad magic" [2]="unknown version" [3]="size larger than the resource"
	[4]="size too small for the counter" [5]="no VM_GEN_COUNTER_PRESENT flag"
	[6]="seq_count stuck odd during a restore" [7]="counter moves without a notification"
	[8]="counter flapping 1000/s for ${storm_s} s" [9]="doorbell storm 10000/s for ${storm_s} s"
	[10]="rmmod/insmod x$cycles during a storm" [11]="vmgenid and vmclock both present"
	[12]="another driver holds AMZNC10C" [13]="$nrestores sequential restores"
	[14]="$nclones clones of one snapshot")

ncases=0 nsurvived=0 nsplats=0
run_case() {	# run_case N
	local n=$1 start=$SECONDS ok=1 v out
	vms=(f) cleanup=() detail=
	why=
	ncases=$((ncases + 1))
	echo "==> case $n: ${names[$n]}" >>"$log"
	"case_$n" || ok=0
	for v in "${vms[@]}"; do
		out=$(g "$v" "dmesg | grep -E '$splat'")
		[ -z "$out" ] && continue
		echo "$v: $out" >>"$log"
		nsplats=$((nsplats + 1))
		ok=0
		why="${why:+$why; }splat in $v: $(head -1 <<<"$out")"
	done
	if [ "$ok" = 0 ]; then
		for v in "${vms[@]}"; do
			echo "--- dmesg of $v" >>"$log"
			g "$v" "dmesg | tail -200" >>"$log" 2>&1
		done
	fi
	[ ${#cleanup[@]} = 0 ] || "$rig" down "${cleanup[@]}" >/dev/null 2>&1
	if [ "$ok" = 1 ]; then
		nsurvived=$((nsurvived + 1))
		printf 'fault %2d %-42s survived (%ds)%s\n' "$n" "${names[$n]}" $((SECONDS - start)) \
			"${detail:+: $detail}"
	else
		printf 'fault %2d %-42s FAILED (%ds): %s%s\n' "$n" "${names[$n]}" \
			$((SECONDS - start)) "$why" "${detail:+ [$detail]}"
	fi
}

[ ${#only[@]} -gt 0 ] || only=($(seq 14))
[ "$quick" = 1 ] && [ $# -eq 1 ] && only=(1 2 3 4 5 6 7 8 9 10 12 13)
step "Booting the debug guest 'f'" "$rig" boot f --no-module || die "guest did not boot"
# Leaks from boot are not ours: report them once, then forget them.
kmemleak_quiet f
for n in "${only[@]}"; do
	run_case "$n"
done
"$rig" down f
echo "(log: $log, $((SECONDS - t0))s)"
echo "vmgen faults: cases=$ncases survived=$nsurvived splats=$nsplats"
[ "$nsurvived" = "$ncases" ] && [ "$nsplats" = 0 ]
