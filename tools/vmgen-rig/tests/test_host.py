# SPDX-License-Identifier: GPL-2.0
"""Host-side tests: the ABI header and the vmclock emulator (host-test.c),
and the selftests run in-tree on a machine with no vmclock device."""

import subprocess

from vmgen import ktap, rig as R


def test_abi_and_emulator_unit_tests(build):
    """host-test's own KTAP: every planned test ran and passed, exit 0."""
    p = subprocess.run([build / "rig" / "host-test", build / "rig" / "vmclock-emu"],
                       capture_output=True, text=True, timeout=300)
    R.log().section("host-test", p.stdout + p.stderr)
    problems = ktap.verdicts(p.stdout)
    assert p.returncode == 0 and not problems, \
        f"exit {p.returncode}: " + "; ".join(problems or ["(no failure listed)"])


def test_selftests_skip_cleanly_without_a_device(build):
    """make run_tests in the kernel tree, on the host: every vmgen selftest
    reports, none fails, and each skip says why (no device, no restore)."""
    tree = R.source_tree("6.12")
    p = subprocess.run(["make", "-C", f"{tree}/tools/testing/selftests", "TARGETS=vmgen",
                        f"O={build}/kselftest-out", "run_tests"],
                       capture_output=True, text=True, timeout=600)
    R.log().section("in-tree run_tests on the host", p.stdout + p.stderr)
    problems = ktap.verdicts(p.stdout, skip_ok=True)
    assert not problems, "; ".join(problems)
    for name in ("vmgen_sysfs", "vmgen_restore", "vmgen_stale", "vmgen_vmclock_dev"):
        assert f"selftests: vmgen: {name}" in p.stdout, f"{name} did not run"
    assert "# SKIP" in p.stdout, "nothing skipped on a host without a vmclock device"
