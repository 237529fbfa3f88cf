# SPDX-License-Identifier: GPL-2.0
"""Fixtures of the vmgen suites (run through tools/vmgen-rig/suite).

- kernel: the guest kernel a test runs on. Tests say which kinds of kernel
  they apply to with @pytest.mark.kernels("patched", ...); they are planned
  once per such kernel of the suite (VMGEN_KERNELS).
- group: the guests of one test class, on one kernel. Every class of guest
  tests derives from GuestTests, whose last test is the health of each guest
  the group used.
"""

import json
import os
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vmgen import ktap, rig as R  # noqa: E402
from vmgen.kernels import KERNELS, mutant_of, suite_kernels  # noqa: E402


def pytest_addoption(parser):
    # Options of pytest's terminal plugin, which the suites turn off (KTAP
    # replaces it); assertion messages and tracebacks still read them.
    for args, kw in ((["--verbose"], dict(action="count", default=0, dest="verbose")),
                     (["--tb"], dict(default="short", dest="tbstyle")),
                     (["--showlocals"], dict(action="store_true", dest="showlocals")),
                     (["--full-trace"], dict(action="store_true", dest="fulltrace"))):
        try:
            parser.addoption(*args, **kw)
        except ValueError:
            pass	# the terminal plugin is on after all


def interrupted(signum, frame):
    # As for ^C: pytest stops, tears every group's guests down, and the
    # plan's remaining tests are reported as failed.
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    R.LOG = R.Log(os.environ.get("VMGEN_LOG", R.BUILD / "logs" / "suite.log"))
    R.sweep()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    config.pluginmanager.register(ktap.Ktap(config, R.LOG), "vmgen-ktap")
    config.addinivalue_line("markers", "kernels(*flags): the kinds of kernel a "
                            "test applies to (stock, patched, module, builtin, debug, vdso, reference)")
    config.addinivalue_line("markers", "full: only in full-length runs (make faults), "
                            "not in make check's quick ones")
    config.addinivalue_line("markers", "after_guests: runs after every in-guest test, "
                            "whose results it reads")


def pytest_generate_tests(metafunc):
    """Plan a test on every kernel it applies to: those of this suite, and
    those of the table it leaves out, as SKIP with the reason."""
    if "kernel" not in metafunc.fixturenames:
        return
    marks = [m for m in metafunc.definition.iter_markers("kernels")]
    flags = [f for m in marks for f in m.args] or ["all"]
    mine = suite_kernels()
    ks = [k for k in mine + [k for k in KERNELS.values() if k not in mine]
          if all(k.has(f) for f in flags)]
    skip = pytest.mark.skip(reason="this suite leaves the kernel out (VMGEN_KERNELS)")
    suite = ktap.file_of(metafunc.module)

    def param(k):
        if k not in mine:
            return pytest.param(k, marks=skip)
        if not k.runs(suite):
            return pytest.param(k, marks=pytest.mark.skip(reason=k.skip_reason))
        return k
    metafunc.parametrize("kernel", [param(k) for k in ks], ids=[k.name for k in ks],
                         scope="class" if metafunc.cls else "module")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """Run each group (a class, on one kernel) together, in the order its
    tests are written, its health test last; groups by file and kernel.
    Host tests come first, then those on the stock kernels, then those on
    each patched kernel in turn (make check builds them meanwhile, in that
    order: tools/vmgen-rig/build-behind), then the after_guests ones."""
    # The mutant gate's first sub-run (test_mutants.py) plans on each kernel
    # only the groups VMGEN_MUTANT_PLAN names for it: {kernel: [file::Class]}.
    plan = json.loads(os.environ.get("VMGEN_MUTANT_PLAN") or "null")
    if plan is not None:
        def planned(it):
            k = kernel_param(it)
            return any(it.nodeid.startswith(g + "::") for g in plan.get(k and k.name, []))
        config.hook.pytest_deselected(items=[it for it in items if not planned(it)])
        items[:] = [it for it in items if planned(it)]
    # A full-length test in a quick run is planned, as SKIP.
    if os.environ.get("VMGEN_FAULTS") == "quick":
        for it in items:
            if it.get_closest_marker("full"):
                it.add_marker(pytest.mark.skip(reason="full length: make faults runs it"))
    first, index = {}, {}
    for i, item in enumerate(items):
        first.setdefault(item.module.__name__, i)
        first.setdefault((item.module.__name__, item.cls), i)
        index[item.nodeid] = i

    order = [k.name for k in suite_kernels()] + list(KERNELS)

    def kernel_of(item):
        k = kernel_param(item)
        return order.index(k.name) if k else -1

    def phase(item):
        k = kernel_param(item)
        if item.get_closest_marker("after_guests"):
            return 2 + len(order)
        if not k or not k.patched:
            return 1 if k else 0
        m = mutant_of(k.name)	# a mutant goes with its reference kernel
        return 2 + order.index(m[1] if m else k.name)

    def written(item):
        fn = getattr(item.function, "__code__", None)
        return fn.co_firstlineno if fn else 0

    items.sort(key=lambda it: (phase(it), first[it.module.__name__],
                               first[it.module.__name__, it.cls], kernel_of(it),
                               it.originalname == "test_guests_healthy",
                               written(it), index[it.nodeid]))


def kernel_param(item):
    params = getattr(item, "callspec", None) and item.callspec.params
    return params.get("kernel") if params else None


# In a mutant's run (suite mutant), a mutant's tests stop at its first
# kill on any of its kernels: a verdict that fails on one and passed on
# that one's reference kernel earlier in the run (each group runs on the
# kernels in VMGEN_KERNELS' order, references first). The rest are planned
# as SKIP, so a killed mutant costs the battery up to that verdict, and a
# survivor all of it. A reference kernel stops too once every mutant it
# stands for in the run is killed.
KILLS = {}	# mutant -> the test that killed it


def note_kill(item, rep):
    k = kernel_param(item)
    m = k and mutant_of(k.name)
    if not m or os.environ.get("VMGEN_SUITE") != "mutant" or rep.when != "call":
        return
    name = ktap.test_name(item)
    ref = item.config.pluginmanager.get_plugin("vmgen-ktap").statuses().get(
        name.replace(k.name, m[1]))
    if ref == "ok" and ktap.is_verdict(name, ktap.short_reason(rep)):
        KILLS.setdefault(m[0], name)


def stands_for(ref):
    """The mutants of this run whose reference kernel is @ref."""
    return {m[0] for m in map(mutant_of, os.environ.get("VMGEN_KERNELS", "").split(","))
            if m and m[1] == ref}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    k = kernel_param(item)
    m = k and mutant_of(k.name)
    if m and m[0] in KILLS:
        pytest.skip(f"the mutant is killed already, by {KILLS[m[0]]}")
    if k and not m and os.environ.get("VMGEN_SUITE") == "mutant":
        mutants = stands_for(k.name)
        if mutants and mutants <= KILLS.keys():
            pytest.skip("every mutant this kernel is the reference of is killed already")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        note_kill(item, rep)
        for grp in getattr(item, "funcargs", {}).values():
            if isinstance(grp, R.Group):
                grp.failed = True


@pytest.fixture(scope="class")
def group(request, kernel):
    name = f"{request.module.__name__.removeprefix('test_')}-" \
        f"{request.node.name.removeprefix('Test').lower()}-{kernel.name}"
    with R.Group(name) as g:
        yield g


class GuestTests:
    """Base of a group of in-guest tests; its last test is guest health."""

    def test_guests_healthy(self, group):
        """Every guest the group used answers its agent, and neither its
        console nor its kernel log shows a splat; taint is clean; on debug
        kernels lockdep is still on and kmemleak finds nothing."""
        problems = group.check_all()
        assert not problems, "\n".join(problems)


@pytest.fixture(scope="session")
def build():
    return R.BUILD


def pytest_sessionfinish(session, exitstatus):
    R.BASES.remove()
