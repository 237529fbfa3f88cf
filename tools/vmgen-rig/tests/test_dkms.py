# SPDX-License-Identifier: GPL-2.0
"""The module as a distribution ships it: installed with DKMS (on the host
for Debian 12's kernels; for Debian 13's, by the Debian package's DKMS in a
Debian 13 root), autoloaded by udev in the guest through the device's ACPI
alias, on the stock kernels; on 7.x beside ptp_vmclock, which udev loads
for the same device. And what the stock kernel's reseed path does not do: run the
vmfork notifier chain, so WireGuard keeps its keypairs across a restore
(the control, an unannounced restore, keeps them too). That no handshake
follows proves something only if one still can: after it, the tunnel is
made to forget its keypairs, and the next packet must bring a handshake."""

import re
import time

import pytest

from conftest import GuestTests
from vmgen.observe import WG, require, settle, wg_new_handshake, wg_up
from vmgen.rig import SYSDEV

OWNER = "/sys/bus/platform/devices/AMZNC10C:00"


@pytest.mark.kernels("stock")
class TestDkms(GuestTests):
    @pytest.fixture(scope="class")
    def run(self, group, kernel):
        rel = kernel.conf()["RELEASE"]
        g = group.boot("dkms", kernel, "--no-module", "--append",
                       "vmgen.dkms=1 clocksource=hpet")
        o = {"file": g.sh("modinfo -F filename vmgenid_vmclock; true"),
             "bound": g.ok(f"test -e {SYSDEV}/generation"),
             "owner": g.sh(f"basename $(readlink {OWNER}/driver) 2>/dev/null; true"),
             "want": f"/lib/modules/{rel}/updates/dkms/vmgenid_vmclock.ko",
             "says": g.kmsg_count("reseed via RNDRESEEDCRNG; the vmfork notifier chain "
                                  r"\(WireGuard\) is not run on this kernel")}
        require(o["bound"], f"no driver bound: is {o['want']} in the guest? "
                f"modinfo says '{o['file']}' (make dkms-install DKMS_KVERS={rel})")
        hs0 = wg_up(g)
        time.sleep(6)	# handshake initiations: one per 5 s (REKEY_TIMEOUT)
        g.savevm("s0")
        g.loadvm("s0", "--no-bump", "--no-ring")
        o["control"] = wg_new_handshake(g, hs0, within=15)
        g.loadvm("s0")
        o["restore"] = settle(g, 1)
        o["after_restore"] = wg_new_handshake(g, hs0, within=15)
        g.sh(f"{WG} rekey")
        o["rekeyed"] = wg_new_handshake(g, hs0, within=15)
        return o

    def test_udev_autoloads_the_dkms_module_which_binds(self, run):
        # DKMS compresses the module as the kernel's own are (6.12: .xz).
        assert re.fullmatch(re.escape(run["want"]) + r"(\.xz|\.zst)?", run["file"]) \
            and run["bound"], \
            f"module file '{run['file']}', bound {run['bound']}"

    def test_udev_loads_the_kernels_own_vmclock_driver_beside_it(self, run, kernel):
        """Where the image has ptp_vmclock (7.x), udev loads it for the same
        device: both run, in whatever order udev loads them."""
        want = "vmclock" if kernel.has("ptp") else ""
        assert run["owner"] == want, \
            f"the vmclock device's driver is '{run['owner']}', not '{want}'"

    def test_the_dkms_module_acts_on_a_restore(self, run):
        r = run["restore"]
        assert (r.restores, r.uevents) == (1, [r.counter]), \
            f"restores {r.restores}, uevents {r.uevents}, counter {r.counter}"

    def test_probe_says_the_stock_path_runs_no_vmfork_chain(self, run):
        assert run["says"] == 1, "the probe line does not say what the stock path cannot do"

    def test_stock_kernel_keeps_wireguard_keys_across_a_restore(self, run):
        """What really happens on a stock kernel: no vmfork chain."""
        assert not run["control"], "the control lost its keys: a clock jump?"
        assert run["rekeyed"], "no handshake even once the keypairs were dropped: the " \
            "tunnel is dead, so no handshake after the restore proves nothing"
        assert not run["after_restore"], \
            "a new handshake: the stock path now runs the vmfork chain; update the docs"
