# SPDX-License-Identifier: GPL-2.0
"""The Debian package users install, vmgenid-vmclock-dkms (tools/dkms/debian,
make deb), built and checked the way Debian builds and checks packages, in
the rig's Debian 13 root: debhelper with dh-dkms, then lintian with every
tag shown (pedantic and info too) and none allowed.

On this Debian 12 host make check installs it as an operator does (make
deb-install, apt install), and DKMS must have built the module for each
Debian 12 kernel whose headers are here: the stock guests take it from
there.

Then its life on a Debian 13 machine, in a throwaway copy of that root,
whose kernel headers are Debian 13's own 6.12 and trixie-backports' 7.x:
- installing it has DKMS build and install the module for each kernel
  whose headers are there, each module made for its kernel;
- headers of a kernel installed later (an older 7.x from trixie-backports)
  get the module from DKMS's kernel hook;
- an upgrade to a newer version of the package replaces the module for
  every kernel and leaves no trace of the old version;
- removing it leaves no module, no source and no DKMS state behind.
"""

import os
import re
import subprocess

import pytest

from vmgen import rig as R

TOP = R.TOP
CACHE = os.environ.get("VMGEN_CACHE", "/var/cache/vmgen")
D13 = TOP / "tools/vmgen-rig/debian.sh"
NAME = "vmgenid-vmclock"
UPGRADE = "+upgrade1"


def run(*cmd, **kw):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    R.log().section("$ " + " ".join(map(str, cmd)), p.stdout + p.stderr)
    return p


def version():
    head = (TOP / "tools/dkms/debian/changelog").read_text().split("\n", 1)[0]
    return re.match(r"\S+ \(([^)]+)\)", head).group(1)


@pytest.fixture(scope="module")
def deb(build):
    """make deb, and a second package, one version up, for the upgrade."""
    out = build / "deb"
    p = run("make", "-C", TOP, "deb", f"O={build}")
    if p.returncode:
        pytest.fail("make deb failed:\n" + (p.stdout + p.stderr)[-2000:])
    v = version()
    src = out / f"{NAME}-{v}"
    up = out / "upgrade"
    run("rm", "-rf", up)
    run("mkdir", "-p", up)
    run("cp", "-a", src, up / f"{NAME}-{v}{UPGRADE}")
    log = up / f"{NAME}-{v}{UPGRADE}" / "debian/changelog"
    old = log.read_text()
    trailer = re.search(r"^ -- .*$", old, re.M).group(0)
    log.write_text(f"{NAME} ({v}{UPGRADE}) unstable; urgency=medium\n\n"
                   f"  * A newer version, for the upgrade test.\n\n{trailer}\n\n{old}")
    p = run(D13, "run", CACHE, up, "sh", "-c",
            f"cd {NAME}-{v}{UPGRADE} && dpkg-buildpackage -us -uc -b")
    if p.returncode:
        pytest.fail("the upgrade package did not build:\n" + (p.stdout + p.stderr)[-2000:])
    return out, v


def test_the_package_builds_with_debhelper_and_dh_dkms(deb):
    out, v = deb
    p = run("dpkg-deb", "-f", out / f"{NAME}-dkms_{v}_all.deb", "Depends")
    assert "dkms" in p.stdout, f"the package does not depend on dkms: {p.stdout}"
    p = run("dpkg-deb", "-c", out / f"{NAME}-dkms_{v}_all.deb")
    files = {ln.split()[-1] for ln in p.stdout.splitlines()}
    want = {f"./usr/src/{NAME}-{v}/{f}" for f in
            ("dkms.conf", "Kbuild", "vmgenid_vmclock.c", "include/uapi/linux/vmclock-abi.h")}
    assert want <= files, f"missing from the package: {sorted(want - files)}"
    doc = f"./usr/share/doc/{NAME}-dkms"
    for f in (f"{doc}/vmclock-vmgenid.rst", f"{doc}/examples/90-vmgenid-vmclock.rules"):
        assert f in files or f + ".gz" in files, f"the package lacks {f}"


def test_lintian_finds_nothing(deb):
    out, v = deb
    p = run(D13, "run", CACHE, out, "setpriv", "--reuid=nobody", "--regid=nogroup",
            "--clear-groups", "env", "HOME=/tmp", "lintian", "--pedantic", "--display-info",
            "--fail-on", "error,warning,info,pedantic", f"{NAME}_{v}_amd64.changes")
    assert p.returncode == 0 and not p.stdout.strip(), \
        f"lintian (exit {p.returncode}):\n{p.stdout[-2000:]}{p.stderr[-500:]}"


# One Debian 13 machine's life with the package: after each step, what DKMS
# says and which module files exist, between markers.
LIFE = r"""
set -u
show() {
	echo "@@ $1"
	dkms status 2>&1 | grep -i vmgenid || true
	ls /lib/modules/*/updates/dkms/ 2>/dev/null | grep -v '^$' || true
	for f in /lib/modules/*/updates/dkms/vmgenid_vmclock.ko*; do
		[ -e "$f" ] && echo "vermagic $f $(modinfo -F vermagic "$f" | cut -d' ' -f1)"
	done
	ls -d /usr/src/vmgenid-vmclock-* /var/lib/dkms/vmgenid-vmclock 2>/dev/null || true
}
apt-get install -y -q ./$1 >steps.log 2>&1 || { echo "@@ FAILED install"; cat steps.log; exit 1; }
show installed
pkg=$(apt-cache search --names-only '^linux-headers-7\.[0-9.]*\+deb13-cloud-amd64$' |
      cut -d' ' -f1 | grep -v "$(ls /usr/src | sed -n 's/^linux-headers-\(7[^-]*\)-cloud.*/\1/p')" |
      sort -V | tail -n1)
[ -n "$pkg" ] || { echo "@@ FAILED no older 7.x headers in trixie-backports"; exit 1; }
echo "later $pkg"
apt-get install -y -q --no-install-recommends "$pkg" >steps.log 2>&1 ||
	{ echo "@@ FAILED later kernel"; cat steps.log; exit 1; }
show later
apt-get install -y -q ./$2 >steps.log 2>&1 || { echo "@@ FAILED upgrade"; cat steps.log; exit 1; }
show upgraded
apt-get purge -y -q vmgenid-vmclock-dkms >steps.log 2>&1 || { echo "@@ FAILED purge"; cat steps.log; exit 1; }
show purged
"""


@pytest.fixture(scope="module")
def life(deb):
    out, v = deb
    p = run(D13, "scratch", CACHE, out, "sh", "-c", LIFE, "sh",
            f"{NAME}-dkms_{v}_all.deb", f"upgrade/{NAME}-dkms_{v}{UPGRADE}_all.deb")
    steps = {}
    for part in ("\n" + p.stdout).split("\n@@ ")[1:]:
        name, _, body = part.partition("\n")
        steps[name] = body
    failed = [n for n in steps if n.startswith("FAILED")]
    if failed or p.returncode:
        pytest.fail(f"exit {p.returncode}; {failed}:\n" + (p.stdout + p.stderr)[-2500:])
    later = re.search(r"^later linux-headers-(\S+)$", p.stdout, re.M)
    kvers = sorted(d.removeprefix("linux-headers-") for d in
                   run(D13, "run", CACHE, out, "ls", "/usr/src").stdout.split()
                   if re.fullmatch(r"linux-headers-.*-(cloud-)?amd64", d))
    return steps, v, kvers, later.group(1) if later else None


def modules(body):
    """{kernel: vermagic} of the module files a step left."""
    return {m.group(1): m.group(2) for m in re.finditer(
        r"^vermagic /lib/modules/([^/]+)/updates/dkms/vmgenid_vmclock\.ko\S* (\S+)$",
        body, re.M)}


def test_installing_builds_the_module_for_each_kernel(life):
    steps, v, kvers, _ = life
    body = steps["installed"]
    assert kvers, "no Debian 13 kernel headers in the root"
    assert modules(body) == {k: k for k in kvers}, \
        f"want a module for each of {kvers}, made for it:\n{body}"
    for k in kvers:
        assert re.search(rf"{re.escape(v)}, {re.escape(k)}, x86_64: installed", body), body


def test_a_kernel_installed_later_gets_the_module(life):
    steps, _, kvers, later = life
    body = steps["later"]
    assert later, "no later kernel was installed"
    assert modules(body) == {k: k for k in kvers + [later]}, \
        f"after installing headers of {later}:\n{body}"


def test_an_upgrade_replaces_the_module_everywhere(life):
    steps, v, kvers, later = life
    body = steps["upgraded"]
    new = v + UPGRADE
    assert modules(body) == {k: k for k in kvers + [later]}, body
    for k in kvers + [later]:
        assert re.search(rf"{re.escape(new)}, {re.escape(k)}, x86_64: installed", body), body
    assert not re.search(rf"{re.escape(v)}, ", body.replace(new, "")), \
        f"the old version is still registered:\n{body}"
    assert f"/usr/src/{NAME}-{v}\n" not in body + "\n", f"the old source stayed:\n{body}"


def test_purging_leaves_nothing_behind(life):
    steps, *_ = life
    body = steps["purged"]
    assert not body.strip(), f"left behind after purge:\n{body}"


def test_on_this_debian_12_host_dkms_built_it_for_each_kernel():
    kvers = [run(TOP / "tools/vmgen-rig/kernel.sh", "version", b).stdout.strip()
             for b in ("6.1", "6.12")]
    st = run("dpkg-query", "-W", "-f=${Status} ${Version}", f"{NAME}-dkms")
    assert st.stdout.startswith("install ok installed"), \
        f"the package is not installed here (make deb-install): {st.stdout}{st.stderr}"
    status = run("dkms", "status", NAME).stdout
    for k in kvers:
        assert re.search(rf"{re.escape(version())}, {re.escape(k)}, x86_64: installed", status), \
            f"no module for {k}:\n{status}"
        f = run("sh", "-c", f"ls /lib/modules/{k}/updates/dkms/vmgenid_vmclock.ko*").stdout.split()
        assert f, f"no module file for {k}"
        magic = run("modinfo", "-F", "vermagic", f[0]).stdout.split()
        assert magic and magic[0] == k, f"{f[0]} is made for {magic}, not {k}"
