# SPDX-License-Identifier: GPL-2.0
"""make bench: how long a restored clone keeps serving the bytes its
sibling serves, per mechanism, all in one run; and what the patched
kernel's per-output check costs.

Stale outputs: a guest loops getrandom(32) across a save (vmgen_stale), two
clones continue together, and every post-restore sample of clone 1 that
clone 2 also produced is stale. The control (no driver, the counter moves)
must show stale output, or the run measured nothing; the synchronous check
must show none. The same again through the vDSO's getrandom() on 6.12,
and on 7.3 (trixie-backports' stock kernel, Debian's linux-source-7.3
patched), where Debian 13's glibc serves getrandom() from the vDSO.

Overhead: getrandom(32) calls per second on a patched kernel with the
driver unloaded (nothing registered: the check is a static branch, and
in the vDSO a load of zero) and loaded (the check live), in ABBA order
(off, on, on, off); the ratio is the median over rounds of calls/s off
divided by calls/s on. The syscall on 6.1, the vDSO on 6.12 and 7.3. The guest
counts instructions for time (rig boot --icount): on this shared TCG
host one wall-clock run differs from the next by up to a third, which
would hide any cost below that, while instructions per call repeat to
within a fraction of a percent.

    VMGEN_BENCH_ROUNDS=N   ABBA rounds (default 4)
    VMGEN_BENCH_RATE_MS    length of one rate run, in guest time (default 1000)
    VMGEN_STALE_MS         post-restore sampling window (default 500)
"""

import os
import statistics

import pytest

from vmgen import ktap
from vmgen.kernels import KERNELS
from vmgen.observe import KST, stale_pair
from vmgen.rig import PIN, READER, Group, log

ROUNDS = int(os.environ.get("VMGEN_BENCH_ROUNDS", "4"))
RATE_MS = int(os.environ.get("VMGEN_BENCH_RATE_MS", "1000"))
WINDOW_MS = int(os.environ.get("VMGEN_STALE_MS", "500"))
MAX_RATIO = 1.01
# A vDSO call is about 540 guest instructions against the syscall's 4000,
# so the check's eight weigh 1.5% there: a guard against it growing, not
# a claim that it is free.
MAX_RATIO_VDSO = 1.02

MECHANISMS = {
    # name: (kernel, boot options, through the vDSO, what it is)
    "none": ("stock-6.1", ["--no-driver"], False, "control: no driver, the counter moves"),
    "vmgenid": ("stock-6.1", ["--no-driver", "--vmgenid"], False,
                "QEMU vmgenid, new GUID per clone"),
    "notify": ("stock-6.1", [], False, "shim, notify mode (stock 6.1)"),
    "poll": ("stock-6.1", ["--no-notify"], False, "shim, poll mode, 100 ms (stock 6.1)"),
    "sync": ("patched-6.1-m", [], False, "patched random.c, synchronous check"),
    "vdso-none": ("stock-6.12", ["--no-driver"], True, "vDSO control: no driver (6.12)"),
    "vdso-notify": ("stock-6.12", [], True, "vDSO, shim, notify mode (stock 6.12)"),
    "vdso-sync": ("patched-6.12-m", [], True, "vDSO, patched, reads the counter"),
    "vdso7-none": ("stock-trixie-7", ["--no-driver"], True, "vDSO control: no driver (7.3)"),
    "vdso7-notify": ("stock-trixie-7", [], True, "vDSO, shim, notify mode (stock 7.3)"),
    "vdso7-sync": ("patched-7.3-m", [], True, "vDSO, patched 7.3, reads the counter"),
}
# The three paths the controls and the synchronous check are judged on.
PATHS = ["", "vdso-", "vdso7-"]
VDSO_RATE = f"VMGEN_STALE_VDSO=1 VMGEN_STALE_RATE_MS={RATE_MS} {PIN} {KST}/vmgen/vmgen_stale"
RATES = {
    # name: (kernel, the rate command, bound on off/on)
    "syscall": ("patched-6.1-m", f"{PIN} {READER} --rate {RATE_MS}", MAX_RATIO),
    "vdso": ("patched-6.12-m", VDSO_RATE, MAX_RATIO_VDSO),
    "vdso7": ("patched-7.3-m", VDSO_RATE, MAX_RATIO_VDSO),
}
RESULTS = {}


@pytest.fixture(scope="module")
def bench(request):
    with Group("bench") as grp:
        yield grp


def report(config):
    rows = [f"#   {'mechanism':11} {'':38} {'samples':>8} {'stale':>8} {'fresh after':>12}"]
    for m, (_, _, _, what) in MECHANISMS.items():
        s = RESULTS.get(m)
        if s:
            lat = f"{s.fresh_after_us / 1000:.1f} ms" if s.fresh_after_us >= 0 \
                else f">{WINDOW_MS} ms"
            rows.append(f"#   {m:11} {what:38} {len(s.one):>8} {s.shared:>8} {lat:>12}")
    rows.append(f"# (samples: clone 1's getrandom(32) calls in the first {WINDOW_MS} ms after "
                "the restore; stale: how many of them clone 2 returned too)")
    for r in rows:
        ktap.report(config, r)

    def n(m):
        return RESULTS[m].shared if m in RESULTS else "?"

    def ratio(r):
        return f"{RESULTS[r]:.3f}" if r in RESULTS else "?"
    ktap.report(config, f"vmgen bench stale: vmgenid={n('vmgenid')} notify={n('notify')} "
                f"poll={n('poll')} sync={n('sync')}")
    ktap.report(config, f"vmgen bench overhead: ratio={ratio('syscall')}")
    ktap.report(config, f"vmgen bench vdso: stock={n('vdso-notify')} patched={n('vdso-sync')} "
                f"ratio={ratio('vdso')}")
    ktap.report(config, f"vmgen bench vdso 7.3: stock={n('vdso7-notify')} "
                f"patched={n('vdso7-sync')} ratio={ratio('vdso7')}")


@pytest.mark.parametrize("mechanism", list(MECHANISMS))
def test_stale_outputs_measured(bench, mechanism):
    kernel, opts, vdso, _ = MECHANISMS[mechanism]
    RESULTS[mechanism] = stale_pair(bench, KERNELS[kernel], f"b-{mechanism}", *opts,
                                    window_ms=WINDOW_MS, vdso=vdso)


@pytest.mark.parametrize("path", PATHS)
def test_control_shows_stale_output(bench, path):
    s = RESULTS.get(path + "none")
    assert s is not None, "the control did not run"
    assert s.shared > 0, "no stale output without a driver: this run measured nothing"


@pytest.mark.parametrize("path", PATHS)
def test_synchronous_check_leaves_no_stale_output(bench, path):
    s, c = RESULTS.get(path + "sync"), RESULTS.get(path + "none")
    assert s is not None and c is not None and c.shared > 0, "no valid control"
    assert s.shared == 0, f"{s.shared} stale outputs with the synchronous check"


@pytest.mark.parametrize("path", list(RATES))
def test_check_costs_little(bench, path):
    kernel, cmd, bound = RATES[path]
    g = bench.boot(f"ovh-{path}", KERNELS[kernel], "--no-module", "--icount")
    ko = "/usr/lib/vmgen/vmgenid_vmclock.ko"
    ratios = []
    g.sh(cmd, timeout=120)	# warm up: the first run pays for page faults
    for i in range(ROUNDS):
        off1 = float(g.sh(cmd, timeout=120))
        # Each load and unload is followed by a run that is not counted:
        # udev handles the driver's events meanwhile, and the first vDSO
        # call after the probe's reseed takes the syscall.
        g.sh(f"insmod {ko} && {cmd}", timeout=120)
        on1, on2 = float(g.sh(cmd, timeout=120)), float(g.sh(cmd, timeout=120))
        g.sh(f"rmmod vmgenid_vmclock && {cmd}", timeout=120)
        off2 = float(g.sh(cmd, timeout=120))
        ratios.append((off1 + off2) / (on1 + on2))
        log().write(f"{path} round {i + 1}: off {off1:.0f} on {on1:.0f} on {on2:.0f} "
                    f"off {off2:.0f}")
    bench.down(g)	# an idle guest still costs the next one host time
    RESULTS[path] = statistics.median(ratios)
    assert RESULTS[path] <= bound, f"calls/s off / on = {RESULTS[path]:.3f} (bound {bound})"


def test_guests_healthy(bench, request):
    """Every guest the bench used answered to the end, without a splat."""
    report(request.config)
    problems = bench.check_all()
    assert not problems, "\n".join(problems)
