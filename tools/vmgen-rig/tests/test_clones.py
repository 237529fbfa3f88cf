# SPDX-License-Identifier: GPL-2.0
"""Clones: one guest saved to a state file, restored by several QEMUs the
way Firecracker starts clones. Pairs start paused and continue together.

The control pair is restored the same way, counter bump and doorbell
included, from a save taken with the driver unloaded: its clones must
return the same bytes, or the rig could not show the problem at all. With
the driver, clones must then share none of their post-restore output, each
counting one restore and sending one uevent; with the random counter
strategy each sees its own counter. What a uevent handler reads (the rig's
udev rule samples getrandom() when the uevent comes) must differ too: the
uevent comes after the reseed.
"""

import time

import pytest

from conftest import GuestTests
from vmgen.observe import quiesce, restores, settle, shared
from vmgen.rig import KO, PIN, READER, check_samples

UEVENT_SAMPLE = "/run/vmgen/uevent-sample"


class Clones(GuestTests):
    cpu = "max"

    @pytest.fixture(scope="class")
    def run(self, group, kernel):
        origin = group.boot("o", kernel, "--cpu", self.cpu, "--no-module")
        o = {"arch_rng": origin.sh("grep -cwE 'rdrand|rdseed' /proc/cpuinfo; true")}
        # A reseed just before each save also puts off 6.12's own, which
        # comes every uptime/2 in the first two minutes.
        quiesce(origin)
        state = group.save(origin)
        pair = group.clones(state, origin, ["control-1", "control-2"])
        o["control"] = [g.samples() for g in pair]
        # What the uevent handler would read, had nothing reseeded.
        o["control_handler"] = [g.samples(16) for g in pair]
        group.down(*pair)
        origin.cont(ring=False)
        mark = origin.kmsg_last()
        origin.sh(f"insmod {KO}")
        o["warned"] = origin.kmsg_count("no CPU RNG: clones of one snapshot", mark)
        quiesce(origin)
        state = group.save(origin)
        pairs = {"increment": ["--strategy", "increment"],
                 "random": ["--strategy", "random"]}
        for kind, opts in pairs.items():
            if kind == "random" and self.cpu != "max":
                continue
            pair = group.clones(state, origin, [f"{kind}-1", f"{kind}-2"], *opts)
            o[kind] = [settle(g, 1) for g in pair]
            o[kind, "handler"] = [check_samples(g.name, g.sh(f"cat {UEVENT_SAMPLE} 2>&1"), 16)
                                  for g in pair]
            group.down(*pair)
        return o

    def test_control_clones_without_the_driver_share_output(self, run):
        assert shared(*run["control"]) > 0, \
            "two clones without the driver shared nothing: this rig cannot show the problem"

    def test_announced_clones_share_nothing(self, run):
        ctl = shared(*run["control"])
        a, b = run["increment"]
        assert ctl > 0, "the control shows no stale output"
        n = shared(a.samples, b.samples)
        assert n == 0, f"{n} of 64 samples shared (control: {ctl})"

    def test_the_uevent_handler_reads_fresh_output(self, run):
        """The uevent comes after the reseed: what its handler draws
        differs between clones, where the same draw without a reseed (the
        control's) is the same."""
        ctl = shared(*run["control_handler"])
        got = shared(*run["increment", "handler"])
        assert ctl > 0, "the control's handler-time samples differ: no reseed needed"
        assert got == 0, f"the clones' uevent handlers drew {got} of 16 samples alike " \
            f"(control: {ctl})"

    def test_each_clone_counts_one_restore_and_sends_one_uevent(self, run):
        for i, r in enumerate(run["increment"], 1):
            assert (r.restores, r.generation, r.uevents) == (1, r.counter, [r.counter]), \
                f"clone {i}: restores {r.restores}, generation {r.generation}, " \
                f"uevents {r.uevents}, counter {r.counter}"


class TestClones(Clones):
    """-cpu max: RDRAND, as most cloud CPUs have."""

    def test_probe_does_not_warn_of_a_missing_cpu_rng(self, run):
        assert run["warned"] == 0

    def test_random_strategy_gives_each_clone_its_own_counter(self, run):
        a, b = run["random"]
        assert a.counter != b.counter and (a.generation, b.generation) == (a.counter, b.counter)
        assert shared(a.samples, b.samples) == 0


@pytest.mark.kernels("reference")
class TestClonesNoArchRng(Clones):
    """-cpu qemu64: neither RDRAND nor RDSEED, so only what the guest mixes
    in separates the clones."""
    cpu = "qemu64"

    def test_guest_has_no_arch_rng(self, run):
        assert run["arch_rng"] == "0", "qemu64 guest lists rdrand or rdseed"

    def test_probe_says_once_what_keeps_clones_apart(self, run):
        assert run["warned"] == 1, f"{run['warned']} warnings of no CPU RNG"


@pytest.mark.kernels("stock", "reference")
class TestDeterministicClones(GuestTests):
    """What separates clones when nothing else does. QEMU counts
    instructions for time (rig boot --icount), so clones of one save read
    the same cycle counter; the CPU has neither RDRAND nor RDSEED; the
    driver polls (a timer, not a doorbell from outside, wakes it); and a
    reader started before the save samples getrandom() the moment the
    driver has acted, before anything from outside reaches the guest. Then
    only what the hypervisor writes into the vmclock page can make two
    clones differ.

    Firecracker increments the counter, so on its own the counter carries
    nothing unique: such clones stay identical, which is why hypervisors
    should use a fresh random value per restore (--strategy random), or at
    least refresh the page's clock fields (--clock), which the driver mixes
    in with the rest of the page. The control's restore updates the page but
    not the counter: its reader samples 500 ms after that, and the clones
    must agree."""

    @pytest.fixture(scope="class")
    def run(self, group, kernel):
        origin = group.boot("d", kernel, "--cpu", "qemu64", "--icount", "--no-notify")
        origin.sh(f"{PIN} {READER} --after-reseed 500 --samples 64 >/run/vmgen/det.txt 2>&1 &")
        quiesce(origin)
        state = group.save(origin)
        o = {}
        same = str(origin.counter())
        for kind, bump in {"control": ["--counter", same],
                           "increment": ["--strategy", "increment"],
                           "clock": ["--strategy", "increment", "--clock"],
                           "random": ["--strategy", "random"]}.items():
            pair = group.clones(state, origin, [f"{kind}-1", f"{kind}-2"], "--no-bump",
                                cont=False)
            for g in pair:
                g.page("bump", *bump)
                g.cont(ring=False)
            # Not a word to the clones until their readers are done: every
            # command the agent runs draws on the same crng.
            time.sleep(5)
            o[kind] = []
            for g in pair:
                g.wait("the reader's samples", lambda g=g: len(
                    g.sh("cat /run/vmgen/det.txt").split()) >= 64, timeout=60)
                o[kind].append((g.sh("cat /run/vmgen/det.txt").split(), restores(g)))
            group.down(*pair)
        return o

    def shared(self, run, kind):
        (a, _), (b, _) = run[kind]
        return shared(a, b)

    def test_control_clones_are_identical(self, run):
        assert self.shared(run, "control") == 64, \
            "unannounced clones differ: something outside them is not deterministic"

    def test_every_announced_clone_saw_its_restore(self, run):
        seen = {k: [n for _, n in run[k]] for k in ("increment", "clock", "random")}
        assert all(v == [1, 1] for v in seen.values()), f"restores per clone: {seen}"

    def test_an_incremented_counter_alone_does_not_separate_them(self, run):
        """The documented limit: the same counter, the same cycles."""
        assert self.shared(run, "control") == 64, "the control is not deterministic"
        assert self.shared(run, "increment") > 0, \
            "clones with the same counter and page differ: update the admin guide"

    def test_refreshed_clock_fields_separate_them(self, run):
        assert self.shared(run, "control") == 64, "the control is not deterministic"
        assert self.shared(run, "clock") == 0

    def test_a_random_counter_separates_them(self, run):
        assert self.shared(run, "control") == 64, "the control is not deterministic"
        assert self.shared(run, "random") == 0


@pytest.mark.kernels("module")
class TestLoadedAfterARestore(GuestTests):
    """A restore that comes before the driver loads, as it does for a udev-
    loaded module on a guest restored early in its boot: the counter's value
    at load tells a restore from a boot, so the driver reseeds at probe
    whatever it reads, and announces nothing (it cannot tell). The control
    is the same clones, the driver never loaded: they share output."""

    @pytest.fixture(scope="class")
    def run(self, group, kernel):
        origin = group.boot("late", kernel, "--no-module")
        quiesce(origin)
        state = group.save(origin)
        o = {}
        for kind in ("control", "loaded"):
            pair = group.clones(state, origin, [f"{kind}-1", f"{kind}-2"])
            if kind == "loaded":
                for g in pair:
                    g.sh(f"insmod {KO}")
                o["counts"] = [(restores(g), g.sh("cat /run/vmgen/uevents 2>/dev/null; true"))
                               for g in pair]
            o[kind] = [g.samples() for g in pair]
            group.down(*pair)
        return o

    def test_control_clones_without_the_driver_share_output(self, run):
        assert shared(*run["control"]) > 0, "the control shows no stale output"

    def test_a_driver_loaded_after_the_restore_reseeds_at_probe(self, run):
        ctl, n = shared(*run["control"]), shared(*run["loaded"])
        assert ctl > 0, "the control shows no stale output"
        assert n == 0, f"{n} of 64 samples shared after the driver loaded (control: {ctl})"

    def test_nothing_is_announced_for_it(self, run):
        assert run["counts"] == [(0, ""), (0, "")], f"(restores, uevents): {run['counts']}"
