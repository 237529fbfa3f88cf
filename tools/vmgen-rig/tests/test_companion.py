# SPDX-License-Identifier: GPL-2.0
"""Alongside ptp_vmclock, and vmclock's own userspace interface.

The rig's stand-in for ptp_vmclock (faults/vmclock_standin.c) binds the
vmclock device as ptp_vmclock does: its own ACPI notify handler, and
/dev/vmclockN from an IDA, its probe failing if the name is taken.
vmgenid_vmclock never binds the device: with the stand-in loaded first or
last, a restore must give exactly one reseed and one uevent, the stand-in's
handler must still fire, /dev/vmclock0 must be the stand-in's whenever it is
loaded and the driver's otherwise, and unloading either in either order must
leave no splat. Offered again after the stand-in leaves, /dev/vmclock0 must
not take a minor that the next dynamic misc device (nvme-fabrics) is given.

On Linux 7.x the real ptp_vmclock, from Debian's image, owns the device,
the counter and the notification: the same must hold beside it, in both
load and unload orders, in notify and poll mode and in clones, while its
own /dev/vmclock0 sees each restore too (vmclock-client on it is woken by
poll() and reads the new counter).

vmclock-client reads /dev/vmclock0 as AWS-LC does (mmap, the counter under
seq_count) and as Firecracker's tests do (poll, read): it must see every
restore, woken by poll() when the hypervisor notifies.
"""

import pytest

from conftest import GuestTests
from vmgen import ktap
from vmgen.observe import quiesce, settle
from vmgen.rig import SYSDEV, RigError

KO = "/usr/lib/vmgen/vmgenid_vmclock.ko"
STANDIN = "/usr/lib/vmgen/vmclock_standin.ko"
OWNER = "/sys/bus/platform/devices/AMZNC10C:00"
KST = "/usr/lib/vmgen/kselftest"


def state(g):
    """Who has what: the vmclock device's driver, whether ours watches,
    whose /dev/vmclock0 it is (the device it hangs off; "-" for none, as
    ptp_vmclock's), and the stand-in's handler count."""
    drv, ours, node, standin = g.each(
        f"basename $(readlink {OWNER}/driver) 2>/dev/null",
        f"test -e {SYSDEV}/generation && echo yes",
        "test -e /sys/class/misc/vmclock0 && "
        "{ basename $(readlink /sys/class/misc/vmclock0/device) 2>/dev/null || echo -; }",
        f"cat {OWNER}/notifications 2>/dev/null", check=False)
    return {"driver": drv or None, "ours": ours == "yes", "node": node or None,
            "standin_notes": int(standin) if standin else None}


def restore(g, tag, *opts):
    """Snapshot, restore, and what the guest saw."""
    g.sh("rm -f /run/vmgen/uevents")
    g.savevm(tag)
    before = state(g)
    g.loadvm(tag, *opts)
    r = settle(g, 1)
    return before, r, state(g)


@pytest.mark.kernels("stock", "reference")
class TestAlongsidePtp(GuestTests):
    @pytest.fixture(scope="class")
    def run(self, group, kernel):
        g = group.boot("cp", kernel, "--no-module")
        o = {}
        # Stand-in first: it owns the device and /dev/vmclock0.
        g.sh(f"insmod {STANDIN} && insmod {KO}")
        o["first"] = state(g)
        o["first_said"] = g.kmsg_count("is bound to vmclock_standin, which offers")
        o["first_restore"] = restore(g, "s1")
        # Ours first: it offers /dev/vmclock0 until the stand-in binds.
        g.sh(f"rmmod vmgenid_vmclock; rmmod vmclock_standin; insmod {KO}")
        o["alone"] = state(g)
        g.sh(f"insmod {STANDIN}")
        o["second"] = state(g)
        o["second_said"] = g.kmsg_count("has a driver: /dev/vmclock0 is left to it")
        o["second_restore"] = restore(g, "s2")
        # Unload the stand-in: /dev/vmclock0 is ours again; the next
        # dynamic misc device must get a minor of its own; then ours goes.
        g.sh("rmmod vmclock_standin")
        o["standin_gone"] = state(g)
        o["nvme"] = g.each("modprobe nvme-fabrics 2>&1; echo rc=$?",
                           "stat -c %t:%T /dev/vmclock0 /dev/nvme-fabrics 2>&1", check=False)
        g.sh("rmmod nvme-fabrics; true")
        g.sh("rmmod vmgenid_vmclock")
        o["both_gone"] = state(g)
        # The other unload order: ours first, the stand-in keeps working.
        g.sh(f"insmod {KO} && insmod {STANDIN} && rmmod vmgenid_vmclock")
        n0 = state(g)["standin_notes"]
        g.page("ring")
        if n0 is not None:  # else the stand-in did not bind: a verdict says so
            g.wait("the stand-in's handler",
                   lambda: (state(g)["standin_notes"] or n0) > n0)
        o["ours_gone"] = state(g)
        g.sh("rmmod vmclock_standin")
        # Poll mode: no handler anywhere, the driver polls.
        g.page("init", "--counter", "7", "--no-notify")
        g.sh(f"insmod {STANDIN} && insmod {KO}")
        o["poll_restore"] = restore(g, "s3", "--no-ring")
        o["poll_mode"] = g.attr("mode")
        # Clones of a guest where the stand-in owns the device.
        g.page("init", "--counter", "9")
        g.sh(f"rmmod vmgenid_vmclock; rmmod vmclock_standin; insmod {STANDIN} && insmod {KO}")
        quiesce(g)
        g.sh("rm -f /run/vmgen/uevents")
        state_file = group.save(g)
        o["clones"] = [(settle(c, 1), state(c)) for c in group.clones(
            state_file, g, ["cp-1", "cp-2"])]
        return o

    def test_stand_in_first_owns_device_and_node_while_ours_watches(self, run):
        s = run["first"]
        assert (s["driver"], s["ours"], s["node"]) == ("vmclock_standin", True, "AMZNC10C:00"), s
        assert run["first_said"] == 1, "the driver did not say who offers /dev/vmclockN"

    def test_ours_first_offers_the_node_and_hands_it_over(self, run):
        a, s = run["alone"], run["second"]
        assert (a["driver"], a["ours"], a["node"]) == (None, True, "vmgenid_vmclock"), a
        assert (s["driver"], s["ours"], s["node"]) == ("vmclock_standin", True, "AMZNC10C:00"), s
        assert run["second_said"] == 1, "no word when /dev/vmclock0 was left to the stand-in"

    @pytest.mark.parametrize("order", ["first_restore", "second_restore"])
    def test_a_restore_gives_one_reseed_one_uevent_and_both_handlers_fire(self, run, order):
        before, r, after = run[order]
        assert (r.restores, r.uevents) == (1, [r.counter]), \
            f"restores {r.restores}, uevents {r.uevents}, counter {r.counter}"
        notes = before["standin_notes"], after["standin_notes"]
        assert None not in notes and notes[1] > notes[0], \
            f"the stand-in's handler did not fire: {before} -> {after}"

    def test_the_next_dynamic_misc_device_gets_its_own_minor(self, run):
        """6.1's misc_deregister() leaves a dynamic minor in the structure:
        registered again with it, /dev/vmclock0 holds a minor the next
        dynamic misc device is given too, and that one fails (EEXIST)."""
        loaded, minors = run["nvme"]
        assert loaded.endswith("rc=0"), f"modprobe nvme-fabrics: {loaded}"
        nodes = minors.split()
        assert len(nodes) == 2 and nodes[0] != nodes[1], f"major:minor (hex): {minors}"

    def test_unloading_the_stand_in_gives_the_node_back(self, run):
        s, b = run["standin_gone"], run["both_gone"]
        assert (s["driver"], s["ours"], s["node"]) == (None, True, "vmgenid_vmclock"), s
        assert (b["ours"], b["node"]) == (False, None), b

    def test_unloading_ours_first_leaves_the_stand_in_working(self, run):
        s = run["ours_gone"]
        assert (s["driver"], s["ours"], s["node"]) == ("vmclock_standin", False, "AMZNC10C:00"), s

    def test_poll_mode_beside_the_stand_in(self, run):
        _, r, _ = run["poll_restore"]
        assert run["poll_mode"] == "poll"
        assert (r.restores, r.uevents) == (1, [r.counter]), \
            f"restores {r.restores}, uevents {r.uevents}, counter {r.counter}"

    def test_each_clone_beside_the_stand_in_sees_one_restore(self, run):
        for i, (r, s) in enumerate(run["clones"], 1):
            assert (r.restores, r.uevents) == (1, [r.counter]), f"clone {i}: {r}"
            assert s["driver"] == "vmclock_standin" and s["standin_notes"] >= 1, f"clone {i}: {s}"


PTP = "ptp_vmclock"


def watch(g):
    """Start vmclock-client on /dev/vmclock0: "" or why it did not start
    (a driver in ptp_vmclock's way leaves it no node), for the verdict."""
    try:
        client_start(g)
        return ""
    except RigError as e:
        return f"vmclock-client did not start: {e}"


def seen(g, why):
    return (why, g.counter()) if why else client_result(g)


def watched(g, tag, *opts):
    """A restore, with vmclock-client on /dev/vmclock0 throughout."""
    why = watch(g)
    return (*restore(g, tag, *opts), seen(g, why))


@pytest.mark.kernels("ptp")
class TestBesideTheRealPtpVmclock(GuestTests):
    @pytest.fixture(scope="class")
    def run(self, group, kernel):
        g = group.boot("rp", kernel, "--no-module")
        o = {}
        # ptp_vmclock first: it owns the device and /dev/vmclock0.
        g.sh(f"modprobe {PTP} && insmod {KO}")
        o["first"] = state(g)
        o["first_said"] = g.kmsg_count("is bound to vmclock, which offers")
        o["first_restore"] = watched(g, "s1")
        # Ours first: it offers /dev/vmclock0 until ptp_vmclock binds.
        g.sh(f"rmmod vmgenid_vmclock; rmmod {PTP}; insmod {KO}")
        o["alone"] = state(g)
        g.sh(f"modprobe {PTP}")
        o["second"] = state(g)
        o["second_said"] = g.kmsg_count("has a driver: /dev/vmclock0 is left to it")
        o["second_restore"] = watched(g, "s2")
        # Unload orders: ptp_vmclock first gives the node back to ours;
        # ours first leaves ptp_vmclock's node seeing restores.
        g.sh(f"rmmod {PTP}")
        o["ptp_gone"] = state(g)
        g.sh("rmmod vmgenid_vmclock")
        o["both_gone"] = state(g)
        g.sh(f"insmod {KO} && modprobe {PTP} && rmmod vmgenid_vmclock")
        o["ours_gone"] = state(g)
        why = watch(g)
        g.savevm("s3")
        g.loadvm("s3")
        o["ours_gone_client"] = seen(g, why)
        g.sh(f"rmmod {PTP}")
        # Poll mode: no notification, ptp_vmclock's poll() says POLLHUP.
        g.page("init", "--counter", "7", "--no-notify")
        g.sh(f"modprobe {PTP} && insmod {KO}")
        o["poll_restore"] = watched(g, "s4", "--no-ring")
        o["poll_mode"] = g.attr("mode")
        # Clones of a guest where ptp_vmclock owns the device.
        g.page("init", "--counter", "9")
        g.sh(f"rmmod vmgenid_vmclock; rmmod {PTP}; modprobe {PTP} && insmod {KO}")
        quiesce(g)
        g.sh("rm -f /run/vmgen/uevents")
        why = watch(g)
        state_file = group.save(g)
        o["clones"] = [(settle(c, 1), state(c), seen(c, why)) for c in group.clones(
            state_file, g, ["rp-1", "rp-2"])]
        return o

    @staticmethod
    def sees(client, how="woken by poll"):
        out, counter = client
        assert f"-> {counter}, {how}" in out and f"read: counter {counter}" in out, \
            f"ptp_vmclock's /dev/vmclock0 did not show counter {counter}: {out}"

    def test_ptp_vmclock_first_owns_device_and_node_while_ours_watches(self, run):
        s = run["first"]
        assert (s["driver"], s["ours"], s["node"]) == ("vmclock", True, "-"), s
        assert run["first_said"] == 1, "the driver did not say who offers /dev/vmclockN"

    def test_ours_first_offers_the_node_and_hands_it_over(self, run):
        a, s = run["alone"], run["second"]
        assert (a["driver"], a["ours"], a["node"]) == (None, True, "vmgenid_vmclock"), a
        assert (s["driver"], s["ours"], s["node"]) == ("vmclock", True, "-"), s
        assert run["second_said"] == 1, "no word when /dev/vmclock0 was left to ptp_vmclock"

    @pytest.mark.parametrize("order", ["first_restore", "second_restore"])
    def test_a_restore_gives_one_reseed_one_uevent_and_ptp_vmclock_sees_it(self, run, order):
        _, r, _, client = run[order]
        assert (r.restores, r.uevents) == (1, [r.counter]), \
            f"restores {r.restores}, uevents {r.uevents}, counter {r.counter}"
        self.sees(client)

    def test_unloading_ptp_vmclock_gives_the_node_back(self, run):
        s, b = run["ptp_gone"], run["both_gone"]
        assert (s["driver"], s["ours"], s["node"]) == (None, True, "vmgenid_vmclock"), s
        assert (b["ours"], b["node"]) == (False, None), b

    def test_unloading_ours_first_leaves_ptp_vmclock_working(self, run):
        s = run["ours_gone"]
        assert (s["driver"], s["ours"], s["node"]) == ("vmclock", False, "-"), s
        self.sees(run["ours_gone_client"])

    def test_poll_mode_beside_ptp_vmclock(self, run):
        _, r, _, client = run["poll_restore"]
        assert run["poll_mode"] == "poll"
        assert (r.restores, r.uevents) == (1, [r.counter]), \
            f"restores {r.restores}, uevents {r.uevents}, counter {r.counter}"
        self.sees(client, "seen in the mapping")

    def test_each_clone_beside_ptp_vmclock_sees_one_restore(self, run):
        for i, (r, s, client) in enumerate(run["clones"], 1):
            assert (r.restores, r.uevents) == (1, [r.counter]), f"clone {i}: {r}"
            assert s["driver"] == "vmclock", f"clone {i}: {s}"
            self.sees(client)


def client_start(g):
    g.sh("rm -f /run/vmgen/client.txt; "
         "/usr/lib/vmgen/vmclock-client --watch 150 >/run/vmgen/client.txt 2>&1 &")
    g.wait("the client to map /dev/vmclock0",
           lambda: "start:" in g.sh("cat /run/vmgen/client.txt"))


def client_result(g):
    g.wait("the client to see the restore",
           lambda: "read:" in g.sh("cat /run/vmgen/client.txt") or
           "moved: no" in g.sh("cat /run/vmgen/client.txt"), timeout=60)
    return g.sh("cat /run/vmgen/client.txt"), g.counter()


@pytest.mark.kernels("stock", "reference")
class Client(GuestTests):
    """vmclock-client and the /dev/vmclock0 kselftest where no other driver
    owns the device; across loadvm and across clones."""
    mode = None

    @pytest.fixture(scope="class")
    def run(self, group, kernel):
        g = group.boot("vc", kernel, *(["--no-notify"] if self.mode == "poll" else []))
        o = {"kst": g.sh(f"cd {KST} && ./run_kselftest.sh -t vmgen:vmgen_vmclock_dev",
                         timeout=300)}
        client_start(g)
        g.savevm("s0")
        g.loadvm("s0", *([] if self.mode == "notify" else ["--no-ring"]))
        o["loadvm"] = client_result(g)
        if self.mode == "notify":
            # The hypervisor stops notifying: poll() says so at once, from
            # the flags as they are, not as they were at probe.
            g.page("init", "--counter", str(g.counter()), "--no-notify")
            client_start(g)
            o["hup"] = g.sh("cat /run/vmgen/client.txt; kill $(pidof vmclock-client); true")
            g.page("init", "--counter", str(g.counter()))
        client_start(g)
        state_file = group.save(g)
        o["clones"] = [client_result(c) for c in group.clones(
            state_file, g, ["vc-1", "vc-2"], ring=self.mode == "notify")]
        return o

    def test_vmgen_vmclock_dev_kselftest(self, run):
        problems = ktap.verdicts(run["kst"])
        assert not problems, "; ".join(problems)

    def check(self, out, counter):
        how = "woken by poll" if self.mode == "notify" else "seen in the mapping"
        armed = "armed" if self.mode == "notify" else "hup"
        assert f"poll {armed}" in out, out
        assert f"-> {counter}, {how}" in out and f"read: counter {counter}" in out, out

    def test_the_client_sees_a_loadvm(self, run):
        self.check(*run["loadvm"])

    def test_the_client_sees_the_restore_in_each_clone(self, run):
        for out, counter in run["clones"]:
            self.check(out, counter)


class TestClientNotify(Client):
    mode = "notify"

    def test_poll_says_hup_once_the_hypervisor_stops_notifying(self, run):
        assert "poll hup" in run["hup"], run["hup"]


class TestClientPoll(Client):
    mode = "poll"
