# SPDX-License-Identifier: GPL-2.0
"""The kernel's own checks on the kernel files: W=1 and sparse builds,
checkpatch --strict, kernel-doc; the series against pristine trees; the
admin guide as reStructuredText."""

import os
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


@pytest.fixture(scope="module", params=["6.1", "6.12", "trixie-6.12", "trixie-7"])
def w1_build(request, build):
    """The out-of-tree module built with W=1 and sparse (C=2), against the
    headers of Debian's BASE kernel: Debian 12's on the host, Debian 13's
    (its own 6.12 and trixie-backports' 7.x) in the rig's Debian 13 root,
    with its gcc-14, as a Debian 13 machine builds it."""
    base = request.param
    kver = run(TOP / "tools/vmgen-rig/kernel.sh", "version", base).stdout.strip()
    mod = build / f"lint-module-{base}"
    run("rm", "-rf", mod)
    where = [f"KDIR=/lib/modules/{kver}/build"]
    if base.startswith("trixie-"):
        where = [f"KDIR=/usr/src/linux-headers-{kver}",
                 f"KRUN={TOP}/tools/vmgen-rig/debian.sh run {os.environ.get('VMGEN_CACHE', '/var/cache/vmgen')} {TOP}"]
    p = run("make", "-C", TOP, "module", f"MOD={mod}", *where, "W=1", "C=2")
    return p, mod


def test_module_builds_with_w1_and_no_warning(w1_build):
    p, mod = w1_build
    warnings = [ln for ln in (p.stdout + p.stderr).splitlines() if "warning:" in ln]
    assert p.returncode == 0 and (mod / "vmgenid_vmclock.ko").exists(), \
        "build failed:\n" + (p.stdout + p.stderr)[-1500:]
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
                  "tools/testing/selftests/vmgen/vmgen_stale.c",
                  "tools/testing/selftests/vmgen/vmgen_vmclock_dev.c"],
}


@pytest.mark.parametrize("what", list(CHECKPATCH_FILES))
def test_checkpatch_strict_is_clean(tree, what):
    p = run(tree / "scripts/checkpatch.pl", "--strict", "--no-tree", "-q", "-f",
            *(TOP / f for f in CHECKPATCH_FILES[what]))
    assert p.returncode == 0 and not p.stdout.strip(), p.stdout[-1500:]


# The patches that carry their own message, each checked by its base's
# checkpatch.
MAIL_PATCHES = {
    "drivers/char/random.c.patch": "6.1",
    "drivers/char/random.c-6.12.patch": "6.12",
    "tools/kernel-tree/6.12/vdso.patch": "6.12",
    "drivers/char/random.c-7.3.patch": "7.3",
    "tools/kernel-tree/7.3/vdso.patch": "7.3",
}


@pytest.mark.parametrize("patch", list(MAIL_PATCHES))
def test_checkpatch_strict_is_clean_on_the_mail_patches(patch):
    """As patches (mails with their messages), Signed-off-by aside."""
    tree = R.source_tree(MAIL_PATCHES[patch])
    p = run(tree / "scripts/checkpatch.pl", "--strict", "--no-signoff", "-q", TOP / patch)
    assert p.returncode == 0 and not p.stdout.strip(), p.stdout[-1500:]


def test_kernel_doc_is_silent_on_the_driver(tree):
    p = run(tree / "scripts/kernel-doc", "-none", TOP / "drivers/virt/vmgenid_vmclock.c")
    assert p.returncode == 0 and not (p.stdout + p.stderr).strip(), p.stderr[-1500:]


@pytest.mark.parametrize("base", ["6.1", "6.12", "7.3"])
def test_series_applies_to_pristine_tree_and_matches_patches_dir(build, base):
    """mkseries.sh applies apply.sh's patches in order to Debian's pristine
    linux-source-BASE files, failing on any that does not fit, and
    patches/BASE/ is what it writes from the sources today."""
    out = build / "patches" / base
    run("rm", "-rf", out)
    p = run(TOP / "tools/kernel-tree/mkseries.sh", base, out)
    assert p.returncode == 0, p.stderr[-500:]
    d = run("diff", "-r", TOP / "patches" / base, out)
    assert d.returncode == 0, d.stdout[:1500]


def test_admin_guide_is_strict_restructuredtext():
    p = run("/usr/bin/rst2html", "--strict",
            TOP / "Documentation/admin-guide/vmclock-vmgenid.rst", "/dev/null")
    assert p.returncode == 0 and not p.stderr.strip(), p.stderr[-1500:]
