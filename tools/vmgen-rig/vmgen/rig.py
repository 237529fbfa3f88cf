# SPDX-License-Identifier: GPL-2.0
"""Guests of the vmgen rig, driven through its CLI (tools/vmgen-rig/rig).

A Rig is one rig folder and the guests started in it; a Group is the guests
one group of tests used, each checked for health before it stops. Rig
commands that fail raise RigError: a failed setup step is a failure of every
test that needed it, never a silent return.
"""

import atexit
import os
import re
import secrets
import shlex
import shutil
import struct
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
XFER = "/usr/lib/vmgen/vmgen-xfer"
# Every CPU has its own crng state: a sampler whose output two clones are
# compared on runs on the same CPU in both.
PIN = "taskset -c 0"
# What one sample of each output path of vmgen-reader looks like.
SAMPLE = {"getrandom": r"[0-9a-f]{32}", "urandom": r"[0-9a-f]{32}",
          "uuid": r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
          "udp": r"\d{1,5}(\.\d{1,5}){3}", "aslr": r"[0-9a-f]{16}"}
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
# An oops prints the flags register; no x86 CPU sets a reserved bit there.
EFLAGS = re.compile(r"\bEFLAGS: ([0-9a-f]{8,16})\b")
EFLAGS_RESERVED = ~((1 << 22) - 1) | (1 << 3) | (1 << 5) | (1 << 15)
# Guest RAM and state files: tmpfs keeps them off the disk.
RUNDIR = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path("/tmp")


def rig_conf():
    """The emulated machine's constants (rig.conf), shared with make and rig."""
    conf = {}
    for line in (HERE / "rig.conf").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.lstrip().startswith("#"):
            conf[key.strip()] = value.strip()
    return conf


CONF = rig_conf()
XFER_GPA, XFER_BYTES = int(CONF["XFER_GPA"], 0), int(CONF["XFER_MB"]) << 20


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


# How long a test waits for a kernel that make check builds behind the
# suite: far more than a cold build of the slowest one on two cores.
BUILD_WAIT_S = 3 * 3600
WAITED = {}	# kernel -> seconds the suite waited for its build


def await_build(name):
    """Return once no build of kernel @name is running behind the suite
    (tools/vmgen-rig/build-behind): its marker holds the PID of the
    process that builds it, and is gone once the build ends."""
    marker = BUILD / "kernels" / f"{name}.pending"

    def building():
        try:
            pid = marker.read_text().strip()
        except FileNotFoundError:
            return False
        return pid.isdigit() and Path(f"/proc/{pid}").exists()

    if not building():
        return
    with step(f"Waiting for the {name} kernel, built behind the suite "
              f"(see {BUILD}/logs/build.log)"):
        start = time.monotonic()
        while building():
            if time.monotonic() > start + BUILD_WAIT_S:
                raise RigError(f"kernel {name}: its build did not end in {BUILD_WAIT_S}s")
            time.sleep(2)
        WAITED[name] = time.monotonic() - start


def kernel_conf(name):
    """KEY=VALUE facts make wrote for a guest kernel (build/kernels/NAME),
    once it is built."""
    await_build(name)
    path = BUILD / "kernels" / name / "kernel.conf"
    if not path.exists():
        raise RigError(f"kernel {name} was not built ({path} is missing); "
                       f"see {BUILD}/logs/build.log")
    conf = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        conf[key.strip()] = value.strip()
    return conf


def check_samples(who, text, n, path="getrandom"):
    """The n samples of path in text, one a line; RigError if anything else
    is there (an error message is not a sample)."""
    lines = text.split("\n") if text else []
    bad = [ln for ln in lines if not re.fullmatch(SAMPLE[path], ln)]
    if len(lines) != n or bad:
        raise RigError(f"{who}: expected {n} {path} samples, got {len(lines)}"
                       + (f"; not a sample: {bad[0][:80]!r}" if bad else ""))
    return lines


def impossible_eflags(line):
    """The flags register of a register dump, if no CPU could hold it."""
    m = EFLAGS.search(line)
    if m:
        v = int(m.group(1), 16)
        if v & EFLAGS_RESERVED or not v & 2:
            return v
    return None


LIVE = set()	# rig folders whose guests may still run


def sweep():
    """Remove the rig folders a killed run left behind: those whose run is
    gone and whose QEMUs no longer run. Another run's folders stay, saved
    bases included, whose guests are down while their run goes on."""
    def alive(pid):
        return pid.isdigit() and Path(f"/proc/{pid}").exists()

    for d in RUNDIR.glob("vmgen-*.*"):
        owner = d / ".owner"
        if owner.exists() and alive(owner.read_text().strip()):
            continue
        if not any(alive(p.read_text().strip()) for p in d.glob("*/qemu.pid")):
            shutil.rmtree(d, ignore_errors=True)


@atexit.register
def _down_all():
    for d in list(LIVE):
        subprocess.run([str(RIG), "down"], env=dict(os.environ, VMGEN_RIG_DIR=str(d)),
                       capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


class Rig:
    """One rig folder and every guest started in it."""

    def __init__(self, tag):
        self.dir = Path(tempfile.mkdtemp(prefix=f"vmgen-{tag[:20]}.", dir=RUNDIR))
        (self.dir / ".owner").write_text(str(os.getpid()))
        LIVE.add(self.dir)
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
        # kernels.py plans tests by the guests' Debian; make chose it too.
        built = kernel_conf(kernel.name).get("USERSPACE", "bookworm")
        if built != kernel.userspace:
            raise RigError(f"kernel {kernel.name} was built with {built} userspace, "
                           f"and kernels.py says {kernel.userspace}: make and the table disagree")
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
        LIVE.discard(self.dir)


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
        """n samples from one output path, on CPU 0, each checked for the
        path's format."""
        return check_samples(self.name, self.sh(f"{PIN} {READER} --samples {n} --path {path}"),
                             n, path)

    def pull(self, path, timeout=120):
        """A guest file's bytes, through the RAM region vmgen-xfer writes."""
        out = self.sh(f"{XFER} --at {XFER_GPA:#x} --size {XFER_BYTES} {path}",
                      timeout=timeout)
        if not out.isdigit():
            raise RigError(f"{self.name}: vmgen-xfer {path}: {out[-200:]}")
        with open(self.dir / "ram", "rb") as f:
            f.seek(XFER_GPA)
            magic, length = struct.unpack("<8sQ", f.read(16))
            data = f.read(int(out))
        if magic != b"VMGENXF1" or length != int(out) or len(data) != length:
            raise RigError(f"{self.name}: vmgen-xfer {path}: the region holds "
                           f"{magic!r}, {length} bytes, not {out}")
        return data

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

    def after_boot(self, booted=True):
        # kmemleak's own scans would race the ones health() makes, and
        # what boot leaked is not the driver's: forget it. A clone of a
        # base that did this has only the base's reports to forget.
        if self.kernel.debug:
            self.sh("k=/sys/kernel/debug/kmemleak; " + (
                "echo scan=off >$k && echo scan >$k && " if booted else "") + "echo clear >$k",
                timeout=300)

    def health(self, leaks=True):
        """Everything that says this guest is sick; empty if it is well.
        Without leaks, kmemleak is not asked (it scans for seconds)."""
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
        lines = text.splitlines()
        for line in lines:
            if SPLAT.search(line):
                problems.append(f"{self.name}: console: {line.strip()[:200]}")
                break
        if not problems:
            try:
                lines = [t for _, t in self.kmsg()]
            except RigError as err:
                return [f"{self.name}: kernel log unreadable: {err}"]
            for line in lines:
                if SPLAT.search(line):
                    problems.append(f"{self.name}: dmesg: {line[:200]}")
                    break
        bad = [v for v in map(impossible_eflags, lines) if v is not None]
        if bad:
            problems.append(f"{self.name}: a register dump shows EFLAGS {bad[0]:#x}, which "
                            "no CPU holds: suspect the emulator first (see "
                            "tools/vmgen-rig/tests/cx16-flags.c)")
        if problems:
            return problems
        taint = int(self.sh("cat /proc/sys/kernel/tainted"))
        if taint & ~TAINT_OK:
            problems.append(f"{self.name}: kernel tainted {taint:#x}")
        if self.kernel.debug:
            if self.sh("grep -c 'debug_locks: *1' /proc/lockdep_stats", check=False) != "1":
                problems.append(f"{self.name}: lockdep turned itself off (debug_locks 0)")
            leaked = self.kmemleak() if leaks else ""
            if leaked:
                problems.append(f"{self.name}: kmemleak: {leaked}")
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


# rig boot options that a clone of a booted guest reproduces: the page's,
# written while the clone is paused (option: how many values it takes),
# and the driver's, loaded once the clone runs.
PAGE_OPTS = {"--counter": 1, "--no-notify": 0, "--no-gen-counter": 0, "--magic": 1,
             "--version": 1, "--size": 1}
MACHINE_OPTS = {"--cpu": 1, "--icount": 0, "--smp": 1}
KO = "/usr/lib/vmgen/vmgenid_vmclock.ko"


def clone_plan(kernel, opts):
    """How to get the guest `rig boot KERNEL OPTS` gives from a saved one:
    (machine options, page options, driver options), or None where only a
    boot will do (a kernel command line, another device)."""
    machine, page, driver = [], [], {"load": True, "args": ""}
    i = 0
    while i < len(opts):
        o = opts[i]
        if o in PAGE_OPTS or o in MACHINE_OPTS:
            n = PAGE_OPTS.get(o, MACHINE_OPTS.get(o))
            (page if o in PAGE_OPTS else machine).extend(opts[i:i + 1 + n])
            i += 1 + n
        elif o == "--no-module" or (o == "--no-driver" and not kernel.builtin):
            driver["load"] = False
            i += 1
        elif o == "--modargs":
            driver["args"] = opts[i + 1].replace(",", " ")
            i += 2
        else:
            return None
    if kernel.builtin:
        return None
    # One base per machine, however its options are spelled.
    pairs = {machine[j]: tuple(machine[j + 1:j + 1 + MACHINE_OPTS[machine[j]]])
             for j in range(len(machine)) if machine[j] in MACHINE_OPTS}
    for opt, default in (("--smp", ("2",)), ("--cpu", ("max",))):
        if pairs.get(opt) == default:
            del pairs[opt]
    return tuple(x for k in sorted(pairs) for x in (k, *pairs[k])), page, driver


class Bases:
    """One booted guest per kernel and machine, saved: what every group's
    guests are cloned from where a boot would give the same guest. A clone
    takes a second or two where a boot takes fifteen to thirty."""

    def __init__(self):
        self.rig = None
        self.states = {}

    def get(self, kernel, machine):
        key = (kernel.name, machine)
        if key not in self.states:
            if self.rig is None:
                self.rig = Rig("bases")
            g = self.rig.boot(f"base{len(self.states)}", kernel, "--no-module", *machine)
            if "--icount" in machine:
                # Idle, its clock skips ahead: past two minutes, the
                # kernel's own reseeds (6.11 and later) come a minute apart.
                g.sh("while [ $(cut -d. -f1 /proc/uptime) -lt 125 ]; do sleep 1; done",
                     timeout=120)
            problems = g.health()
            if problems:
                raise RigError("the base guest is not healthy: " + "; ".join(problems))
            state = self.rig.save(g)
            self.rig.down(g)
            self.states[key] = (state, g.dir)
        return self.states[key]

    def remove(self):
        if self.rig:
            self.rig.remove()


BASES = Bases()


class Group:
    """The guests one group of tests used. Each is checked for health
    before it stops; the group's last test reports what was found. Used
    as a context manager, whose end keeps every guest's logs in
    BUILD/logs/SUITE/NAME (beside the suite's log), stops the guests, and names that folder if a
    test of the group failed (conftest marks it)."""

    def __init__(self, name):
        self.name = name
        self.rig = Rig(re.sub(r"[^A-Za-z0-9_.-]+", "-", name))
        self.logdir = LOG.path.with_suffix("") / name
        self.problems = []
        self.checked = set()
        self.failed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        if self.failed or exc[0]:
            announce(f"logs of group {self.name}: {self.logdir} and {LOG.path}")

    def boot(self, name, kernel, *opts):
        """The guest `rig boot` gives with these options: a clone of the
        kernel's saved base guest with its page and driver set up, or, where
        the options need it, a guest booted afresh."""
        plan = clone_plan(kernel, opts)
        if plan is None:
            return self.rig.boot(name, kernel, *opts)
        machine, page, driver = plan
        state, base = BASES.get(kernel, machine)
        with step(f"Starting guest '{name}' ({kernel.name}) from its base"):
            self.rig.run("clone", state, base, name, "--no-bump", "--paused")
            g = Guest(self.rig, name, kernel)
            self.rig.guests[name] = g
            g.page("init", *(page if "--counter" in page else ["--counter", "1", *page]))
            g.cont(ring=False)
            if driver["load"] and not g.ok(f"insmod {KO} {driver['args']}"):
                LOG.write(f"{name}: insmod failed, as a boot's would")
        g.after_boot(booted=False)
        return g

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
