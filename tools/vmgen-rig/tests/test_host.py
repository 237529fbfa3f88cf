# SPDX-License-Identifier: GPL-2.0
"""Host-side tests: the ABI header and the vmclock emulator (host-test.c),
the selftests run in-tree on a machine with no vmclock device, how the
suite waits for kernels built behind it, rigctl, and where the window
tests say two clones part."""

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from vmgen import ktap, rig as R
from vmgen.observe import Stale


def test_abi_and_emulator_unit_tests(build):
    """host-test's own KTAP: every planned test ran and passed, exit 0."""
    p = subprocess.run([build / "rig" / "host-test", build / "rig" / "vmclock-emu"],
                       capture_output=True, text=True, timeout=300)
    R.log().section("host-test", p.stdout + p.stderr)
    problems = ktap.verdicts(p.stdout)
    assert p.returncode == 0 and not problems, \
        f"exit {p.returncode}: " + "; ".join(problems or ["(no failure listed)"])


def test_rig_qemu_keeps_eflags_through_cmpxchg16b(build):
    """The rig's QEMU (Debian 13's) keeps EFLAGS across CMPXCHG16B in a
    translation block that starts right after a system call. The control
    is Debian 12's QEMU 7.2, which corrupts it, and whose guests oopsed
    after restores with impossible EFLAGS in their register dumps: if the
    control passes, this check cannot see the bug."""
    prog = build / "rig" / "cx16-flags"
    out = {}
    for name, qemu in (("control", "/usr/bin/qemu-x86_64"),
                       ("rig", build / "rig" / "qemu-x86_64")):
        p = subprocess.run([str(qemu), "-cpu", "max", str(prog)], capture_output=True,
                           text=True, timeout=120)
        R.log().section(f"cx16-flags under {qemu}", p.stdout + p.stderr)
        out[name] = (p.returncode, (p.stdout + p.stderr).strip())
    assert out["control"][0] == 1, f"QEMU 7.2 kept EFLAGS: {out['control']}"
    assert out["rig"] == (0, "cx16-flags: 0 of 1000 tries corrupted EFLAGS"), out["rig"]


def test_selftests_skip_cleanly_without_a_device(build):
    """make run_tests in the kernel tree, on the host: every vmgen selftest
    reports, none fails, and each skip says why (no device, no restore)."""
    p = subprocess.run([R.TOP / "tools/kernel-tree/kselftest.sh", build, "run_tests"],
                       capture_output=True, text=True, timeout=600)
    R.log().section("in-tree run_tests on the host", p.stdout + p.stderr)
    problems = ktap.verdicts(p.stdout, skip_ok=True)
    assert not problems, "; ".join(problems)
    for name in ("vmgen_sysfs", "vmgen_restore", "vmgen_stale", "vmgen_vmclock_dev"):
        assert f"selftests: vmgen: {name}" in p.stdout, f"{name} did not run"
    assert "# SKIP" in p.stdout, "nothing skipped on a host without a vmclock device"


def test_a_second_run_leaves_this_runs_folders_alone(tmp_path):
    """A run sweeps the rig folders killed runs left behind, and must not
    take another run's: its saved bases have no QEMU running while the run
    that made them goes on."""
    mine = R.Rig("sweep-mine")
    (mine.dir / "base0.state").write_text("state")
    dead = subprocess.run([sys.executable, "-c", "from vmgen import rig as R; "
                           "r = R.Rig('sweep-dead'); R.LIVE.clear(); print(r.dir)"],
                          cwd=R.HERE, capture_output=True, text=True, check=True)
    left = Path(dead.stdout.strip())
    subprocess.run([sys.executable, "-c", "from vmgen import rig as R; R.sweep()"],
                   cwd=R.HERE, check=True)
    try:
        assert (mine.dir / "base0.state").exists(), "a second run swept this run's folder"
        assert not left.exists(), f"a killed run's folder was left: {left}"
    finally:
        mine.remove()


FAKE_MAKE = """#!/bin/sh
# fake-make O=BUILD kernel-NAME: good builds in a second, bad fails,
# slow builds for a minute.
o=${1#O=} k=${2#kernel-}
case $k in
good) sleep 1; mkdir -p "$o/kernels/good"; echo KVER=1 >"$o/kernels/good/kernel.conf" ;;
bad) exit 1 ;;
slow) sleep 60 ;;
esac
"""

AWAIT_BUILDS = r"""
import json, os, signal, time
from pathlib import Path
from vmgen import rig as R

R.BUILD_WAIT_S = 30
out = {}
for k in ("good", "bad"):
    try:
        out[k] = R.kernel_conf(k)
    except R.RigError as e:
        out[k] = str(e)
# The builder: build-behind's other child.
for stat in Path("/proc").glob("[0-9]*/stat"):
    try:
        pid, ppid = int(stat.parent.name), int(stat.read_text().rsplit(")", 1)[1].split()[1])
        cmd = (stat.parent / "cmdline").read_bytes()
    except (OSError, IndexError, ValueError):
        continue
    if ppid == os.getppid() and b"--builder" in cmd.split(b"\0"):
        os.killpg(pid, signal.SIGKILL)
        out["killed"] = pid
start = time.monotonic()
try:
    out["slow"] = R.kernel_conf("slow")
except R.RigError as e:
    out["slow"] = str(e)
out["slow_wait"] = time.monotonic() - start
print(json.dumps(out))
"""


def test_a_test_waits_for_a_kernel_built_behind_it_and_no_longer(tmp_path):
    """build-behind: a test on a kernel still being built waits for the
    build; a failed build fails it, and says so; a builder that dies
    mid-build ends the wait at once rather than after hours."""
    make = tmp_path / "fake-make"
    make.write_text(FAKE_MAKE)
    make.chmod(0o755)
    build = tmp_path / "build"
    p = subprocess.run([R.HERE / "build-behind", str(make), str(build), "good", "bad", "slow",
                        "--", sys.executable, "-c", AWAIT_BUILDS],
                       cwd=R.HERE, env=dict(os.environ, VMGEN_BUILD=str(build)),
                       capture_output=True, text=True, timeout=120)
    R.log().section("build-behind with a fake make", p.stdout + p.stderr)
    assert p.returncode == 0, f"exit {p.returncode}: {p.stderr.strip()[-300:]}"
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["good"] == {"KVER": "1"}, out
    assert "was not built" in out["bad"], out
    assert "the bad kernel did not build" in p.stderr, p.stderr
    assert "killed" in out, "no builder process found beside the command"
    assert "was not built" in out["slow"] and out["slow_wait"] < 10, out


def test_a_kernel_that_fails_to_build_leaves_no_older_build_in_use(tmp_path):
    """An earlier run's guest files are not tested in place of a build that
    failed: its kernel.conf goes first."""
    k = tmp_path / "kernels" / "patched-6.1-x"
    k.mkdir(parents=True)
    (k / "kernel.conf").write_text("KVER=an-earlier-build\n")
    p = subprocess.run(["make", "-C", str(R.TOP), f"O={tmp_path}", "RIG_TOOLS=",
                        "kernel-patched-6.1-x"], capture_output=True, text=True, timeout=120)
    R.log().section("a failing kernel build", p.stdout + p.stderr)
    assert p.returncode != 0, "the build of variant x did not fail"
    assert not (k / "kernel.conf").exists(), "the earlier build's kernel.conf is still there"


def stale(one, two, us=1200000):
    """A Stale of two clones that each drew len(one|two) samples in @us of
    guest time, their outputs taken from the lists given."""
    return Stale([(i * us // len(one), h) for i, h in enumerate(one)],
                 [(i * us // len(two), h) for i, h in enumerate(two)], [])


def test_the_window_does_not_end_where_a_slower_clone_stops():
    """Clones sample for the same guest time but not at the same rate: a
    slower clone's last sample is not where they part (the no-driver
    control failed so, 90% shared and "parted" at 1083 of 1200 ms), nor is
    the faster clone's first sample its sibling never drew before a reseed
    both see. The controls: one that draws once more than its sibling
    still shares; nothing shared parts at once."""
    outputs = [f"{i:016x}" for i in range(10000)]
    fresh = [f"{i:016x}" for i in range(10000, 20000)]
    assert stale(outputs, outputs[:9000]).fresh_after_us == -1
    assert stale(outputs[:9000], outputs).fresh_after_us == -1
    assert stale(outputs, outputs[1:]).fresh_after_us == -1
    assert stale(outputs[1:], outputs).fresh_after_us == -1
    # Both reseed at 600 ms: sample 5000 of one, 4500 of the other.
    fast, slow = outputs[:5000] + fresh[:5000], outputs[:4500] + fresh[5000:9500]
    assert stale(fast, slow).fresh_after_us == 600000
    assert stale(slow, fast).fresh_after_us == 600000
    assert stale(fresh[:10], fresh[10:20]).fresh_after_us == 0


def rigctl_exec(build, path, answer):
    """rigctl exec against a fake guest agent listening on @path that
    answers @answer, with ID standing for the request's tag; rigctl's exit
    status and output."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen(1)
    srv.settimeout(30)

    def agent():
        c, _ = srv.accept()
        with c:
            c.sendall(answer.replace(b"ID", c.recv(4096).split()[0]))

    t = threading.Thread(target=agent)
    t.start()
    p = subprocess.run([build / "rig" / "rigctl", "--timeout", "10", "exec", path, "cat x"],
                       capture_output=True, timeout=30)
    t.join(30)
    srv.close()
    return p.returncode, p.stdout, p.stderr


def test_rigctl_passes_on_whatever_bytes_the_guest_prints(build, tmp_path):
    """rig exec prints a command's output as the guest agent sent it, NUL
    bytes included (cat of a /proc cmdline), with its status: it crashed
    on the first NUL. An answer whose markers overlap (a byte lost on the
    UART) is refused, not read past."""
    assert rigctl_exec(build, tmp_path / "1.sock", b"@@VMGEN-BEGIN ID\na\0b\n@@VMGEN-END ID 3\n") \
        == (3, b"a\0b", b"")
    rc, out, err = rigctl_exec(build, tmp_path / "2.sock", b"@@VMGEN-BEGIN ID\n@@VMGEN-END ID 0\n")
    assert (rc, out, err) == (1, b"", b"rigctl: garbled answer from guest\n")
