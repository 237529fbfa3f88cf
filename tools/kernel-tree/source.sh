#!/bin/bash
# Print the path of Debian's pristine linux-source-BASE tree, unpacked once
# into CACHE_DIR under the package's version. checkpatch, kernel-doc and the
# in-tree selftest build come from it.
#
# usage: source.sh BASE CACHE_DIR     (BASE: 6.1, 6.12 or 7.3)
# Debian 12 has 6.1 and 6.12 (make deps). 7.3 is trixie-backports', in the
# rig's Debian 13 root (tools/vmgen-rig/debian.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
base=${1:?usage: source.sh BASE CACHE_DIR}
cache=${2:?usage: source.sh BASE CACHE_DIR}
pkg=linux-source-$base
root=
case "$base" in
7.*) root=$("$here/../vmgen-rig/debian.sh" debian13 "$cache") ;;
esac
ver=$(dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Version}' "$pkg" 2>/dev/null) || {
	echo "source: $pkg is not installed (make deps)" >&2
	exit 1
}
dir=$cache/$pkg-$ver
# Unpacked by one process at a time: make check builds kernels while the
# suite reads the trees.
mkdir -p "$cache"
exec 9>"$cache/.$pkg.lock"
flock 9
if [ ! -e "$dir/.unpacked" ]; then
	echo "source: unpacking $pkg $ver into $dir" >&2
	rm -rf "$dir" && mkdir -p "$dir"
	tar -xaf "$root"/usr/src/"$pkg".tar.* -C "$dir" --strip-components=1
	touch "$dir/.unpacked"
fi
exec 9>&-
echo "$dir"
