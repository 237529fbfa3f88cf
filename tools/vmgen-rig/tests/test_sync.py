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

import re

import pytest

from conftest import GuestTests
from vmgen.observe import require, quiesce, restores, shared
from vmgen.rig import GEN_CHANGE, PIN, READER, check_samples

# The syscall, a read of /dev/urandom, get_random_bytes() (uuid), and the
# batched get_random_u32() and get_random_u64(); the four widths of the
# batches are one macro.
PATHS = ["getrandom", "urandom", "uuid", "udp", "aslr"]
N = 16
BIG_MB = 16


def first_reads(g, path):
    g.wait("the reader's samples", lambda: len(
        g.sh("cat /run/vmgen/first.txt").splitlines()) >= N, timeout=60)
    return check_samples(g.name, g.sh("cat /run/vmgen/first.txt"), N, path)


@pytest.mark.kernels("patched")
class TestSync(GuestTests):
    @pytest.fixture(scope="class")
    def run(self, group, kernel):
        out = {}
        for kind, boot in (("control", ["--no-driver"]), ("sync", [])):
            origin = group.boot(kind, kernel, *boot)
            origin.sh(f"{PIN} {READER} --on-restore --samples {N} --path {','.join(PATHS)} "
                      ">/run/vmgen/first.txt 2>&1 &")
            quiesce(origin)
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
                rec = {"samples": [first_reads(c, path) for c in pair]}
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


class LargeReads(GuestTests):
    """Large reads in the middle of their calls at the snapshot, several
    megabytes a call: on each CPU two readers, one through getrandom() and
    one through /dev/urandom. Each call's copy waits in a page fault near
    its end until the counter moves (vmgen-reader's big_read()), so the
    save finds every call in its loop, with its ChaCha state made from the
    old key. After the restore, whichever goes on first reseeds, and the
    others, on that CPU or another, must not finish their calls from the
    old key for being second: each reader's bytes generated after the
    restore (the call's last 64 KB) must differ between two clones. The
    control, without the driver, shows that they would otherwise be the
    same.

    A reader that only spans the restore is not enough: a call may end
    before the save and its task wait, preempted on the way back to user
    space, to read the counter after the restore. On a kernel with lazy
    preemption (7.x) that is where a task is mostly preempted, and such a
    call's bytes are all from before the save."""
    smp = 2

    @pytest.fixture(scope="class")
    def run(self, group, kernel):
        readers = [(cpu, path) for cpu in range(self.smp) for path in ("getrandom", "urandom")]
        files = " ".join(f"/run/vmgen/big-{cpu}-{path}.txt" for cpu, path in readers)
        out = {}
        for kind, boot in (("control", ["--no-driver"]), ("sync", [])):
            origin = group.boot(f"big-{kind}", kernel, "--smp", str(self.smp), *boot)
            for cpu, path in readers:
                origin.sh(f"taskset -c {cpu} {READER} --big-read {BIG_MB} --path {path} "
                          f">/run/vmgen/big-{cpu}-{path}.txt 2>&1 &")
            origin.wait("every reader's call to wait near its end", lambda: origin.ok(
                f"for f in {files}; do grep -qx waiting $f || exit 1; done"), timeout=300)
            state = group.save(origin)
            pair = group.clones(state, origin, [f"big-{kind}-1", f"big-{kind}-2"])
            for c in pair:
                c.wait("every reader to end", lambda c=c: not c.ok("pidof vmgen-reader"),
                       timeout=300)
            out[kind] = {r: [c.sh(f"cat /run/vmgen/big-{r[0]}-{r[1]}.txt") for c in pair]
                         for r in readers}
            group.down(*pair, origin)
        bad = [o for k in out for outs in out[k].values() for o in outs
               if not re.fullmatch(r"waiting\n[0-9a-f]{16}", o.strip())]
        require(not bad, f"not a hash of a tail after waiting: {bad[:1]}")
        return {k: {r: [o.split()[-1] for o in outs] for r, outs in v.items()}
                for k, v in out.items()}

    def test_control_tails_are_the_same_without_the_driver(self, run):
        differ = [r for r, (a, b) in run["control"].items() if a != b]
        assert not differ, f"tails differ without the driver for {differ}: the test " \
            "cannot show a stale tail"

    def test_every_tail_generated_after_the_restore_differs(self, run):
        same = [r for r, (a, b) in run["sync"].items() if a == b]
        assert all(a == b for a, b in run["control"].values()), \
            "the control shows no stale tail"
        assert not same, f"(cpu, path) whose clones generated the same tail: {same}"


@pytest.mark.kernels("patched")
class TestLargeReads(LargeReads):
    """Two vCPUs, as the suites' guests have."""


@pytest.mark.full
@pytest.mark.kernels("patched")
class TestLargeReadsOneCpu(LargeReads):
    smp = 1


@pytest.mark.full
@pytest.mark.kernels("patched")
class TestLargeReadsFourCpus(LargeReads):
    smp = 4
