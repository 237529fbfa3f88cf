#!/bin/bash
# Debian's prebuilt kernels, as the rig's stock guest kernels: resolve the
# version the headers package points at, unpack its image package once into
# the cache, and hand out its vmlinuz and the modules a guest needs.
#
# usage: kernel.sh version [BASE]              e.g. 6.1.0-56-amd64
#        kernel.sh vmlinuz CACHE_DIR [BASE]    the path of its vmlinuz
#        kernel.sh modules CACHE_DIR BASE MOD...
#                                              copy MOD... and every module
#                                              they need into ./lib/modules,
#                                              with modules.dep
# BASE is one of Debian 12's, whose headers the host has (make deps):
#   6.1          linux-headers-amd64 (the default)
#   6.12         linux-headers-6.12-amd64 (bookworm-backports)
# or one of Debian 13's, whose headers the rig's Debian 13 root has
# (debian.sh debian13; VMGEN_CACHE, default /var/cache/vmgen):
#   trixie-6.12  linux-headers-amd64 (Debian 13's own kernel)
#   trixie-7     linux-headers-cloud-amd64 (trixie-backports' newest 7.x)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${VMGEN_CACHE:-/var/cache/vmgen}

meta() {
	case "${1:-6.1}" in
	6.1) echo linux-headers-amd64 ;;
	6.12) echo linux-headers-6.12-amd64 ;;
	trixie-6.12) echo linux-headers-amd64 ;;
	trixie-7) echo linux-headers-cloud-amd64 ;;
	*) echo "kernel: unknown base '$1'" >&2; return 2 ;;
	esac
}

# The dpkg database the base's headers are in: the host's or the root's.
admindir() {
	case "${1:-6.1}" in
	trixie-*) echo "$("$here/debian.sh" debian13 "$cache")/var/lib/dpkg" ;;
	*) echo /var/lib/dpkg ;;
	esac
}

kver() {
	local pkg dep adm
	pkg=$(meta "${1:-6.1}")
	adm=$(admindir "${1:-6.1}")
	dep=$(dpkg-query --admindir="$adm" -W -f='${Depends}' "$pkg" 2>/dev/null) || {
		echo "kernel: $pkg is not installed (make deps)" >&2
		return 1
	}
	# The headers of one version, among the metapackage's dependencies.
	dep=$(tr ',' '\n' <<<"$dep" | sed -n 's/^ *linux-headers-\([^ ]*\).*/\1/p' | head -n1)
	[ -n "$dep" ] || { echo "kernel: $pkg names no linux-headers-VERSION" >&2; return 1; }
	echo "$dep"
}

# download BASE PACKAGE... into the current folder, with the apt that has
# the base's suites.
download() {
	local base=$1
	shift
	case "$base" in
	trixie-*) "$here/debian.sh" run "$cache" "$PWD" apt-get download -q "$@" >&2 ;;
	*) apt-get download -q "$@" >&2 ;;
	esac
}

# The image's files, unpacked once: prints the folder. 7.x splits the image
# package into the kernel (linux-binary), its modules, and the rest
# (linux-base: modules.builtin, the config); before 7.x one package had it
# all. The unsigned image has the same files as the signed one, and is what
# a guest boots without Secure Boot, where both exist.
unpacked() {
	local cache=$1 v=$2 base=$3 dir tmp set
	dir=$cache/kernel/$v
	if [ ! -e "$dir/.unpacked" ]; then
		tmp=$(mktemp -d)
		chmod 755 "$tmp"	# apt downloads as _apt
		for set in "linux-binary-unsigned-$v linux-modules-$v linux-base-$v" \
			   "linux-image-$v-unsigned" "linux-image-$v"; do
			# shellcheck disable=SC2086
			( cd "$tmp" && download "$base" $set ) 2>/dev/null && break
			rm -f "$tmp"/*.deb
		done
		ls "$tmp"/*.deb >/dev/null 2>&1 || {
			echo "kernel: no image package of $v could be downloaded" >&2
			exit 1
		}
		rm -rf "$dir" && mkdir -p "$dir"
		for deb in "$tmp"/*.deb; do
			dpkg-deb -x "$deb" "$dir/root"
		done
		rm -rf "$tmp"
		touch "$dir/.unpacked"
	fi
	echo "$dir"
}

# The modules folder of an unpacked image: /lib or, merged-usr, /usr/lib.
modules_dir() {
	local d
	for d in "$1/root/lib/modules/$2" "$1/root/usr/lib/modules/$2"; do
		[ -d "$d" ] && { echo "$d"; return; }
	done
	echo "kernel: no modules folder in $1" >&2
	return 1
}

# Its kernel: in /boot before 7.x, beside the modules since.
vmlinuz_of() {
	local f m
	m=$(modules_dir "$1" "$2")
	for f in "$1/root/boot/vmlinuz-$2" "$m/vmlinuz" "$m/vmlinuz.unsigned"; do
		[ -e "$f" ] && { echo "$f"; return; }
	done
	echo "kernel: no vmlinuz in $1" >&2
	return 1
}

case "${1:-}" in
version)
	kver "${2:-6.1}"
	;;
vmlinuz)
	v=$(kver "${3:-6.1}")
	dir=$(unpacked "${2:?usage: kernel.sh vmlinuz CACHE_DIR [BASE]}" "$v" "${3:-6.1}")
	vmlinuz_of "$dir" "$v"
	;;
modules)
	[ $# -ge 4 ] || { echo "usage: kernel.sh modules CACHE_DIR BASE MOD..." >&2; exit 2; }
	v=$(kver "$3")
	dir=$(unpacked "$2" "$v" "$3")
	shift 3
	mods=$(modules_dir "$dir" "$v")
	# The modules asked for and, recursively, what they depend on.
	want=("$@") seen=" "
	while [ ${#want[@]} -gt 0 ]; do
		m=${want[0]}
		want=("${want[@]:1}")
		case "$seen" in *" $m "*) continue ;; esac
		seen+="$m "
		f=$(find "$mods/kernel" -name "$m.ko*" -print -quit)
		f=${f:-$(find "$mods/kernel" -name "${m//_/-}.ko*" -print -quit)}
		[ -n "$f" ] || { echo "kernel: no module $m in $v" >&2; exit 1; }
		mkdir -p "lib/modules/$v/$(dirname "${f#"$mods"/}")"
		cp "$f" "lib/modules/$v/${f#"$mods"/}"
		IFS=, read -r -a deps <<<"$(modinfo -F depends "$f")"
		want+=("${deps[@]}")
	done
	cp "$mods"/modules.builtin* "$mods/modules.order" "lib/modules/$v/"
	depmod -b . "$v"
	;;
*)
	echo "usage: kernel.sh version [BASE] | vmlinuz CACHE_DIR [BASE] |" \
		"modules CACHE_DIR BASE MOD..." >&2
	exit 2
	;;
esac
