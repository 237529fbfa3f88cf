#!/bin/bash
# Build the vmgen selftests the kernel's way, in a copy of them placed in
# Debian's pristine 6.12 tree, and install them into OUT/kselftest (which the
# rig puts in every guest). 6.12's uapi headers, installed once from that
# tree, give vmgen_stale the vDSO getrandom() interface, and the tree's
# ../vDSO its way of finding it; vmclock-abi.h, which 6.12 lacks, comes from
# this repository, as a patched tree would provide it.
#
# With run_tests, run them in place instead (on the host, say), built the
# same way: the tree is shared by every checkout, so each run puts its own
# copy there first.
#
# usage: kselftest.sh OUT [install|run_tests]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=$(realpath -m "${1:?usage: kselftest.sh OUT [install|run_tests]}")
target=${2:-install}
case "$target" in
install|run_tests) ;;
*) echo "kselftest.sh: the target is install or run_tests, not '$target'" >&2; exit 2 ;;
esac
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
if [ "$target" = install ]; then
	rm -rf "$out/kselftest" "$out/kselftest-out"
fi
make -C "$tree/tools/testing/selftests" TARGETS=vmgen \
	KHDR_INCLUDES="-isystem $top/include/uapi -isystem $hdr/include" \
	O="$out/kselftest-out" INSTALL_PATH="$out/kselftest" "$target"
