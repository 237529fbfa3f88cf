# SPDX-License-Identifier: GPL-2.0
"""Clones: one guest saved to a state file, restored by several QEMUs the
way Firecracker starts clones. Pairs start paused and continue together.

The control pair is restored unannounced: its clones must return the same
bytes, or the rig could not show the problem at all. Announced clones must
then share none of their post-restore output, each counting one restore and
sending one uevent; with the random counter strategy each sees its own
counter.
"""

import time

import pytest

from conftest import GuestTests
from vmgen.observe import reseed, restores, settle, shared
from vmgen.rig import READER


class Clones(GuestTests):
    cpu = "max"

    @pytest.fixture(scope="class")
    def run(self, group, kernel):
        origin = group.boot("o", kernel, "--cpu", self.cpu)
        o = {"arch_rng": origin.sh("grep -cwE 'rdrand|rdseed' /proc/cpuinfo; true"),
             "warned": origin.kmsg_count("no CPU RNG: clones of one snapshot")}
        reseed(origin)
        # 6.12 also reseeds from a timer, every uptime/2 in the first two
        # minutes. A pair that resumes just before it fires reseeds on its
        # own and shows nothing, so the control may be taken again from a
        # later save; the announced pairs come from the save whose control
        # was measured last.
        for attempt in range(3):
            if attempt:
                origin.cont(ring=False)
                time.sleep(3)
            state = group.save(origin)
            pair = group.clones(state, origin, ["control-1", "control-2"],
                                "--no-bump", "--no-ring", ring=False)
            o["control"] = [g.samples() for g in pair]
            group.down(*pair)
            if shared(*o["control"]):
                break
        pairs = {"increment": ["--strategy", "increment"],
                 "random": ["--strategy", "random"]}
        for kind, opts in pairs.items():
            if kind == "random" and self.cpu != "max":
                continue
            pair = group.clones(state, origin, [f"{kind}-1", f"{kind}-2"], *opts)
            o[kind] = [settle(g, 1) for g in pair]
            group.down(*pair)
        return o

    def test_control_unannounced_clones_share_output(self, run):
        assert shared(*run["control"]) > 0, \
            "two unannounced clones shared nothing: this rig cannot show the problem"

    def test_announced_clones_share_nothing(self, run):
        ctl = shared(*run["control"])
        a, b = run["increment"]
        assert ctl > 0, "the control shows no stale output"
        n = shared(a.samples, b.samples)
        assert n == 0, f"{n} of 64 samples shared (control: {ctl})"

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
        origin.sh(f"{READER} --after-reseed 500 --samples 64 >/run/vmgen/det.txt 2>&1 &")
        reseed(origin)
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
