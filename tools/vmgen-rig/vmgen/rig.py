# SPDX-License-Identifier: GPL-2.0
"""Guests of the vmgen rig, driven through its CLI (tools/vmgen-rig/rig).

A Rig is one rig folder and the guests started in it; a Group is the guests
one group of tests used, each checked for health before it stops. Rig
commands that fail raise RigError: a failed setup step is a failure of every
test that needed it, never a silent return.
"""

import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent	# tools/vmgen-rig
TOP = HERE.parent.parent
RIG = HERE / "rig"
BUILD = Path(os.environ.get("VMGEN_BUILD", TOP / "build"))
CACHE = Path(os.environ.get("VMGEN_CACHE", "/var/cache/vmgen"))

# Where the driver's state lives, whatever owns the vmclock device.
SYSDEV = "/sys/bus/platform/devices/vmgenid_vmclock"
READER = "/usr/lib/vmgen/vmgen-reader"
KMSG = "/usr/lib/vmgen/vmgen-kmsg"
# random.c's line when its own check reseeds for a moved counter.
GEN_CHANGE = "crng reseeded due to virtual machine generation change"

# What no guest may print (dmesg or console): oopses, warnings (lockdep
# reports start with WARNING), lockups, stalls, hung tasks, sanitizers, and
# ACPI errors (firmware tables that did not load leave no vmclock device).
SPLAT = re.compile(
    r"BUG:|WARNING:|Oops|Kernel panic|general protection|Call Trace|ACPI (BIOS )?Error|"
    r"refcount_t:|list_(add|del) corruption|blocked for more than|"
    r"soft lockup|hard LOCKUP|self-detected stall|rcu: INFO|detected stalls|"
    r"possible (circular|recursive) locking|inconsistent lock state|"
    r"suspicious RCU usage|KASAN|UBSAN")
# Taint bits a healthy rig guest may carry: an out-of-tree (12) and
# unsigned (13) module, which is what the stock kernels' driver is.
TAINT_OK = (1 << 12) | (1 << 13)


class RigError(Exception):
    """A rig step failed; the tests that needed it cannot pass."""


class GuestGone(RigError):
    """A guest stopped answering its agent."""


class Log:
    """The suite's log: every rig command, its output, every failure."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.path, "a", buffering=1)

    def write(self, text):
        self.f.write(text if text.endswith("\n") else text + "\n")

    def section(self, title, text=""):
        self.write(f"==== {time.strftime('%H:%M:%S')} {title}")
        if text:
            self.write(text)


LOG = None
T0 = time.monotonic()


def log():
    return LOG


def announce(line):
    """A progress line for people watching, as a KTAP diagnostic."""
    sys.stdout.write(f"# {line}\n")
    sys.stdout.flush()
    if LOG:
        LOG.section(line)


class step:
    """with step("Booting ..."): announce a long step and its elapsed time."""

    def __init__(self, what):
        self.what = what

    def __enter__(self):
        self.start = time.monotonic()
        if LOG:
            LOG.section("==> " + self.what)
        return self

    def __exit__(self, exc_type, exc, tb):
        now = time.monotonic()
        status = "done" if exc_type is None else "FAILED"
        announce(f"==> {self.what} ... {status} ({now - self.start:.0f}s, "
                 f"{now - T0:.0f}s total)")
        return False


def source_tree(base):
    """Debian's pristine linux-source-BASE, unpacked in the cache."""
    p = subprocess.run([TOP / "tools/kernel-tree/source.sh", base, CACHE],
                       capture_output=True, text=True)
    if p.returncode:
        raise RigError(f"no linux-source-{base} tree: {p.stderr.strip()}")
    return Path(p.stdout.strip())


def kernel_conf(name):
    """KEY=VALUE facts make wrote for a guest kernel (build/kernels/NAME)."""
    path = BUILD / "kernels" / name / "kernel.conf"
    if not path.exists():
        raise RigError(f"kernel {name} was not built ({path} is missing); "
                       f"see {BUILD}/logs/build.log")
    conf = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        conf[key.strip()] = value.strip()
    return conf


class Rig:
    """One rig folder and every guest started in it."""

    def __init__(self, tag):
        self.dir = Path(tempfile.mkdtemp(prefix=f"vmgen-{tag[:20]}.", dir="/tmp"))
        self.guests = {}

    def run(self, *args, timeout=900, check=True, env=None):
        cmd = [str(RIG), *map(str, args)]
        e = dict(os.environ, VMGEN_RIG_DIR=str(self.dir), VMGEN_BUILD=str(BUILD))
        e.update(env or {})
        LOG.write(f"$ [{time.strftime('%H:%M:%S')}] " + shlex.join(cmd[1:]))
        try:
            p = subprocess.run(cmd, env=e, capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise RigError(f"rig {args[0]} {args[1] if len(args) > 1 else ''}: "
                           f"no answer in {timeout}s") from err
        out = p.stdout + p.stderr
        if out.strip():
            LOG.write(out.rstrip()[-20000:])
        if check and p.returncode:
            last = out.strip().splitlines()[-1:] or ["(no output)"]
            raise RigError(f"rig {' '.join(map(str, args[:2]))} failed: {last[0]}")
        return p

    def boot(self, name, kernel, *opts):
        with step(f"Booting guest '{name}' ({kernel.name})"):
            self.run("boot", name, "--kernel", kernel.name, *opts)
        g = Guest(self, name, kernel)
        self.guests[name] = g
        g.after_boot()
        return g

    def clones(self, state, origin, names, *opts, cont=True, ring=True):
        """Restore every name from one state file, paused, then continue
        them all: the one way this rig starts clones."""
        out = []
        for name in names:
            with step(f"Restoring clone '{name}' from {Path(state).name}"):
                self.run("clone", state, origin.name, name, "--paused", *opts)
            g = Guest(self, name, origin.kernel)
            self.guests[name] = g
            out.append(g)
        if cont:
            for g in out:
                g.cont(ring=ring)
        return out

    def save(self, guest, path=None):
        """Stop guest and write its state for clones; it stays stopped."""
        path = path or self.dir / f"{guest.name}.state"
        with step(f"Saving '{guest.name}' to a state file"):
            self.run("save", guest.name, path)
        guest.saved = True
        return path

    def down(self, *guests):
        if guests:
            self.run("down", *(g.name for g in guests), check=False)
            for g in guests:
                self.guests.pop(g.name, None)
        else:
            self.run("down", check=False)
            self.guests.clear()

    def remove(self):
        self.down()
        shutil.rmtree(self.dir, ignore_errors=True)


class Guest:
    def __init__(self, rig, name, kernel):
        self.rig = rig
        self.name = name
        self.kernel = kernel
        self.dir = rig.dir / name
        self.saved = False	# stopped for good by Rig.save()

    def __repr__(self):
        return f"guest {self.name} ({self.kernel.name})"

    def sh(self, cmd, timeout=60, check=True):
        """Run a one-line shell command in the guest; its output."""
        p = self.rig.run("exec", self.name, cmd, check=False, timeout=timeout + 30,
                         env={"VMGEN_EXEC_TIMEOUT": str(timeout)})
        if p.returncode == 124 or "rigctl:" in p.stderr:
            raise GuestGone(f"{self.name} did not answer '{cmd[:60]}': "
                            f"{p.stderr.strip()[:200]}")
        if check and p.returncode:
            raise RigError(f"{self.name}: '{cmd[:80]}' exited {p.returncode}: "
                           f"{(p.stdout + p.stderr).strip()[-300:]}")
        return p.stdout.strip()

    def each(self, *cmds, timeout=60, check=True):
        """Run several commands in one exchange with the agent (each costs
        a fork and exec under emulation); a list of their outputs. With
        check, the last command's status is the exchange's."""
        mark = "@@vmgen-next@@"
        out = self.sh(f"; echo {mark}; ".join(f"{{ {c}; }}" for c in cmds), timeout=timeout,
                      check=check)
        parts = [p.strip() for p in out.split(mark)]
        if len(parts) != len(cmds):
            raise RigError(f"{self.name}: {len(cmds)} commands, {len(parts)} answers")
        return parts

    def ok(self, cmd, timeout=60):
        p = self.rig.run("exec", self.name, cmd, check=False, timeout=timeout + 30,
                         env={"VMGEN_EXEC_TIMEOUT": str(timeout)})
        if p.returncode == 124 or "rigctl:" in p.stderr:
            raise GuestGone(f"{self.name} did not answer '{cmd[:60]}'")
        return p.returncode == 0

    def attr(self, name):
        return self.sh(f"cat {SYSDEV}/{name}")

    def wait(self, what, predicate, timeout=30, interval=0.2):
        """Poll predicate() until true; RigError naming what never came."""
        end = time.monotonic() + timeout
        while True:
            try:
                if predicate():
                    return
            except GuestGone:
                raise
            except RigError:
                pass
            if time.monotonic() > end:
                raise RigError(f"{self.name}: {what} did not happen in {timeout}s")
            time.sleep(interval)

    def page(self, *args):
        return self.rig.run("page", self.name, *args).stdout

    def counter(self):
        m = re.search(r"^vm_generation_counter (\d+)$", self.page("show"), re.M)
        return int(m.group(1))

    def savevm(self, tag):
        with step(f"Snapshotting '{self.name}' in place ({tag})"):
            self.rig.run("savevm", self.name, tag)

    def loadvm(self, tag, *opts):
        with step(f"Restoring '{self.name}' from {tag} {' '.join(opts)}".rstrip()):
            self.rig.run("loadvm", self.name, tag, *opts)

    def cont(self, ring=True):
        self.rig.run("cont", self.name, *([] if ring else ["--no-ring"]))

    def samples(self, n=64, path="getrandom"):
        """n samples of 16 bytes each from one output path, as hex."""
        out = self.sh(f"{READER} --samples {n} --path {path}").split()
        if len(out) != n:
            raise RigError(f"{self.name}: asked for {n} samples, got {len(out)}")
        return out

    def kmsg(self, after=-1):
        """Kernel log records with a sequence number above after."""
        recs = []
        for line in self.sh(f"{KMSG} {after}", timeout=120).splitlines():
            seq, _, text = line.partition(" ")
            recs.append((int(seq), text))
        return recs

    def kmsg_count(self, pattern, after=-1):
        return sum(1 for _, t in self.kmsg(after) if re.search(pattern, t))

    def kmsg_last(self):
        recs = self.kmsg()
        return recs[-1][0] if recs else -1

    def after_boot(self):
        # kmemleak's own scans would race the ones health() makes, and
        # what boot leaked is not the driver's: forget it.
        if self.kernel.debug:
            self.sh("k=/sys/kernel/debug/kmemleak; echo scan=off >$k &&"
                    " echo scan >$k && echo clear >$k", timeout=300)

    def health(self):
        """Everything that says this guest is sick; empty if it is well."""
        problems = []
        token = secrets.token_hex(4)
        try:
            ack = self.sh(f"echo ack-{token}", timeout=30)
        except RigError as err:
            ack = str(err)
        if ack != f"ack-{token}":
            problems.append(f"{self.name}: agent did not acknowledge: {ack[:200]}")
        console = self.dir / "console.log"
        text = console.read_text(errors="replace") if console.exists() else ""
        for line in text.splitlines():
            if SPLAT.search(line):
                problems.append(f"{self.name}: console: {line.strip()[:200]}")
                break
        if problems:
            return problems
        for seq, line in self.kmsg():
            if SPLAT.search(line):
                problems.append(f"{self.name}: dmesg #{seq}: {line[:200]}")
                break
        taint = int(self.sh("cat /proc/sys/kernel/tainted"))
        if taint & ~TAINT_OK:
            problems.append(f"{self.name}: kernel tainted {taint:#x}")
        if self.kernel.debug:
            if self.sh("grep -c 'debug_locks: *1' /proc/lockdep_stats", check=False) != "1":
                problems.append(f"{self.name}: lockdep turned itself off (debug_locks 0)")
            leaks = self.kmemleak()
            if leaks:
                problems.append(f"{self.name}: kmemleak: {leaks}")
        return problems

    def kmemleak(self):
        """Objects kmemleak still calls leaked after two scans."""
        k = "/sys/kernel/debug/kmemleak"
        out = self.sh(f"echo scan >{k}; cat {k}", timeout=300)
        if out:
            out = self.sh(f"sleep 1; echo scan >{k}; cat {k}", timeout=300)
        if out:
            LOG.section(f"kmemleak in {self.name}", out)
            m = re.search(r"unreferenced object .*", out)
            return m.group(0) if m else out.splitlines()[0]
        return ""

    def keep_logs(self, dest, dmesg=False):
        dest.mkdir(parents=True, exist_ok=True)
        for f in ("console.log", "qemu.log"):
            if (self.dir / f).exists():
                shutil.copy(self.dir / f, dest / f"{self.name}.{f}")
        if dmesg and not self.saved:
            try:
                (dest / f"{self.name}.dmesg").write_text(self.sh("dmesg", timeout=60))
            except RigError:
                pass


class Group:
    """The guests one group of tests used. Each is checked for health
    before it stops; the group's last test reports what was found."""

    def __init__(self, name, logdir):
        self.name = name
        self.rig = Rig(re.sub(r"[^A-Za-z0-9_.-]+", "-", name))
        self.logdir = Path(logdir)
        self.problems = []
        self.checked = set()
        self.failed = False

    def boot(self, name, kernel, *opts):
        return self.rig.boot(name, kernel, *opts)

    def clones(self, *args, **kw):
        return self.rig.clones(*args, **kw)

    def check(self, *guests):
        for g in guests:
            if g.name in self.checked:
                continue
            self.checked.add(g.name)
            found = g.health()
            g.keep_logs(self.logdir, dmesg=bool(found))
            if found:
                LOG.section(f"health of {g.name}", "\n".join(found))
            self.problems += found

    def save(self, guest, path=None):
        """Check a guest, then save it for clones: what it is at the save
        is what every clone starts from, and it never runs again."""
        self.check(guest)
        return self.rig.save(guest, path)

    def down(self, *guests):
        self.check(*guests)
        self.rig.down(*guests)

    def check_all(self):
        self.check(*self.rig.guests.values())
        return self.problems

    def close(self):
        for g in self.rig.guests.values():
            g.keep_logs(self.logdir)
        self.rig.remove()
