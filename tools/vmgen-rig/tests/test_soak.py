# SPDX-License-Identifier: GPL-2.0
"""make soak: restores over and over, doing what the suites' groups do, to
show that no guest comes to harm from the rig itself.

On each kernel, one guest loops getrandom() on CPU 0 throughout. Each
in-place round arms the restore kselftest (it waits for the uevent), takes
a snapshot, loads it back with the counter bumped and the doorbell rung,
collects the kselftest's verdicts and 64 samples through the agent, and
checks the guest: the agent answers, and no splat (or a register dump
with flags no CPU holds) is in its logs. Each clone round saves the guest,
starts two clones of it, checks both the same way, and stops them.

    VMGEN_SOAK_INPLACE=N   in-place restores per kernel (50)
    VMGEN_SOAK_CLONES=N    clones per kernel, in pairs (26)

A guest that dies ends its kernel's rounds; the report says after how many
restores. Ends with one "vmgen soak" line per kernel.
"""

import os

import pytest

from conftest import GuestTests
from vmgen import ktap
from vmgen.observe import kst_collect as collect, kst_start as start
from vmgen.rig import PIN, READER, RigError

IN_PLACE = int(os.environ.get("VMGEN_SOAK_INPLACE", "50"))
CLONES = int(os.environ.get("VMGEN_SOAK_CLONES", "26"))
LOG = "/run/vmgen/soak.log"


class TestSoak(GuestTests):
    @pytest.fixture(scope="class")
    def run(self, group, kernel, request):
        g = group.boot("soak", kernel)
        g.sh(f"{PIN} {READER} --interval-ms 2 >/dev/null 2>&1 &")
        out = {"inplace": 0, "clones": 0, "problems": []}

        def sick(guest, what):
            problems = guest.health(leaks=False)
            out["problems"] += [f"{what}: {p}" for p in problems]
            return problems

        try:
            for i in range(IN_PLACE):
                start(g, "vmgen_restore", LOG)
                g.savevm("soak")
                g.loadvm("soak")
                wrong = ktap.verdicts(collect(g, "vmgen_restore", LOG))
                out["problems"] += [f"in-place restore #{i + 1}: vmgen_restore: {p}"
                                    for p in wrong]
                g.samples()
                out["inplace"] += 1
                if sick(g, f"in-place restore #{i + 1}"):
                    break
            for j in range(CLONES // 2):
                if out["problems"]:
                    break
                state = group.save(g)
                pair = group.clones(state, g, [f"soak-{j}-1", f"soak-{j}-2"])
                for c in pair:
                    c.samples()
                    out["clones"] += 1
                    sick(c, f"clone {c.name}")
                group.down(*pair)
                g.cont(ring=False)
        except RigError as err:
            out["problems"].append(f"after {out['inplace']} in-place restores and "
                                   f"{out['clones']} clones: {err}")
        n = out["inplace"] + out["clones"]
        per = f"{n / len(out['problems']):.0f}" if out["problems"] else f">{n}"
        ktap.report(request.config, f"vmgen soak {kernel.name}: in-place={out['inplace']} "
                    f"clones={out['clones']} failures={len(out['problems'])} "
                    f"restores-per-failure={per}")
        return out

    def test_every_restore_leaves_a_healthy_guest(self, run):
        assert not run["problems"], "\n".join(run["problems"][:5])

    def test_every_round_ran(self, run):
        assert (run["inplace"], run["clones"]) == (IN_PLACE, CLONES // 2 * 2), \
            f"{run['inplace']} of {IN_PLACE} in-place restores, " \
            f"{run['clones']} of {CLONES // 2 * 2} clones"
