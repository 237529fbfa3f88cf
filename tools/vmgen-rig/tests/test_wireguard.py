# SPDX-License-Identifier: GPL-2.0
"""WireGuard, the vmfork notifier chain's best-known user, on a patched
kernel: it drops its keypairs when the chain runs, so after a restore the
next packet starts a new handshake; with the keys kept, none is due for
120 s (REKEY_AFTER_TIME). The control is the same restore unannounced: the
keys must survive it, or a new handshake could have other causes (a clock
jump). Stock kernels: see test_dkms.py."""

import time

import pytest

from conftest import GuestTests
from vmgen.observe import wg_new_handshake, wg_up


@pytest.mark.kernels("patched", "module")
class TestWireGuard(GuestTests):
    @pytest.fixture(scope="class")
    def run(self, group, kernel):
        # Under TCG the TSC follows the host's clock, so after loadvm
        # boottime jumps and WireGuard expires its keys by age: HPET follows
        # QEMU's virtual clock, which stops while the VM does.
        g = group.boot("wg", kernel, "--append", "clocksource=hpet")
        hs0 = wg_up(g)
        time.sleep(6)	# handshake initiations: one per 5 s (REKEY_TIMEOUT)
        g.savevm("s0")
        g.loadvm("s0", "--no-bump", "--no-ring")
        control = wg_new_handshake(g, hs0, within=15)
        g.loadvm("s0")
        return {"control": control, "restore": wg_new_handshake(g, hs0, within=30)}

    def test_control_unannounced_restore_keeps_the_keys(self, run):
        assert not run["control"], "a new handshake after an unannounced restore"

    def test_a_restore_drops_the_keys(self, run):
        assert not run["control"], "the control lost its keys too"
        assert run["restore"], "no new handshake within 30 s of the restore"
