# SPDX-License-Identifier: GPL-2.0
"""make demo: the problem and the fix, side by side.

Two guests boot on the same kernel under the same vmclock hypervisor, one
without vmgen and one with it. Each is saved and restored as two clones
the way Firecracker does it (both clones see the same incremented
counter), and each clone reads 64 samples of getrandom(16) first thing.
Every figure in the report comes from what the guests returned; the demo
fails when any of them is off.
"""

import pytest

from vmgen import ktap
from vmgen.observe import quiesce, restores, shared, uevents
from vmgen.rig import SYSDEV, Group

N = 64


@pytest.fixture(scope="module")
def demo(kernel, request):
    out = {}
    with Group("demo") as grp:
        for kind, opts in (("without", ["--no-driver"]), ("with", [])):
            origin = grp.boot(f"{kind}-vmgen", kernel, *opts)
            quiesce(origin)
            before = origin.counter()
            state = grp.save(origin)
            pair = grp.clones(state, origin, [f"{kind}-1", f"{kind}-2"])
            rows = []
            for c in pair:
                if kind == "with":
                    c.wait("the restore to be seen", lambda c=c: restores(c) >= 1)
                bound = c.ok(f"test -e {SYSDEV}/generation")
                rows.append({
                    "counter": f"{before} -> {c.counter()}",
                    "driver": c.attr("mode") if bound else "none",
                    "restores": restores(c) if bound else 0,
                    "uevents": uevents(c),
                    "samples": c.samples(N),
                })
            out[kind] = rows
            grp.down(*pair, origin)
        out["health"] = grp.check_all()
    report(request.config, out)
    return out


def report(config, out):
    cols = [(k, i) for k in ("without", "with") for i in (0, 1)]
    head = "".join(f"{f'{k} vmgen, clone {i + 1}':>26}" for k, i in cols)
    lines = ["", f"{'':22}{head}"]

    def row(label, fn):
        lines.append(f"{label:22}" + "".join(f"{fn(out[k][i], k, i):>26}" for k, i in cols))

    def sib(r, k, i):
        return f"{shared(r['samples'], out[k][1 - i]['samples'])} of {N}"

    row("counter", lambda r, k, i: r["counter"])
    row("driver", lambda r, k, i: r["driver"])
    row("restores seen", lambda r, k, i: str(r["restores"]))
    row("uevents (udev)", lambda r, k, i: ",".join(map(str, r["uevents"])) or "none")
    row("first getrandom(16)", lambda r, k, i: r["samples"][0][:20] + "..")
    row("shared with sibling", sib)
    lines.append(f"(each clone's first {N} getrandom(16) calls after the restore; "
                 "shared: how many its sibling returned too)")
    for ln in lines:
        ktap.report(config, "# " + ln if ln else "#")
    w = out["with"]
    reseeded = sum(1 for r in w if r["restores"] == 1)
    got_uevent = sum(1 for r in w if len(r["uevents"]) == 1)
    diverged = "yes" if shared(w[0]["samples"], w[1]["samples"]) == 0 else "no"
    control = "shared" if shared(*(r["samples"] for r in out["without"])) else "fresh"
    ktap.report(config, f"vmgen demo: clones=2 reseeded={reseeded} uevents={got_uevent} "
                f"diverged={diverged} control={control}", last=True)


def test_clones_without_vmgen_share_their_output(demo):
    a, b = (r["samples"] for r in demo["without"])
    assert shared(a, b) > 0, "the clones without vmgen shared nothing: the demo " \
        "cannot show the problem"


def test_clones_with_vmgen_share_nothing(demo):
    a, b = (r["samples"] for r in demo["with"])
    assert shared(a, b) == 0, f"{shared(a, b)} of {N} samples shared"


def test_each_clone_with_vmgen_saw_its_restore_once(demo):
    assert [r["restores"] for r in demo["with"]] == [1, 1]


def test_each_clone_with_vmgen_got_one_uevent(demo):
    assert [len(r["uevents"]) for r in demo["with"]] == [1, 1]


def test_every_guest_stayed_healthy(demo):
    assert not demo["health"], "\n".join(demo["health"])
