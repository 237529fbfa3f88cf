# SPDX-License-Identifier: GPL-2.0
"""The kselftests of tools/testing/selftests/vmgen, run in the guests the
way the kernel runs them (run_kselftest.sh), read as KTAP: every planned
test must report ok, a runner TIMEOUT fails, and a SKIP fails too, since
these guests have the device."""

import pytest

from conftest import GuestTests
from vmgen import ktap
from vmgen.observe import KST, kst_collect as collect, kst_start as start, quiesce

class TestKselftest(GuestTests):
    @pytest.fixture(scope="class")
    def run(self, group, kernel):
        g = group.boot("kst", kernel)
        o = {"sysfs": g.sh(f"cd {KST} && ./run_kselftest.sh -t vmgen:vmgen_sysfs",
                           timeout=300)}
        start(g, "vmgen_restore", "/run/vmgen/kst.log")
        quiesce(g)
        g.savevm("s0")
        g.loadvm("s0")
        o["loadvm"] = collect(g, "vmgen_restore", "/run/vmgen/kst.log")
        start(g, "vmgen_restore", "/run/vmgen/kst.log")
        quiesce(g)
        state = group.save(g)
        pair = group.clones(state, g, ["kst-1", "kst-2"])
        o["clones"] = [collect(c, "vmgen_restore", "/run/vmgen/kst.log") for c in pair]
        return o

    def test_vmgen_sysfs(self, run):
        problems = ktap.verdicts(run["sysfs"])
        assert not problems, "; ".join(problems)

    def test_vmgen_restore_across_loadvm(self, run):
        problems = ktap.verdicts(run["loadvm"])
        assert not problems, "; ".join(problems)

    def test_vmgen_restore_in_each_clone(self, run):
        problems = [f"clone {i}: {p}" for i, out in enumerate(run["clones"], 1)
                    for p in ktap.verdicts(out)]
        assert not problems, "; ".join(problems)
