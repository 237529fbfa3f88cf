# SPDX-License-Identifier: GPL-2.0
"""Host-side tests: the ABI header and the vmclock emulator (host-test.c),
and the selftests run in-tree on a machine with no vmclock device."""

import subprocess
import sys
from pathlib import Path

from vmgen import ktap, rig as R


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
