#!/bin/bash
# Install what the rig, the module build and the checks need, from Debian's
# archive. Runs apt-get update once, and only when something is missing.
set -euo pipefail

pkgs=(build-essential linux-headers-amd64 linux-source-6.1 sparse
      linux-headers-6.12-amd64 linux-source-6.12
      qemu-user acpica-tools debootstrap cpio xz-utils
      kmod dkms python3-docutils python3-pytest rsync flex bison bc libelf-dev
      libssl-dev)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
		grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "deps: missing ${missing[*]}; run as root to install them" >&2
	exit 1
fi
log=${TMPDIR:-/tmp}/vmgen-deps.log
echo "deps: installing ${missing[*]} (log: $log)"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -q &&
       apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
       >"$log" 2>&1; then
	tail -20 "$log" >&2
	echo "deps: apt-get failed, see $log" >&2
	exit 1
fi
