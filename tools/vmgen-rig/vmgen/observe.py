# SPDX-License-Identifier: GPL-2.0
"""What tests read from a guest after a restore, in one place."""

import time
from dataclasses import dataclass, field

from .rig import GEN_CHANGE, KMSG, READER, SYSDEV, GuestGone, RigError

NOTIFICATIONS = "/sys/kernel/debug/vmgenid_vmclock/notifications"


def shared(a, b):
    """How many samples two guests both returned."""
    return len(set(a) & set(b))


def uevents(g):
    """The generations named by the NEW_VMGENID uevents udev saw, in order
    (the rig's rule appends one line per uevent)."""
    return [int(x) for x in g.sh("cat /run/vmgen/uevents 2>/dev/null; true").split()]


def udev_history(g):
    """What the example rule of tools/udev recorded."""
    return [int(x) for x in g.sh("cat /run/vmgenid/history 2>/dev/null; true").split()]


def restores(g):
    return int(g.attr("restores"))


def notifications(g):
    """The ACPI notifications the driver's handler received (debugfs)."""
    return int(g.sh(f"cat {NOTIFICATIONS}"))


@dataclass
class Restore:
    """A guest as seen once the driver has acted on a restore."""
    counter: int = 0		# the hypervisor's new value
    generation: int = 0		# sysfs
    restores: int = 0
    uevents: list = field(default_factory=list)
    history: list = field(default_factory=list)
    samples: list = field(default_factory=list)
    random_c_reseeds: int = 0	# random.c's own lines, patched kernels
    notifications: int = -1
    rngd: bool = True


def settle(g, want_restores, since=-1, quiet_s=2.0):
    """Wait for the driver to count want_restores, then quiet_s more (a
    second event, if any, would show by then: 20 polls, two backstop
    checks), and read everything a test judges. A driver that never
    counts the restore fails the tests that judge the counts, not the
    setup: a mutant that ignores a restore must be caught by a verdict."""
    try:
        g.wait(f"restores to reach {want_restores}",
               lambda: restores(g) >= want_restores, timeout=30)
    except GuestGone:
        raise
    except RigError:
        pass
    time.sleep(quiet_s)
    r = Restore(counter=g.counter())
    gen, n, ev, hist, notes, samples, kmsg = g.each(
        f"cat {SYSDEV}/generation", f"cat {SYSDEV}/restores",
        "cat /run/vmgen/uevents 2>/dev/null", "cat /run/vmgenid/history 2>/dev/null",
        f"cat {NOTIFICATIONS}", f"{READER} --samples 64", f"{KMSG} {since}")
    r.generation, r.restores = int(gen), int(n)
    r.uevents = [int(x) for x in ev.split()]
    r.history = [int(x) for x in hist.split()]
    r.notifications = int(notes)
    r.samples = samples.split()
    r.random_c_reseeds = kmsg.count(GEN_CHANGE)
    require(len(r.samples) == 64, f"{g.name}: {len(r.samples)} samples, not 64")
    return r


def reseed(g):
    """Reseed now, so that only a restore can explain shared output, not
    the age of the key (6.1 reseeds on use once it is older than uptime/2
    in the first two minutes)."""
    g.sh(f"{READER} --reseed")


def wait_file(g, path, timeout=30):
    g.wait(f"{path} to appear", lambda: g.ok(f"test -e {path}"), timeout=timeout)


def require(cond, why):
    if not cond:
        raise RigError(why)


__all__ = ["shared", "uevents", "udev_history", "restores", "Restore", "settle",
           "reseed", "wait_file", "require", "SYSDEV"]


KST = "/usr/lib/vmgen/kselftest"


@dataclass
class Stale:
    """vmgen_stale's post-restore samples from two clones of one save."""
    one: list		# (microseconds since clone 1's first sample, hex)
    two: list
    logs: list		# the runner's output in each clone

    @property
    def shared(self):
        """Clone 1's samples that clone 2 returned too."""
        theirs = {h for _, h in self.two}
        return sum(1 for _, h in self.one if h in theirs)

    @property
    def fresh_after_us(self):
        """When clone 1 first returned something clone 2 did not (-1: never)."""
        theirs = {h for _, h in self.two}
        return next((t for t, h in self.one if h not in theirs), -1)


def stale_pair(group, kernel, name, *boot, window_ms=500, clone_opts=(), vdso=False):
    """Boot a guest looping getrandom(32) (vmgen_stale), through the vDSO if
    @vdso, save it while it loops, continue two clones together, and return
    their samples."""
    g = group.boot(name, kernel, *boot)
    g.sh(f"cd {KST} && VMGEN_RESTORE_TIMEOUT=150 VMGEN_STALE_MS={window_ms} "
         f"VMGEN_STALE_VDSO={int(vdso)} "
         f"VMGEN_READY_FILE=/run/vmgen/stale.ready VMGEN_SAMPLES_FILE=/run/vmgen/stale.txt "
         f"./run_kselftest.sh -t vmgen:vmgen_stale >/run/vmgen/stale.log 2>&1 &")
    wait_file(g, "/run/vmgen/stale.ready")
    reseed(g)
    state = group.save(g)
    pair = group.clones(state, g, [f"{name}-1", f"{name}-2"], *clone_opts)
    samples, logs = [], []
    for c in pair:
        c.wait("vmgen_stale to finish", lambda c=c: c.ok(
            "grep -qE '^(not )?ok [0-9]+ selftests: vmgen: vmgen_stale' /run/vmgen/stale.log"),
            timeout=150)
        logs.append(c.sh("cat /run/vmgen/stale.log"))
        rows = [ln.split() for ln in c.sh("cat /run/vmgen/stale.txt", timeout=120).splitlines()]
        samples.append([(int(t), h) for t, h in rows])
    require(samples[0] and samples[1], f"no post-restore samples from {name}'s clones")
    group.down(*pair)
    return Stale(samples[0], samples[1], logs)


WG = "/usr/lib/vmgen/wg-pair"


def wg_handshake_after(g, t):
    """Poke the tunnel; true once a's latest handshake is later than t."""
    g.sh(f"{WG} poke")
    return int(g.sh(f"{WG} handshake") or 0) > t


def wg_up(g):
    """A WireGuard tunnel between two namespaces of g; its first handshake."""
    g.sh(f"{WG} setup")
    g.wait("a first WireGuard handshake", lambda: wg_handshake_after(g, 0), timeout=30)
    return int(g.sh(f"{WG} handshake"))


def wg_new_handshake(g, t, within):
    """Whether a handshake later than t happens within that many seconds."""
    try:
        g.wait("a new handshake", lambda: wg_handshake_after(g, t), timeout=within)
        return True
    except RigError as err:
        if "did not happen" in str(err):
            return False
        raise
