# SPDX-License-Identifier: GPL-2.0
"""No stale output on a patched kernel: vmgen_stale loops getrandom(32)
across a save, two clones continue together, and every post-restore sample
clone 1 returned that clone 2 returned too is stale.

The control is the same kernel with the driver kept out (not loaded, or not
initialised when built in): nothing tells random.c of the restore, and the
clones must share output, or the test could not see a stale window."""

import pytest

from conftest import GuestTests
from vmgen import ktap
from vmgen.observe import KST, stale_pair


@pytest.mark.kernels("patched")
class TestStale(GuestTests):
    @pytest.fixture(scope="class")
    def run(self, group, kernel):
        return {"control": stale_pair(group, kernel, "ctl", "--no-driver"),
                "sync": stale_pair(group, kernel, "sync")}

    def test_control_without_the_driver_shares_output(self, run):
        c = run["control"]
        assert c.shared > 0, f"none of {len(c.one)} samples shared without the driver"

    def test_synchronous_check_shares_nothing(self, run):
        c, s = run["control"], run["sync"]
        assert c.shared > 0, "the control shows no stale output"
        assert s.shared == 0, f"{s.shared} of {len(s.one)} post-restore samples " \
            f"shared (control: {c.shared} of {len(c.one)})"

    def test_vmgen_stale_passes_in_each_clone(self, run):
        problems = [p for out in run["sync"].logs for p in ktap.verdicts(out)]
        assert not problems, "; ".join(problems)


class PartsLikeTheVdso(GuestTests):
    """The verdicts on output whose state lives in userspace and is renewed
    when the kernel's crng generation moves: the control (no driver) must
    share output; with the driver, the clones must part: on a patched
    kernel at once (the vDSO reads the counter itself), on a stock one once
    the driver's reseed has landed. run gives "control" and "driver"."""
    what = "vDSO"

    def test_control_without_the_driver_shares_output(self, run):
        c = run["control"]
        assert c.shared > 0, \
            f"none of {len(c.one)} {self.what} samples shared without the driver"

    def test_clones_part_with_the_driver(self, run, kernel):
        c, d = run["control"], run["driver"]
        assert c.shared > 0, f"the control shows no stale {self.what} output"
        if kernel.patched:
            assert d.shared == 0, f"{d.shared} of {len(d.one)} post-restore {self.what} " \
                f"samples shared (control: {c.shared} of {len(c.one)})"
        else:
            assert d.fresh_after_us >= 0, f"the clones' {self.what} output never parted in " \
                f"{len(d.one)} samples (control: {c.shared} shared)"


@pytest.mark.kernels("vdso")
class TestStaleVdso(PartsLikeTheVdso):
    """The vDSO's getrandom() (6.11 and later), called directly."""

    @pytest.fixture(scope="class")
    def run(self, group, kernel):
        return {"control": stale_pair(group, kernel, "vctl", "--no-driver", vdso=True),
                "driver": stale_pair(group, kernel, "vdso", vdso=True)}

    def test_vmgen_stale_passes_in_each_clone(self, run):
        problems = [p for out in run["driver"].logs for p in ktap.verdicts(out)]
        assert not problems, "; ".join(problems)


@pytest.mark.kernels("patched", "vdso")
class TestStaleVdsoUnannounced(PartsLikeTheVdso):
    """The vDSO's own check alone: the clones continue without the doorbell,
    so the kernel hears of the restore only when it next draws or when the
    driver's backstop next reads the counter, up to a second later."""
    what = "unannounced vDSO"

    @pytest.fixture(scope="class")
    def run(self, group, kernel):
        return {"control": stale_pair(group, kernel, "uctl", "--no-driver", vdso=True,
                                      ring=False),
                "driver": stale_pair(group, kernel, "uvdso", vdso=True, ring=False)}


@pytest.mark.kernels("trixie", "vdso")
class TestStaleGlibc(PartsLikeTheVdso):
    """What ordinary programs get on Debian 13: glibc 2.41's getrandom(),
    which is the vDSO's on 6.11 and later. vmgen_stale's default loop
    calls it, as any program would; a process that has called it holds
    glibc's vDSO state in a droppable mapping ("dp" in smaps), which shows
    that glibc took the vDSO's path. Then the vDSO's verdicts."""
    what = "glibc"

    @pytest.fixture(scope="class")
    def run(self, group, kernel):
        g = group.boot("glibc", kernel)
        dp = g.sh(f"cd {KST}/vmgen && VMGEN_STALE_RATE_MS=3000 ./vmgen_stale >/dev/null & "
                  "sleep 1; grep -c '^VmFlags:.* dp' /proc/$!/smaps; wait", check=False)
        group.down(g)
        return {"droppable": dp.split()[0] if dp.split() else "",
                "control": stale_pair(group, kernel, "gctl", "--no-driver"),
                "driver": stale_pair(group, kernel, "glib")}

    def test_glibc_getrandom_is_the_vdsos(self, run):
        assert run["droppable"].isdigit() and int(run["droppable"]) >= 1, \
            f"no droppable mapping in a process that called getrandom(): " \
            f"'{run['droppable']}'; glibc did not take the vDSO's path"
