# SPDX-License-Identifier: GPL-2.0
"""Loading the driver: pages it must refuse, each with one line saying
why and a failed insmod; a parameter it must reject; the mode the page's
flag picks; unloading with the handler armed. On kernels where the driver
is a module, which the tests load themselves."""

import pytest

from conftest import GuestTests
from vmgen.observe import settle
from vmgen.rig import SYSDEV

KO = "/usr/lib/vmgen/vmgenid_vmclock.ko"
DRIVER_LINE = r"vmgenid_vmclock"


def unload(g):
    g.sh("rmmod vmgenid_vmclock 2>/dev/null; true")


def insmod(g, *params):
    """Load the driver on a fresh kernel-log mark: (exit status, its lines)."""
    unload(g)
    mark = g.kmsg_last()
    rc = 0 if g.ok(f"insmod {KO} {' '.join(params)}") else 1
    lines = [t for _, t in g.kmsg(mark) if DRIVER_LINE in t and "taint" not in t]
    return rc, lines


def bound(g):
    return g.ok(f"test -e {SYSDEV}/generation")


@pytest.mark.kernels("module")
class TestProbe(GuestTests):
    @pytest.fixture(scope="class")
    def g(self, group, kernel):
        return group.boot("probe", kernel, "--no-module")

    def refused(self, g, why, *page):
        g.page("init", "--counter", "5", *page)
        rc, lines = insmod(g)
        assert rc != 0 and not bound(g), f"loaded anyway; it said: {lines}"
        assert len(lines) == 1 and why in lines[0], \
            f"expected one line saying '{why}', got {lines}"

    def test_refuses_a_bad_magic(self, g):
        self.refused(g, "bad magic 0xdeadbeef", "--magic", "0xdeadbeef")

    def test_refuses_an_unknown_version(self, g):
        self.refused(g, "unsupported version 2", "--version", "2")

    def test_refuses_a_size_beyond_its_resource(self, g):
        self.refused(g, "exceeds the 4096-byte resource", "--size", "8192")

    def test_refuses_a_size_short_of_the_counter(self, g):
        self.refused(g, "no VM generation counter (flags 0x300, size 100)", "--size", "100")

    def test_refuses_a_size_short_of_the_flags(self, g):
        self.refused(g, "size 16 does not cover the flags", "--size", "16")

    def test_refuses_a_page_without_a_counter(self, g):
        """A clock-only vmclock is left to drivers that want the clock."""
        self.refused(g, "no VM generation counter (flags 0x200, size 4096)",
                     "--no-gen-counter")

    @pytest.mark.parametrize("param", ["poll_interval_ms=1", "poll_interval_ms=60001",
                                       "poll_interval_ms=soon"])
    def test_rejects_a_bad_parameter(self, g, param):
        g.page("init", "--counter", "5")
        rc, lines = insmod(g, param)
        assert rc != 0 and not bound(g), f"insmod {param} succeeded"
        assert any(param.split("=")[0] in t for t in lines), \
            f"no message names the parameter: {lines}"

    def test_a_good_page_binds_with_read_only_attributes(self, g):
        g.page("init", "--counter", "5")
        rc, _ = insmod(g)
        out = g.sh(f"cat {SYSDEV}/generation {SYSDEV}/restores {SYSDEV}/mode; "
                   f"stat -c %a {SYSDEV}/generation {SYSDEV}/restores {SYSDEV}/mode")
        assert rc == 0 and out.split() == ["5", "0", "notify", "444", "444", "444"], out

    def test_without_notifications_the_driver_polls(self, g):
        g.page("init", "--counter", "5", "--no-notify")
        insmod(g)
        assert g.attr("mode") == "poll"

    def test_unload_with_the_handler_armed_and_a_doorbell_while_unloaded(self, g):
        g.page("init", "--counter", "5")
        out = g.sh(f"for i in 1 2 3 4 5; do rmmod vmgenid_vmclock 2>/dev/null; "
                   f"insmod {KO} || echo FAIL; done; rmmod vmgenid_vmclock; echo gone")
        g.page("ring")
        rc, _ = insmod(g)
        assert out == "gone" and rc == 0 and bound(g), out


@pytest.mark.kernels("patched", "module")
class TestLateDevice(GuestTests):
    """A vmclock device that appears after the driver loaded, its SSDT
    loaded at run time through ACPI configfs (which Debian's kernels lack):
    loading the driver before it succeeds, and the driver watches the
    device from the moment it appears, as a built-in driver does."""

    @pytest.fixture(scope="class")
    def run(self, group, kernel):
        g = group.boot("late", kernel, "--late-device", "--no-module")
        table = "/sys/kernel/config/acpi/table/vclk"
        o = {"device_before": g.ok("test -e /sys/bus/platform/devices/AMZNC10C:00"),
             "loaded": g.ok(f"insmod {KO}"),
             "bound_before": bound(g)}
        g.sh("mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config; "
             f"mkdir {table} && cat /usr/lib/vmgen/vmclock.aml >{table}/aml")
        g.wait("the driver to watch the device", lambda: bound(g))
        g.page("bump", "--ring")
        o["restore"] = settle(g, 1)
        return o

    def test_the_driver_loads_before_the_device_is_there(self, run):
        assert (run["device_before"], run["loaded"], run["bound_before"]) == \
            (False, True, False), run

    def test_it_watches_the_device_once_it_appears(self, run):
        r = run["restore"]
        assert (r.restores, r.generation, r.uevents) == (1, r.counter, [r.counter]), r
