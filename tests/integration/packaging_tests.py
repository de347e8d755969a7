"""drwatchd under a service manager (docs/install.md): sd_notify messages on a real cluster,
read from the unix datagram sockets the test binds as $NOTIFY_SOCKET, one per node. READY=1
once the admin socket answers, STATUS= kept current, WATCHDOG=1 every half $WATCHDOG_USEC and
none from a stopped (SIGSTOP) loop, STOPPING=1 on SIGTERM; and the bash completion offering a
live node's ids."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from harness import Cluster, wait_until
from notify_tests import NotifyCluster

BUILD = None
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
COMPLETION = os.path.join(ROOT, "deploy", "completion", "drctl")
UNIT = os.path.join(ROOT, "deploy", "systemd", "drwatchd.service.in")
WATCHDOG_USEC = 1_000_000


def admin_answers(path):
    """True when the admin socket at path answers a status request right now."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(path)
            s.sendall(b'{"cmd":"status"}\n')
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            return json.loads(buf).get("ok") is True
    except (OSError, ValueError):
        return False


class Notifications:
    """The service manager's end: one datagram socket per node, read by a thread. On READY=1 the
    thread at once asks that node's admin socket, so a READY sent too early shows."""

    def __init__(self, cluster, nodes):
        self.c = cluster
        self.socks = {}
        self.msgs = []  # (monotonic time, node, {key: value})
        self.ready_answered = {}
        self.lock = threading.Lock()
        self.done = False
        for i in nodes:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.bind(os.path.join(cluster.dir, f"notify{i}.sock"))
            s.settimeout(0.05)
            self.socks[i] = s
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def path(self, i):
        return self.socks[i].getsockname()

    def run(self):
        while not self.done:
            for i, s in self.socks.items():
                try:
                    data = s.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    return
                fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
                if fields.get("READY") == "1":
                    self.ready_answered[i] = admin_answers(self.c.socket(i))
                with self.lock:
                    self.msgs.append((time.monotonic(), i, fields))

    def of(self, i, key, since=0.0):
        with self.lock:
            return [(t, f[key]) for t, n, f in self.msgs if n == i and key in f and t >= since]

    def status(self, i):
        s = self.of(i, "STATUS")
        return s[-1][1] if s else None

    def close(self):
        self.done = True
        self.thread.join()
        for s in self.socks.values():
            s.close()


def proc_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def complete(words):
    arr = " ".join("'" + w + "'" for w in words)
    prog = f"source '{COMPLETION}'; COMP_WORDS=({arr}); COMP_CWORD={len(words) - 1}; _drctl; " \
           'printf "%s\\n" "${COMPREPLY[@]}"'
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", prog], capture_output=True,
                       text=True, timeout=20)
    return sorted(x for x in r.stdout.split("\n") if x)


def test_sd_notify_ready_status_watchdog_stopping():
    c = Cluster(BUILD, name="sdnotify")
    n = None
    try:
        c.write_configs()
        c.start_sims()
        n = Notifications(c, range(1, 4))
        env = dict(c.node_env)
        for i in range(1, 4):
            c.node_env = dict(env, NOTIFY_SOCKET=n.path(i), WATCHDOG_USEC=str(WATCHDOG_USEC))
            c.start_node(i)
        c.node_env = env
        wait_until(lambda: len(n.ready_answered) == 3, 20, "READY=1 from every node")
        assert all(n.ready_answered.values()), f"READY=1 before the admin socket answered: {n.ready_answered}"
        for i in range(1, 4):
            with n.lock:
                first = next(f for t, k, f in n.msgs if k == i)
            assert first.get("READY") == "1" and "STATUS" in first, f"node {i}'s first message: {first}"

        # STATUS follows the election: one leader, the others its followers, in its term.
        leader = c.wait_leader()
        term = c.status(leader)["leader"]["term"]
        want = {i: (f"leader, term {term}, 3 members" if i == leader
                    else f"follower of n{leader}, term {term}, 3 members") for i in range(1, 4)}
        wait_until(lambda: all(n.status(i) == want[i] for i in range(1, 4)), 20,
                   f"STATUS lines {want} (have {[n.status(i) for i in range(1, 4)]})")
        for i in range(1, 4):  # sent when the line changes, not on every poll
            lines = [v for _, v in n.of(i, "STATUS")]
            assert all(a != b for a, b in zip(lines, lines[1:])), f"node {i} repeats: {lines}"

        # WATCHDOG=1 every half interval: at least five pings, none more than an interval apart.
        t0 = time.monotonic()
        wait_until(lambda: len(n.of(1, "WATCHDOG", t0)) >= 6, 10, "six WATCHDOG=1 from node 1")
        ts = [t for t, v in n.of(1, "WATCHDOG", t0) if v == "1"]
        gaps = [b - a for a, b in zip(ts, ts[1:])]
        mean = sum(gaps) / len(gaps)
        assert 0.35 <= mean <= 0.75 and max(gaps) < WATCHDOG_USEC / 1e6, \
            f"WATCHDOG=1 gaps {gaps}: expected every {WATCHDOG_USEC / 2e6} s"

        # A stopped loop sends nothing: while another node pings five more times (2 s or more,
        # four pings of a running node), it is silent but for one sent just before the stop
        # that the reader may take after it.
        f = next(i for i in range(1, 4) if i != leader)
        other = next(i for i in range(1, 4) if i not in (f, leader))
        pid = c.procs[f].pid
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_until(lambda: proc_state(pid) == "T", 5, f"node {f} stopped")
            stopped = time.monotonic()
            wait_until(lambda: len(n.of(other, "WATCHDOG", stopped)) >= 5, 10,
                       f"five WATCHDOG=1 from node {other}")
            late = n.of(f, "WATCHDOG", stopped)
            assert len(late) <= 1, f"node {f} pinged while stopped: {late}"
        finally:
            os.kill(pid, signal.SIGCONT)
        resumed = time.monotonic()
        wait_until(lambda: n.of(f, "WATCHDOG", resumed), 5, f"WATCHDOG=1 from node {f} again")

        # The completion asks the live node for its ids.
        wait_until(lambda: complete([os.path.join(BUILD, "drctl"), "--socket", c.socket(other),
                                     "maintenance", "set", "site", ""]) == ["site-a", "site-b"],
                   10, "site ids completed from the live node")
        got = complete([os.path.join(BUILD, "drctl"), "--socket", c.socket(other), "switchover",
                        "carrier-1", "--to", ""])
        assert got == ["cloud", "premise-a", "premise-b"], got

        # SIGTERM: STOPPING=1, then no more pings; the others' STATUS moves on to a new term.
        assert n.of(leader, "STOPPING") == []
        c.kill_node(leader, signal.SIGTERM)
        # sent before the exit, read by the thread soon after
        stops = wait_until(lambda: n.of(leader, "STOPPING"), 5, "STOPPING=1 from the leader")
        assert [v for _, v in stops] == ["1"], f"STOPPING from the stopped leader: {stops}"
        after = [t for t, _ in n.of(leader, "WATCHDOG", stops[0][0])]
        assert after == [], f"WATCHDOG=1 after STOPPING=1: {after}"
        moved = re.compile(r"^(leader|follower of n\d+|no leader), term (\d+), 3 members"
                           r"(, TILT: abstaining)?$")

        def new_term():
            for i in (f, other):
                m = moved.match(n.status(i) or "")
                if not m or int(m.group(2)) <= term or m.group(1) == f"follower of n{leader}":
                    return False
            return True
        wait_until(new_term, 20, "the survivors' STATUS in a new term")
    except BaseException:
        c.__exit__(*__import__("sys").exc_info())
        raise
    finally:
        if n:
            n.close()
    c.stop()


def syscall_set(name, seen=None):
    """The system calls of a systemd-analyze syscall-filter set, nested sets expanded."""
    seen = set() if seen is None else seen
    seen.add(name)
    out = set()
    r = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True,
                       text=True, timeout=20, check=True)
    for line in r.stdout.splitlines()[1:]:
        w = line.strip()
        if w.startswith("@") and w not in seen:
            out |= syscall_set(w, seen)
        elif w and not w.startswith(("#", "@")):
            out.add(w)
    return out


def test_syscalls_and_socket_families_fit_the_unit():
    # The unit's SystemCallFilter= and RestrictAddressFamilies= against what three real nodes
    # (and the notification hook one of them runs) call through a failover, under strace.
    unit = open(UNIT).read()
    allowed = set()
    for line in re.findall(r"^SystemCallFilter=(.*)$", unit, re.M):
        for w in line.split():
            assert not w.startswith("~"), f"deny lists are not modelled here: {line}"
            allowed |= syscall_set(w) if w.startswith("@") else {w}
    families = set(re.search(r"^RestrictAddressFamilies=(.*)$", unit, re.M).group(1).split())
    assert len(allowed) > 20 and families, (len(allowed), families)
    c = NotifyCluster(BUILD, name="syscalls")
    hooks = os.path.join(c.dir, "hooks")
    os.makedirs(hooks)
    c.channels = {"hook": {"command": ["/bin/sh", "-c", 'cat > "$0/hook.$$"', hooks],
                           "timeout_ms": 5000}}
    tdir = tempfile.mkdtemp(prefix="drwatch-strace-")  # outlives the cluster's directory
    traces = {i: os.path.join(tdir, f"strace.{i}") for i in range(1, 4)}
    c.node_prefix = {i: ["strace", "-f", "-qq", "-o", traces[i]] for i in range(1, 4)}
    # LeakSanitizer stops the world with ptrace, which strace holds already (sanitized build)
    c.node_env = {"ASAN_OPTIONS": ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"),
                                                           "detect_leaks=0"]))}
    tracees = {}
    try:
        c.start()
        # strace does not pass SIGTERM on: the node is its child
        for i, p in c.procs.items():
            with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
                tracees[i] = int(f.read().split()[0])
        c.wait_leader()
        c.wait_sites_up("site-a", "site-b")
        for i in range(1, 4):
            assert "drwatch_is_leader" in c.metrics(i)
        c.kill_edges("site-a")
        c.wait_operation_done(range(1, 4), 40, "failover done on every node")
        wait_until(lambda: os.listdir(hooks), 20, "the hook run by the leader")
        for i in range(1, 4):
            os.kill(tracees.pop(i), signal.SIGTERM)
            rc = c.procs.pop(i).wait(timeout=20)  # strace exits as its tracee did
            assert rc == 0, f"node {i} exited {rc} on SIGTERM"
    except BaseException:
        for pid in tracees.values():
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(tdir, ignore_errors=True)
        c.__exit__(*__import__("sys").exc_info())
        raise
    c.stop()
    used, fams, execs = set(), set(), set()
    for i, path in traces.items():
        with open(path) as f:
            for line in f:
                m = re.match(r"\d+\s+([a-z_0-9]+)\((.*)", line)
                if not m:
                    continue
                used.add(m.group(1))
                if m.group(1) == "socket":
                    fams.add(m.group(2).split(",")[0])
                if m.group(1) == "execve":
                    execs.add(m.group(2).split(",")[0])
    shutil.rmtree(tdir)
    assert '"/bin/sh"' in execs, f"the hook never ran under strace: {execs}"
    assert used - allowed == set(), f"system calls outside SystemCallFilter=: {sorted(used - allowed)}"
    assert fams and fams <= families, f"socket families {fams}, the unit allows {families}"


TESTS = [v for k, v in sorted(globals().items()) if k.startswith("test_")]
