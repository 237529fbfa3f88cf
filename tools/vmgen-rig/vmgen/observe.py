# SPDX-License-Identifier: GPL-2.0
"""What tests read from a guest after a restore, in one place."""

import re
import time
from dataclasses import dataclass, field
from functools import cached_property

from .rig import GEN_CHANGE, KMSG, PIN, READER, SYSDEV, GuestGone, RigError, check_samples

# Longer than a backstop period and a uevent gap: a second reseed or uevent
# for one change would show by then.
QUIET_S = 1.2


def shared(a, b):
    """How many samples two guests both returned."""
    return len(set(a) & set(b))


def uevents(g):
    """The generations named by the NEW_VMGENID uevents udev saw, in order
    (the rig's rule appends one line per uevent), once udev is done."""
    return [int(x) for x in g.sh("udevadm settle --timeout=30; "
                                 "cat /run/vmgen/uevents 2>/dev/null; true").split()]


def udev_history(g):
    """What the example rule of tools/udev recorded."""
    return [int(x) for x in g.sh("cat /run/vmgenid/history 2>/dev/null; true").split()]


def ged_interrupts(g):
    """The doorbell's interrupts so far (the GED line of /proc/interrupts):
    how many notifications the hypervisor's rings became."""
    line = g.sh("grep ACPI:Ged /proc/interrupts")
    return sum(int(x) for x in line.split()[1:] if x.isdigit())


def restores(g):
    return int(g.attr("restores"))


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
    rngd: bool = True


def settle(g, want_restores, since=-1, timeout=10):
    """Wait for the driver to count want_restores, then QUIET_S more, and
    read everything a test judges. A driver that never counts the restore
    fails the tests that judge the counts, not the setup: a mutant that
    ignores a restore must be caught by a verdict. How soon it counts is
    for the window tests (test_window.py) to judge."""
    try:
        g.wait(f"restores to reach {want_restores}",
               lambda: restores(g) >= want_restores, timeout=timeout)
    except GuestGone:
        raise
    except RigError:
        pass
    time.sleep(QUIET_S)
    r = Restore(counter=g.counter())
    gen, n, ev, hist, samples, kmsg = g.each(
        f"cat {SYSDEV}/generation", f"cat {SYSDEV}/restores",
        "udevadm settle --timeout=30; cat /run/vmgen/uevents 2>/dev/null",
        "cat /run/vmgenid/history 2>/dev/null",
        f"{PIN} {READER} --samples 64", f"{KMSG} {since}")
    r.generation, r.restores = int(gen), int(n)
    r.uevents = [int(x) for x in ev.split()]
    r.history = [int(x) for x in hist.split()]
    r.samples = check_samples(g.name, samples, 64)
    r.random_c_reseeds = kmsg.count(GEN_CHANGE)
    return r


def quiesce(g):
    """Reseed now and, where the kernel also reseeds on a timer (6.11 and
    later, every uptime/2 whole seconds in the first two minutes, then every
    minute), wait for that one: then no reseed of the kernel's own comes for
    a while, and only a restore can explain output that clones do not share.
    6.1 reseeds on use once the key is older than that interval, which the
    reseed puts off. The reader first waits for 4 s of uptime, from which
    that while is at least 2 s. Under --icount an idle guest gets there at
    once."""
    g.sh(f"{READER} --quiesce {g.kernel.rng_vvar}", timeout=200)


def wait_file(g, path, timeout=30):
    g.wait(f"{path} to appear", lambda: g.ok(f"test -e {path}"), timeout=timeout)


def require(cond, why):
    if not cond:
        raise RigError(why)


__all__ = ["shared", "uevents", "udev_history", "restores", "Restore", "settle",
           "quiesce", "wait_file", "require", "SYSDEV"]


KST = "/usr/lib/vmgen/kselftest"


STALE = "/run/vmgen/stale"
STALE_ROW = re.compile(r"(\d+) ([0-9a-f]{16})")


@dataclass
class Stale:
    """vmgen_stale's post-restore samples from two clones of one save."""
    one: list		# (microseconds since clone 1's first sample, hex)
    two: list
    logs: list		# vmgen_stale's KTAP in each clone

    @cached_property
    def shared(self):
        """Clone 1's samples that clone 2 returned too."""
        theirs = {h for _, h in self.two}
        return sum(1 for _, h in self.one if h in theirs)

    @staticmethod
    def parted(mine, theirs):
        """mine's first sample after the last one theirs also drew, if both
        drew more after it; -1 if one of them stopped while they shared."""
        where = {h: i for i, (_, h) in enumerate(theirs)}
        last = max((i for i, (_, h) in enumerate(mine) if h in where), default=-1)
        if last + 1 == len(mine) or (last >= 0 and where[mine[last][1]] + 1 == len(theirs)):
            return -1
        return mine[last + 1][0]

    @cached_property
    def fresh_after_us(self):
        """When the clones stopped returning each other's output: each
        clone's first sample after the last one they share, if both drew
        more after it (-1: they still shared when one of them stopped), and
        the later of the two. Clones sample for the same guest time, not at
        the same rate (whatever else runs on a sampler's CPU takes calls
        from it): the faster clone's last samples, and after a reseed its
        first unshared ones, can be output its sibling never reached. The
        first sample they do not share says less: another consumer of the
        same CPU's crng can take outputs from its chain in one clone and not
        the other, so an unshared sample can come long before the shared
        ones end."""
        return max(self.parted(self.one, self.two), self.parted(self.two, self.one))

    @property
    def span_us(self):
        """How long both clones sampled after the restore."""
        return min(self.one[-1][0], self.two[-1][0]) if self.one and self.two else 0


def stale_start(g, tag="sys", window_ms=500, vdso=False, cpu=0, every=1):
    """Start vmgen_stale on one CPU, looping getrandom(32) (through the vDSO
    if vdso) until the counter moves; return once it loops."""
    env = (f"VMGEN_RESTORE_TIMEOUT=300 VMGEN_STALE_MS={window_ms} VMGEN_STALE_VDSO={int(vdso)} "
           f"VMGEN_STALE_EVERY={every} VMGEN_READY_FILE={STALE}-{tag}.ready "
           f"VMGEN_SAMPLES_FILE={STALE}-{tag}.txt")
    g.sh(f"rm -f {STALE}-{tag}.*; cd {KST}/vmgen && {env} taskset -c {cpu} ./vmgen_stale "
         f">{STALE}-{tag}.log 2>&1 &")
    wait_file(g, f"{STALE}-{tag}.ready")


def stale_stop(g):
    """End every vmgen_stale of a guest that goes on running."""
    g.sh("while p=$(pidof vmgen_stale); do kill $p; sleep 0.1; done")


def stale_collect(c, tag="sys", timeout=150):
    """One clone's vmgen_stale: (its post-restore samples, its KTAP)."""
    log = f"{STALE}-{tag}.log"
    c.wait(f"vmgen_stale ({tag}) to finish", lambda: c.ok(f"grep -q '^# Totals:' {log}"),
           timeout=timeout)
    rows = c.pull(f"{STALE}-{tag}.txt").decode().splitlines()
    bad = [r for r in rows if not STALE_ROW.fullmatch(r)]
    require(rows and not bad, f"{c.name}: {len(rows)} vmgen_stale ({tag}) samples"
            + (f"; not a sample: {bad[0][:80]!r}" if bad else ""))
    return [(int(t), h) for t, h in (r.split() for r in rows)], c.sh(f"cat {log}")


def stale_pairs(pair, tags=("sys",)):
    """Each reader's Stale across the two clones of a pair."""
    got = [[stale_collect(c, t) for t in tags] for c in pair]
    return {t: Stale(got[0][i][0], got[1][i][0], [got[0][i][1], got[1][i][1]])
            for i, t in enumerate(tags)}


def stale_pair(group, kernel, name, *boot, window_ms=500, clone_opts=(), vdso=False,
               ring=True):
    """Boot a guest looping getrandom(32) (vmgen_stale), through the vDSO if
    @vdso, save it while it loops, continue two clones together (ringing the
    doorbell if @ring), and return their samples."""
    g = group.boot(name, kernel, *boot)
    quiesce(g)
    stale_start(g, window_ms=window_ms, vdso=vdso)
    state = group.save(g)
    pair = group.clones(state, g, [f"{name}-1", f"{name}-2"], *clone_opts, ring=ring)
    out = stale_pairs(pair)["sys"]
    group.down(*pair)
    return out


def kst_start(g, test, log, timeout=120):
    """Start a selftest that waits for a restore; return once it is armed."""
    g.sh(f"rm -f /run/vmgen/{test}.ready; cd {KST} && VMGEN_RESTORE_TIMEOUT={timeout} "
         f"VMGEN_READY_FILE=/run/vmgen/{test}.ready "
         f"./run_kselftest.sh -t vmgen:{test} >{log} 2>&1 &")
    wait_file(g, f"/run/vmgen/{test}.ready")


def kst_collect(g, test, log):
    """The runner's output once it reported the test, ok or not."""
    g.wait(f"{test} to finish",
           lambda: g.ok(f"grep -qE '^(not )?ok [0-9]+ selftests: vmgen: {test}' {log}"),
           timeout=200)
    return g.sh(f"cat {log}")


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
