#!/bin/bash
# make kernel: build Debian's linux-source-6.1 with the vmgen series twice,
# vmgenid_vmclock built in (y) and as a module (m), on x86_64_defconfig plus
# config.fragment. The result is cached under CACHE_DIR, keyed by every
# input; only the images, configs and modules are kept.
#
# usage: build.sh CACHE_DIR    prints the folder holding y/ and m/
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cache=${1:?usage: build.sh CACHE_DIR}
tarball=/usr/src/linux-source-6.1.tar.xz
jobs=$(nproc)

inputs=("$here/build.sh" "$here/apply.sh" "$here/config.fragment"
	"$here/virt.patch" "$here/docs.patch" "$here/selftests.patch"
	"$top/drivers/char/random.c.patch"
	"$top/drivers/virt/vmgenid_vmclock.c"
	"$top/include/uapi/linux/vmclock-abi.h"
	"$top/tools/vmgen-rig/faults/Kbuild"
	"$top/tools/vmgen-rig/faults/vmclock_squatter.c")
key=$( { cat "${inputs[@]}"; dpkg-query -W -f='${Version}' linux-source-6.1; } |
	sha256sum | cut -c1-16)
out=$cache/kernel-$key
if [ -e "$out/.done" ]; then
	echo "$out"
	exit 0
fi

rm -rf "$out"
mkdir -p "$out"
trap 'rm -rf "$out/src" "$out"/*/obj' EXIT
echo "kernel: unpacking and patching linux-source-6.1" >&2
mkdir "$out/src"
tar -xJf "$tarball" -C "$out/src" --strip-components=1
"$here/apply.sh" "$out/src" >&2

# check_config OBJ FRAGMENT: every option the fragment sets must be set so.
check_config() {
	local line opt missing=0
	while IFS= read -r line; do
		case "$line" in
		CONFIG_*=*) opt=$line ;;
		"# CONFIG_"*" is not set") opt=$line ;;
		*) continue ;;
		esac
		if ! grep -qxF "$opt" "$1/.config"; then
			echo "kernel: '$opt' did not stick" >&2
			missing=1
		fi
	done <"$2"
	return $missing
}

for v in y m; do
	obj=$out/$v/obj
	mkdir -p "$obj"
	{ cat "$here/config.fragment"; echo "CONFIG_VMGENID_VMCLOCK=$v"; } \
		>"$out/$v/fragment"
	make -s -C "$out/src" O="$obj" x86_64_defconfig
	"$out/src/scripts/kconfig/merge_config.sh" -m -O "$obj" \
		"$obj/.config" "$out/$v/fragment" >/dev/null
	make -s -C "$out/src" O="$obj" olddefconfig
	check_config "$obj" "$out/$v/fragment"
	echo "kernel: building the =$v variant ($jobs jobs)" >&2
	make -s -C "$out/src" O="$obj" -j"$jobs" bzImage modules
	make -s -C "$out/src" O="$obj" INSTALL_MOD_PATH="$out/$v/root" \
		INSTALL_MOD_STRIP=1 modules_install
	cp "$obj/arch/x86/boot/bzImage" "$obj/.config" "$obj/System.map" "$out/$v/"
	make -s -C "$out/src" O="$obj" kernelrelease >"$out/$v/release"
	# make faults' stand-in for another driver owning the device.
	if [ "$v" = m ]; then
		mkdir "$out/m/squatter"
		cp "$top"/tools/vmgen-rig/faults/{Kbuild,vmclock_squatter.c} "$out/m/squatter/"
		make -s -C "$out/src" O="$obj" M="$out/m/squatter" modules
		cp "$out/m/squatter/vmclock_squatter.ko" "$out/m/"
		rm -rf "$out/m/squatter"
	fi
	rm -rf "$obj"
done
touch "$out/.done"
echo "$out"
