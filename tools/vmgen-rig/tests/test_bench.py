# SPDX-License-Identifier: GPL-2.0
"""make bench: how long a restored clone keeps serving the bytes its
sibling serves, per mechanism, all in one run; and what the patched
kernel's per-output check costs.

Stale outputs: a guest loops getrandom(32) across a save (vmgen_stale), two
clones continue together, and every post-restore sample of clone 1 that
clone 2 also produced is stale. The control (no driver, the counter moves)
must show stale output, or the run measured nothing; the synchronous check
must show none.

Overhead: getrandom(32) calls per second on the patched kernel with the
driver unloaded (nothing registered: the check is a static branch) and
loaded (the check live), in ABBA order (off, on, on, off) so that a drift
in the host's speed cancels out; the ratio is the median over rounds of
calls/s off divided by calls/s on.

    VMGEN_BENCH_ROUNDS=N   ABBA rounds (default 6)
    VMGEN_BENCH_RATE_MS    length of one rate run (default 1000)
    VMGEN_STALE_MS         post-restore sampling window (default 500)
"""

import os
import statistics

import pytest

from vmgen import ktap
from vmgen.kernels import KERNELS
from vmgen.observe import stale_pair
from vmgen.rig import BUILD, READER, Group

ROUNDS = int(os.environ.get("VMGEN_BENCH_ROUNDS", "6"))
RATE_MS = int(os.environ.get("VMGEN_BENCH_RATE_MS", "1000"))
WINDOW_MS = int(os.environ.get("VMGEN_STALE_MS", "500"))
MAX_RATIO = 1.01

MECHANISMS = {
    # name: (kernel, boot options, what it is)
    "none": ("stock-6.1", ["--no-driver"], "control: no driver, the counter moves"),
    "vmgenid": ("stock-6.1", ["--no-driver", "--vmgenid"], "QEMU vmgenid, new GUID per clone"),
    "notify": ("stock-6.1", [], "shim, notify mode (stock 6.1)"),
    "poll": ("stock-6.1", ["--no-notify"], "shim, poll mode, 100 ms (stock 6.1)"),
    "sync": ("patched-6.1-y", [], "patched random.c, synchronous check"),
}
RESULTS = {}


@pytest.fixture(scope="module")
def bench(request):
    grp = Group("bench", BUILD / "logs" / "bench")
    yield grp
    problems = grp.check_all()
    grp.close()
    report(request.config)
    assert not problems, "\n".join(problems)


def report(config):
    rows = [f"#   {'mechanism':9} {'':38} {'samples':>8} {'stale':>8} {'fresh after':>12}"]
    for m, (_, _, what) in MECHANISMS.items():
        s = RESULTS.get(m)
        if s:
            lat = f"{s.fresh_after_us / 1000:.1f} ms" if s.fresh_after_us >= 0 \
                else f">{WINDOW_MS} ms"
            rows.append(f"#   {m:9} {what:38} {len(s.one):>8} {s.shared:>8} {lat:>12}")
    rows.append(f"# (samples: clone 1's getrandom(32) calls in the first {WINDOW_MS} ms after "
                "the restore; stale: how many of them clone 2 returned too)")
    for r in rows:
        ktap.report(config, r)

    def n(m):
        return RESULTS[m].shared if m in RESULTS else "?"
    ktap.report(config, f"vmgen bench stale: vmgenid={n('vmgenid')} notify={n('notify')} "
                f"poll={n('poll')} sync={n('sync')}")
    ratio = RESULTS.get("ratio")
    ktap.report(config, "vmgen bench overhead: ratio=" + (f"{ratio:.3f}" if ratio else "?"))


@pytest.mark.parametrize("mechanism", list(MECHANISMS))
def test_stale_outputs_measured(bench, mechanism):
    kernel, opts, _ = MECHANISMS[mechanism]
    RESULTS[mechanism] = stale_pair(bench, KERNELS[kernel], f"b-{mechanism}", *opts,
                                    window_ms=WINDOW_MS)


def test_control_shows_stale_output(bench):
    s = RESULTS.get("none")
    assert s is not None, "the control did not run"
    assert s.shared > 0, "no stale output without a driver: this run measured nothing"


def test_synchronous_check_leaves_no_stale_output(bench):
    s, c = RESULTS.get("sync"), RESULTS.get("none")
    assert s is not None and c is not None and c.shared > 0, "no valid control"
    assert s.shared == 0, f"{s.shared} stale outputs with the synchronous check"


def rate(g):
    return float(g.sh(f"{READER} --rate {RATE_MS}", timeout=120))


def test_check_costs_at_most_one_percent(bench):
    g = bench.boot("ovh", KERNELS["patched-6.1-m"], "--no-module")
    ko = "/usr/lib/vmgen/vmgenid_vmclock.ko"
    ratios = []
    for i in range(ROUNDS):
        off1 = rate(g)
        g.sh(f"insmod {ko}")
        on1, on2 = rate(g), rate(g)
        g.sh("rmmod vmgenid_vmclock")
        off2 = rate(g)
        ratios.append((off1 + off2) / (on1 + on2))
        bench_log = f"round {i + 1}: off {off1:.0f} on {on1:.0f} on {on2:.0f} off {off2:.0f}"
        from vmgen.rig import log
        log().write(bench_log)
    RESULTS["ratio"] = statistics.median(ratios)
    assert RESULTS["ratio"] <= MAX_RATIO, \
        f"calls/s off / on = {RESULTS['ratio']:.3f} (bound {MAX_RATIO})"
