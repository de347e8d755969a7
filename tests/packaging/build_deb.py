#!/usr/bin/env python3
"""The Debian package: builds debian/ with `dpkg-buildpackage -us -uc -b` in a scratch copy of
the tree, then checks the .deb: every file at its Debian path, the unit verified by
systemd-analyze, the maintainer scripts creating the user before the directories and neither
enabling nor starting the service, the binaries running. About 20 s (a second full build), so
tests/run runs it on request: DRWATCH_DEB=1 tests/run.

usage: tests/packaging/build_deb.py [--keep]"""
import argparse
import os
import re
import shutil
import sys
import tempfile
import time

from common import ROOT, check, finish, run, verify_unit


def version():
    with open(os.path.join(ROOT, "debian", "changelog")) as f:
        return re.match(r"drwatch \(([^)]+)\)", f.readline()).group(1)


def copy_tree(dest):
    """The tree as git sees it (tracked and new files, not the ignored build directories)."""
    r = run(["git", "-C", ROOT, "ls-files", "-co", "--exclude-standard", "-z"])
    if r.returncode != 0:
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns("build*", ".git"))
        return
    for rel in filter(None, r.stdout.split("\0")):
        src = os.path.join(ROOT, rel)
        if rel.startswith("build") or not os.path.lexists(src):
            continue
        os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
        shutil.copy2(src, os.path.join(dest, rel), follow_symlinks=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    a = ap.parse_args()
    t0 = time.monotonic()
    r = run([os.path.join(ROOT, "deploy", "install-packages"), "debhelper", "dpkg-dev", "fakeroot"])
    if not check(r.returncode == 0, f"debhelper installed {r.stderr.strip()}"):
        sys.exit(1)
    v = version()
    work = tempfile.mkdtemp(prefix="drwatch-deb-")
    try:
        src = os.path.join(work, f"drwatch-{v}")
        copy_tree(src)
        env = dict(os.environ, DEB_BUILD_OPTIONS="parallel=2 nocheck")
        r = run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, env=env)
        if not check(r.returncode == 0, f"dpkg-buildpackage -us -uc -b: exit {r.returncode}"):
            print(r.stdout[-4000:] + r.stderr[-4000:])
            sys.exit(1)
        deb = os.path.join(work, f"drwatch_{v}_amd64.deb")
        if not check(os.path.exists(deb), f"built {os.path.basename(deb)}"):
            sys.exit(1)
        files = {line.split()[5] for line in run(["dpkg-deb", "-c", deb]).stdout.splitlines()}
        for path in ["./usr/sbin/drwatchd", "./usr/bin/drctl", "./lib/systemd/system/drwatchd.service",
                     "./usr/lib/sysusers.d/drwatch.conf", "./usr/lib/tmpfiles.d/drwatch.conf",
                     "./usr/share/man/man8/drwatchd.8.gz", "./usr/share/man/man8/drctl.8.gz",
                     "./usr/share/bash-completion/completions/drctl",
                     "./usr/share/bash-completion/completions/drwatchd",
                     "./usr/share/doc/drwatch/examples/drwatch.json",
                     # uncompressed: the alert rules' runbook paths lead there
                     "./usr/share/doc/drwatch/docs/operations.md",
                     "./usr/share/doc/drwatch/prometheus/drwatch.rules.yml"]:
            check(path in files, f"the package holds {path[1:]}")
        depends = run(["dpkg-deb", "-f", deb, "Depends"]).stdout
        for lib in ["libuv1", "libraft2", "libsystemd0", "libcurl4", "systemd"]:
            check(lib in depends, f"Depends names {lib}")
        ctl = os.path.join(work, "control")
        run(["dpkg-deb", "-e", deb, ctl])
        post = open(os.path.join(ctl, "postinst")).read()
        su, tf = post.find("systemd-sysusers"), post.find("systemd-tmpfiles")
        check(0 <= su < tf, "postinst runs systemd-sysusers, then systemd-tmpfiles")
        # dh_installsystemd --no-enable --no-start: enable only re-creates links of a unit the
        # admin had enabled, and nothing starts it
        check("deb-systemd-invoke" not in post and "was-enabled 'drwatchd.service'" in post,
              "postinst neither starts nor newly enables drwatchd.service")
        root = os.path.join(work, "root")
        run(["dpkg-deb", "-x", deb, root])
        unit = open(os.path.join(root, "lib/systemd/system/drwatchd.service")).read()
        check("ExecStart=/usr/sbin/drwatchd --config /etc/drwatch/cluster.json "
              "--node /etc/drwatch/node.json" in unit,
              "the unit runs /usr/sbin/drwatchd")
        rc, out, _ = verify_unit(unit, "/usr/sbin/", root + "/usr/sbin/",
                                 os.path.join(root, "usr/share/man"), work)
        check(rc == 0 and out == "", f"systemd-analyze verify: exit {rc}, no output (got {out!r})")
        r = run([os.path.join(root, "usr/sbin/drwatchd"), "--version"])
        check(r.returncode == 0 and r.stdout.strip() == f"drwatchd {v}",
              f"the packaged drwatchd --version says {v} ({r.stdout.strip()!r})")
        r = run([os.path.join(root, "usr/bin/drctl"), "--help"])
        check(r.returncode == 0 and "usage: drctl" in r.stdout, "the packaged drctl runs")
    finally:
        if a.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work)
    finish("Debian package", t0)


if __name__ == "__main__":
    main()
