#!/bin/bash
# Build Debian's linux-source-BASE with the vmgen series, the driver built in
# (VARIANT y) or as a module (m), on allnoconfig plus config.fragment.
#
# The patched tree and one build folder per variant are kept in the cache
# under the source package's version, and every build is incremental:
#   - the tree is brought up to date by content, so that only the files
#     the series changed since the last build get a new mtime;
#   - an edit of the driver alone rebuilds only the driver: its .ko for
#     =m, an object and a relink for =y.
# Prints the build folder: arch/x86/boot/bzImage, .release, and for =m
# drivers/virt/vmgenid_vmclock.ko and test-modules/vmclock_standin.ko.
#
# With MUTANT_PATCH, a patch to the kernel (random.c, the vDSO), the same
# kernel is built broken on purpose into a folder of its own, started as a
# copy of the variant's: the patch is applied to the tree for that build
# only, and the files it touched are then put back as they were, times
# included, so that neither build sees the other's.
#
# usage: build.sh BASE VARIANT CACHE_DIR [MUTANT_PATCH]
#        (BASE: 6.1, 6.12 or 7.3; VARIANT: y or m)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
base=${1:?usage: build.sh BASE VARIANT CACHE_DIR}
v=${2:?usage: build.sh BASE VARIANT CACHE_DIR}
cache=${3:?usage: build.sh BASE VARIANT CACHE_DIR}
mutant=${4:-}
case "$v" in y|m) ;; *) echo "build: VARIANT is y or m, not '$v'" >&2; exit 2 ;; esac

pristine=$("$here/source.sh" "$base" "$cache")
dir=$cache/ktree-$(basename "$pristine")
src=$dir/src obj=$dir/obj-$v
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9

# The patched tree: a copy of the pristine one made once, then kept equal
# to pristine + series by content.
if [ ! -e "$src/.vmgen" ]; then
	echo "build: copying the pristine tree to $src" >&2
	rm -rf "$src"
	cp -a "$pristine" "$src"
	: >"$src/.vmgen"
fi
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
# What the series may touch: the files its patches change, and those
# apply.sh installs. Each starts pristine in the stage.
mapfile -t series < <("$here/apply.sh" --list "$pristine")
touched=$(grep -h '^+++ b/' "${series[@]}" | sed 's|^+++ b/||; s|\t.*||' | sort -u)
for f in Makefile $touched; do
	mkdir -p "$stage/$(dirname "$f")"
	cp -p "$pristine/$f" "$stage/$f"
done
"$here/apply.sh" "$stage" >&2
# Copy over what differs; put back pristine what the series no longer
# touches. Unchanged files keep their mtime, so make rebuilds nothing
# for them.
( cd "$stage" && find . -type f ) | sed 's|^\./||' | sort >"$stage.list"
while read -r f; do
	cmp -s "$stage/$f" "$src/$f" && continue
	mkdir -p "$src/$(dirname "$f")"
	cp "$stage/$f" "$src/$f"
done <"$stage.list"
comm -23 <(sort "$src/.vmgen") "$stage.list" | while read -r f; do
	if [ -e "$pristine/$f" ]; then cp -p "$pristine/$f" "$src/$f"; else rm -f "$src/$f"; fi
done
mv "$stage.list" "$src/.vmgen"

# configure DIR: allnoconfig plus the fragment in build folder DIR, and
# every option the fragment sets must be set so. A result identical to the
# last one leaves every object as it is.
configure() {
	{ cat "$here/config.fragment"; echo "CONFIG_VMGENID_VMCLOCK=$v"; } >"$1/vmgen.fragment"
	make -s -C "$src" O="$1" KCONFIG_ALLCONFIG="$1/vmgen.fragment" allnoconfig >&2
	check_config "$1"
}

# check_config DIR: every option the fragment sets is set so in DIR.
check_config() {
	local line missing=0
	while IFS= read -r line; do
		case "$line" in
		CONFIG_*=*|"# CONFIG_"*" is not set") ;;
		*) continue ;;
		esac
		if ! grep -qxF "$line" "$1/.config"; then
			echo "build: '$line' did not stick" >&2
			missing=1
		fi
	done <"$1/vmgen.fragment"
	return $missing
}

mkdir -p "$obj"
configure "$obj"
echo "build: linux-$base =$v in $obj ($(nproc) jobs)" >&2
make -s -C "$src" O="$obj" -j"$(nproc)" bzImage modules >&2
make -s --no-print-directory -C "$src" O="$obj" kernelrelease >"$obj/.release"
if [ -n "$mutant" ]; then
	mobj=$obj-$(basename "$mutant" .patch)
	[ -e "$mobj/.release" ] || { rm -rf "$mobj" && cp -a "$obj" "$mobj"; }
	keep=$stage.keep
	mkdir -p "$keep"
	mapfile -t hit < <(grep '^+++ b/' "$mutant" | sed 's|^+++ b/||; s|\t.*||')
	for f in "${hit[@]}"; do
		mkdir -p "$keep/$(dirname "$f")"
		cp -p "$src/$f" "$keep/$f"
	done
	trap 'for f in "${hit[@]}"; do cp -p "$keep/$f" "$src/$f"; done; rm -rf "$stage" "$keep"' EXIT
	patch -d "$src" -p1 --batch --forward -s <"$mutant"
	# A copy made before the fragment last changed must follow it too.
	configure "$mobj"
	echo "build: linux-$base =$v with $(basename "$mutant") in $mobj" >&2
	make -s -C "$src" O="$mobj" -j"$(nproc)" bzImage modules >&2
	obj=$mobj
fi
if [ "$v" = m ]; then
	# The rig's stand-in for ptp_vmclock.
	mkdir -p "$obj/test-modules"
	cp -p "$top"/tools/vmgen-rig/faults/Kbuild "$top"/tools/vmgen-rig/faults/*.c \
		"$obj/test-modules/"
	make -s -C "$src" O="$obj" M="$obj/test-modules" modules >&2
fi
echo "$obj"
