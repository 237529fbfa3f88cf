#!/bin/bash
# Build the vmgen selftests the kernel's way, in a copy of them placed in
# Debian's pristine 6.12 tree, and install them into OUT/kselftest (which the
# rig puts in every guest). 6.12's uapi headers, installed once from that
# tree, give vmgen_stale the vDSO getrandom() interface, and the tree's
# ../vDSO its way of finding it; vmclock-abi.h, which 6.12 lacks, comes from
# this repository, as a patched tree would provide it.
#
# usage: kselftest.sh OUT
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=$(realpath -m "${1:?usage: kselftest.sh OUT}")
cache=${VMGEN_CACHE:-/var/cache/vmgen}
tree=$("$here/source.sh" 6.12 "$cache")
hdr=$cache/$(basename "$tree")-headers
if [ ! -e "$hdr/.done" ]; then
	rm -rf "$hdr"
	make -s -C "$tree" O="$hdr/obj" INSTALL_HDR_PATH="$hdr" headers_install
	rm -rf "$hdr/obj"
	touch "$hdr/.done"
fi
rsync -a --delete "$top/tools/testing/selftests/vmgen/" "$tree/tools/testing/selftests/vmgen/"
rm -rf "$out/kselftest" "$out/kselftest-out"
make -C "$tree/tools/testing/selftests" TARGETS=vmgen \
	KHDR_INCLUDES="-isystem $top/include/uapi -isystem $hdr/include" \
	O="$out/kselftest-out" INSTALL_PATH="$out/kselftest" install
