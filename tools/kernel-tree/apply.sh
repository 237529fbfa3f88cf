#!/bin/bash
# Turn a pristine Linux 6.1 source tree into the vmgen one, in place:
#   - drivers/virt/vmgenid_vmclock.c and include/uapi/linux/vmclock-abi.h;
#   - CONFIG_VMGENID_VMCLOCK in drivers/virt/Kconfig, its Makefile line, and
#     a MAINTAINERS entry;
#   - drivers/char/random.c.patch (random.c and linux/random.h);
#   - the admin guide (listed in its index) and the sysfs ABI entry;
#   - tools/testing/selftests/vmgen, listed in the selftests' TARGETS.
# Every patch is tried with --dry-run first: a tree it does not fit is left
# untouched.
#
# usage: apply.sh KSRC
set -euo pipefail

top=$(cd "$(dirname "$0")/../.." && pwd)
ksrc=${1:?usage: apply.sh KSRC}

die() {
	echo "kernel-tree: $*" >&2
	exit 1
}

[ -f "$ksrc/Makefile" ] && [ -f "$ksrc/drivers/char/random.c" ] ||
	die "'$ksrc' is not a kernel source tree"
[ ! -e "$ksrc/drivers/virt/vmgenid_vmclock.c" ] ||
	die "'$ksrc' already has vmgenid_vmclock.c; start from a pristine tree"
[ ! -e "$ksrc/include/uapi/linux/vmclock-abi.h" ] ||
	echo "kernel-tree: keeping the tree's own vmclock-abi.h" >&2

patches=("$top/drivers/char/random.c.patch"
	 "$top/tools/kernel-tree/virt.patch"
	 "$top/tools/kernel-tree/docs.patch"
	 "$top/tools/kernel-tree/selftests.patch")
for p in "${patches[@]}"; do
	patch -d "$ksrc" -p1 --dry-run --batch --forward -s <"$p" >/dev/null ||
		die "$(basename "$p") does not apply to '$ksrc'"
done
for p in "${patches[@]}"; do
	patch -d "$ksrc" -p1 --batch --forward -s <"$p"
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
