#!/bin/bash
# Print the path of Debian's pristine linux-source-BASE tree, unpacked once
# into CACHE_DIR under the package's version. checkpatch, kernel-doc and the
# in-tree selftest build come from it.
#
# usage: source.sh BASE CACHE_DIR     (BASE: 6.1)
set -euo pipefail
base=${1:?usage: source.sh BASE CACHE_DIR}
cache=${2:?usage: source.sh BASE CACHE_DIR}
pkg=linux-source-$base
ver=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null) || {
	echo "source: $pkg is not installed (make deps)" >&2
	exit 1
}
dir=$cache/$pkg-$ver
if [ ! -e "$dir/.unpacked" ]; then
	echo "source: unpacking $pkg $ver into $dir" >&2
	rm -rf "$dir" && mkdir -p "$dir"
	tar -xaf /usr/src/"$pkg".tar.* -C "$dir" --strip-components=1
	touch "$dir/.unpacked"
fi
echo "$dir"
