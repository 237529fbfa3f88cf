# SPDX-License-Identifier: GPL-2.0
"""The kernel's own checks on the kernel files: W=1 and sparse builds,
checkpatch --strict, kernel-doc; the series against pristine trees; the
admin guide as reStructuredText."""

import re
import subprocess

import pytest

from vmgen import rig as R

TOP = R.TOP


def run(*cmd, **kw):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    R.log().section("$ " + " ".join(map(str, cmd)), p.stdout + p.stderr)
    return p


@pytest.fixture(scope="module")
def tree():
    return R.source_tree("6.1")


@pytest.fixture(scope="module")
def w1_build(build):
    """The out-of-tree module built with W=1 and sparse (C=2)."""
    mod = build / "lint-module"
    run("rm", "-rf", mod)
    p = run("make", "-C", TOP, "module", f"MOD={mod}", "W=1", "C=2")
    return p, mod


def test_module_builds_with_w1_and_no_warning(w1_build):
    p, mod = w1_build
    warnings = [ln for ln in (p.stdout + p.stderr).splitlines() if "warning:" in ln]
    assert p.returncode == 0 and (mod / "vmgenid_vmclock.ko").exists(), "build failed"
    assert not warnings, "\n".join(warnings[:5])


def test_sparse_reports_nothing_on_the_driver(w1_build):
    p, _ = w1_build
    lines = [ln for ln in (p.stdout + p.stderr).splitlines()
             if re.search(r"vmgenid_vmclock\.c:\d+", ln)]
    assert not lines, "\n".join(lines[:5])


CHECKPATCH_FILES = {
    "driver": ["drivers/virt/vmgenid_vmclock.c"],
    "abi_header": ["include/uapi/linux/vmclock-abi.h"],
    "test_modules": ["tools/vmgen-rig/faults/vmclock_standin.c"],
    "selftests": ["tools/testing/selftests/vmgen/vmgen.h",
                  "tools/testing/selftests/vmgen/vmgen_sysfs.c",
                  "tools/testing/selftests/vmgen/vmgen_restore.c",
                  "tools/testing/selftests/vmgen/vmgen_stale.c"],
}


@pytest.mark.parametrize("what", list(CHECKPATCH_FILES))
def test_checkpatch_strict_is_clean(tree, what):
    p = run(tree / "scripts/checkpatch.pl", "--strict", "--no-tree", "-q", "-f",
            *(TOP / f for f in CHECKPATCH_FILES[what]))
    assert p.returncode == 0 and not p.stdout.strip(), p.stdout[-1500:]


def test_checkpatch_strict_is_clean_on_random_c_patch(tree):
    """As a patch (a mail with its message), Signed-off-by aside."""
    p = run(tree / "scripts/checkpatch.pl", "--strict", "--no-signoff", "-q",
            TOP / "drivers/char/random.c.patch")
    assert p.returncode == 0 and not p.stdout.strip(), p.stdout[-1500:]


def test_kernel_doc_is_silent_on_the_driver(tree):
    p = run(tree / "scripts/kernel-doc", "-none", TOP / "drivers/virt/vmgenid_vmclock.c")
    assert p.returncode == 0 and not (p.stdout + p.stderr).strip(), p.stderr[-1500:]


def test_every_patch_applies_to_pristine_6_1(tree):
    bad = []
    for patch in [TOP / "drivers/char/random.c.patch",
                  *sorted((TOP / "tools/kernel-tree").glob("*.patch"))]:
        p = run("patch", "-d", tree, "-p1", "--dry-run", "--batch", "--forward",
                "-s", "-i", patch)
        if p.returncode:
            bad.append(f"{patch.name}: {p.stdout.strip()[:200]}")
    assert not bad, "\n".join(bad)


def test_patches_dir_matches_the_sources(build):
    """patches/ is what make patches writes from the sources today."""
    out = build / "patches"
    run("rm", "-rf", out)
    p = run(TOP / "tools/kernel-tree/mkseries.sh", out)
    assert p.returncode == 0, p.stderr[-500:]
    d = run("diff", "-r", TOP / "patches", out)
    assert d.returncode == 0, d.stdout[:1500]


def test_admin_guide_is_strict_restructuredtext():
    p = run("/usr/bin/rst2html", "--strict",
            TOP / "Documentation/admin-guide/vmclock-vmgenid.rst", "/dev/null")
    assert p.returncode == 0 and not p.stderr.strip(), p.stderr[-1500:]
