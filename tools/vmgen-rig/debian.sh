#!/bin/bash
# Debian roots for the rig, made with debootstrap from the Debian mirror the
# host's apt uses, without touching the host's own apt setup.
#
# usage: debian.sh mirror                 the mirror's URL
#        debian.sh root CACHE_DIR SUITE [PACKAGE...]
#                                         a root of SUITE (minbase) with
#                                         PACKAGEs installed by its own apt,
#                                         SUITE-backports in its sources;
#                                         made once, cached under the key of
#                                         everything that shapes it, and its
#                                         path printed
# VMGEN_MIRROR overrides the mirror.
set -euo pipefail

mirror() {
	local m=${VMGEN_MIRROR:-}
	if [ -z "$m" ]; then
		m=$({ grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
			awk '{print $2}'
		      grep -h '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}'
		    } | grep -v security | grep -m1 debian || true)
	fi
	echo "${m:-http://deb.debian.org/debian}"
}

# root CACHE SUITE PACKAGE...
root() {
	local cache=$1 suite=$2 key dir work m
	shift 2
	key=$( { cat "$0"; echo "$suite $*"; } | sha256sum | cut -c1-16)
	dir=$cache/debian-$suite-$key
	if [ -e "$dir/.vmgen-ready" ]; then
		echo "$dir"
		return
	fi
	mkdir -p "$cache"
	exec 9>"$cache/.debian-$suite.lock"
	flock 9
	if [ -e "$dir/.vmgen-ready" ]; then
		echo "$dir"
		return
	fi
	m=$(mirror)
	work=$(mktemp -d "$cache/debian-$suite-build.XXXXXX")
	# A root whose making failed halfway is never used: it is removed.
	trap 'umount -q "$work/proc" "$work/dev" 2>/dev/null; rm -rf "$work"' EXIT
	debootstrap --variant=minbase "$suite" "$work" "$m" >&2
	if [ $# -gt 0 ]; then
		echo "deb $m $suite-backports main" >"$work/etc/apt/sources.list.d/backports.list"
		mount --bind /proc "$work/proc"
		mount --bind /dev "$work/dev"
		chroot "$work" apt-get update -q >&2
		DEBIAN_FRONTEND=noninteractive chroot "$work" \
			apt-get install -y -q --no-install-recommends "$@" >&2
		chroot "$work" apt-get clean
		umount "$work/proc" "$work/dev"
	fi
	touch "$work/.vmgen-ready"
	rm -rf "$dir"
	mv "$work" "$dir"
	trap - EXIT
	echo "$dir"
}

case "${1:-}" in
mirror) mirror ;;
root)
	[ $# -ge 3 ] || { echo "usage: debian.sh root CACHE_DIR SUITE [PACKAGE...]" >&2; exit 2; }
	shift
	root "$@"
	;;
*)
	echo "usage: debian.sh mirror | root CACHE_DIR SUITE [PACKAGE...]" >&2
	exit 2
	;;
esac
