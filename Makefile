# SPDX-License-Identifier: GPL-2.0
#
# vmgen: snapshot-safe randomness for vmclock guests.
#
#   make demo     boot a guest, snapshot it, restore two clones, report
#   make check    install what is needed, build, run every test
#   make module   build vmgenid_vmclock.ko out of tree (KDIR= to override)
#   make rig      build the QEMU rig (host tools, SSDT, guest initrd)
#   make deps     install the Debian packages the above need (as root)
#   make dkms-install   register, build and install the module with DKMS
#                       for KVER (default: Debian's current amd64 kernel)
#   make kernel-tree KSRC=dir   turn a pristine 6.1 tree into the patched one
#   make kernel   build the patched 6.1 kernel, driver =y and =m (cached)
#   make patches  regenerate the format-patch series in patches/
#   make faults   the fault-injection suite on the debug kernel (builds it)
#   make bench    stale outputs after a restore per mechanism, and the cost
#                 of the patched kernel's check (builds what it needs)
#
# Build outputs go to build/; slow, reusable ones (the guest rootfs, the
# guest kernel) to $(VMGEN_CACHE), keyed by their inputs.

VMGEN_CACHE ?= /var/cache/vmgen
O ?= $(CURDIR)/build
KVER ?= $(shell tools/vmgen-rig/kernel.sh version 2>/dev/null)
KDIR ?= /lib/modules/$(KVER)/build
MOD := $(O)/module
VERSION := 0.1
DKMS_SRC := /usr/src/vmgenid-vmclock-$(VERSION)

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

kernel-tree:
	@test -n "$(KSRC)" || { echo "kernel-tree: set KSRC= to a pristine" \
	    "Linux 6.1 source tree" >&2; exit 1; }
	tools/kernel-tree/apply.sh $(KSRC)

kernel: deps
	tools/kernel-tree/build.sh $(VMGEN_CACHE)

# The same tree `make module` builds from, plus dkms.conf.
dkms-install:
	@test -n "$(KVER)" || { echo "dkms-install: set KVER=" >&2; exit 1; }
	-dkms remove -q vmgenid-vmclock/$(VERSION) --all 2>/dev/null
	rm -rf $(DKMS_SRC)
	mkdir -p $(DKMS_SRC)/include/uapi/linux
	cp tools/dkms/Kbuild drivers/virt/vmgenid_vmclock.c $(DKMS_SRC)/
	cp include/uapi/linux/vmclock-abi.h $(DKMS_SRC)/include/uapi/linux/
	sed 's/@VERSION@/$(VERSION)/' tools/dkms/dkms.conf >$(DKMS_SRC)/dkms.conf
	dkms add vmgenid-vmclock/$(VERSION)
	dkms build vmgenid-vmclock/$(VERSION) -k $(KVER)
	dkms install vmgenid-vmclock/$(VERSION) -k $(KVER)

patches:
	tools/kernel-tree/mkseries.sh patches

# The rig boots Debian's kernel with the out-of-tree module by default;
# GUEST_KERNEL= (a bzImage) and GUEST_MODULE= (a .ko, or empty when the
# driver is built in) select another, such as one from make kernel.
ifeq ($(GUEST_KERNEL),)
GUEST_MODULE ?= $(MOD)/vmgenid_vmclock.ko
RIG_DEPS := module
endif

rig: $(RIG_DEPS)
	mkdir -p $(O)
	cp -p $(or $(GUEST_KERNEL),$$(tools/vmgen-rig/kernel.sh vmlinuz $(VMGEN_CACHE))) \
	    $(O)/rig-vmlinuz.tmp
	$(MAKE) -C tools/vmgen-rig O=$(O) MODULE=$(GUEST_MODULE) KVER=$(KVER)
	mv $(O)/rig-vmlinuz.tmp $(O)/rig/vmlinuz

demo: deps
	tools/vmgen-rig/demo.sh

check: deps
	tools/vmgen-rig/check.sh

bench: deps
	tools/vmgen-rig/bench.sh

faults: deps
	tools/vmgen-rig/faults.sh

clean:
	rm -rf $(O)

.PHONY: all deps module dkms-install kernel-tree kernel patches rig demo check bench faults \
	clean
