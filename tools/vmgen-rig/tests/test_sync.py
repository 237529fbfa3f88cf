# SPDX-License-Identifier: GPL-2.0
"""random.c's synchronous check, output path by output path.

A reader started before the save waits, asking the kernel for nothing,
until the hypervisor moves the counter; its read is then the guest's first
use of that output path after the restore. Clones come up in the middle of
the hypervisor's update: the counter has moved but seq_count is still odd,
and no doorbell rings, so the driver cannot read a consistent page and only
random.c's own compare of the bare counter can act. Each pair of clones
tests one path (the new counter picks it).

The control is the same kernel without the driver: nothing is registered
with random.c, and each pair's first reads must be the same, or the test
could not see stale output on that path.
"""

import time

import pytest

from conftest import GuestTests
from vmgen.observe import reseed, restores, shared
from vmgen.rig import GEN_CHANGE, READER

PATHS = ["getrandom", "urandom", "udp"]
N = 16


def first_reads(g):
    g.wait("the reader's samples", lambda: len(
        g.sh("cat /run/vmgen/first.txt").splitlines()) >= N, timeout=60)
    return g.sh("cat /run/vmgen/first.txt").split()


@pytest.mark.kernels("patched")
class TestSync(GuestTests):
    @pytest.fixture(scope="class")
    def run(self, group, kernel):
        out = {}
        for kind, boot in (("control", ["--no-driver"]), ("sync", [])):
            origin = group.boot(kind, kernel, *boot)
            origin.sh(f"{READER} --on-restore --samples {N} --path {','.join(PATHS)} "
                      ">/run/vmgen/first.txt 2>&1 &")
            reseed(origin)
            base = origin.counter()
            state = group.save(origin)
            for i, path in enumerate(PATHS):
                value = base + 1 + (i - base - 1) % len(PATHS)
                pair = group.clones(state, origin, [f"{kind}-{path}-1", f"{kind}-{path}-2"],
                                    "--no-bump", cont=False)
                for c in pair:
                    c.page("begin", "--counter", str(value))
                for c in pair:
                    c.cont(ring=False)
                rec = {"samples": [first_reads(c) for c in pair]}
                if kind == "sync":
                    rec["mid"] = [(restores(c), c.kmsg_count(GEN_CHANGE)) for c in pair]
                    for c in pair:
                        c.page("finish")
                        c.wait("the driver to catch up", lambda c=c: restores(c) == 1)
                    rec["after"] = [(restores(c), c.kmsg_count(GEN_CHANGE)) for c in pair]
                out[kind, path] = rec
                group.down(*pair)
            group.down(origin)
        return out

    @pytest.mark.parametrize("path", PATHS)
    def test_control_first_reads_are_shared_without_the_driver(self, run, path):
        n = shared(*run["control", path]["samples"])
        assert n > 0, f"no {path} sample shared without the driver: the test cannot " \
            "see stale output on this path"

    @pytest.mark.parametrize("path", PATHS)
    def test_first_read_after_an_unfinished_restore_is_fresh(self, run, path):
        ctl = shared(*run["control", path]["samples"])
        n = shared(*run["sync", path]["samples"])
        assert ctl > 0, "the control shows no stale output"
        assert n == 0, f"{n} of {N} first {path} samples shared (control: {ctl})"

    def test_random_c_reseeds_once_before_the_driver_can_act(self, run):
        mids = {p: run["sync", p]["mid"] for p in PATHS}
        assert all(m == [(0, 1), (0, 1)] for m in mids.values()), \
            f"(restores, random.c reseeds) per clone while seq_count is odd: {mids}"

    def test_driver_catches_up_without_a_second_reseed(self, run):
        afters = {p: run["sync", p]["after"] for p in PATHS}
        assert all(a == [(1, 1), (1, 1)] for a in afters.values()), \
            f"(restores, random.c reseeds) per clone once the update ends: {afters}"


@pytest.mark.kernels("patched")
class TestLargeRead(GuestTests):
    """One large read() of /dev/urandom that a snapshot interrupts: the
    bytes the kernel generates after the restore must differ between the
    clones, though the call began before the snapshot. The control, without
    the driver, shows the tails would otherwise be the same."""

    @pytest.fixture(scope="class")
    def run(self, group, kernel):
        out = {}
        for kind, boot in (("control", ["--no-driver"]), ("sync", [])):
            origin = group.boot(f"big-{kind}", kernel, *boot)
            origin.sh(f"{READER} --big-read 32 --path urandom >/run/vmgen/big.txt 2>&1 &")
            time.sleep(2)
            state = group.save(origin)
            pair = group.clones(state, origin, [f"big-{kind}-1", f"big-{kind}-2"])
            for c in pair:
                c.wait("the interrupted read to end", lambda c=c: c.ok(
                    "test -s /run/vmgen/big.txt"), timeout=120)
            out[kind] = [c.sh("cat /run/vmgen/big.txt") for c in pair]
            group.down(*pair, origin)
        return out

    def test_control_tails_are_the_same_without_the_driver(self, run):
        a, b = run["control"]
        assert a == b, f"tails differ without the driver ({a} vs {b}): the test " \
            "cannot show a stale tail"

    def test_tail_generated_after_the_restore_differs(self, run):
        assert len(set(run["control"])) == 1, "the control shows no stale tail"
        a, b = run["sync"]
        assert a != b, f"both clones' tails hash to {a}"
