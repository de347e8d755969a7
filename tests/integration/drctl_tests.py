"""drctl as an operator meets it: status and list (exit 0 with a leader, 4 without), history
filters, watch following a site loss and its failover live, version, every --json output
validated against its schema in docs/schema/, and errors that say what to do."""
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading

import jsonschema

from harness import Cluster, wait_until

BUILD = None
SCHEMAS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "schema")
DEFAULT_SOCKET = "/run/drwatch/admin.sock"


def schema(name):
    with open(os.path.join(SCHEMAS, f"drctl-{name}.json")) as f:
        s = json.load(f)
    jsonschema.Draft202012Validator.check_schema(s)
    return s


def valid(doc, name):
    jsonschema.Draft202012Validator(schema(name)).validate(doc)
    return doc


def drctl(*args, env=None, timeout=20):
    return subprocess.run([os.path.join(BUILD, "drctl"), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def json_of(c, i, schema_name, *args, rc=0):
    """drctl --json ARGS on node i: its output, checked against its schema."""
    r = c.run_drctl(i, "--json", *args)
    assert r.returncode == rc, (args, r.returncode, r.stdout, r.stderr)
    return valid(json.loads(r.stdout), schema_name)


class Lines:
    """A running drctl whose stdout and stderr lines are collected as they come."""

    def __init__(self, c, i, *args):
        self.p = subprocess.Popen([os.path.join(c.build, "drctl"), "--socket", c.socket(i), *args],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out, self.err = [], []
        for stream, into in ((self.p.stdout, self.out), (self.p.stderr, self.err)):
            threading.Thread(target=lambda s=stream, l=into: [l.append(x.rstrip("\n")) for x in s],
                             daemon=True).start()

    def wait_for(self, pred, what, timeout=40):
        return wait_until(lambda: next((x for x in list(self.out) if pred(x)), None), timeout,
                          f"{what} in {self.out[-5:]}")

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(timeout=10)


def test_drctl_views_watch_and_json_on_a_live_cluster():
    """One cluster: status, list, version and history on a follower and the leader; two watches
    (text and --json) see site-a's verdict change and the failover's plan, steps and end; every
    --json output matches its schema; a follower names the leader when refusing; a watch whose
    node dies exits 3; a node alone sees no leader and status says so with exit 4."""
    with Cluster(BUILD, name="drctl").start() as c:
        lid = c.wait_leader()
        c.wait_sites_up("site-a", "site-b")
        f1, f2 = [i for i in (1, 2, 3) if i != lid]
        # every member heard (its observation committed) as seen from a follower
        wait_until(lambda: all(m["reachable"] for m in c.status(f1)["members"]), 20,
                   "every member reachable from a follower")

        r = c.run_drctl(f1, "status")
        assert r.returncode == 0, (r.returncode, r.stderr)
        out = r.stdout
        assert out.startswith(f"cluster: leader {lid} (n{lid}) at 127.0.0.1:"), out
        assert f"this node: {f1} (n{f1}), follower" in out, out
        for i in (1, 2, 3):
            state = "leader" if i == lid else "follower"
            want = [str(i), f"n{i}", *(["*"] if i == f1 else []), state, "yes"]
            assert any(line.split()[:len(want)] == want for line in out.splitlines()), (i, out)
        assert "site-a           up       " in out and "carrier-1        premise-a        auto      ok" in out, out
        st = json_of(c, f1, "status", "status")
        assert st["leader"]["id"] == lid and st["version"], st["leader"]
        assert {m["id"]: m["state"] for m in st["members"]}[lid] == "leader"
        assert [m["self"] for m in st["members"]].count(True) == 1

        r = c.run_drctl(lid, "list")
        assert r.returncode == 0 and len(r.stdout.splitlines()) == 5, r.stdout  # cluster, head, 3
        lst = json_of(c, lid, "list", "list")
        assert [m["id"] for m in lst["members"]] == [1, 2, 3] and lst["leader"]["id"] == lid

        r = c.run_drctl(f2, "version")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[1] == f"drwatchd {st['version']} on node {f2} (n{f2})", r.stdout
        v = json_of(c, f2, "version", "version")
        assert v["daemon"]["node"] == {"id": f2, "name": f"n{f2}"} and v["drctl"] == v["daemon"]["version"]

        # two watches, on two followers, before anything happens
        text = Lines(c, f1, "watch")
        js = Lines(c, f2, "--json", "watch")
        try:
            for w in (text, js):
                wait_until(lambda w=w: any("watching" in x for x in w.err), 10, "watch started")
            c.kill_edges("site-a")
            text.wait_for(lambda x: " verdict " in x and "site-a: up -> down" in x, "verdict line")
            text.wait_for(lambda x: " operation " in x and "failover #1 premise-a -> premise-b planned" in x,
                          "operation planned")
            text.wait_for(lambda x: " step " in x and "#1 step 0 activate premise-b: done" in x,
                          "a step done")
            text.wait_for(lambda x: "failover #1 premise-a -> premise-b done" in x, "operation done")
            assert text.out[0][:4].isdigit() and text.out[0][10] == "T", text.out[0]  # ISO time
            js.wait_for(lambda x: "failover #1 premise-a -> premise-b done" in x, "operation done (json)")
            rows = [valid(json.loads(x), "watch") for x in list(js.out)]
            assert [r["id"] for r in rows] == sorted({r["id"] for r in rows}), "in order, once each"
            kinds = {(r["kind"], r["subject"]) for r in rows}
            assert {("verdict", "site site-a"), ("operation", "group carrier-1"),
                    ("step", "group carrier-1")} <= kinds, kinds
            c.wait_operation_done()

            # history: filters on the daemon side
            h = json_of(c, f1, "history", "history", "--group", "carrier-1", "--limit", "1000")
            assert h["history"] and all(r["subject"] in ("group carrier-1", "site site-a", "site site-b")
                                        for r in h["history"]), h
            all_rows = json_of(c, f1, "history", "history", "1000")["history"]
            assert {r["kind"] for r in all_rows} >= {"leader", "config", "verdict", "operation"}
            assert len(h["history"]) < len(all_rows)
            assert len(json_of(c, f1, "history", "history", "--limit", "2")["history"]) == 2
            assert json_of(c, f1, "history", "history", "--since", "2999-01-01T00:00:00Z")["history"] == []
            recent = json_of(c, f1, "history", "history", "--since", "1d")["history"]
            assert recent and recent[0]["id"] >= all_rows[0]["id"], (recent[:1], all_rows[:1])
            r = c.run_drctl(f1, "history", "--group", "carrier-1", "--since", "1h")
            assert r.returncode == 0 and "failover #1" in r.stdout and " leader " not in r.stdout, r.stdout
            r = c.run_drctl(f1, "history", "--group", "nope")
            assert r.returncode == 1 and 'no group "nope"' in r.stderr, (r.returncode, r.stderr)
            valid(json.loads(c.run_drctl(f1, "--json", "history", "--group", "nope").stdout), "error")

            # a leader-only command on a follower names the leader and where it runs (asked
            # again: a loaded machine may have moved leadership since the start)
            lid = c.wait_leader()
            fol = next(i for i in (1, 2, 3) if i != lid)
            r = c.run_drctl(fol, "maintenance", "set", "site", "site-b", "--ttl", "1m", "--reason", "t")
            peer = [m["peer_address"] for m in st["members"] if m["id"] == lid][0]
            assert r.returncode == 1 and f"the leader is node {lid} (n{lid}), peer address {peer}" \
                in r.stderr, r.stderr
            err = json_of(c, fol, "error", "maintenance", "set", "site", "site-b", "--ttl", "1m",
                          "--reason", "t", rc=1)
            assert err["leader"] == lid and err["leader_peer_address"] == peer, err

            # the other commands' --json, each against its schema
            json_of(c, f1, "operate", "switchover", "carrier-1", "--to", "cloud", "--dry-run")
            json_of(c, lid, "ack", "maintenance", "set", "site", "site-b", "--ttl", "1m", "--reason", "t")
            text.wait_for(lambda x: " maintenance " in x and "site site-b: maintenance set" in x,
                          "maintenance line")
            assert json_of(c, f1, "maintenance", "maintenance", "list")["maintenance"]
            json_of(c, lid, "ack", "maintenance", "clear", "site", "site-b")
            json_of(c, f1, "members", "members", "list")
            json_of(c, f1, "config", "config", "show")
            valid(json.loads(c.run_drctl(f1, "--json", "failback", "carrier-1", "--dry-run").stdout),
                  "error")  # premise-a is down
            json_of(c, f1, "dump", "dump")
            assert json_of(c, lid, "ack", "hold", "release", "carrier-1")["was_held"] is False
            r = c.run_drctl(lid, "hold", "release", "carrier-1")
            assert r.returncode == 0 and r.stdout == (
                "carrier-1: was not held; release recorded (its flap window starts afresh)\n"), r
            own = os.path.join(c.dir, f"n{lid}.json")
            assert json_of(c, f1, "config", "config", "diff", own)["count"] == 0
            assert json_of(c, lid, "config", "config", "apply", own, "--dry-run")["dry_run"] is True
            json_of(c, lid, "ack", "debug", "crash-before", "")
            c.wait_operation_done()  # the clean-up after the window, if one was planned
            # a --timeout drctl cannot use is refused before anything starts
            before = [o["id"] for o in c.status(lid)["cluster"]["operations"]]
            r = c.run_drctl(lid, "switchover", "carrier-1", "--to", "cloud", "--wait",
                            "--timeout", "1x")
            assert r.returncode == 2 and 'expected whole seconds from 1 to 86400, not "1x"' \
                in r.stderr, (r.returncode, r.stderr)
            assert [o["id"] for o in c.status(lid)["cluster"]["operations"]] == before
            # --json --wait: one document, the reply and how the operation ended
            moved = json_of(c, lid, "operate", "switchover", "carrier-1", "--to", "cloud", "--wait")
            assert moved["operation"] >= 2 and moved["plan"]["to"] == "cloud", moved
            res = moved["result"]
            assert (res["id"], res["status"], res["to"]) == (moved["operation"], "done", "cloud"), res
            assert res["steps"] and all(st["status"] == "done" for st in res["steps"]), res
            text.wait_for(lambda x: f"switchover #{moved['operation']} premise-b -> cloud done" in x,
                          "the switchover done")
            back = json_of(c, lid, "operate", "failback", "carrier-1")
            assert back["plan"]["to"] == "premise-b", back
            c.wait_operation_done()

            # Ctrl-C ends a watch with exit 0
            js.p.send_signal(signal.SIGINT)
            assert js.p.wait(timeout=10) == 0, js.err

            # the node under the text watch stops (cleanly, with the watch's request waiting in
            # it): the watch says so and exits 3
            c.kill_node(f1, signal.SIGTERM)
            assert text.p.wait(timeout=15) == 3
            wait_until(lambda: any("lost the daemon" in x for x in text.err), 5, "watch's message")
        finally:
            text.stop()
            js.stop()

        # f2 alone: no leader as it sees it
        c.kill_node(lid)
        wait_until(lambda: c.run_drctl(f2, "status").returncode == 4, 30, "status exit 4 on a lone node")
        r = c.run_drctl(f2, "status")
        assert r.stdout.startswith("cluster: NO LEADER"), r.stdout
        gone = json_of(c, f2, "status", "status", rc=4)
        assert gone["leader"]["id"] == 0
        assert {m["id"]: m["reachable"] for m in gone["members"]} == {1: f2 == 1, 2: f2 == 2, 3: f2 == 3}
        assert c.run_drctl(f2, "list").returncode == 4
        json_of(c, f2, "list", "list", rc=4)


def test_drctl_errors_say_what_to_do():
    """No daemon, a wrong socket, no permission, a wrong command or option, a wrong --since:
    each names what is wrong and what to do, with its exit code; and --version, help."""
    tmp = tempfile.mkdtemp(prefix="drctl-err-")
    try:
        missing = os.path.join(tmp, "nothing.sock")
        hint = ("is drwatchd running on this machine? Point drctl elsewhere with --socket PATH or "
                "DRCTL_SOCKET=PATH")
        r = drctl("--socket", missing, "status")
        assert r.returncode == 3, r
        assert r.stderr == f"drctl: cannot connect to {missing}: No such file or directory; {hint}\n", r.stderr
        env = dict(os.environ, DRCTL_SOCKET=missing, DRWATCH_SOCKET="/elsewhere.sock")
        r = drctl("list", env=env)
        assert r.returncode == 3 and f"connect to {missing}:" in r.stderr, r.stderr
        if not os.path.exists(DEFAULT_SOCKET):
            env = {k: v for k, v in os.environ.items() if k not in ("DRCTL_SOCKET", "DRWATCH_SOCKET")}
            r = drctl("status", env=env)
            assert r.stderr.startswith(f"drctl: cannot connect to {DEFAULT_SOCKET}: "), r.stderr
        plain = os.path.join(tmp, "plain-file")
        open(plain, "w").close()
        r = drctl("--socket", plain, "status")
        assert r.returncode == 3 and "Connection refused; is drwatchd running" in r.stderr, r.stderr
        r = drctl("--socket", "/" + "x" * 120, "status")
        assert r.returncode == 2 and "path longer than" in r.stderr, r.stderr
        r = drctl("--socket", missing, "watch")
        assert r.returncode == 3 and hint in r.stderr, r.stderr
        r = drctl("--socket", missing, "version")
        assert r.returncode == 3 and r.stdout.startswith("drctl ") and hint in r.stderr, r

        # permission denied: a listening socket in a directory only root may enter
        if os.geteuid() == 0 and shutil.which("setpriv"):
            d = os.path.join(tmp, "private")
            os.mkdir(d, 0o700)
            path = os.path.join(d, "admin.sock")
            srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            srv.bind(path)
            srv.listen(1)
            nobody = pwd.getpwnam("nobody")
            os.chmod(tmp, 0o755)
            r = subprocess.run(["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                                "--clear-groups", os.path.join(BUILD, "drctl"), "--socket", path,
                                "status"], capture_output=True, text=True, timeout=20)
            srv.close()
            assert r.returncode == 3, (r.returncode, r.stderr)
            assert f"cannot connect to {path}: Permission denied; {d} belongs to user root and " \
                   "group root (mode 0700): run drctl as root, or as a member of group root" \
                   in r.stderr, r.stderr

        usage = 'usage: drctl [--socket PATH] [--json] COMMAND [ARGS]\nrun "drctl help" for the ' \
                'commands and their options\n'
        r = drctl("--socket", missing, "bogus")
        assert r.returncode == 2 and r.stderr == 'drctl: unknown command "bogus"\n' + usage, r.stderr
        r = drctl("--socket", missing, "--bogus", "status")
        assert r.returncode == 2 and "'--bogus'" in r.stderr and r.stderr.endswith(usage), r.stderr
        r = drctl("--socket", missing, "status", "extra")
        assert r.returncode == 2 and r.stderr.endswith(usage), r.stderr
        r = drctl("--socket", missing, "status", "--since", "1h")
        assert r.returncode == 2, r.stderr

        # --since: durations and UTC times pass (then meet no daemon), anything else is refused
        for good in ("90s", "30m", "2h", "1d", "2026-01-31", "2026-01-31T12:00", "2026-01-31T12:00:00Z"):
            r = drctl("--socket", missing, "history", "--since", good)
            assert r.returncode == 3, (good, r.stderr)
        for bad in ("", "5", "1w", "-1h", "2026-13-01", "2026-01-31T25:00:00Z", "2026-01-31Tx",
                    "yesterday", "2026-01-31T12:00:00+02:00",
                    # past what milliseconds in 64 bits hold: refused, not wrapped around
                    "213503982336d", "9223372036854776s"):
            r = drctl("--socket", missing, "history", "--since", bad)
            assert r.returncode == 2 and "--since: expected a duration like 90s" in r.stderr, (bad, r)

        r = drctl("--version")
        assert r.returncode == 0 and r.stdout.startswith("drctl ") and not r.stderr, r
        r = drctl("help")
        assert r.returncode == 0 and "watch [--group G]" in r.stdout and "DRCTL_SOCKET" in r.stdout, r
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


TESTS = [test_drctl_views_watch_and_json_on_a_live_cluster, test_drctl_errors_say_what_to_do]
