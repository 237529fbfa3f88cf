# SPDX-License-Identifier: GPL-2.0
"""The kselftests of tools/testing/selftests/vmgen, run in the guests the
way the kernel runs them (run_kselftest.sh), read as KTAP: every planned
test must report ok, a runner TIMEOUT fails, and a SKIP fails too, since
these guests have the device."""

import pytest

from conftest import GuestTests
from vmgen import ktap
from vmgen.observe import reseed, wait_file

KST = "/usr/lib/vmgen/kselftest"


def start(g, test, log, timeout=120):
    """Start a selftest that waits for a restore; return once it is armed."""
    g.sh(f"rm -f /run/vmgen/{test}.ready; cd {KST} && VMGEN_RESTORE_TIMEOUT={timeout} "
         f"VMGEN_READY_FILE=/run/vmgen/{test}.ready "
         f"./run_kselftest.sh -t vmgen:{test} >{log} 2>&1 &")
    wait_file(g, f"/run/vmgen/{test}.ready")


def collect(g, test, log):
    """The runner's output once it reported the test, ok or not."""
    g.wait(f"{test} to finish",
           lambda: g.ok(f"grep -qE '^(not )?ok [0-9]+ selftests: vmgen: {test}' {log}"),
           timeout=200)
    return g.sh(f"cat {log}")


class TestKselftest(GuestTests):
    @pytest.fixture(scope="class")
    def run(self, group, kernel):
        g = group.boot("kst", kernel)
        o = {"sysfs": g.sh(f"cd {KST} && ./run_kselftest.sh -t vmgen:vmgen_sysfs",
                           timeout=300)}
        start(g, "vmgen_restore", "/run/vmgen/kst.log")
        reseed(g)
        g.savevm("s0")
        g.loadvm("s0")
        o["loadvm"] = collect(g, "vmgen_restore", "/run/vmgen/kst.log")
        start(g, "vmgen_restore", "/run/vmgen/kst.log")
        reseed(g)
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
