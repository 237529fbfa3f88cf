# SPDX-License-Identifier: GPL-2.0
"""The guest kernels a suite can test, and what each one is.

The table is static on purpose: which tests a suite plans must not depend
on which kernels happened to build. A kernel that did not build fails the
tests planned on it (its kernel.conf is missing), it does not remove them.

What depends on the base (random.c, the vDSO, the stock reseed path)
runs on every kernel. What the driver does the same way on any base runs
on the reference kernels only (clones without an arch RNG, the fault
cases), or on the stock one of them (icount clones, life beside
ptp_vmclock), which keeps make check within CI's time.
"""

import dataclasses
import functools
import os
from dataclasses import dataclass

from . import rig


@dataclass(frozen=True)
class Kernel:
    name: str
    base: str		# "6.1", "6.12" (Debian 12's), "trixie-6.12", "trixie-7", "7.3"
    patched: bool	# random.c.patch and the in-tree driver
    builtin: bool	# driver =y (else a module the rig's init loads)
    debug: bool		# lockdep, DEBUG_ATOMIC_SLEEP, kmemleak
    reference: bool = False	# runs the base-independent tests too
    userspace: str = "bookworm"	# the guests' Debian: "bookworm" or "trixie"
    # The test files planned on it (test_NAME.py): all, or only suites,
    # less omits. The others are planned as SKIP, with why.
    suites: tuple = ()
    omits: tuple = ()
    why: str = ""

    def runs(self, suite):
        return (not self.suites or suite in self.suites) and suite not in self.omits

    @property
    def skip_reason(self):
        what = f"runs {', '.join(self.suites)} only" if self.suites else \
            f"leaves {', '.join(self.omits)} out"
        return f"{self.name} {what}: {self.why}"

    def __str__(self):
        return self.name

    @property
    def line(self):
        """The upstream line: "6.1", "6.12" or "7"."""
        line = self.base.removeprefix("trixie-")
        return "7" if line.startswith("7") else line

    @property
    def rng_vvar(self):
        """Where the crng's generation is in [vvar], on kernels whose vDSO
        has getrandom(); -1 on the others. 6.12 keeps it in the one data
        page; 7.x's generic data store gives it the third page."""
        return {"6.12": 640, "7": 2 * 4096}.get(self.line, -1)

    def conf(self):
        return rig.kernel_conf(self.name)

    def has(self, flag):
        return {
            "all": True,
            "stock": not self.patched,
            "patched": self.patched,
            "module": not self.builtin,
            "builtin": self.builtin,
            "debug": self.debug,
            "vdso": self.line in ("6.12", "7"),	# getrandom() in the vDSO
            "reference": self.reference,
            # The image ships the real ptp_vmclock, counter and all (the
            # patched 7.3 kernel's allnoconfig build has no PTP).
            "ptp": self.line == "7" and not self.patched,
            # Debian 13 userspace: glibc's getrandom() is the vDSO's.
            "trixie": self.userspace == "trixie",
        }[flag]


KERNELS = {k.name: k for k in (
    Kernel("stock-6.1", "6.1", patched=False, builtin=False, debug=False, reference=True),
    Kernel("patched-6.1-y", "6.1", patched=True, builtin=True, debug=True),
    Kernel("patched-6.1-m", "6.1", patched=True, builtin=False, debug=True, reference=True),
    Kernel("stock-6.12", "6.12", patched=False, builtin=False, debug=False),
    Kernel("patched-6.12-y", "6.12", patched=True, builtin=True, debug=True),
    Kernel("patched-6.12-m", "6.12", patched=True, builtin=False, debug=True),
    Kernel("stock-trixie-6.12", "trixie-6.12", patched=False, builtin=False, debug=False,
           userspace="trixie", omits=("window",),
           why="stock-6.12 bounds the window on 6.12, whose random.c this is; "
               "the window's readers do not go through glibc"),
    Kernel("stock-trixie-7", "trixie-7", patched=False, builtin=False, debug=False,
           userspace="trixie"),
    # The series on its upstream base, with Debian 13 userspace.
    # It runs what the series changes on that base, random.c and the vDSO;
    # the driver on 7.x is stock-trixie-7's, beside the real ptp_vmclock.
    Kernel("patched-7.3-m", "7.3", patched=True, builtin=False, debug=True, userspace="trixie",
           suites=("restore", "stale", "sync"),
           why="what the series changes on 7.3 (random.c, the vDSO); "
               "the driver on 7.x is tested on stock-trixie-7"),
)}


def mutant_of(name):
    """(mutant, reference kernel) for mutant-NAME.KERNEL, else None."""
    if not name.startswith("mutant-") or "." not in name:
        return None
    mutant, _, ref = name.removeprefix("mutant-").partition(".")
    return mutant, ref


@functools.cache
def kernel(name):
    """A kernel of the table, or a mutant: mutant-NAME.KERNEL is KERNEL with
    its driver (or its random.c) broken on purpose by
    tools/vmgen-rig/mutants/NAME.patch, planned with every test KERNEL is.
    One object per name: pytest keeps a class's fixtures only while the
    parameter is the same object, so a fresh one per test would boot a
    guest per test."""
    m = mutant_of(name)
    if m:
        return dataclasses.replace(kernel(m[1]), name=name)
    if name == "custom":
        return Kernel(name, "custom", patched=False, builtin=False, debug=False)
    if name not in KERNELS:
        raise ValueError(f"unknown kernel {name}; known: {list(KERNELS)}, mutant-*")
    return KERNELS[name]


def suite_kernels():
    """The kernels this run covers, from VMGEN_KERNELS (comma-separated)."""
    return [kernel(n) for n in os.environ.get("VMGEN_KERNELS", "stock-6.1").split(",")]
