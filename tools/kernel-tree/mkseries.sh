#!/bin/bash
# Write the vmgen change as a git format-patch series against Linux 6.1, 6.12 or
# 7.3, one logical change per patch, with a cover letter. The series is
# built in a scratch repository holding only the files it touches, from
# Debian's linux-source-BASE, so its diffstats are those of the real tree.
# The patches are those apply.sh applies, in its order.
#
# No Signed-off-by is added: that line belongs to whoever submits it.
#
# usage: mkseries.sh BASE OUT_DIR   (make patches writes patches/BASE/)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
base=${1:?usage: mkseries.sh BASE OUT_DIR}
out=$(realpath -m "${2:?usage: mkseries.sh BASE OUT_DIR}")
pristine=$("$here/source.sh" "$base" "${VMGEN_CACHE:-/var/cache/vmgen}")
mapfile -t series < <("$here/apply.sh" --list "$base")
# The files the patches change.
mapfile -t files < <(sed -n 's|^--- a/\([^\t]*\).*|\1|p' "${series[@]}" | sort -u)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$pristine" && cp --parents "${files[@]}" "$work")
cd "$work"
git init -q
git config user.name "vmgen"
git config user.email "vmgen@invalid"
git add -A
git commit -q -m "Linux $base (Debian linux-source-$base), the files this series touches"

commit() {	# commit MESSAGE-FILE: commit everything, message from stdin
	git add -A
	git commit -q -F -
}

# From 7.0 the kernel has the header: the series keeps it, as apply.sh does.
if [ ! -e "$pristine/include/uapi/linux/vmclock-abi.h" ]; then
mkdir -p include/uapi/linux
cp "$top/include/uapi/linux/vmclock-abi.h" include/uapi/linux/
commit <<'EOF'
uapi: add the vmclock ABI

The vmclock page is how Firecracker, and other hypervisors, tell a guest
how its CPU counter relates to real time and that it has been disrupted.
It now also says that the guest was loaded from a snapshot, through
vm_generation_counter. Linux does not ship the ABI, and both a guest
driver and host-side tools need one definition of it.

Describe every field up to vm_generation_counter (offset 104, 112 bytes
in all), the counter-id, time-type, status and leap constants, the flags
including VM_GEN_COUNTER_PRESENT (bit 8) and NOTIFICATION_PRESENT (bit
9), and the seq_count update protocol, including why a guest must bound
its read loop.
EOF
fi

# commit_mail PATCH: apply a patch that carries its own message.
commit_mail() {
	patch -s -p1 --no-backup-if-mismatch <"$1"
	{
		sed -n '/^Subject: \[PATCH\] /{s///p;q}' "$1"
		echo
		sed -n '/^$/,/^---$/p' "$1" | sed '1d;$d'
	} | commit
}

# random.c's patch, then those of this base that carry a message (the
# vDSO's on 6.12 and 7.3), as apply.sh orders them.
for p in "${series[@]}"; do
	grep -q '^Subject: \[PATCH\] ' "$p" && commit_mail "$p"
done

cp "$top/drivers/virt/vmgenid_vmclock.c" drivers/virt/
patch -s -p1 --no-backup-if-mismatch <"$here/virt.patch"
commit <<'EOF'
virt: vmgenid_vmclock: reseed the RNG when a vmclock VM is restored

A guest loaded twice from one snapshot hands out the same random bytes
in both clones until random.c reseeds on its own schedule. vmclock
hypervisors announce each restore by moving vm_generation_counter, but
nothing in the kernel listens: ptp_vmclock only wakes poll() on
/dev/vmclockN.

Watch the counter without binding the vmclock device (AMZNC10C /
VMCLOCK), which ptp_vmclock may own: find it, map its page read-only and
decrypted, and check the page before trusting it (magic, version, size
against the resource, and a field only where size covers it), refusing
with one line that says what was wrong, and leaving a page without the
counter to ptp_vmclock. Register the counter with random.c, with the
value read, so that every output path checks it before handing out
bytes. Also watch it from an ACPI notify handler installed beside the
owner's when the hypervisor advertises notifications, and act there as
vmgenid does; by a 100 ms poll otherwise; every second in notify mode
in case a notification is lost; and at PM resume, so that a restore is
acted on (the vmfork notifier chain runs) even when nothing asks for
random bytes. Reads follow the seq_count protocol and give up after 10
ms, retried every poll interval, so a hypervisor that stops mid-update
cannot hang the guest. A flapping counter or a notification storm is
rate-limited.

On each change send the KOBJ_CHANGE uevent with NEW_VMGENID=1 that
vmgenid sent in 6.8, with the counter in VMCLOCK_GENERATION, on a
platform device of the driver's own, which also carries generation,
restores and mode in sysfs. The uevent is a convenience for userspace,
not a security signal: the reseed has happened in the kernel before it
is sent.

Where no driver is bound to the vmclock device, offer /dev/vmclock0 as
ptp_vmclock does (read, read-only mmap, poll), for readers such as
AWS-LC's snapshot detector; withdraw it before a driver that binds the
device probes, and offer it again when that driver goes.
EOF

cp "$top/Documentation/admin-guide/vmclock-vmgenid.rst" Documentation/admin-guide/
mkdir -p Documentation/ABI/testing
cp "$top/Documentation/ABI/testing/sysfs-driver-vmgenid_vmclock" Documentation/ABI/testing/
# The admin guide's index entry: the docs.patch apply.sh chose for the base.
patch -s -p1 --no-backup-if-mismatch <"$(printf '%s\n' "${series[@]}" | grep '/docs\.patch$')"
commit <<'EOF'
Documentation: describe vmgenid_vmclock for administrators

Say what problem the driver solves, what it expects of the hypervisor,
its modes and parameters, its sysfs attributes and uevent, with a udev
example, and plainly what it does not guarantee: the uevent is not a
security signal, the counter is neither secret nor unique, and an
unpatched kernel keeps a window between resume and reseed. Record why
vmgenid's uevent was reverted in 6.9 and why vmclock sends one anyway.
EOF

mkdir -p tools/testing/selftests/vmgen
cp "$top"/tools/testing/selftests/vmgen/* tools/testing/selftests/vmgen/
patch -s -p1 --no-backup-if-mismatch <"$here/$base/selftests.patch"
commit <<'EOF'
selftests: vmgen: test the sysfs ABI and what a guest sees on restore

vmgen_sysfs checks the attributes, their permissions, unprivileged
poll() arming, and that nothing changes without a restore.

vmgen_restore is one half of a pair, since a guest cannot restore
itself: it arms a netlink uevent listener and an unprivileged poll() on
the generation attribute, creates VMGEN_READY_FILE, and waits
VMGEN_RESTORE_TIMEOUT seconds for the host to snapshot and restore the
VM. It then checks the uevent, the wakeup and the counters, and prints
a getrandom(), /dev/urandom and random/uuid sample for the host to
compare across clones. Without a timeout set it skips.

vmgen_stale, the same kind of half, reads getrandom() in a tight loop
across the restore and tags every sample with the hypervisor's counter,
read from the vmclock page through /dev/mem before the call. It writes
the samples taken after the counter moved to VMGEN_SAMPLES_FILE; the
host counts those two clones share, which must be none on a kernel that
checks the counter on every output. With VMGEN_STALE_VDSO=1 it calls
the vDSO's getrandom() instead, where the tree has one (6.11 and later).

vmgen_vmclock_dev checks /dev/vmclock0 as ptp_vmclock defines it and
the driver offers it where nothing else does: read() returns the page,
mmap() maps that one page read-only, and poll() says POLLHUP without
notifications and stays quiet while the page does not move.
EOF

rm -rf "$out"
mkdir -p "$out"
git format-patch -q --cover-letter --no-signature --subject-prefix="PATCH $base" \
	-o "$out" "$(git rev-list --max-parents=0 HEAD)"..HEAD
cover=$(ls "$out"/0000-cover-letter.patch)
subject="vmclock: reseed the RNG on snapshot restore, with no stale output"
# What only this base's series has goes where the text says so.
blurb=$(awk -v notes="$here/$base/cover-letter.txt" '
	/^@BASE@$/ { while ((getline l < notes) > 0) print l; next }
	{ print }' "$here/cover-letter.txt")
awk -v subject="$subject" -v blurb="$blurb" '
	/\*\*\* SUBJECT HERE \*\*\*/ { sub(/\*\*\* SUBJECT HERE \*\*\*/, subject) }
	/\*\*\* BLURB HERE \*\*\*/ { print blurb; next }
	{ print }' "$cover" >"$cover.new"
mv "$cover.new" "$cover"
# The scratch repository's dates and hashes would make every run differ.
sed -i -e 's/^From [0-9a-f]\{40\} /From 0000000000000000000000000000000000000000 /' \
	-e '/^Date: /d' "$out"/*.patch
ls "$out"
