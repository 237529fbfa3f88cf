#!/bin/bash
# Build the vmgen selftests the kernel's way, in a copy of them placed in
# Debian's pristine 6.1 tree, and install them into OUT/kselftest (which the
# rig puts in every guest). The pristine tree lacks vmclock-abi.h: it comes
# from this repository, the rest of the uapi from the system's headers, as
# a patched tree would provide.
#
# usage: kselftest.sh OUT
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=$(realpath -m "${1:?usage: kselftest.sh OUT}")
tree=$("$here/source.sh" 6.1 "${VMGEN_CACHE:-/var/cache/vmgen}")
rsync -a --delete "$top/tools/testing/selftests/vmgen/" "$tree/tools/testing/selftests/vmgen/"
rm -rf "$out/kselftest" "$out/kselftest-out"
make -C "$tree/tools/testing/selftests" TARGETS=vmgen \
	KHDR_INCLUDES="-isystem $top/include/uapi" \
	O="$out/kselftest-out" INSTALL_PATH="$out/kselftest" install
