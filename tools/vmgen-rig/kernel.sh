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
# BASE is 6.1 (linux-headers-amd64, the default) or 6.12
# (linux-headers-6.12-amd64).
set -euo pipefail

meta() {
	case "${1:-6.1}" in
	6.1) echo linux-headers-amd64 ;;
	6.12) echo linux-headers-6.12-amd64 ;;
	*) echo "kernel: unknown base '$1'" >&2; return 2 ;;
	esac
}

kver() {
	local pkg dep
	pkg=$(meta "${1:-6.1}")
	dep=$(dpkg-query -W -f='${Depends}' "$pkg" 2>/dev/null) || {
		echo "kernel: $pkg is not installed (make deps)" >&2
		return 1
	}
	dep=${dep%% *}
	echo "${dep#linux-headers-}"
}

# The image package's files, unpacked once: prints the folder.
unpacked() {
	local cache=$1 v=$2 dir tmp pkg
	dir=$cache/kernel/$v
	if [ ! -e "$dir/.unpacked" ]; then
		tmp=$(mktemp -d)
		chmod 755 "$tmp"	# apt downloads as _apt
		# The signed image has the same files; the unsigned one is what
		# a guest boots without Secure Boot, where both exist.
		for pkg in "linux-image-$v-unsigned" "linux-image-$v"; do
			( cd "$tmp" && apt-get download -q "$pkg" >&2 ) && break
		done
		rm -rf "$dir" && mkdir -p "$dir"
		dpkg-deb -x "$tmp"/linux-image-*.deb "$dir/root"
		rm -rf "$tmp"
		touch "$dir/.unpacked"
	fi
	echo "$dir"
}

case "${1:-}" in
version)
	kver "${2:-6.1}"
	;;
vmlinuz)
	v=$(kver "${3:-6.1}")
	dir=$(unpacked "${2:?usage: kernel.sh vmlinuz CACHE_DIR [BASE]}" "$v")
	echo "$dir/root/boot/vmlinuz-$v"
	;;
modules)
	[ $# -ge 4 ] || { echo "usage: kernel.sh modules CACHE_DIR BASE MOD..." >&2; exit 2; }
	v=$(kver "$3")
	dir=$(unpacked "$2" "$v")
	shift 3
	mods=$dir/root/lib/modules/$v
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
