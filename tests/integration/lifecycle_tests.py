"""The DR lifecycle on real processes: the chain down and back with failback after stable_for,
failback rolled back and retried, the flap hold, maintenance (suppression, expiry, the planned-
outage drill), operators' switchover and failback (--dry-run sends nothing, --wait), and the
leader killed at each step of a failback."""
import time

import simctl
from harness import Cluster, wait_until

BUILD = None
TB_PREFIX = "/api/v2/telephony/providers/edges/trunkbasesettings/"


def ops(c, i):
    """Operations oldest first as (kind, from, to, status)."""
    return [(o["kind"], o["from"], o["to"], o["status"]) for o in reversed(c.operations(i))]


def op_row(c, i, kind, to, after=0):
    """The newest operation of kind to target with an id above after, as node i's replica has
    it, or None."""
    for o in c.operations(i):
        if o["kind"] == kind and o["to"] == to and o["id"] > after:
            return o
    return None


def last_id(c):
    return max([o["id"] for o in c.operations(c.alive()[0])] or [0])


def wait_done(c, kind, to, timeout=40, after=None):
    """Until a new operation of kind to target is done on every live node; after: the newest
    operation id before it was caused (default: now)."""
    nodes = c.alive()
    after = last_id(c) if after is None else after
    return wait_until(lambda: all((op_row(c, i, kind, to, after) or {}).get("status") == "done"
                                  for i in nodes) and op_row(c, nodes[0], kind, to, after),
                      timeout, f"{kind} to {to} done on nodes {nodes}")


def group(c, i):
    return [g for g in c.cluster_view(i)["groups"] if g["id"] == "carrier-1"][0]


def site(c, i, sid):
    return [s for s in c.cluster_view(i)["sites"] if s["id"] == sid][0]


def writes(c):
    """Every Genesys request that changes something (PUT, POST other than the token)."""
    return [r for r in c.requests() if r["method"] in ("PUT", "POST", "PATCH", "DELETE")
            and "/oauth/" not in r["path"]]


def metric(c, i, series):
    """The value of one series (name with its labels, as exposed) on node i, None if absent."""
    for line in c.metrics(i).splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def history(c, i):
    return [h["detail"] for h in c.drctl(i, "history", "10000")["history"]]


def test_lifecycle_chain_down_and_back_with_failback_after_stable_for():
    """A down -> B; B down too -> cloud; B back -> B; A back -> A, each failback only after
    stable_for of quorum UP. The last failback meets a 401 (expired token) and a 409 and still
    switches each trunk base exactly once."""
    g = {"stable_for_ms": 3000, "max_auto_operations": 10}
    with Cluster(BUILD, name="chain", group_extra=g).start() as c:
        c.wait_leader()
        c.wait_sites_up("site-a", "site-b")
        c.kill_edges("site-a")
        wait_done(c, "failover", "premise-b", after=0)
        n = last_id(c)
        c.kill_edges("site-b")
        wait_done(c, "failover", "cloud", after=n)
        n = last_id(c)
        c.start_edges("site-b")
        fb = wait_done(c, "failback", "premise-b", after=n)
        b_up = site(c, 1, "site-b")["since"]
        assert fb["created"] - b_up >= 3000, (fb, b_up)
        simctl.set_fault(c.genesys_url, kind="expire_token", path_prefix=TB_PREFIX, method="PUT")
        simctl.set_fault(c.genesys_url, kind="409", path_prefix=TB_PREFIX, method="PUT")
        n = last_id(c)
        c.start_edges("site-a")
        fa = wait_done(c, "failback", "premise-a", after=n)
        a_up = site(c, 1, "site-a")["since"]
        assert fa["created"] - a_up >= 3000, (fa, a_up)
        assert [(k, f, t) for k, f, t, _ in ops(c, 1)] == [
            ("failover", "premise-a", "premise-b"), ("failover", "premise-b", "cloud"),
            ("failback", "cloud", "premise-b"), ("failback", "premise-b", "premise-a")], ops(c, 1)
        assert [s for _, _, _, s in ops(c, 1)] == ["done"] * 4
        assert c.ok_puts() == [("tbB", True), ("tbA", False), ("tbC", True), ("tbB", False),
                               ("tbB", True), ("tbC", False), ("tbA", True), ("tbB", False)], \
            c.puts()
        assert 409 in [st for _, _, st, _ in c.puts()], c.puts()
        # the token expired with the first PUT; the next request was refused and sent again
        assert any(r.get("status") == 401 for r in c.requests()), "no 401 seen"
        assert group(c, 1)["active"] == "premise-a"
        c.wait_converged(20)


def test_lifecycle_failback_rolled_back_then_retried_after_backoff():
    """The primary's trunks do not connect: the failback's verify fails, the primary is switched
    off again, calls stay on the backup, the group is not held, and the failback is tried again
    after its back-off; once the trunks connect it goes through."""
    g = {"stable_for_ms": 2000, "failback_retry_ms": 3000, "max_auto_operations": 10}
    with Cluster(BUILD, name="fbroll", group_extra=g,
                 genesys_extra={"verify_timeout_ms": 2000}).start() as c:
        c.wait_leader()
        c.wait_sites_up("site-a", "site-b")
        c.kill_edges("site-a")
        wait_done(c, "failover", "premise-b", after=0)
        simctl.set_connected(c.genesys_url, "tbA", False)
        c.start_edges("site-a")
        wait_done(c, "rollback", "premise-b", 60, after=1)
        grp = group(c, 1)
        assert grp["active"] == "premise-b" and not grp["hold"], grp
        assert grp["failback_failures"] >= 1, grp
        assert any("failback retried in 3 s" in h for h in history(c, 1)), history(c, 1)
        assert metric(c, 1, 'drwatch_group_failback_failures{group="carrier-1"}') >= 1
        assert ("tbB", False) not in c.ok_puts()[1:], c.puts()
        simctl.set_connected(c.genesys_url, "tbA", True)
        fb = wait_done(c, "failback", "premise-a", 60, after=1)
        failed = [o for o in c.operations(1) if o["kind"] == "failback" and o["status"] == "failed"]
        assert failed and fb["created"] - failed[0]["finished"] >= 3000, (failed, fb)
        assert group(c, 1)["active"] == "premise-a"
        assert group(c, 1)["failback_failures"] == 0
        assert c.ok_puts()[-2:] == [("tbA", True), ("tbB", False)], c.puts()


def test_lifecycle_flapping_site_holds_the_group():
    """site-a's Edges go down and up again every few seconds. With three automatic operations
    allowed per window, it causes exactly three (failover, failback, failover), then the group
    is held for flapping instead of failing back: however long the flapping goes on, no further
    automatic move until an operator releases the hold."""
    g = {"stable_for_ms": 1500, "max_auto_operations": 3}
    with Cluster(BUILD, name="flap", group_extra=g).start() as c:
        c.wait_leader()
        c.wait_sites_up("site-a", "site-b")

        def held():
            return group(c, 1)["hold_reason"] == "flapping"

        deadline = time.monotonic() + 90
        while not held():
            assert time.monotonic() < deadline, ops(c, 1)
            c.kill_edges("site-a")
            wait_until(lambda: c.site_verdict(1, "site-a") == "down" or held(), 20,
                       "site-a down")
            c.wait_log_advance(1500)
            c.start_edges("site-a")
            wait_until(lambda: c.site_verdict(1, "site-a") == "up" or held(), 20, "site-a up")
            c.wait_log_advance(2500)
        # the flapping goes on: nothing more moves
        for _ in range(2):
            c.kill_edges("site-a")
            c.wait_log_advance(2500)
            c.start_edges("site-a")
            c.wait_log_advance(2500)
        c.kill_edges("site-a")
        wait_until(lambda: c.site_verdict(1, "site-a") == "down", 20, "site-a down")
        c.wait_log_advance(2000)
        auto = [(k, s) for k, _, _, s in ops(c, 1) if k in ("failover", "failback")]
        assert [k for k, _ in auto] == ["failover", "failback", "failover"], ops(c, 1)
        assert sum("group held: flapping" in h for h in history(c, 1)) == 1
        for i in (1, 2, 3):
            assert metric(c, i, 'drwatch_group_held{group="carrier-1",reason="flapping"}') == 1
            assert metric(c, i, 'drwatch_group_held{group="carrier-1",reason="failed"}') == 0
        leader = c.wait_leader()
        r = c.run_drctl(leader, "hold", "release", "carrier-1")
        assert r.returncode == 0 and r.stdout == "carrier-1: hold (flapping) released\n", r
        # released while site-a is down and premise-b carries calls: the window counts afresh
        c.wait_log_advance(2000)
        assert not group(c, 1)["hold"], group(c, 1)
        assert group(c, 1)["active"] == "premise-b", group(c, 1)


def test_lifecycle_maintenance_suppresses_then_expires():
    """site-a in maintenance dies: nothing moves; the window expires by itself and the failover
    follows at the first entry past it, on every node alike."""
    with Cluster(BUILD, name="maint").start() as c:
        leader = c.wait_leader()
        c.wait_sites_up("site-a", "site-b")
        r = c.run_drctl(leader, "maintenance", "set", "site", "site-a", "--ttl", "12s",
                        "--reason", "UPS swap")
        assert r.returncode == 0, r.stderr
        r = c.run_drctl(leader, "maintenance", "list")
        assert "site-a" in r.stdout and "UPS swap" in r.stdout, r.stdout
        win = wait_until(lambda: all(c.cluster_view(i)["maintenance"] for i in (1, 2, 3)) and
                         c.cluster_view(1)["maintenance"][0], 10, "the window on every node")
        assert metric(c, 1, 'drwatch_site_maintenance{site="site-a"}') == 1
        assert metric(c, 1, 'drwatch_site_maintenance{site="site-b"}') == 0
        c.kill_edges("site-a")
        wait_until(lambda: c.site_verdict(1, "site-a") == "down", 20, "site-a down")
        assert c.operations(1) == [], ops(c, 1)
        fo = wait_done(c, "failover", "premise-b", 40, after=0)
        assert fo["created"] >= win["expires"], (fo, win)
        assert c.cluster_view(1)["maintenance"] == []
        assert any("site site-a: maintenance expired" in h for h in history(c, 1))
        c.wait_converged(20)


def test_lifecycle_maintenance_drill_switchover_dry_run_and_manual_failback():
    """The planned outage: site-a in maintenance, a dry run (nothing sent), switchover to
    premise-b with --wait, work on site-a (down, up), clear, then fail back by hand: the
    switchover pinned premise-b, so nothing fails back on its own."""
    with Cluster(BUILD, name="drill", group_extra={"stable_for_ms": 1500}).start() as c:
        leader = c.wait_leader()
        c.wait_sites_up("site-a", "site-b")
        r = c.run_drctl(leader, "maintenance", "set", "site", "site-a", "--ttl", "10m",
                        "--reason", "firmware 9.1")
        assert r.returncode == 0, r.stderr
        before = len(writes(c))
        r = c.run_drctl(leader, "switchover", "carrier-1", "--to", "premise-b", "--dry-run")
        assert r.returncode == 0, r.stderr
        out = r.stdout
        assert "dry run: nothing was sent" in out, out
        assert "PUT  /api/v2/telephony/providers/edges/trunkbasesettings/tbB" in out, out
        assert "GET  /api/v2/telephony/providers/edges/trunks?trunkBase.id=tbB" in out, out
        assert "trunkbasesettings/tbA" in out, out
        c.wait_log_advance(2000)
        assert len(writes(c)) == before, writes(c)[before:]
        assert c.operations(1) == []
        r = c.run_drctl(leader, "switchover", "carrier-1", "--to", "premise-b", "--wait")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "done" in r.stdout.splitlines()[-1], r.stdout
        assert group(c, 1)["active"] == "premise-b" and group(c, 1)["pinned"]
        assert metric(c, leader, 'drwatch_group_pinned{group="carrier-1"}') == 1
        assert c.ok_puts() == [("tbB", True), ("tbA", False)], c.puts()
        # the work: site-a down and up again; nothing automatic touches it
        c.kill_edges("site-a")
        wait_until(lambda: c.site_verdict(1, "site-a") == "down", 20, "site-a down")
        r = c.run_drctl(leader, "switchover", "carrier-1", "--to", "premise-a")
        assert r.returncode == 1 and "down, not up" in r.stderr, (r.returncode, r.stderr)
        c.start_edges("site-a")
        c.wait_sites_up("site-a")
        r = c.run_drctl(leader, "switchover", "carrier-1", "--to", "premise-a")
        assert r.returncode == 1 and "in maintenance" in r.stderr, (r.returncode, r.stderr)
        r = c.run_drctl(leader, "maintenance", "clear", "site", "site-a")
        assert r.returncode == 0, r.stderr
        # the window's end: a cleanup reads what it kept out (premise-a is off: nothing written)
        wait_done(c, "cleanup", "premise-b", after=1)
        c.wait_log_advance(3000)
        assert [k for k, _, _, _ in ops(c, 1)] == ["switchover", "cleanup"], ops(c, 1)
        r = c.run_drctl(leader, "failback", "carrier-1", "--wait")
        assert r.returncode == 0, r.stdout + r.stderr
        assert group(c, 1)["active"] == "premise-a" and not group(c, 1)["pinned"]
        fb = op_row(c, 1, "failback", "premise-a")
        assert fb["operator"], fb
        r = c.run_drctl(leader, "failback", "carrier-1")
        assert r.returncode == 1 and "already carries calls" in r.stderr, r.stderr
        assert c.ok_puts() == [("tbB", True), ("tbA", False), ("tbA", True), ("tbB", False)], \
            c.puts()


def test_lifecycle_leader_killed_at_each_step_of_a_failback():
    """For each step of a failback (activate, verify, deactivate) the leader running it is
    killed just before it; the next leader finishes the failback and every trunk base is
    switched exactly once per operation."""
    g = {"stable_for_ms": 1500, "max_auto_operations": 20}
    with Cluster(BUILD, name="fbcrash", group_extra=g).start() as c:
        c.wait_leader()
        c.wait_sites_up("site-a", "site-b")
        expected = []
        for step in ("activate", "verify", "deactivate"):
            n = last_id(c)
            c.kill_edges("site-a")
            wait_done(c, "failover", "premise-b", after=n)
            expected += [("tbB", True), ("tbA", False)]
            # the first step: only the leader may be armed (any armed leader dies before it)
            armed = [c.wait_leader()] if step == "activate" else c.alive()
            for i in armed:
                c.drctl(i, "debug", "crash-before", step)
            n = last_id(c)
            c.start_edges("site-a")
            dead = wait_until(lambda: [i for i, p in c.procs.items() if p.poll() is not None], 40,
                              f"the leader to die before {step}")
            assert len(dead) == 1, dead
            del c.procs[dead[0]]
            wait_done(c, "failback", "premise-a", after=n)
            expected += [("tbA", True), ("tbB", False)]
            assert c.ok_puts() == expected, (step, c.puts())
            for i in c.alive():
                c.drctl(i, "debug", "crash-before", "")
            c.start_node(dead[0])
            c.wait_converged(30)
        assert [k for k, _, _, s in ops(c, 1) if s == "done"] == ["failover", "failback"] * 3


TESTS = [v for k, v in sorted(globals().items()) if k.startswith("test_")]
