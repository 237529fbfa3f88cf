# SPDX-License-Identifier: GPL-2.0
"""Restores in place: one snapshot, loaded again and again in one QEMU.

The control is the same restore, counter bump and doorbell included, of a
snapshot taken with the driver unloaded: it must hand out the same bytes
twice, or a "restores differ" verdict would prove nothing. With the driver,
restores must then share nothing, each counted once, with one uevent
naming the new counter; and a restore of a snapshot taken after an earlier
restore must be acted on too.

The guest counts instructions for time (rig boot --icount). Otherwise its
clock follows the host's across an in-place loadvm under TCG, jumping by
however long the snapshot waited, and a reseed the kernel had scheduled
for that span (6.12's comes every uptime/2 in the first two minutes) makes
the control part on its own.
"""

import pytest

from conftest import GuestTests
from vmgen.observe import quiesce, settle, shared
from vmgen.rig import KO


class InPlace(GuestTests):
    mode = None

    @pytest.fixture(scope="class")
    def run(self, group, kernel):
        mode = self.mode
        g = group.boot("ip", kernel, "--no-module", "--icount",
                       *(["--no-notify"] if mode == "poll" else []))
        ring = [] if mode == "notify" else ["--no-ring"]
        g.sh("rngd 2>/dev/null; true")
        quiesce(g)
        g.savevm("c0")
        o = {"control": []}
        for _ in range(2):
            g.loadvm("c0", *ring)
            o["control"].append(g.samples())
        g.sh(f"insmod {KO}")
        o["mode"] = g.attr("mode")
        quiesce(g)
        since = g.kmsg_last()
        g.savevm("s0")
        o["restores"] = []
        for _ in range(2):
            g.loadvm("s0", *ring)
            r = settle(g, 1, since)
            r.rngd = g.ok("pidof rngd")
            o["restores"].append(r)
        g.savevm("s1")
        g.loadvm("s1", *ring)
        o["chain"] = settle(g, 2)
        return o

    def test_driver_runs_in_the_mode_the_page_asks_for(self, run):
        assert run["mode"] == self.mode

    def test_control_restores_without_the_driver_share_output(self, run):
        n = shared(*run["control"])
        assert n > 0, "two restores of one snapshot without the driver shared nothing: " \
            "this rig cannot show stale output, so no divergence verdict holds"

    def test_announced_restores_share_nothing(self, run):
        ctl = shared(*run["control"])
        n = shared(run["restores"][0].samples, run["restores"][1].samples)
        assert ctl > 0, "the control shows no stale output"
        assert n == 0, f"{n} of 64 samples shared after two announced restores " \
            f"(control: {ctl})"

    def test_each_restore_is_counted_once(self, run):
        for i, r in enumerate(run["restores"], 1):
            assert (r.restores, r.generation) == (1, r.counter), \
                f"restore #{i}: restores {r.restores}, generation {r.generation}, " \
                f"hypervisor counter {r.counter}"

    def test_each_restore_sends_one_uevent_naming_the_new_counter(self, run):
        for i, r in enumerate(run["restores"], 1):
            assert r.uevents == [r.counter], \
                f"restore #{i}: uevents {r.uevents}, counter {r.counter}"

    def test_example_udev_rule_records_the_new_counter(self, run):
        for i, r in enumerate(run["restores"], 1):
            assert r.history == [r.counter], \
                f"restore #{i}: /run/vmgenid/history {r.history}, counter {r.counter}"

    def test_a_restore_after_a_restore_is_acted_on(self, run):
        first, c = run["restores"][1], run["chain"]
        assert c.restores == 2 and c.generation == c.counter, \
            f"restores {c.restores}, generation {c.generation}, counter {c.counter}"
        assert c.uevents == [first.counter, c.counter], f"uevents {c.uevents}"

    @pytest.mark.kernels("patched")
    def test_random_c_reseeds_once_per_restore(self, run):
        counts = [r.random_c_reseeds for r in run["restores"]]
        assert counts == [1, 1], f"random.c's reseed lines per restore: {counts}"

    def test_rngd_survives_restores(self, run):
        assert all(r.rngd for r in run["restores"]), "rngd is gone"


class TestNotify(InPlace):
    """The hypervisor advertises notifications and rings after each restore.
    How soon the driver acts on them is test_window.py's to judge."""
    mode = "notify"


class TestPoll(InPlace):
    """No notifications: the driver polls."""
    mode = "poll"
