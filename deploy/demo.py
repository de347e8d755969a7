#!/usr/bin/env python3
"""Runs the failover demo and prints its timeline (see deploy/demo)."""
import argparse
import datetime
import os
import re
import sys
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from harness import Cluster, wait_until  # noqa: E402

LOG_RE = re.compile(r'^ts=(\S+Z) level=(\w+) component=(\w+) msg=("(?:[^"\\]|\\.)*"|\S*)')


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
        if "local verdict" in msg or "became leader" in msg:
            out.append((ts, f"node n{i}", msg))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--keep", action="store_true", help="keep the run directory with logs")
    args = ap.parse_args()
    # Default detection settings: 1 s probe interval, 800 ms timeout, 3 failures.
    with Cluster(args.build, name="demo", keep=args.keep, probe_interval_ms=1000).start() as c:
        print(f"run directory: {c.dir}")
        leader = c.wait_leader()
        print(f"cluster up: 3 nodes, leader n{leader}; waiting for both sites to be seen up")
        wait_until(lambda: all(c.site_verdict(i, s) == "up" for i in range(1, 4)
                               for s in ("site-a", "site-b")), 30, "both sites up")
        t0 = c.kill_edges("site-a")
        print("killed site A's Edges (edge-a1, edge-a2); waiting for the failover")
        c.wait_operation_done(timeout=60, what="the failover to finish")
        # The quorum needs two of three; wait for the third node's own view too, for the record.
        wait_until(lambda: all([x["local"] for x in c.status(i)["local"] if x["id"] == "site-a"]
                               == ["down"] for i in range(1, 4)), 30, "every node's local verdict")
        events = [(t0, "test", "site A's Edges killed (edge-a1, edge-a2)")]
        for i in range(1, 4):
            events += [e for e in log_events(c, i) if e[0] >= t0 - 0.001]
        for h in reversed(c.drctl(leader, "history", "100")["history"]):  # oldest first
            if h["ts"] / 1000 >= t0 and h["kind"] in ("verdict", "operation", "step"):
                events.append((h["ts"] / 1000, "cluster", f"committed {h['kind']}: {h['detail']}"))
        for r in c.requests():
            if r["t"] >= t0 and not r["path"].startswith("/_sim"):
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
        print(f"\nactive target now: {c.group_active(1)}")
    print("demo finished; every process it started is stopped")


if __name__ == "__main__":
    main()
