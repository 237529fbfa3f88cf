# SPDX-License-Identifier: GPL-2.0
#
# vmgen: snapshot-safe randomness for vmclock guests.
#
#   make demo     boot a guest, snapshot it, restore two clones, report
#   make check    install what is needed, build, run every test
#   make module   build vmgenid_vmclock.ko out of tree (KDIR= to override)
#   make rig      build the QEMU rig (host tools, SSDT, guest initrd)
#   make deps     install the Debian packages the above need (as root)
#
# Build outputs go to build/; slow, reusable ones (the guest rootfs, the
# guest kernel) to $(VMGEN_CACHE), keyed by their inputs.

VMGEN_CACHE ?= /var/cache/vmgen
O := $(CURDIR)/build
KVER ?= $(shell tools/vmgen-rig/kernel.sh version 2>/dev/null)
KDIR ?= /lib/modules/$(KVER)/build
MOD := $(O)/module

export VMGEN_CACHE
export VMGEN_BUILD := $(O)

all: module

deps:
	tools/vmgen-rig/deps.sh

# Stage the driver, its Kbuild file and the uapi header 6.1 lacks into one
# folder: the same layout DKMS builds from.
module:
	@test -d "$(KDIR)" || { echo "module: no kernel build tree at '$(KDIR)';" \
	    "install linux-headers-amd64 (make deps) or set KDIR=" >&2; exit 1; }
	mkdir -p $(MOD)/include/uapi/linux
	cp -p tools/dkms/Kbuild drivers/virt/vmgenid_vmclock.c $(MOD)/
	cp -p include/uapi/linux/vmclock-abi.h $(MOD)/include/uapi/linux/
	$(MAKE) -C $(KDIR) M=$(MOD) modules

rig: module
	cp -p $$(tools/vmgen-rig/kernel.sh vmlinuz $(VMGEN_CACHE)) $(O)/rig-vmlinuz.tmp
	$(MAKE) -C tools/vmgen-rig O=$(O) MODULE=$(MOD)/vmgenid_vmclock.ko
	mv $(O)/rig-vmlinuz.tmp $(O)/rig/vmlinuz

demo: deps
	tools/vmgen-rig/demo.sh

check: deps
	tools/vmgen-rig/check.sh

clean:
	rm -rf $(O)

.PHONY: all deps module rig demo check clean
