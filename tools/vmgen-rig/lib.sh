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
# What random.c prints when it reseeds for a moved vmclock counter.
gen_change='crng reseeded due to virtual machine generation change'
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

# ---------------------------------------------------------------- builds
# Debian's linux-source-6.1, unpacked once into the cache: checkpatch and
# kernel-doc come from it, and the selftests build in it as in-tree ones.
ktree() {
	local ver dir
	ver=$(dpkg-query -W -f='${Version}' linux-source-6.1) || return 1
	dir=$VMGEN_CACHE/linux-source-6.1-$ver
	if [ ! -e "$dir/.unpacked" ]; then
		rm -rf "$dir" && mkdir -p "$dir"
		tar -xJf /usr/src/linux-source-6.1.tar.xz -C "$dir" \
			--strip-components=1 || return 1
		touch "$dir/.unpacked"
	fi
	echo "$dir"
}

# Copy the selftests into the tree and build them the kernel's way; the
# installed folder goes into the guest. The tree is Debian's pristine one,
# which lacks vmclock-abi.h: it comes from this repository, the rest of the
# uapi from the system's (6.1) headers, as a patched tree would provide.
kselftest_build() {
	local tree=$1
	rsync -a --delete "$top/tools/testing/selftests/vmgen/" \
		"$tree/tools/testing/selftests/vmgen/" &&
	rm -rf "$VMGEN_BUILD/kselftest" "$VMGEN_BUILD/kselftest-out" &&
	make -C "$tree/tools/testing/selftests" TARGETS=vmgen \
		KHDR_INCLUDES="-isystem $top/include/uapi" \
		O="$VMGEN_BUILD/kselftest-out" \
		INSTALL_PATH="$VMGEN_BUILD/kselftest" install
}

# patched_rig y|m KOUT: the rig around a kernel make kernel built, in
# build/patched-y or build/patched-m, with the selftests of build/.
patched_rig() {
	local v=$1 kout=$2 module=
	[ "$v" = m ] &&
		module=$kout/m/root/lib/modules/$(cat "$kout/m/release")/kernel/drivers/virt/vmgenid_vmclock.ko
	make -C "$top" rig O="$top/build/patched-$v" GUEST_KERNEL="$kout/$v/bzImage" \
		${module:+SQUATTER=$kout/m/vmclock_squatter.ko} \
		GUEST_MODULE="$module" KSELFTEST="$top/build/kselftest"
}

# ---------------------------------------------------------------- stale
# vmgen_stale loops getrandom() across a save; two clones continue together
# and the host counts the post-restore samples they share. check.sh and
# bench.sh both use it.
kst=/usr/lib/vmgen/kselftest
stale_dir=$VMGEN_RIG_DIR/stale

stale_boot() {	# stale_boot VM [rig boot options]: boot, start the loop
	local vm=$1
	shift
	"$rig" boot "$vm" "$@" &&
	g "$vm" "cd $kst && VMGEN_RESTORE_TIMEOUT=150 VMGEN_STALE_MS=${VMGEN_STALE_MS:-500}
		VMGEN_READY_FILE=/run/vmgen/stale.ready VMGEN_SAMPLES_FILE=/run/vmgen/stale.txt
		./run_kselftest.sh -t vmgen:vmgen_stale >/run/vmgen/stale.log 2>&1 &" &&
	until_true 30 g "$vm" "test -e /run/vmgen/stale.ready"
}

# stale_pair VM [clone options]: reseed (so that only a restore can explain
# shared bytes, not the key's age), save, start VM-1 and VM-2 paused,
# continue both, collect. Sets stale_n (clone 1's samples), stale_shared,
# stale_lat_us (-1: never fresh in the window), stale_log1/2 (the TAP
# output of each clone), or stale_err and returns 1.
stale_pair() {
	local vm=$1 c
	shift
	stale_err=
	mkdir -p "$stale_dir"
	g "$vm" "$reader --reseed" || { stale_err="reseed failed"; return 1; }
	"$rig" save "$vm" "$stale_dir/$vm.state" || { stale_err="save failed"; return 1; }
	for c in "$vm-1" "$vm-2"; do
		"$rig" clone "$stale_dir/$vm.state" "$vm" "$c" --paused "$@" ||
			{ stale_err="clone $c failed"; return 1; }
	done
	"$rig" cont "$vm-1" && "$rig" cont "$vm-2" || { stale_err="cont failed"; return 1; }
	rm -f "$stale_dir/$vm.state"
	for c in "$vm-1" "$vm-2"; do
		until_true 120 g "$c" "grep -qE '^(not )?ok [0-9]+ selftests: vmgen: vmgen_stale' /run/vmgen/stale.log" ||
			{ stale_err="vmgen_stale did not finish in $c"; return 1; }
		g "$c" "cat /run/vmgen/stale.txt" >"$stale_dir/$c.txt" 2>/dev/null
	done
	stale_log1=$(g "$vm-1" cat /run/vmgen/stale.log)
	stale_log2=$(g "$vm-2" cat /run/vmgen/stale.log)
	stale_n=$(wc -l <"$stale_dir/$vm-1.txt")
	[ "$stale_n" -gt 0 ] || { stale_err="no post-restore samples from $vm-1"; return 1; }
	# Clone 1's samples whose bytes clone 2 also returned, and the time of
	# clone 1's first sample clone 2 did not return.
	read -r stale_shared stale_lat_us < <(awk '
		NR == FNR { seen[$2] = 1; next }
		($2 in seen) { shared++; next }
		first == "" { first = $1 }
		END { print shared + 0, (first == "" ? -1 : first) }' \
		"$stale_dir/$vm-2.txt" "$stale_dir/$vm-1.txt")
}

# What no guest may ever print: oopses and warnings (lockdep's reports
# start with WARNING), hung tasks, lockups, RCU stalls and KASAN. (make
# faults reads kmemleak's own list.)
splat='BUG:|WARNING:|Oops|Call Trace|general protection|RIP:|refcount_t|list_(add|del) corruption|INFO: task .* blocked|soft lockup|hard LOCKUP|rcu_sched self-detected|rcu: INFO|detected stalls|KASAN'
