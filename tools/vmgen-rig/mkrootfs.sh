#!/bin/bash
# Build the rig guest's base userspace (a pruned Debian minbase) as an
# uncompressed cpio archive, once: the result is cached under the key of
# everything that shapes it, and reused until that changes.
#
# usage: mkrootfs.sh CACHE_DIR [SUITE]
#                                 prints the path of the archive; SUITE is
#                                 bookworm (Debian 12, the default) or
#                                 trixie (Debian 13: glibc 2.41, whose
#                                 getrandom() is the vDSO's on 6.11+)
set -euo pipefail

cache=${1:?usage: mkrootfs.sh CACHE_DIR [SUITE]}
suite=${2:-bookworm}
packages=udev,kmod,rng-tools5,wireguard-tools,iproute2

here=$(cd "$(dirname "$0")" && pwd)
mirror=$("$here/debian.sh" mirror)

key=$( { cat "$0"; echo "$suite $packages"; } | sha256sum | cut -c1-16)
out=$cache/rootfs-$key.cpio
if [ -s "$out" ]; then
	echo "$out"
	exit 0
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/rootfs-build.XXXXXX")
trap 'rm -rf "$work"' EXIT

debootstrap --variant=minbase --include="$packages" "$suite" \
	"$work/root" "$mirror" >&2

# A RAM-only guest: everything here costs snapshot size and restore time.
( cd "$work/root" && rm -rf usr/share/doc usr/share/man usr/share/info \
	usr/share/locale usr/share/i18n usr/share/common-licenses \
	usr/share/lintian usr/share/bash-completion usr/lib/udev/hwdb.bin \
	usr/lib/udev/hwdb.d usr/lib/x86_64-linux-gnu/gconv \
	usr/lib/x86_64-linux-gnu/perl-base usr/bin/perl* var/cache/apt/* \
	var/lib/apt/lists/* var/log/* )

( cd "$work/root" && find . -xdev | LC_ALL=C sort |
	cpio --quiet -o -H newc ) >"$work/rootfs.cpio"
mv "$work/rootfs.cpio" "$out"
echo "$out"
