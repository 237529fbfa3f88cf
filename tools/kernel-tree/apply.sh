#!/bin/bash
# Turn a pristine Linux 6.1, 6.12 or 7.3 source tree into the vmgen one, in place:
#   - drivers/virt/vmgenid_vmclock.c and include/uapi/linux/vmclock-abi.h;
#   - CONFIG_VMGENID_VMCLOCK in drivers/virt/Kconfig, its Makefile line, and
#     a MAINTAINERS entry (virt.patch);
#   - random.c and linux/random.h: drivers/char/random.c.patch on 6.1,
#     drivers/char/random.c-BASE.patch on 6.12 and 7.3;
#   - the admin guide (listed in its index) and the sysfs ABI entry;
#   - tools/testing/selftests/vmgen, listed in the selftests' TARGETS;
#   - what only one base needs, in tools/kernel-tree/BASE/.
# Every patch is tried with --dry-run first: a tree the series does not
# fit is left as it was.
#
# usage: apply.sh KSRC
#        apply.sh --list KSRC|BASE    print the patches, in the order applied
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
list=0
[ "${1:-}" = --list ] && { list=1; shift; }
ksrc=${1:?usage: apply.sh [--list] KSRC}

die() {
	echo "kernel-tree: $*" >&2
	exit 1
}

if [ "$list" = 1 ] && [ ! -d "$ksrc" ]; then
	base=$ksrc
else
	[ -f "$ksrc/Makefile" ] && [ -f "$ksrc/drivers/char/random.c" ] ||
		die "'$ksrc' is not a kernel source tree"
	base=$(sed -n 's/^VERSION = //p' "$ksrc/Makefile").$(sed -n 's/^PATCHLEVEL = //p' "$ksrc/Makefile")
fi
# random.c first: the patches in $base/ (the vDSO's) may build on it.
case "$base" in
6.1) random=$top/drivers/char/random.c.patch ;;
6.12 | 7.3) random=$top/drivers/char/random.c-$base.patch ;;
*) die "Linux $base: the series is for 6.1, 6.12 and 7.3" ;;
esac
# A base whose admin guide index differs has a docs.patch of its own.
docs=$here/$base/docs.patch
[ -e "$docs" ] || docs=$here/docs.patch
mapfile -t own < <(ls "$here/$base"/*.patch | grep -v '/docs\.patch$')
patches=("$random" "${own[@]}" "$here/virt.patch" "$docs")
if [ "$list" = 1 ]; then
	printf '%s\n' "${patches[@]}"
	exit 0
fi
[ ! -e "$ksrc/drivers/virt/vmgenid_vmclock.c" ] ||
	die "'$ksrc' already has vmgenid_vmclock.c; start from a pristine tree"
[ ! -e "$ksrc/include/uapi/linux/vmclock-abi.h" ] ||
	echo "kernel-tree: keeping the tree's own vmclock-abi.h" >&2
# Each patch may build on the ones before it, so each is tried on the tree
# as they left it; a misfit takes back those already applied.
applied=()
for p in "${patches[@]}"; do
	if ! patch -d "$ksrc" -p1 --dry-run --batch --forward -s <"$p" >/dev/null; then
		for ((i = ${#applied[@]} - 1; i >= 0; i--)); do
			patch -d "$ksrc" -p1 -R --batch --no-backup-if-mismatch -s <"${applied[i]}"
		done
		die "$(basename "$p") does not apply to '$ksrc'"
	fi
	patch -d "$ksrc" -p1 --batch --forward --no-backup-if-mismatch -s <"$p"
	applied+=("$p")
done

# install FILE DEST-IN-TREE, creating folders as needed.
put() {
	install -D -m 0644 "$top/$1" "$ksrc/$2"
}
put drivers/virt/vmgenid_vmclock.c drivers/virt/vmgenid_vmclock.c
[ -e "$ksrc/include/uapi/linux/vmclock-abi.h" ] ||
	put include/uapi/linux/vmclock-abi.h include/uapi/linux/vmclock-abi.h
put Documentation/admin-guide/vmclock-vmgenid.rst Documentation/admin-guide/vmclock-vmgenid.rst
put Documentation/ABI/testing/sysfs-driver-vmgenid_vmclock \
	Documentation/ABI/testing/sysfs-driver-vmgenid_vmclock
for f in "$top"/tools/testing/selftests/vmgen/*; do
	put "tools/testing/selftests/vmgen/${f##*/}" "tools/testing/selftests/vmgen/${f##*/}"
done
echo "kernel-tree: '$ksrc' now has the vmgen driver (CONFIG_VMGENID_VMCLOCK)"
