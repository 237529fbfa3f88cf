# SPDX-License-Identifier: GPL-2.0
"""The mutant gate: drivers broken on purpose, the way real bugs break them
(tools/vmgen-rig/mutants/*.patch), each built on the reference kernels with
everything those carry (make kernel-mutant-NAME.KERNEL): the driver's on
the stock and the patched one, random.c's and the vDSO's on the patched
kernel its "Kernels:" line names.

The selected mutants (VMGEN_MUTANTS: all, or a comma-separated list) run
through the battery (VMGEN_MUTANT_TESTS, a pytest -k expression; every
in-guest test by default) in one run, beside their reference kernels:
those a mutant's "Kernels:" line names, else VMGEN_MUTANT_REFS. A mutant
is killed when a verdict that passed on its reference kernel in the same
run fails on it: a control, guest health, a guest that stopped answering
and a setup that failed do not count. A mutant's tests stop at its
first kill on any of its kernels (the rest are planned as SKIP), so a
survivor is the one that costs the whole battery. A mutant whose kernel
was not built, or on which nothing was planned, is an error, not a
survivor.
make mutants runs them all through everything; make check runs those its
window tests stand for, against the reference results this run already
has.

Ends with "vmgen mutants: killed=K of N".
"""

import os
import re
import subprocess

import pytest

from vmgen import ktap, rig as R

DIR = R.HERE / "mutants"
REFS = os.environ.get("VMGEN_MUTANT_REFS", "stock-6.1,patched-6.1-m").split(",")
TESTS = os.environ.get("VMGEN_MUTANT_TESTS", "")


def mutants():
    """{name: (what it breaks, its reference kernels)}."""
    out = {}
    for p in sorted(DIR.glob("*.patch")):
        head = p.read_text().split("\n---", 1)[0]
        what = re.search(r"^Mutant: (.*)$", head, re.M)
        refs = re.search(r"^Kernels: (.*)$", head, re.M)
        out[p.stem] = (what.group(1) if what else "?", refs.group(1).split() if refs else REFS)
    return out


MUTANTS = mutants()
if os.environ.get("VMGEN_MUTANTS", "all") != "all":
    WANT = os.environ["VMGEN_MUTANTS"].split(",")
    if set(WANT) - set(MUTANTS):
        raise ValueError(f"VMGEN_MUTANTS: no mutant {', '.join(set(WANT) - set(MUTANTS))}; "
                         f"known: all, {', '.join(MUTANTS)}")
    MUTANTS = {n: MUTANTS[n] for n in WANT}
KILLED = {}


def kernel_of(mutant, ref):
    return f"mutant-{mutant}.{ref}"


@pytest.fixture(scope="module")
def battery(request):
    """One run of the battery on every selected mutant's kernels: the
    results of its mutants and of their references."""
    plugin = request.config.pluginmanager.get_plugin("vmgen-ktap")
    mine = plugin.statuses()
    # Reference results this run measured already, if it ran the battery.
    wanted = list(dict.fromkeys(r for _, rs in MUTANTS.values() for r in rs))
    have = [r for r in wanted if any(f"[{r}" in n for n in mine)]
    kernels = [r for r in wanted if r not in have] + \
        [kernel_of(m, r) for m, (_, refs) in MUTANTS.items() for r in refs]
    env = dict(os.environ, VMGEN_KERNELS=",".join(kernels))
    args = [str(R.HERE / "suite"), "mutant"] + (["-k", TESTS] if TESTS else [])
    with R.step(f"Running the battery on {len(MUTANTS)} mutants "
                f"({len(kernels)} kernels{', ' + TESTS if TESTS else ''})"):
        p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=6 * 3600)
    R.log().section("mutant battery", p.stdout[-200000:] + p.stderr[-5000:])
    res = ktap.results(p.stdout)
    refs = {n: st for n, st in mine.items() if any(f"[{r}" in n for r in have)}
    # The sub-run plans the kernels it leaves out as SKIP: not results.
    refs.update({n: st for n, (st, _) in res.items() if st != "skip"})
    yield res, refs
    for name in MUTANTS:
        tests = KILLED.get(name)
        line = f"# mutant {name}: " + ("ERROR (could not run)" if tests is None else
                                       f"killed by {', '.join(tests[:3])}" if tests
                                       else "SURVIVED")
        ktap.report(request.config, line)
    k = sum(1 for t in KILLED.values() if t)
    ktap.report(request.config, f"vmgen mutants: killed={k} of {len(MUTANTS)}")


@pytest.mark.parametrize("name", list(MUTANTS))
def test_suite_catches_the_mutant(name, battery):
    res, refs = battery
    what, mine = MUTANTS[name]
    assert mine, f"mutant {name} names no reference kernel (its Kernels: line)"
    planned = {n: v for n, v in res.items()
               if any(f"[{kernel_of(name, r)}" in n for r in mine)}
    unbuilt = [n for n, (_, why) in planned.items() if "was not built" in why]
    assert planned and not unbuilt, f"mutant {name} could not run: " + (
        f"{len(unbuilt)} tests found no kernel ({unbuilt[0]})" if unbuilt else "nothing planned")
    kills = []
    for n, (status, reason) in planned.items():
        if status != "not ok" or not ktap.is_verdict(n, reason):
            continue
        ref = n
        for r in mine:
            ref = ref.replace(f"[{kernel_of(name, r)}", f"[{r}")
        if refs.get(ref) == "ok":
            kills.append(n)
    KILLED[name] = kills
    assert kills, f"mutant {name} survived: {what}"
