# SPDX-License-Identifier: GPL-2.0
"""The mutant gate: drivers broken on purpose, the way real bugs break
them (tools/vmgen-rig/mutants/*.patch, built by make into kernel folders
mutant-NAME). For each, the tests its header names run on it, and at least
one must fail on a verdict: a failed setup (a guest that did not boot) does
not count as catching it. VMGEN_MUTANTS names the ones to run (all, or a
comma-separated list): make mutants runs them all, make check the two
that stand for the rest within CI's time (no-reseed, the defect the
project exists for; acts-once, the one that once got past the gate).
Ends with "vmgen mutants: killed=K of N"."""

import os
import re
import subprocess

import pytest

from vmgen import ktap, rig as R

DIR = R.HERE / "mutants"


def mutants():
    out = {}
    for p in sorted(DIR.glob("*.patch")):
        head = p.read_text().split("\n---", 1)[0]
        what = re.search(r"^Mutant: (.*)$", head, re.M)
        caught = re.search(r"^Caught-by: (.*)$", head, re.M)
        out[p.stem] = (what.group(1) if what else "?", caught.group(1) if caught else "")
    return out


MUTANTS = mutants()
if os.environ.get("VMGEN_MUTANTS", "all") != "all":
    WANT = os.environ["VMGEN_MUTANTS"].split(",")
    if set(WANT) - set(MUTANTS):
        raise ValueError(f"VMGEN_MUTANTS: no mutant {', '.join(set(WANT) - set(MUTANTS))}; "
                         f"known: all, {', '.join(MUTANTS)}")
    MUTANTS = {n: MUTANTS[n] for n in WANT}
KILLED = {}


def verdict_failures(text):
    """The tests of a KTAP run that failed on a verdict, not in setup."""
    lines, out = text.splitlines(), []
    for i, line in enumerate(lines):
        m = re.match(r"not ok \d+ (\S+)", line)
        if not m:
            continue
        reason = lines[i + 1][2:] if i + 1 < len(lines) and lines[i + 1].startswith("# ") else ""
        if not reason.startswith(("setup failed", "no result")):
            out.append(m.group(1))
    return out


@pytest.fixture(scope="module")
def tally(request):
    yield
    for name, tests in KILLED.items():
        ktap.report(request.config, f"# mutant {name}: " +
                    (f"killed by {', '.join(tests[:3])}" if tests else "SURVIVED"))
    k = sum(1 for t in KILLED.values() if t)
    ktap.report(request.config, f"vmgen mutants: killed={k} of {len(KILLED)}")


@pytest.mark.parametrize("name", list(MUTANTS))
def test_suite_catches_the_mutant(name, tally):
    what, caught_by = MUTANTS[name]
    assert caught_by, f"{name}.patch names no Caught-by tests"
    env = dict(os.environ, VMGEN_KERNELS=f"mutant-{name}")
    with R.step(f"Running '{caught_by}' on mutant {name} ({what})"):
        p = subprocess.run([R.HERE / "suite", "mutant", "-k", caught_by, "-x"],
                           env=env, capture_output=True, text=True, timeout=3600)
    R.log().section(f"mutant {name}", p.stdout[-20000:] + p.stderr[-5000:])
    planned = re.search(r"^1\.\.(\d+)$", p.stdout, re.M)
    assert planned and int(planned.group(1)) > 0, f"'{caught_by}' selects no test"
    KILLED[name] = verdict_failures(p.stdout)
    assert KILLED[name], f"mutant {name} survived: {what}"
