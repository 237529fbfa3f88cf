#!/bin/bash
# Resolve Debian's current amd64 kernel (the one linux-headers-amd64 and
# linux-image-amd64 point at) and fetch its vmlinuz into the cache.
#
# usage: kernel.sh version           print e.g. 6.1.0-56-amd64
#        kernel.sh vmlinuz CACHE_DIR print the path of the guest kernel
set -euo pipefail

kver() {
	local dep
	dep=$(dpkg-query -W -f='${Depends}' linux-headers-amd64 2>/dev/null) || {
		echo "kernel: linux-headers-amd64 is not installed" >&2
		return 1
	}
	dep=${dep%% *}
	echo "${dep#linux-headers-}"
}

case "${1:-}" in
version)
	kver
	;;
vmlinuz)
	cache=${2:?usage: kernel.sh vmlinuz CACHE_DIR}
	v=$(kver)
	out=$cache/kernel/$v/vmlinuz
	if [ ! -s "$out" ]; then
		tmp=$(mktemp -d)
		chmod 755 "$tmp"	# apt downloads as _apt
		trap 'rm -rf "$tmp"' EXIT
		( cd "$tmp" && apt-get download -q "linux-image-$v" >&2 )
		dpkg-deb --fsys-tarfile "$tmp"/linux-image-*.deb |
			tar -x -C "$tmp" "./boot/vmlinuz-$v"
		mkdir -p "${out%/*}"
		mv "$tmp/boot/vmlinuz-$v" "$out"
	fi
	echo "$out"
	;;
*)
	echo "usage: kernel.sh version | vmlinuz CACHE_DIR" >&2
	exit 2
	;;
esac
