# SPDX-License-Identifier: GPL-2.0
"""The mutant gate: drivers broken on purpose, the way real bugs break them
(tools/vmgen-rig/mutants/*.patch), each built on the reference kernels with
everything those carry (make kernel-mutant-NAME.KERNEL): the driver's on
the stock and the patched one, random.c's and the vDSO's on the patched
kernel its "Kernels:" line names.

The selected mutants (VMGEN_MUTANTS: all, or a comma-separated list) run
through the battery (VMGEN_MUTANT_TESTS, a pytest -k expression; every
in-guest test by default) beside their reference kernels: those a
mutant's "Kernels:" line names, else VMGEN_MUTANT_REFS. A mutant is
killed when a verdict that passed on its reference kernel in the same
sub-run fails on it: a control, guest health, a guest that stopped
answering and a setup that failed do not count. A mutant's tests stop at
its first kill on any of its kernels (the rest are planned as SKIP).

The whole battery takes hours on two cores, so make mutants runs it in two
sub-runs. The first runs only the groups each mutant's "Killed-by:" line
names, on its kernels, and the union of them on the references. The
second runs the whole battery on every mutant the first did not kill, so
a wrong or missing Killed-by line costs time, not a verdict; the report
says which mutants needed it. A mutant whose kernel was not built, or on
which nothing was planned, is an error, not a survivor.
make mutants runs them all; make check runs those its window tests stand
for, through those tests alone (VMGEN_MUTANT_TESTS), in one sub-run
against the reference results this run already has.

Ends with "vmgen mutants: killed=K of N".
"""

import json
import os
import re
import subprocess
from collections import namedtuple

import pytest

from vmgen import ktap, rig as R

DIR = R.HERE / "mutants"
REFS = os.environ.get("VMGEN_MUTANT_REFS", "stock-6.1,patched-6.1-m").split(",")
TESTS = os.environ.get("VMGEN_MUTANT_TESTS", "")
# What a patch says of itself: what it breaks, its reference kernels, and
# the test groups (file.py::TestClass) that kill it.
Mutant = namedtuple("Mutant", "what refs killers")


def mutants():
    out = {}
    for p in sorted(DIR.glob("*.patch")):
        head = p.read_text().split("\n---", 1)[0]

        def field(key):
            m = re.search(rf"^{key}: (.*)$", head, re.M)
            return m.group(1) if m else ""
        out[p.stem] = Mutant(field("Mutant") or "?", field("Kernels").split() or REFS,
                             field("Killed-by").split())
    return out


MUTANTS = mutants()
# make check's mutants are judged against the reference results of its
# own in-guest tests.
pytestmark = pytest.mark.after_guests
if os.environ.get("VMGEN_MUTANTS", "all") != "all":
    WANT = os.environ["VMGEN_MUTANTS"].split(",")
    if set(WANT) - set(MUTANTS):
        raise ValueError(f"VMGEN_MUTANTS: no mutant {', '.join(set(WANT) - set(MUTANTS))}; "
                         f"known: all, {', '.join(MUTANTS)}")
    MUTANTS = {n: MUTANTS[n] for n in WANT}
KILLED = {}	# mutant -> (the verdicts that killed it, the sub-run)


def kernel_of(mutant, ref):
    return f"mutant-{mutant}.{ref}"


def sub_run(names, have, phase, plan=None):
    """One sub-run of the battery (suite mutant) on mutants @names and
    their references, less those in @have: its results, by test name."""
    refs = list(dict.fromkeys(r for n in names for r in MUTANTS[n].refs))
    kernels = [r for r in refs if r not in have] + \
        [kernel_of(n, r) for n in names for r in MUTANTS[n].refs]
    env = dict(os.environ, VMGEN_KERNELS=",".join(kernels), VMGEN_MUTANT_PHASE=phase)
    env.pop("VMGEN_MUTANT_PLAN", None)
    if plan:
        env["VMGEN_MUTANT_PLAN"] = json.dumps(plan)
    args = [str(R.HERE / "suite"), "mutant"] + (["-k", TESTS] if TESTS else [])
    what = "the groups each one's Killed-by line names" if plan else \
        TESTS or "the whole battery"
    with R.step(f"Running {what} on {len(names)} mutants ({len(kernels)} kernels)"):
        p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=6 * 3600)
    R.log().section(f"mutant battery, {phase}", p.stdout[-200000:] + p.stderr[-5000:])
    return ktap.results(p.stdout)


def killer_plan(names):
    """What the first sub-run runs: on each mutant's kernels the groups its
    Killed-by line names, on each reference kernel all of theirs."""
    plan = {}
    for n in names:
        for r in MUTANTS[n].refs:
            plan[kernel_of(n, r)] = MUTANTS[n].killers
            plan.setdefault(r, [])
            plan[r] = list(dict.fromkeys(plan[r] + MUTANTS[n].killers))
    return plan


def kills(name, res, refs):
    """The verdicts of @res that failed on mutant @name's kernels and
    passed on its references (@refs); None if nothing ran on them."""
    mine = MUTANTS[name].refs
    planned = {n: v for n, v in res.items()
               if any(f"[{kernel_of(name, r)}" in n for r in mine)}
    unbuilt = [n for n, (_, why) in planned.items() if "was not built" in why]
    if unbuilt:
        raise AssertionError(f"mutant {name} could not run: {len(unbuilt)} tests found "
                             f"no kernel ({unbuilt[0]})")
    if not any(st != "skip" for st, _ in planned.values()):
        return None
    out = []
    for n, (status, reason) in planned.items():
        if status != "not ok" or not ktap.is_verdict(n, reason):
            continue
        ref = n
        for r in mine:
            ref = ref.replace(f"[{kernel_of(name, r)}", f"[{r}")
        if refs.get(ref) == "ok":
            out.append(n)
    return out


def ref_results(res, mine, have):
    refs = {n: st for n, st in mine.items() if any(f"[{r}" in n for r in have)}
    # A sub-run plans the kernels it leaves out as SKIP: not results.
    refs.update({n: st for n, (st, _) in res.items() if st != "skip"})
    return refs


@pytest.fixture(scope="module")
def battery(request):
    """The battery on every selected mutant's kernels, in at most two
    sub-runs; fills KILLED."""
    plugin = request.config.pluginmanager.get_plugin("vmgen-ktap")
    mine = plugin.statuses()
    # Reference results this run measured already, if it ran the battery.
    wanted = list(dict.fromkeys(r for m in MUTANTS.values() for r in m.refs))
    have = [r for r in wanted if any(f"[{r}" in n for n in mine)]
    errors = {}
    left = list(MUTANTS)
    for phase in ("named", "whole"):
        names = [n for n in left if MUTANTS[n].killers and not TESTS] \
            if phase == "named" else left
        if not names:
            continue
        res = sub_run(names, have, phase, killer_plan(names) if phase == "named" else None)
        refs = ref_results(res, mine, have)
        for n in names:
            try:
                k = kills(n, res, refs)
            except AssertionError as e:
                errors[n] = str(e)
                continue
            if k:
                KILLED[n] = (k, phase)
            elif k is None and phase == "whole":
                errors[n] = f"mutant {n} could not run: nothing planned on its kernels"
        left = [n for n in left if n not in KILLED and n not in errors]
    yield errors
    for name, m in MUTANTS.items():
        k, phase = KILLED.get(name, ([], ""))
        line = f"# mutant {name}: " + (
            "ERROR (could not run)" if name in errors else
            "SURVIVED" if not k else
            f"killed by {', '.join(k[:3])}" if phase == "named" or TESTS else
            f"killed by {', '.join(k[:3])} (the whole battery: its Killed-by "
            f"{' '.join(m.killers) or 'line is missing'} did not)")
        ktap.report(request.config, line)
    ktap.report(request.config, f"vmgen mutants: killed={len(KILLED)} of {len(MUTANTS)}")


@pytest.mark.parametrize("name", list(MUTANTS))
def test_suite_catches_the_mutant(name, battery):
    assert MUTANTS[name].refs, f"mutant {name} names no reference kernel (its Kernels: line)"
    assert name not in battery, battery.get(name)
    assert name in KILLED, f"mutant {name} survived: {MUTANTS[name].what}"
