# SPDX-License-Identifier: GPL-2.0
"""KTAP for the vmgen suites, as a pytest plugin.

The plan is printed before any test runs: every collected test is a planned
test. Each gets exactly one result line once its teardown is over; a failure
in setup (a guest that did not boot), in the test or in teardown makes it
"not ok", with the reason as diagnostic lines. A planned test that never got
a result (an interrupted run) counts as failed. The totals come from the
plan, and the run ends with

    N passed, N failed, N skipped

Tracebacks and everything the rig printed go to the suite's log; its path is
printed whenever something failed.
"""

import re
import sys
import time

import pytest

from . import rig


def file_of(module):
    """A test module's short name: test_restore.py is "restore"."""
    return module.__name__.rpartition(".")[2].removeprefix("test_")


def test_name(item):
    """A stable, readable name: module.function[params], no "test_" noise."""
    mod = file_of(item.module)
    cls = item.cls.__name__.removeprefix("Test") + "." if item.cls else ""
    name = item.originalname.removeprefix("test_")
    params = "[" + item.callspec.id + "]" if hasattr(item, "callspec") else ""
    return f"{mod}.{cls}{name}{params}"


class Ktap:
    def __init__(self, config, log):
        self.config = config
        self.log = log
        self.items = []
        self.outcome = {}	# nodeid -> ("ok" | "not ok" | "skip", reason)
        self.number = {}
        self.t0 = time.monotonic()
        self.results = {}	# values a suite reports at the end
        self.spent = {}		# (file, kernel) -> seconds, setup and teardown included

    def emit(self, line):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def diag(self, text):
        for line in str(text).splitlines() or [""]:
            self.emit("# " + line)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session):
        self.items = list(session.items)
        names = {}
        for n, item in enumerate(self.items, 1):
            self.number[item.nodeid] = n
            name = test_name(item)
            if name in names:
                raise pytest.UsageError(f"two planned tests named {name}")
            names[name] = item
        self.emit("KTAP version 1")
        self.emit(f"1..{len(self.items)}")

    def statuses(self):
        """The results so far, by test name: "ok", "not ok" or "skip"."""
        return {test_name(it): self.outcome[it.nodeid][0]
                for it in self.items if it.nodeid in self.outcome}

    def pytest_internalerror(self, excrepr, excinfo):
        # Without pytest's terminal, nothing else would show it.
        self.diag("internal error of the test harness:")
        self.diag(str(excrepr)[-3000:])
        self.emit("Bail out! harness error")

    def pytest_collectreport(self, report):
        if report.failed:
            # A test file that does not even load must not go unnoticed.
            self.diag(f"collection of {report.nodeid} failed:")
            self.diag(str(report.longrepr)[-2000:])
            self.outcome["collect:" + report.nodeid] = ("not ok", "collection failed")

    def pytest_runtest_logreport(self, report):
        if report.nodeid in self.number:
            key = spent_key(self.item(report.nodeid))
            self.spent[key] = self.spent.get(key, 0.0) + report.duration
        prev = self.outcome.get(report.nodeid)
        if report.failed:
            when = {"setup": "setup failed: ", "teardown": "teardown failed: "}
            reason = when.get(report.when, "") + short_reason(report)
            self.log.section(f"FAILED {report.nodeid} ({report.when})",
                             report.longreprtext)
            if not prev or prev[0] != "not ok":
                self.outcome[report.nodeid] = ("not ok", reason)
        elif report.skipped and not prev:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
            self.outcome[report.nodeid] = ("skip", reason.removeprefix("Skipped: "))
        elif report.when == "call" and not prev:
            self.outcome[report.nodeid] = ("ok", "")

    def item(self, nodeid):
        return self.items[self.number[nodeid] - 1]

    def pytest_runtest_logfinish(self, nodeid, location):
        self.result_line(self.item(nodeid))

    def result_line(self, item):
        status, reason = self.outcome.get(item.nodeid, ("not ok", "no result"))
        n, name = self.number[item.nodeid], test_name(item)
        if status == "skip":
            self.emit(f"ok {n} {name} # SKIP {reason}")
        else:
            self.emit(f"{status} {n} {name}")
            if reason:
                self.diag(reason)
        item.ktap_done = True

    def pytest_sessionfinish(self, session, exitstatus):
        # Every planned test has a line, whatever stopped the run.
        for item in self.items:
            if not getattr(item, "ktap_done", False):
                self.outcome.setdefault(item.nodeid, ("not ok", "no result: the run stopped"))
                self.result_line(item)
        counts = {"ok": 0, "not ok": 0, "skip": 0}
        for item in self.items:
            counts[self.outcome[item.nodeid][0]] += 1
        broken = sum(1 for k in self.outcome if k.startswith("collect:"))
        failed = counts["not ok"] + broken
        lines = self.config.stash.get(report_key, [])
        for last, line in lines:
            if not last:
                self.emit(line)
        self.time_report()
        if failed:
            self.emit(f"# log: {self.log.path}")
        self.emit(f"# {len(self.items)} planned, {time.monotonic() - self.t0:.0f}s")
        self.emit(f"{counts['ok']} passed, {failed} failed, {counts['skip']} skipped")
        for last, line in lines:
            if last:
                self.emit(line)
        session.exitstatus = 1 if failed or not self.items else 0

    def time_report(self):
        """Where the run's time went: by kernel, by test file, and by file
        on a kernel, the largest of each here, so that a slow CI run can be
        read from its output; every file on every kernel to the log. A
        fixture's time counts in the phase of the test pytest ran it in."""
        if not self.spent:
            return
        self.log.section("time by file on kernel, seconds", "\n".join(
            f"{sec:8.1f}  {f} on {k}" for (f, k), sec in
            sorted(self.spent.items(), key=lambda kv: -kv[1])))
        for title, pick in (("kernel", lambda k: k[1]), ("file", lambda k: k[0]),
                            ("file on kernel", lambda k: f"{k[0]} on {k[1]}")):
            sums = {}
            for key, sec in self.spent.items():
                sums[pick(key)] = sums.get(pick(key), 0.0) + sec
            top = sorted(sums.items(), key=lambda kv: -kv[1])[:12]
            self.diag(f"time by {title}: " + ", ".join(f"{n} {s:.0f}s" for n, s in top))
        if rig.WAITED:
            self.diag("of which waiting for kernels built behind the suite, in the setup "
                      "of their first test: " + ", ".join(
                          f"{k} {s:.0f}s" for k, s in rig.WAITED.items()))


def spent_key(item):
    """The file and the kernel a test's time is charged to."""
    params = getattr(item, "callspec", None) and item.callspec.params
    k = params.get("kernel") if params else None
    return file_of(item.module), getattr(k, "name", "host")


def short_reason(report):
    """The assertion or exception message, without the traceback."""
    exc = getattr(report.longrepr, "reprcrash", None)
    text = exc.message if exc else str(report.longrepr)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    # pytest's assertion rewriting adds "assert ..." lines after the message.
    head = [ln for ln in lines if not ln.lstrip().startswith(("assert ", "+", "-", "where"))]
    return "\n".join((head or lines)[:6])


# Failures that say nothing about the driver.
NOT_A_VERDICT = re.compile(r"^(setup failed|teardown failed|no result)|did not answer")


def is_verdict(name, reason):
    """Whether a failure of test @name judged the code under test, rather
    than a control, guest health, a guest that stopped answering or a
    setup: only such a failure kills a mutant (test_mutants.py)."""
    test = name.partition("[")[0]
    return "control" not in test and not test.endswith("guests_healthy") \
        and not NOT_A_VERDICT.search(reason)


report_key = pytest.StashKey[list]()


def report(config, line, last=False):
    """Queue a summary line to print just before the totals (or, with
    last, after them: a suite's own verdict line)."""
    config.stash.setdefault(report_key, []).append((last, line))


def results(text):
    """The top-level results of a run's KTAP: {name: (status, reason)}, the
    reason being the first diagnostic line after a "not ok"."""
    lines, out = text.splitlines(), {}
    for i, line in enumerate(lines):
        m = re.match(r"(not ok|ok) \d+ (\S+)(?: # (SKIP))?", line)
        if not m:
            continue
        status = "skip" if m.group(3) else m.group(1)
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        out[m.group(2)] = (status, nxt[2:] if status == "not ok" and nxt.startswith("# ")
                           else "")
    return out


def verdicts(text, skip_ok=False):
    """Read KTAP or TAP that another program printed, nested as the
    kselftest runner nests it ("# " per level). Returns what is wrong with
    it: a missing or unmet plan at any level, a "not ok", a TIMEOUT, or a
    SKIP where skip_ok is false. An empty list means every planned test
    passed."""
    problems = []
    levels = {}		# depth -> [plan, results]
    for raw in text.splitlines():
        depth, line = 0, raw
        while line.startswith("# "):
            depth, line = depth + 1, line[2:]
        m = re.match(r"1\.\.(\d+)$", line)
        if m:
            levels[depth] = [int(m.group(1)), 0]
            continue
        m = re.match(r"(not )?ok (\d+) (.*)$", line)
        if not m or depth not in levels:
            continue
        levels[depth][1] += 1
        name, _, directive = m.group(3).partition(" # ")
        if m.group(1) and "SKIP" not in directive:
            problems.append(f"not ok: {name}" + (f" ({directive})" if directive else ""))
        elif directive.upper().startswith("TIMEOUT"):
            problems.append(f"timed out: {name}")
        elif directive.upper().startswith("SKIP") and not skip_ok:
            problems.append(f"skipped where it must run: {name}: {directive[4:].strip()}")
    if not levels:
        problems.append("no KTAP plan in the output")
    for depth, (plan, seen) in sorted(levels.items()):
        if seen != plan:
            problems.append(f"plan at level {depth} was {plan} tests, {seen} reported")
    return problems
