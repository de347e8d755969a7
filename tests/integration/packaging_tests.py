"""drwatchd under a service manager (docs/install.md): sd_notify messages on a real cluster,
read from the unix datagram sockets the test binds as $NOTIFY_SOCKET, one per node. READY=1
once the admin socket answers, STATUS= kept current, WATCHDOG=1 every half $WATCHDOG_USEC and
none from a stopped (SIGSTOP) loop, STOPPING=1 on SIGTERM; and the bash completion offering a
live node's ids."""
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

from harness import Cluster, wait_until

BUILD = None
HERE = os.path.dirname(os.path.abspath(__file__))
COMPLETION = os.path.join(os.path.dirname(os.path.dirname(HERE)), "deploy", "completion", "drctl")
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


TESTS = [v for k, v in sorted(globals().items()) if k.startswith("test_")]
