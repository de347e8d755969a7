#!/usr/bin/env python3
"""Runs the failover demo and prints its timeline (see deploy/demo): site A dies, the leader is
killed in the middle of the failover, the new leader finishes it, site A comes back and the
group fails back after stable_for. Which node did what is read from the nodes' own logs."""
import argparse
import datetime
import os
import re
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from harness import Cluster, simctl, wait_until  # noqa: E402
from humancfg_tests import shared_layout  # noqa: E402

LOG_RE = re.compile(r'^ts=(\S+Z) level=(\w+) component=(\w+) msg=("(?:[^"\\]|\\.)*"|\S*)')
STEP_RE = re.compile(r"^op (\d+) step (\d+) (\S+) (\S+): (started|done|failed|running \(resumed)")
STABLE_FOR_MS = 8000  # short for the demo; the default is 5 minutes


def log_events(c, i):
    out = []
    for line in c.log(i).splitlines():
        m = LOG_RE.match(line)
        if not m:
            continue
        ts = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
        msg = m.group(4)
        if msg.startswith('"'):
            msg = re.sub(r'\\(.)', r'\1', msg[1:-1])
        if ("local verdict" in msg or "became leader" in msg or STEP_RE.match(msg)
                or "an earlier leader may" in msg):
            out.append((ts, f"node n{i}", msg))
    return out


def step_runs(c, nodes):
    """{(op, step): [(ts, node, what)]} from every node's log: who started each step (journaled
    its start), who resumed it after a leader change, who finished it."""
    runs = {}
    for i in nodes:
        for ts, _, msg in log_events(c, i):
            m = STEP_RE.match(msg)
            if m:
                runs.setdefault((int(m.group(1)), int(m.group(2))), []).append((ts, i, m.group(5)))
    out = {}
    for key, evs in runs.items():
        evs.sort()
        starter = next((i for _, i, w in evs if w == "started"), None)
        out[key] = [(ts, i, "resumed" if w.startswith("running") else w) for ts, i, w in evs
                    if not w.startswith("running") or i != starter]
    return out


def timeline(c, t0, since, until, nodes, leader_of, events):
    events = list(events)
    for i in nodes:
        events += [e for e in log_events(c, i) if since - 0.001 <= e[0] <= until]
    for h in reversed(c.drctl(leader_of(), "history", "200")["history"]):  # oldest first
        if since <= h["ts"] / 1000 <= until and h["kind"] in ("verdict", "operation", "step"):
            events.append((h["ts"] / 1000, "cluster", f"committed {h['kind']}: {h['detail']}"))
    for r in c.requests():
        if since <= r["t"] <= until and not r["path"].startswith("/_sim"):
            what = ""
            if r["method"] == "PUT" and isinstance(r.get("body"), dict):
                v = r["body"].get("properties", {}).get("trunk_enabled", {}).get("value", {})
                what = f" trunk_enabled={str(v.get('instance')).lower()}"
            query = r.get("query")
            if isinstance(query, dict):
                query = urllib.parse.urlencode(query)
            q = f"?{query}" if query else ""
            events.append((r["t"], "genesys", f"{r['method']} {r['path']}{q}{what} -> {r['status']}"))
    print("\n   time  source    event")
    for ts, src, msg in sorted(events, key=lambda e: e[0]):
        print(f"{ts - t0:+7.3f}s  {src:<8}  {msg}")


def who_did_what(c, op, runs, t0):
    print(f"\noperation {op['id']} ({op['kind']} {op['from']} -> {op['to']}): {op['status']}")
    for st in op["steps"]:
        did = ", ".join(f"n{i} {what} at {ts - t0:+.3f}s" for ts, i, what in
                        sorted(runs.get((op["id"], st["seq"]), [])))
        print(f"  step {st['seq']} {st['action']:<10} {st['target']:<10} {st['status']:<5}  {did}")


def newest(c, i, kind):
    return next((o for o in c.operations(i) if o["kind"] == kind), None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--keep", action="store_true", help="keep the run directory with logs")
    args = ap.parse_args()
    # Default detection settings: 1 s probe interval, 800 ms timeout, 3 failures.
    with Cluster(args.build, name="demo", keep=args.keep, probe_interval_ms=1000,
                 group_extra={"failback": "auto", "stable_for_ms": STABLE_FOR_MS}) as c:
        # One cluster file shared by the three nodes, a small node file each (docs/config.md).
        c.write_configs()
        node_args = shared_layout(c)
        c.start_sims()
        for i in (1, 2, 3):
            c.start_node(i, *node_args[i])
        print(f"run directory: {c.dir}")
        print("every node runs: drwatchd --config cluster.json --node node<i>.json")
        leader = c.wait_leader()
        print(f"cluster up: 3 nodes, leader n{leader}; waiting for both sites to be seen up")
        wait_until(lambda: all(c.site_verdict(i, s) == "up" for i in range(1, 4)
                               for s in ("site-a", "site-b")), 30, "both sites up")

        # Part 1: site A dies; its failover's leader is killed between two steps.
        # premise-b's trunks are held "not connected" in the simulator so the failover waits in
        # its verify step: the moment to kill the leader, without racing it.
        simctl.set_connected(c.genesys_url, "tbB", False)
        t0 = c.kill_edges("site-a")
        print("killed site A's Edges (edge-a1, edge-a2); premise-b's trunks held disconnected")
        op = wait_until(lambda: (lambda o: o if o and o["status"] == "running" and
                                 o["steps"][0]["status"] == "done" and
                                 o["steps"][1]["status"] == "started" else None)(
            newest(c, leader, "failover")), 30, "the failover's first step done, verify started")
        victim = c.wait_leader()
        c.kill_node(victim)  # SIGKILL: no hand-over
        t_kill = time.time()
        print(f"failover {op['id']}: step 0 done, step 1 (verify) started; killed the leader n{victim}")
        alive = c.alive()
        leader = c.wait_leader()
        print(f"new leader n{leader}; letting premise-b's trunks connect")
        simctl.set_connected(c.genesys_url, "tbB", True)
        t_conn = time.time()
        wait_until(lambda: all((newest(c, i, "failover") or {}).get("status") == "done"
                               for i in alive), 40, "the failover done on the live nodes")
        t1 = time.time()
        timeline(c, t0, t0, t1, range(1, 4), lambda: leader, [
            (t0, "demo", "site A's Edges killed (edge-a1, edge-a2)"),
            (t_kill, "demo", f"leader n{victim} killed (SIGKILL) in the verify step"),
            (t_conn, "demo", "premise-b's trunks allowed to connect")])
        runs = step_runs(c, range(1, 4))
        op = newest(c, leader, "failover")
        who_did_what(c, op, runs, t0)
        puts = c.ok_puts()
        print(f"trunk base writes accepted: {puts}")
        assert puts == [("tbB", True), ("tbA", False)], f"each write exactly once: {c.puts()}"
        assert [s["status"] for s in op["steps"]] == ["done"] * len(op["steps"]), op
        assert {i for _, i, w in runs[(op["id"], 0)] if w == "done"} == {victim}, runs
        assert {i for _, i, w in runs[(op["id"], len(op["steps"]) - 1)] if w == "done"} == {leader}
        print(f"active target now: {c.group_active(leader)}")

        # Part 2: site A back, and n{victim} restarted; the failback waits stable_for.
        t2 = time.time()
        c.start_node(victim, *node_args[victim])
        c.start_edges("site-a")
        print(f"\nrestarted n{victim}; site A's Edges back; failback after stable_for "
              f"({STABLE_FOR_MS / 1000:.0f} s of quorum UP)")
        fb = wait_until(lambda: (lambda o: o if o and o["status"] == "done" else None)(
            newest(c, c.leader() or leader, "failback")), 60, "the failback done")
        c.wait_converged()
        leader = c.wait_leader()
        t3 = time.time()
        timeline(c, t0, t2, t3, range(1, 4), lambda: leader, [
            (t2, "demo", f"n{victim} restarted; site A's Edges started again")])
        up = [s for s in c.cluster_view(leader)["sites"] if s["id"] == "site-a"][0]["since"]
        who_did_what(c, fb, step_runs(c, range(1, 4)), t0)
        print(f"failback created {(fb['created'] - up) / 1000:.1f} s after site A was UP "
              f"(stable_for {STABLE_FOR_MS / 1000:.0f} s)")
        assert fb["created"] - up >= STABLE_FOR_MS, (fb, up)
        assert c.ok_puts()[2:] == [("tbA", True), ("tbB", False)], c.puts()
        print(f"active target now: {c.group_active(leader)}")
    print("demo finished; every process it started is stopped")


if __name__ == "__main__":
    main()
