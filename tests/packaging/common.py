"""What the packaging checks share: a check list, quiet commands, the unit through
systemd-analyze verify."""
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)
    return ok


def run(cmd, timeout=900, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def verify_unit(text, sbin, staged, manpath, workdir):
    """systemd-analyze verify on the unit text, its ExecStart pointed from the sbin directory to
    the staged one: verify wants the binary to exist, and on systemd 252 --root= would look for
    sysinit.target and /bin/kill under that root as well. man finds the pages that
    Documentation= names through MANPATH. The copy goes to workdir/drwatchd.service.
    Returns (exit code, all output, the copy's path)."""
    path = os.path.join(workdir, "drwatchd.service")
    with open(path, "w") as f:
        f.write(text.replace(f"ExecStart={sbin}", f"ExecStart={staged}"))
    r = run(["systemd-analyze", "verify", path],
            env=dict(os.environ, MANPATH=manpath, SYSTEMD_LOG_COLOR="0"))
    return r.returncode, (r.stdout + r.stderr).strip(), path


def finish(what, t0):
    """Prints the count of failed checks and exits with the verdict."""
    print(f"{what}: {len(failures)} failed ({time.monotonic() - t0:.1f} s)")
    sys.exit(1 if failures else 0)
