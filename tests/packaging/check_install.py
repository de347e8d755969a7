#!/usr/bin/env python3
"""What `meson install` puts in place (docs/install.md), checked in a scratch DESTDIR: every
file where it belongs, the unit through `systemd-analyze verify` (no warning allowed) and
`systemd-analyze security --offline`, sysusers.d and tmpfiles.d applied to a scratch root, both
man pages rendered without a warning and listing every drctl command and option, and the bash
completion driven as bash drives it (a fake drctl answers for the ids).

usage: tests/packaging/check_install.py --build DIR"""
import argparse
import json
import os
import re
import shutil
import tempfile
import time

from common import ROOT, check, failures, finish, run, verify_unit

COMPLETION = os.path.join(ROOT, "deploy", "completion", "drctl")


def build_options(build):
    r = run(["meson", "introspect", build, "--buildoptions"])
    return {o["name"]: o["value"] for o in json.loads(r.stdout)}


def installed_files(build, dest):
    r = run(["meson", "install", "-C", build, "--destdir", dest, "--quiet", "--no-rebuild"])
    check(r.returncode == 0, f"meson install --destdir: exit {r.returncode} {r.stderr[-2000:]}")
    found = set()
    for d, _, files in os.walk(dest):
        for f in files:
            found.add("/" + os.path.relpath(os.path.join(d, f), dest))
    return found


def pc_var(pkg, var, define):
    r = run(["pkg-config", f"--define-variable={define}", "--variable=" + var, pkg])
    return r.stdout.strip() if r.returncode == 0 else None


def expected_files(o):
    p = o["prefix"]
    unitdir = pc_var("systemd", "systemdsystemunitdir", f"root_prefix={p}") or f"{p}/lib/systemd/system"
    sysusers = pc_var("systemd", "sysusersdir", f"prefix={p}") or f"{p}/lib/sysusers.d"
    tmpfiles = pc_var("systemd", "tmpfilesdir", f"prefix={p}") or f"{p}/lib/tmpfiles.d"
    datadir = f"{p}/{o['datadir']}"
    comp = pc_var("bash-completion", "completionsdir", f"datadir={datadir}") or \
        f"{datadir}/bash-completion/completions"
    mandir = f"{p}/{o['mandir']}"
    files = {
        "drwatchd": f"{p}/{o['sbindir']}/drwatchd",
        "drctl": f"{p}/{o['bindir']}/drctl",
        "unit": f"{unitdir}/drwatchd.service",
        "sysusers": f"{sysusers}/drwatch.conf",
        "tmpfiles": f"{tmpfiles}/drwatch.conf",
        "man drwatchd": f"{mandir}/man8/drwatchd.8",
        "man drctl": f"{mandir}/man8/drctl.8",
        "completion drctl": f"{comp}/drctl",
        "completion drwatchd": f"{comp}/drwatchd",
    }
    for f in sorted(os.listdir(os.path.join(ROOT, "deploy", "examples"))):
        files["example " + f] = f"{datadir}/doc/drwatch/examples/{f}"
    # the docs, where the alert rules' runbook paths (docs/operations.md#...) lead
    files["README"] = f"{datadir}/doc/drwatch/README.md"
    for f in sorted(os.listdir(os.path.join(ROOT, "docs"))):
        if f.endswith(".md"):
            files["doc " + f] = f"{datadir}/doc/drwatch/docs/{f}"
    for f in sorted(os.listdir(os.path.join(ROOT, "docs", "schema"))):
        files["schema " + f] = f"{datadir}/doc/drwatch/docs/schema/{f}"
    return files


def check_unit(dest, files, o):
    unit = dest + files["unit"]
    text = open(unit).read()
    sbin = f"{o['prefix']}/{o['sbindir']}/drwatchd"
    check(f"ExecStart={sbin} --config /etc/drwatch/cluster.json --node /etc/drwatch/node.json" in text,
          f"ExecStart runs the installed {sbin}")
    for line in ["Type=notify", "NotifyAccess=main", "Restart=on-failure", "User=drwatch",
                 "StateDirectory=drwatch", "RuntimeDirectory=drwatch", "ProtectSystem=strict",
                 "NoNewPrivileges=yes", "CapabilityBoundingSet=\n", "PrivateTmp=yes",
                 "LoadCredential=genesys.secret:/etc/drwatch/genesys.secret",
                 "ConfigurationDirectoryMode=0750"]:
        check(line in text, f"unit has {line.strip()}")
    check(re.search(r"^WatchdogSec=\d+s$", text, re.M) is not None, "unit has WatchdogSec=")
    vdir = tempfile.mkdtemp(prefix="drwatch-verify-")
    try:
        manpath = dest + os.path.dirname(os.path.dirname(files["man drctl"]))
        rc, out, copy = verify_unit(text, sbin, dest + sbin, manpath, vdir)
        check(rc == 0 and out == "", f"systemd-analyze verify: exit {rc}, no output (got {out!r})")
        # The exposure score (0 safest, 10 worst); the shipped unit scores 1.7.
        r = run(["systemd-analyze", "security", "--offline=yes", "--threshold=25", copy])
        score = re.search(r"Overall exposure level for \S+: ([\d.]+)", r.stdout)
        check(r.returncode == 0 and score is not None,
              f"systemd-analyze security --offline: exposure {score and score.group(1)} <= 2.5")
    finally:
        shutil.rmtree(vdir)


def check_users_dirs(dest, files):
    if os.geteuid() != 0:
        print("skip sysusers/tmpfiles: not root")
        return
    root = tempfile.mkdtemp(prefix="drwatch-root-")
    try:
        os.makedirs(os.path.join(root, "etc"))
        # installed where they are, and named as docs/install.md names them
        for f in (files["sysusers"], files["tmpfiles"]):
            os.makedirs(os.path.dirname(root + f), exist_ok=True)
            shutil.copy(dest + f, root + f)
        r = run(["systemd-sysusers", f"--root={root}", "drwatch.conf"])
        check(r.returncode == 0, f"systemd-sysusers --root: exit {r.returncode}")
        users = {l.split(":")[0]: l.split(":") for l in open(os.path.join(root, "etc/passwd"))}
        groups = {l.split(":")[0]: l.split(":") for l in open(os.path.join(root, "etc/group"))}
        check("drwatch" in users and "drwatch" in groups and
              users["drwatch"][6].strip() == "/usr/sbin/nologin",
              "sysusers.d: system user and group drwatch, no login shell")
        r = run(["systemd-tmpfiles", f"--root={root}", "--create", "drwatch.conf"])
        check(r.returncode == 0 and r.stderr == "", f"systemd-tmpfiles --root --create: exit "
              f"{r.returncode} {r.stderr}")
        uid, gid = int(users["drwatch"][2]), int(groups["drwatch"][2])
        for path, owner in [("etc/drwatch", 0), ("etc/drwatch/peer.d", 0),
                            ("var/lib/drwatch", uid)]:
            st = os.stat(os.path.join(root, path))
            check((st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o750, owner, gid),
                  f"/{path}: 0750 uid {owner} gid drwatch (got {oct(st.st_mode & 0o7777)} "
                  f"{st.st_uid}:{st.st_gid})")
    finally:
        shutil.rmtree(root)


def long_options(prog):
    """The long options in src/PROG/main.c's getopt table."""
    src = open(os.path.join(ROOT, "src", prog, "main.c")).read()
    return set(re.findall(r'\{"([a-z][a-z-]+)", (?:no|required|optional)_argument', src))


def drctl_commands_and_options():
    src = open(os.path.join(ROOT, "src", "drctl", "main.c")).read()
    commands = set(re.findall(r'^\s*"  ([a-z][a-z-]+)[ \\]', src, re.M))
    return commands, long_options("drctl")


def check_man(dest, files):
    for page in ("man drwatchd", "man drctl"):
        path = dest + files[page]
        r = run(["man", "--warnings", "-l", path], env=dict(os.environ, MANWIDTH="80",
                                                           MAN_KEEP_FORMATTING="0"))
        check(r.returncode == 0 and r.stderr == "" and "SEE ALSO" in re.sub(".\b", "", r.stdout),
              f"{page}: man --warnings renders it cleanly ({r.stderr.strip()!r})")
    text = run(["man", "-l", dest + files["man drctl"]], env=dict(os.environ, MANWIDTH="200")).stdout
    text = re.sub(".\b", "", text)
    commands, options = drctl_commands_and_options()
    # issue 9 adds these in drctl's own branch; the page lists them already
    commands |= {"status", "list", "history", "watch", "version"}
    options |= {"since", "group", "version"}
    check(len(commands) >= 10 and len(options) >= 10,
          f"found drctl's commands ({len(commands)}) and options ({len(options)}) in main.c")
    for c in sorted(commands):
        check(re.search(rf"^\s+{c}\b", text, re.M) is not None, f"drctl(8) describes command {c}")
    for o in sorted(options):
        check(f"--{o}" in text, f"drctl(8) mentions --{o}")
    wd = run(["man", "-l", dest + files["man drwatchd"]], env=dict(os.environ, MANWIDTH="200")).stdout
    wd = re.sub(".\b", "", wd)
    for o in sorted(long_options("drwatchd")):
        check(f"--{o}" in wd, f"drwatchd(8) mentions --{o}")
    for word in ["SIGHUP", "SIGTERM", "NOTIFY_SOCKET", "CREDENTIALS_DIRECTORY", "WATCHDOG_USEC",
                 "EXIT STATUS", "/etc/drwatch/cluster.json", "/etc/drwatch/node.json"]:
        check(word in wd, f"drwatchd(8) covers {word}")


FAKE_DRCTL = """#!/bin/sh
# answers like a daemon behind --socket /fake.sock, and like none otherwise
case "$*" in
  "--socket /fake.sock --json status")
    echo '{"ok":true,"cluster":{"sites":[{"id":"site-a"},{"id":"site-b"}],"groups":[{"id":"carrier-1"},{"id":"carrier-2"}]}}' ;;
  "--socket /fake.sock --json config show")
    echo '{"ok":true,"config":{"failover_groups":[{"id":"carrier-1","targets":[{"id":"premise-a"},{"id":"cloud"}]}]}}' ;;
  *) echo "drctl: cannot connect" >&2; exit 3 ;;
esac
"""


def complete(script, words, cword=None):
    """COMPREPLY of _drctl for words (the last one being completed), as bash computes it."""
    cword = len(words) - 1 if cword is None else cword
    arr = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    prog = f"source '{script}'; COMP_WORDS=({arr}); COMP_CWORD={cword}; _drctl; " \
           'printf "%s\\n" "${COMPREPLY[@]}"'
    r = run(["bash", "--norc", "--noprofile", "-c", prog])
    if r.returncode != 0 or r.stderr:
        return ("error", r.returncode, r.stderr)
    return sorted(x for x in r.stdout.split("\n") if x)


def check_completion(dest, files):
    script = dest + files["completion drctl"]
    check(open(script).read() == open(COMPLETION).read(), "the installed completion is deploy's")
    tmp = tempfile.mkdtemp(prefix="drwatch-comp-")
    try:
        fake = os.path.join(tmp, "drctl")
        with open(fake, "w") as f:
            f.write(FAKE_DRCTL)
        os.chmod(fake, 0o755)
        cases = [
            (["drctl", ""], None, "status list history watch version dump debug hold config "
             "members maintenance switchover failback"),
            (["drctl", "--socket", "/x", "m"], None, "maintenance members"),
            (["drctl", "-"], None, "--help --json --socket --version"),
            (["drctl", "config", ""], None, "apply diff show"),
            (["drctl", "members", ""], None, "add list remove"),
            (["drctl", "maintenance", "set", ""], None, "group site"),
            (["drctl", "history", "--"], None, "--group --json --limit --since"),
            (["drctl", "switchover", "carrier-1", "--"], None,
             "--dry-run --json --timeout --to --wait"),
            (["drctl", "debug", "crash-before", ""], None, "activate deactivate verify"),
            # ids from the (fake) daemon behind the --socket given on the line
            ([fake, "--socket", "/fake.sock", "maintenance", "set", "site", ""], None, "site-a site-b"),
            ([fake, "--socket", "/fake.sock", "maintenance", "clear", "group", "c"], None,
             "carrier-1 carrier-2"),
            ([fake, "--socket", "/fake.sock", "switchover", "carrier-1", "--to", ""], None,
             "cloud premise-a"),
            ([fake, "--socket", "/fake.sock", "hold", "release", ""], None, "carrier-1 carrier-2"),
            ([fake, "--socket", "/fake.sock", "history", "--group", ""], None, "carrier-1 carrier-2"),
            # no daemon: nothing offered, nothing printed
            ([fake, "--socket", "/nowhere.sock", "failback", ""], None, ""),
        ]
        for words, cword, want in cases:
            got = complete(COMPLETION, words, cword)
            check(got == sorted(want.split()), f"complete {' '.join(words[1:])!r}: {want!r} (got {got!r})")
        r = run(["bash", "--norc", "-c", f"source '{dest + files['completion drwatchd']}'; "
                 "COMP_WORDS=(drwatchd --log-level ''); COMP_CWORD=2; _drwatchd; "
                 'echo "${COMPREPLY[@]}"'])
        check(r.stdout.split() == ["debug", "info", "warn", "error"],
              f"complete drwatchd --log-level: {r.stdout.strip()!r}")
        r = run(["bash", "--norc", "-c", f"source '{dest + files['completion drwatchd']}'; "
                 "COMP_WORDS=(drwatchd --); COMP_CWORD=1; _drwatchd; "
                 'echo "${COMPREPLY[@]}"'])
        for o in sorted(long_options("drwatchd")):
            check(f"--{o}" in r.stdout.split(), f"complete drwatchd --: offers --{o}")
        text = open(COMPLETION).read()
        for o in sorted(drctl_commands_and_options()[1]):
            check(f"--{o}" in text, f"the drctl completion knows --{o}")
    finally:
        shutil.rmtree(tmp)


def check_runbooks(dest, files):
    """Each installed alert's runbook path names an installed doc, relative to the doc dir."""
    docdir = os.path.dirname(dest + files["README"])
    with open(os.path.join(docdir, "prometheus", "drwatch.rules.yml")) as f:
        paths = set(re.findall(r'runbook: "([^"#]+)#', f.read()))
    check(paths and all(os.path.isfile(os.path.join(docdir, p)) for p in paths),
          f"the alert runbooks ({', '.join(sorted(paths))}) are installed beside the rules")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    a = ap.parse_args()
    t0 = time.monotonic()
    o = build_options(a.build)
    dest = tempfile.mkdtemp(prefix="drwatch-destdir-")
    try:
        found = installed_files(a.build, dest)
        files = expected_files(o)
        for what, path in sorted(files.items()):
            check(path in found, f"installs {what} as {path}")
        if not failures:
            check_unit(dest, files, o)
            check_users_dirs(dest, files)
            check_man(dest, files)
            check_completion(dest, files)
            check_runbooks(dest, files)
    finally:
        shutil.rmtree(dest)
    finish("packaging", t0)


if __name__ == "__main__":
    main()
