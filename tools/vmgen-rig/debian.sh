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
#        debian.sh debian13 CACHE_DIR     the rig's Debian 13 root (below)
#        debian.sh run CACHE_DIR DIR CMD...
#                                         run CMD in that root, in DIR, which
#                                         is bound there at the same path,
#                                         with /proc, /sys and /dev; the
#                                         mounts live in a mount namespace of
#                                         CMD's own and end with it
#        debian.sh scratch CACHE_DIR DIR CMD...
#                                         the same, in a throwaway copy of
#                                         the root (an overlay): what CMD
#                                         installs or removes there is gone
#                                         once it ends, but for what it
#                                         leaves in DIR
# VMGEN_MIRROR overrides the mirror.
set -euo pipefail

# The rig's Debian 13 root. Its QEMU runs the guests (Debian 12's 7.2
# corrupts EFLAGS under TCG). Its gcc-14, kernel headers and dkms build the
# module for Debian 13's kernels, 6.12 and trixie-backports' 7.x, the way a
# Debian 13 machine does: their Kbuild host programs need Debian 13's glibc.
# Its debhelper, dh-dkms and lintian build and check the Debian package.
# Its linux-source-7.3 is the upstream base of the 7.x series.
DEBIAN13=(qemu-system-x86 qemu-utils qemu-user binutils make kmod xz-utils dkms
	  linux-headers-amd64 linux-headers-cloud-amd64/trixie-backports
	  linux-source-7.3/trixie-backports
	  sparse build-essential debhelper dh-dkms lintian)

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
	# Keyed by what shapes the root: how it is made, and what goes in.
	key=$( { declare -f root; echo "$suite $*"; } | sha256sum | cut -c1-16)
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
	chmod 0755 "$work"	# mktemp made it 0700: a root only root could use
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

# run CACHE DIR SCRATCH CMD...: SCRATCH=1 runs CMD on an overlay of the
# root, whose upper layer is removed afterwards.
run() {
	local root dir=$2 scratch=$3 tmp= rc=0
	root=$(root "$1" trixie "${DEBIAN13[@]}")
	[ "$scratch" = 1 ] && tmp=$(mktemp -d "$1/scratch.XXXXXX")
	shift 3
	[ -n "$tmp" ] || mkdir -p "$root$dir"
	unshare --mount --propagation private /bin/sh -euc '
		root=$1 dir=$2 tmp=$3
		shift 3
		if [ -n "$tmp" ]; then
			mkdir "$tmp/upper" "$tmp/work" "$tmp/root"
			mount -t overlay overlay \
				-o "lowerdir=$root,upperdir=$tmp/upper,workdir=$tmp/work" "$tmp/root"
			root=$tmp/root
			mkdir -p "$root$dir"
		fi
		for d in /proc /sys /dev; do mount --rbind "$d" "$root$d"; done
		mount --bind "$dir" "$root$dir"
		exec chroot "$root" /bin/sh -c "cd \"\$1\" && shift && exec \"\$@\"" sh "$dir" "$@"
	' sh "$root" "$dir" "$tmp" "$@" || rc=$?
	[ -z "$tmp" ] || rm -rf "$tmp"
	return $rc
}

case "${1:-}" in
mirror) mirror ;;
debian13)
	[ $# -eq 2 ] || { echo "usage: debian.sh debian13 CACHE_DIR" >&2; exit 2; }
	root "$2" trixie "${DEBIAN13[@]}"
	;;
run | scratch)
	[ $# -ge 4 ] || { echo "usage: debian.sh $1 CACHE_DIR DIR CMD..." >&2; exit 2; }
	s=0
	[ "$1" = run ] || s=1
	run "$2" "$3" $s "${@:4}"
	;;
root)
	[ $# -ge 3 ] || { echo "usage: debian.sh root CACHE_DIR SUITE [PACKAGE...]" >&2; exit 2; }
	shift
	root "$@"
	;;
*)
	echo "usage: debian.sh mirror | root CACHE_DIR SUITE [PACKAGE...] |" \
		"debian13 CACHE_DIR | run|scratch CACHE_DIR DIR CMD..." >&2
	exit 2
	;;
esac
