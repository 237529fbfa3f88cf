# SPDX-License-Identifier: GPL-2.0
#
# vmgen: snapshot-safe randomness for vmclock guests.
#
#   make demo     boot a guest, snapshot it, restore clones with and without
#                 vmgen, report what each did
#   make check    install what is needed, build, run every test
#
#   make module   build vmgenid_vmclock.ko out of tree (KDIR= to override)
#   make rig      build the QEMU rig and its default guest kernel
#   make kernels  every guest kernel the suites test (see KERNELS)
#   make kernel   the patched guest kernels (cached, incremental)
#   make deps     install the Debian packages the above need (as root)
#   make dkms-install   register, build and install the module with DKMS
#                       for KVER (default: Debian's current amd64 kernel)
#   make deb      the Debian package (vmgenid-vmclock-dkms), in build/deb;
#                 make deb-install installs it here (apt install)
#   make kernel-tree KSRC=dir   turn a pristine 6.1 tree into the patched one
#   make patches  regenerate the format-patch series in patches/
#   make faults   the fault-injection suite on the debug kernel
#   make bench    stale outputs after a restore per mechanism, and the cost
#                 of the patched kernel's check
#   make mutants  build broken drivers and require the suite to catch each
#   make soak     restores and clones over and over, every guest checked
#
# Build outputs go to $(O); slow, reusable ones (the guest rootfs, the
# kernel build trees) to $(VMGEN_CACHE), keyed by their inputs. Every
# suite prints KTAP and ends with "N passed, N failed, N skipped".

VMGEN_CACHE ?= /var/cache/vmgen
O ?= $(CURDIR)/build
KVER ?= $(shell tools/vmgen-rig/kernel.sh version 2>/dev/null)
KDIR ?= /lib/modules/$(KVER)/build
MOD := $(O)/module
TESTMOD := $(O)/test-modules
# The version of the Debian package, and of the module DKMS registers.
VERSION := $(shell sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' tools/dkms/debian/changelog)
DKMS_SRC := /usr/src/vmgenid-vmclock-$(VERSION)
STEP := tools/vmgen-rig/step $(O)/logs/build.log
RIG_MAKE := $(MAKE) -C tools/vmgen-rig O=$(O) VMGEN_CACHE=$(VMGEN_CACHE)

# The guest kernels make check tests, and the ones make kernels builds
# (tools/vmgen-rig/check-kernels says which and why).
KERNELS ?= $(shell grep -v '^\#' tools/vmgen-rig/check-kernels)

export VMGEN_CACHE
export VMGEN_BUILD := $(O)

all: module

deps:
	tools/vmgen-rig/deps.sh

# Stage the driver, its Kbuild file and the uapi header 6.1 lacks into one
# folder: the same layout DKMS builds from. MUTANT=NAME breaks the driver
# with tools/vmgen-rig/mutants/NAME.patch first. A file is copied only when
# it differs, with a new time: a build that staged another version there
# (a mutant) is rebuilt, and an unchanged one is not.
# KRUN= runs the kernel's build in another root (Debian 13's kernels).
stage = cmp -s $(1) $(2) || cp $(1) $(2)
module:
	@$(KRUN) test -d "$(KDIR)" || { echo "module: no kernel build tree at '$(KDIR)';" \
	    "install linux-headers-amd64 (make deps) or set KDIR=" >&2; exit 1; }
	mkdir -p $(MOD)/include/uapi/linux
	$(call stage,tools/dkms/Kbuild,$(MOD)/Kbuild)
	$(call stage,include/uapi/linux/vmclock-abi.h,$(MOD)/include/uapi/linux/vmclock-abi.h)
	$(if $(MUTANT),patch -s -o $(MOD)/vmgenid_vmclock.c.mutant drivers/virt/vmgenid_vmclock.c \
	    <tools/vmgen-rig/mutants/$(MUTANT).patch)
	$(call stage,$(if $(MUTANT),$(MOD)/vmgenid_vmclock.c.mutant,drivers/virt/vmgenid_vmclock.c),\
	    $(MOD)/vmgenid_vmclock.c)
	$(KRUN) $(MAKE) -C $(KDIR) M=$(MOD) modules

# The test-only modules of tools/vmgen-rig/faults, for the stock kernel.
test-modules:
	mkdir -p $(TESTMOD)/include/uapi/linux
	cp -p tools/vmgen-rig/faults/Kbuild tools/vmgen-rig/faults/*.c $(TESTMOD)/
	cp -p include/uapi/linux/vmclock-abi.h $(TESTMOD)/include/uapi/linux/
	$(MAKE) -C $(KDIR) M=$(TESTMOD) modules

kernel-tree:
	@test -n "$(KSRC)" || { echo "kernel-tree: set KSRC= to a pristine" \
	    "Linux 6.1 source tree" >&2; exit 1; }
	tools/kernel-tree/apply.sh $(KSRC)

PATCHED_KERNELS := $(filter patched-%,$(KERNELS))
kernel: deps
	@for k in $(PATCHED_KERNELS); do \
	    $(STEP) "Building the $$k kernel (cached, incremental)" \
	        $(MAKE) kernel-$$k || exit; done

# The same tree `make module` builds from, plus dkms.conf; built and
# installed for KVER, or for each kernel of DKMS_KVERS.
DKMS_KVERS ?= $(KVER)
dkms-install:
	@test -n "$(DKMS_KVERS)" || { echo "dkms-install: set KVER=" >&2; exit 1; }
	dkms remove -q vmgenid-vmclock/$(VERSION) --all 2>/dev/null || true
	rm -rf $(DKMS_SRC)
	mkdir -p $(DKMS_SRC)/include/uapi/linux
	cp tools/dkms/Kbuild drivers/virt/vmgenid_vmclock.c $(DKMS_SRC)/
	cp include/uapi/linux/vmclock-abi.h $(DKMS_SRC)/include/uapi/linux/
	sed 's/#MODULE_VERSION#/$(VERSION)/' tools/dkms/dkms.conf >$(DKMS_SRC)/dkms.conf
	dkms add vmgenid-vmclock/$(VERSION)
	for k in $(DKMS_KVERS); do \
	    dkms build vmgenid-vmclock/$(VERSION) -k $$k && \
	    dkms install vmgenid-vmclock/$(VERSION) -k $$k || exit; done

# The Debian package users install (tools/dkms/debian, dh-dkms), built
# the way Debian builds it, in the rig's Debian 13 root: $(DEB)/*.deb and
# the source package beside it. DKMS then builds the module on each
# machine, for each kernel whose headers it has. Built again only when one
# of its inputs changed.
DEB := $(O)/deb
D13 := tools/vmgen-rig/debian.sh
DEB_FILE := $(DEB)/vmgenid-vmclock-dkms_$(VERSION)_all.deb
DEB_INPUTS := tools/dkms/Kbuild tools/dkms/dkms.conf drivers/virt/vmgenid_vmclock.c \
	include/uapi/linux/vmclock-abi.h Documentation/admin-guide/vmclock-vmgenid.rst \
	tools/udev/90-vmgenid-vmclock.rules $(shell find tools/dkms/debian -type f) $(D13)
deb: $(DEB_FILE)
$(DEB_FILE): $(DEB_INPUTS)
	rm -rf $(DEB) && mkdir -p $(DEB)/src/include/uapi/linux
	cp tools/dkms/Kbuild tools/dkms/dkms.conf drivers/virt/vmgenid_vmclock.c $(DEB)/src/
	cp include/uapi/linux/vmclock-abi.h $(DEB)/src/include/uapi/linux/
	cp Documentation/admin-guide/vmclock-vmgenid.rst tools/udev/90-vmgenid-vmclock.rules $(DEB)/src/
	cp -r tools/dkms/debian $(DEB)/src/
	mv $(DEB)/src $(DEB)/vmgenid-vmclock-$(VERSION)
	$(D13) run $(VMGEN_CACHE) $(DEB) sh -c 'cd vmgenid-vmclock-$(VERSION) && \
	    dpkg-buildpackage -us -uc' >$(DEB)/build.log 2>&1 || { cat $(DEB)/build.log; exit 1; }
	ls $(DEB)/*.deb $(DEB)/*.dsc

# The package on this Debian 12 machine, as an operator installs it: DKMS
# builds the module for each kernel whose headers are here. Installed
# afresh, as DKMS builds for the newest kernel only on a reinstall; a
# registration make dkms-install made goes first.
deb-install: $(DEB_FILE)
	if dpkg -s vmgenid-vmclock-dkms >/dev/null 2>&1; then \
	    apt-get purge -y -q vmgenid-vmclock-dkms; fi
	dkms remove -q vmgenid-vmclock/$(VERSION) --all 2>/dev/null || true
	apt-get install -y -q $(DEB)/vmgenid-vmclock-dkms_$(VERSION)_all.deb

# The module DKMS builds from that package on a Debian 13 machine, for each
# Debian 13 kernel, as the guests of those kernels get it: installed in a
# throwaway copy of the root, then copied to $(DEB)/modules/KVER/.
deb-modules: $(DEB)/modules/.built
$(DEB)/modules/.built: $(DEB_FILE)
	rm -rf $(DEB)/modules
	$(D13) scratch $(VMGEN_CACHE) $(DEB) sh -c 'apt-get install -y -q \
	    ./vmgenid-vmclock-dkms_$(VERSION)_all.deb && \
	    for d in /lib/modules/*/updates/dkms; do k=$${d#/lib/modules/}; k=$${k%%/*}; \
	        mkdir -p modules/$$k && cp $$d/vmgenid_vmclock.ko* modules/$$k/ || exit; done' \
	    >$(DEB)/install.log 2>&1 || { cat $(DEB)/install.log; exit 1; }
	ls $(DEB)/modules/*/
	touch $@

patches:
	for b in 6.1 6.12 7.3; do tools/kernel-tree/mkseries.sh $$b patches/$$b || exit; done

# The selftests, built in Debian's pristine 6.12 tree the kernel's way.
kselftest:
	tools/kernel-tree/kselftest.sh $(O)

rig-tools: kselftest
	$(RIG_MAKE) tools KSELFTEST=$(O)/kselftest

# What a guest kernel's folder is made from. make check's builds behind the
# suite take them as they are (RIG_TOOLS=): the suite is using them.
RIG_TOOLS ?= rig-tools

# --------------------------------------------------------------- kernels
# build/kernels/NAME: a guest kernel and its initrd (tools/vmgen-rig).
# stock-BASE: Debian's prebuilt image, of the version the headers package
# for BASE points at (6.1: linux-headers-amd64, 6.12:
# linux-headers-6.12-amd64); the module and the stand-in built against those
# headers, what DKMS installed for it, and the image's own WireGuard and
# veth modules.
skver = $(shell tools/vmgen-rig/kernel.sh version $*)
# DKMS compresses the module the way the kernel's own are (6.12: xz).
dkms_ko = $(firstword $(wildcard $(foreach z,.ko .ko.xz .ko.zst,\
	  /lib/modules/$(skver)/updates/dkms/vmgenid_vmclock$(z))))
# With MUTANT=NAME, the folder is mutant-NAME.stock-BASE: the same files,
# the driver (DKMS's copy too) broken by NAME.patch.
kname = $(if $(MUTANT),mutant-$(MUTANT).)$(1)
# Each kernel target first drops KERNEL's kernel.conf, which the suite
# reads as "built": a build that fails leaves no earlier build to test.
forget = rm -f $(O)/kernels/$(call kname,$(1))/kernel.conf
kernel-stock-%: $(RIG_TOOLS)
	$(call forget,stock-$*)
	$(MAKE) module test-modules KDIR=/lib/modules/$(skver)/build MOD=$(O)/module-$* \
	    TESTMOD=$(O)/test-modules-$* MUTANT=
	$(if $(MUTANT),$(MAKE) module KDIR=/lib/modules/$(skver)/build \
	    MOD=$(O)/mutants/$(call kname,stock-$*))
	$(RIG_MAKE) kernel NAME=$(call kname,stock-$*) BASE=$* DRIVER=module PATCHED=0 DEBUG=0 \
	    KVER=$(skver) VMLINUZ=$$(tools/vmgen-rig/kernel.sh vmlinuz $(VMGEN_CACHE) $*) \
	    MODULE=$(if $(MUTANT),$(O)/mutants/$(call kname,stock-$*),$(O)/module-$*)/vmgenid_vmclock.ko \
	    STANDIN=$(O)/test-modules-$*/vmclock_standin.ko STOCK_MODULES="wireguard veth nvme-fabrics" \
	    $(if $(MUTANT),DKMS_MODULE=$(O)/mutants/$(call kname,stock-$*)/vmgenid_vmclock.ko,\
	    $(if $(dkms_ko),DKMS_MODULE=$(dkms_ko)))

# stock-trixie-BASE: Debian 13's prebuilt kernels, trixie-6.12 (its own)
# and trixie-7 (trixie-backports' newest 7.x), whose headers are in the
# rig's Debian 13 root: the module built there, what the Debian package's
# DKMS built there, and the image's WireGuard, veth and, on 7.x, its own
# ptp_vmclock, the real owner of the device. With MUTANT=NAME, both
# copies of the module are the broken one.
tkver = $(shell tools/vmgen-rig/kernel.sh version trixie-$*)
KRUN_D13 = $(D13) run $(VMGEN_CACHE) $(CURDIR)
tmod = $(if $(MUTANT),$(O)/mutants/$(call kname,stock-trixie-$*),$(O)/module-trixie-$*)
kernel-stock-trixie-%: $(RIG_TOOLS) deb-modules
	$(call forget,stock-trixie-$*)
	$(MAKE) module KDIR=/usr/src/linux-headers-$(tkver) MOD=$(tmod) KRUN="$(KRUN_D13)"
	$(RIG_MAKE) kernel NAME=$(call kname,stock-trixie-$*) BASE=trixie-$* DRIVER=module \
	    PATCHED=0 DEBUG=0 USERSPACE=trixie KVER=$(tkver) \
	    VMLINUZ=$$(tools/vmgen-rig/kernel.sh vmlinuz $(VMGEN_CACHE) trixie-$*) \
	    MODULE=$(tmod)/vmgenid_vmclock.ko \
	    STOCK_MODULES="wireguard veth nvme-fabrics$(if $(filter 7,$*), ptp_vmclock)" \
	    DKMS_MODULE=$(if $(MUTANT),$(tmod)/vmgenid_vmclock.ko,$(wildcard \
	    $(DEB)/modules/$(tkver)/vmgenid_vmclock.ko*))

# patched-BASE-VARIANT: tools/kernel-tree/build.sh's incremental build.
pbase = $(word 1,$(subst -, ,$*))
pvar = $(word 2,$(subst -, ,$*))
# A mutant of the kernel (a patch to random.c or the vDSO, not to the
# driver) is a kernel build of its own (tools/kernel-tree/build.sh).
kmutant = $(if $(MUTANT),$(if $(shell grep -l '^+++ b/drivers/virt/' \
	  tools/vmgen-rig/mutants/$(MUTANT).patch),,$(CURDIR)/tools/vmgen-rig/mutants/$(MUTANT).patch))
dmutant = $(if $(MUTANT),$(if $(kmutant),,1))
kernel-patched-%: $(RIG_TOOLS)
	$(call forget,patched-$*)
	obj=$$(tools/kernel-tree/build.sh $(pbase) $(pvar) $(VMGEN_CACHE) $(kmutant)) && \
	$(if $(dmutant),$(MAKE) module KDIR=$$obj MOD=$(O)/mutants/$(call kname,patched-$*) && ) \
	$(RIG_MAKE) kernel NAME=$(call kname,patched-$*) BASE=$(pbase) PATCHED=1 DEBUG=1 \
	    $(if $(filter 7.%,$(pbase)),USERSPACE=trixie) \
	    KVER=$$(cat $$obj/.release) VMLINUZ=$$obj/arch/x86/boot/bzImage \
	    $(if $(filter m,$(pvar)),DRIVER=module \
	    MODULE=$(if $(dmutant),$(O)/mutants/$(call kname,patched-$*),$$obj/drivers/virt)/vmgenid_vmclock.ko \
	    STANDIN=$$obj/test-modules/vmclock_standin.ko,DRIVER=builtin)

kernels: $(addprefix kernel-,$(KERNELS))

# build/kernels/mutant-NAME.KERNEL: KERNEL's guest files with the driver,
# or random.c or the vDSO, broken on purpose by
# tools/vmgen-rig/mutants/NAME.patch (make mutants): on the kernels its
# "Kernels:" line names (the stock and patched reference ones by default).
MUTANTS ?= $(basename $(notdir $(wildcard tools/vmgen-rig/mutants/*.patch)))
mrefs = $(or $(shell sed -n 's/^Kernels: //p' tools/vmgen-rig/mutants/$(1).patch),$(MUTANT_REFS))
# What make check runs (tools/vmgen-rig/suite check has the same default).
CHECK_MUTANTS := backstop-only late-reseed
MUTANT_REFS ?= stock-6.1 patched-6.1-m
mname = $(firstword $(subst ., ,$*))
kernel-mutant-%:
	$(MAKE) kernel-$(patsubst $(mname).%,%,$*) MUTANT=$(mname)

mutant-kernels: $(foreach m,$(MUTANTS),$(foreach r,$(call mrefs,$(m)),kernel-mutant-$(m).$(r)))

# The rig, and the guest kernel `rig boot` uses by default: Debian's 6.1
# with the module, or GUEST_KERNEL= (a bzImage) with GUEST_MODULE= (a .ko,
# or empty when the driver is built in), as the kernel named "custom".
ifeq ($(GUEST_KERNEL),)
rig: kernel-stock-6.1
	echo stock-6.1 >$(O)/rig/default-kernel
else
rig: rig-tools
	$(RIG_MAKE) kernel NAME=custom VMLINUZ=$(GUEST_KERNEL) MODULE=$(GUEST_MODULE) \
	    DRIVER=$(if $(GUEST_MODULE),module,builtin) PATCHED=0 DEBUG=0 BASE=custom
	echo custom >$(O)/rig/default-kernel
endif

# ---------------------------------------------------------------- suites
# Everything a suite needs is built first, each long step announced; a
# build that fails fails the tests that needed it (the suite says which).
# The Debian package's DKMS builds for Debian 12's kernels on this host
# (make deb-install), and for Debian 13's in the Debian 13 root (make
# deb-modules).
STOCK_KVERS = $(foreach b,$(patsubst stock-%,%,$(filter-out stock-trixie-%,$(filter stock-%,$(KERNELS)))),\
	$(shell tools/vmgen-rig/kernel.sh version $(b)))
check-build-stock: deps
	@$(STEP) "Installing the Debian package; DKMS builds for $(STOCK_KVERS)" \
	    $(MAKE) deb-install || true
	@$(STEP) "Building the selftests in-tree" $(MAKE) kselftest || true
	@for k in $(filter stock-%,$(KERNELS)); do \
	    $(STEP) "Building the $$k kernel's guest files" $(MAKE) kernel-$$k || true; done
	@$(STEP) "Building the mutants make check runs (drivers broken on purpose)" \
	    $(MAKE) -k mutant-kernels MUTANTS="$(CHECK_MUTANTS)" MUTANT_REFS=stock-6.1 || true

check-build: check-build-stock
	@for k in $(PATCHED_KERNELS); do \
	    $(STEP) "Building the $$k kernel (cached, incremental)" \
	        $(MAKE) kernel-$$k || true; done

# The patched kernels are the slowest builds, and the suite's guests leave
# a core idle much of the time: make check builds them at idle priority
# while the suite tests the host and the stock kernels, which it runs
# first (tools/vmgen-rig/build-behind). The other suites build everything
# first, so that nothing runs beside what they measure.
check: check-build-stock
	tools/vmgen-rig/build-behind "$(MAKE) RIG_TOOLS=" $(O) $(PATCHED_KERNELS) -- tools/vmgen-rig/suite check

demo: deps
	@$(STEP) "Building the module and the rig (first run: Debian 12 and 13 roots, a few minutes)" \
	    $(MAKE) rig
	tools/vmgen-rig/suite demo

bench: check-build
	tools/vmgen-rig/suite bench

faults: check-build
	tools/vmgen-rig/suite faults

soak: check-build
	tools/vmgen-rig/suite soak

mutants: check-build
	@$(STEP) "Building every mutant on $(MUTANT_REFS)" $(MAKE) -k mutant-kernels || true
	tools/vmgen-rig/suite mutants

clean:
	rm -rf $(O)

.PHONY: all deps module test-modules kernel-tree kernel dkms-install deb deb-install deb-modules patches kselftest \
	rig-tools kernels mutant-kernels rig check-build-stock check-build check demo bench faults mutants soak clean
