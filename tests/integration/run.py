#!/usr/bin/env python3
"""Integration tests: real drwatchd processes on loopback against the Genesys and Edge simulators.

usage: tests/integration/run.py --build DIR [-k NAME]"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback

import actions_tests
import config_tests
import detection_tests
import drctl_tests
import fencing_tests
import humancfg_tests
import lifecycle_tests
import pacing_tests
import prometheus_tests
import netns
import notify_tests
import ops_signals_tests
import packaging_tests
from harness import CLIENT_SECRET as CLIENT_SECRET_TEXT, Cluster, SITES, TARGETS, wait_until

BUILD = None


def test_bad_config_lists_every_error():
    d = Cluster(BUILD, name="badcfg")
    try:
        d.write_configs()
        cfg = d.config(1)
        cfg["sites"][1]["edges"][0]["health_url"] = 42
        cfg["cluster"]["members"][2]["raft_address"] = "127.0.0.1:99999"
        cfg["probe"]["fail_treshold"] = 3
        cfg["genesys"]["client_secret_file"] = "/nonexistent/secret"
        path = os.path.join(d.dir, "bad.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        r = subprocess.run([os.path.join(BUILD, "drwatchd"), "--config", path],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 2, (r.returncode, r.stderr)
        for needle in ["sites[1].edges[0].health_url: expected a string",
                       "cluster.members[2].raft_address",
                       "probe.fail_treshold: unknown key",
                       "genesys.client_secret_file"]:
            assert needle in r.stderr, f"{needle!r} not in:\n{r.stderr}"
        assert not os.path.exists(d.node_dir(1)), "nothing may start on a bad config"
    finally:
        d.stop()


def test_a_site_down_fails_over_exactly_once():
    # Site A is an HA pair under rule "any": one Edge lost leaves it up, the second fails it over.
    with Cluster(BUILD, name="failover", site_overrides={"site-a": {"rule": "any"}}).start() as c:
        c.wait_leader()
        c.wait_sites_up("site-a", "site-b")
        c.kill_edge("edge-a1")
        half = ("up", {"edge-a1": "down", "edge-a2": "up"})
        wait_until(lambda: all(c.local_site(i, "site-a") == half for i in range(1, 4)), 20,
                   "edge-a1 down and site-a still up in every node's own view")
        c.wait_log_advance(3000)
        for i in range(1, 4):
            assert c.site_verdict(i, "site-a") == "up" and c.operations(i) == [], c.cluster_view(i)
        assert c.puts() == [], c.puts()
        c.kill_edges("site-a")
        c.wait_operation_done(range(1, 4), 40, "failover done on every node")
        puts = [(tb, inst) for tb, inst, status, _ in c.puts()]
        assert puts == [("tbB", True), ("tbA", False)], f"PUTs at the simulator: {puts}"
        assert all(c.group_active(i) == "premise-b" for i in range(1, 4))
        op = c.operations(1)[0]
        assert (op["kind"], op["from"], op["to"]) == ("failover", "premise-a", "premise-b"), op
        assert [(s["action"], s["target"]) for s in op["steps"]] == [
            ("activate", "premise-b"), ("verify", "premise-b"), ("deactivate", "premise-a"),
            ("deactivate", "cloud")], op["steps"]
        assert not [r for r in c.requests() if r["method"] == "PATCH"]
        # The sim's view agrees: B in service, A out.
        import simctl
        st = simctl.get_state(c.genesys_url)
        assert st["trunk_bases"]["tbB"]["enabled"] and not st["trunk_bases"]["tbA"]["enabled"], st


def test_b_one_node_losing_site_a_changes_nothing():
    # Node 1 reaches site A's Edges through its own path (separate edge_sim processes, same ids);
    # killing that path is node 1's network failing, not site A.
    import simctl
    ports = {e: simctl.free_port() for e in SITES["site-a"]}
    urls = {(1, e): f"http://127.0.0.1:{p}/health" for e, p in ports.items()}
    with Cluster(BUILD, name="partial", per_node_urls=urls) as c:
        c.write_configs()
        for e, p in ports.items():
            c.extra_edges[e] = simctl.start_edge(p, e)
        c.start_sims()
        for i in range(1, 4):
            c.start_node(i)
        c.wait_leader()
        c.wait_sites_up("site-a", timeout=20)
        for p in c.extra_edges.values():
            p.kill()
            p.wait()

        def n1_down_committed():
            cl = c.cluster_view(2)
            site = [s for s in cl["sites"] if s["id"] == "site-a"][0]
            obs = {o["node"]: o for o in site["observations"]}
            return 1 in obs and obs[1]["state"] == "down" and obs[1]["fresh"] and obs
        obs = wait_until(n1_down_committed, 20, "node 1's DOWN observation committed")
        # Let the other two refresh several times after that: the verdict must hold.
        base = {i: obs[i]["refreshed"] for i in (2, 3)}

        def refreshed_thrice():
            cl = c.cluster_view(3)
            site = [s for s in cl["sites"] if s["id"] == "site-a"][0]
            o = {x["node"]: x for x in site["observations"]}
            return all(o[i]["refreshed"] >= base[i] + 3 * 1000 for i in (2, 3))
        wait_until(refreshed_thrice, 20, "three more refreshes from nodes 2 and 3")
        for i in range(1, 4):
            assert c.site_verdict(i, "site-a") == "up", c.cluster_view(i)
            assert c.operations(i) == [], c.operations(i)
        assert c.puts() == [], c.puts()
        assert c.local_site(1, "site-a")[0] == "down", c.status(1)


def test_c_leader_killed_between_steps_new_leader_finishes_once():
    with Cluster(BUILD, name="crash").start() as c:
        c.wait_leader()
        c.wait_sites_up("site-a", timeout=20)
        # Armed on every node: on a loaded machine leadership may move before the step is reached.
        for i in range(1, 4):
            c.drctl(i, "debug", "crash-before", "deactivate")
        c.kill_edges("site-a")
        dead = wait_until(lambda: [i for i, p in c.procs.items() if p.poll() is not None], 40,
                          "the acting leader to die before deactivate")
        assert len(dead) == 1, dead
        leader = dead[0]
        assert c.procs[leader].returncode == -9, c.procs[leader].returncode
        del c.procs[leader]
        survivors = [i for i in range(1, 4) if i != leader]
        puts = [(tb, inst) for tb, inst, _, _ in c.puts()]
        assert puts == [("tbB", True)], f"before the crash: {puts}"
        c.wait_operation_done(survivors, 40, "the new leader to finish the operation")
        new_leader = c.wait_leader()
        assert new_leader != leader
        puts = [(tb, inst) for tb, inst, _, _ in c.puts()]
        assert puts == [("tbB", True), ("tbA", False)], f"no PUT may repeat: {puts}"
        steps = c.operations(survivors[0])[0]["steps"]
        assert [s["status"] for s in steps] == ["done"] * 4, steps
        finished = assert_resumed(c, leader, survivors[0])
        assert [s["action"] for s in finished] == ["activate", "verify"], finished
        # The crashed node comes back and agrees.
        c.start_node(leader)
        c.wait_converged(30)
        assert c.group_active(leader) == "premise-b"


def assert_resumed(c, dead, viewer):
    """The operation a leader died in was resumed, not redone, as the Genesys simulator saw it:
    after the first leader to take office after the dead one, no request at all (a re-run switch
    only reads when its trunk base is already set) names the trunk base of a step finished before
    (unless a step still to do has the same one); each unfinished step's trunk base was worked on
    after. Returns the finished steps."""
    op = c.operations(viewer)[0]
    offices = [(h["ts"], int(h["detail"].split()[1]))
               for h in reversed(c.drctl(viewer, "history", "10000")["history"])
               if h["kind"] == "leader"]
    last_dead = max(i for i, (_, node) in enumerate(offices) if node == dead)
    assert last_dead + 1 < len(offices), f"no leader took office after node {dead}: {offices}"
    crash_ts = offices[last_dead + 1][0]
    tb_of = {tid: tb for tid, _, tb in TARGETS}
    after = [r for r in c.requests() if r["t"] * 1000 > crash_ts]

    def naming(tb):
        return [(r["method"], r["path"], r["query"]) for r in after
                if r["path"].endswith("/" + tb) or r["query"].get("trunkBase.id") == tb]
    finished = [s for s in op["steps"] if s["finished"] < crash_ts]
    unfinished = {tb_of[s["target"]] for s in op["steps"] if s not in finished}
    for s in op["steps"]:
        tb = tb_of[s["target"]]
        what = f"step {s['seq']} ({s['action']} {s['target']}, trunk base {tb})"
        if s not in finished:
            assert naming(tb), f"{what} not resumed: {after}"
        elif tb not in unfinished:
            assert not naming(tb), f"{what} done before the crash, redone after: {naming(tb)}"
    return finished


def test_d_restarted_node_rebuilds_and_agrees():
    with Cluster(BUILD, name="restart").start() as c:
        c.wait_leader()
        c.kill_edges("site-a")
        c.wait_operation_done(range(1, 4), 40, "failover done")
        c.wait_converged(30)
        for i in (3, 1):
            c.kill_node(i, sig=signal.SIGTERM)
            c.start_node(i)
            c.wait_converged(30)
            assert c.group_active(i) == "premise-b"
            assert c.operations(i)[0]["status"] == "done"
        # A restart must not act again.
        puts = [(tb, inst) for tb, inst, _, _ in c.puts()]
        assert puts == [("tbB", True), ("tbA", False)], puts


def test_r_full_cluster_restart_forgets_old_observations():
    """Every node stops after a failover; while the cluster is down site A's Edges come back.
    Started again after longer than observation_ttl, the cluster holds only old observations: the
    first entry leaves both sites UNKNOWN (the stale DOWN of A included) until the watchdogs
    observe again, nothing is planned meanwhile, and A comes back UP on fresh observations."""
    with Cluster(BUILD, name="fullrestart").start() as c:
        c.wait_leader()
        c.wait_sites_up("site-a", "site-b")
        c.kill_edges("site-a")
        c.wait_operation_done(range(1, 4), 40, "failover done")
        c.wait_converged(30)
        puts = c.puts()
        for i in range(1, 4):
            c.kill_node(i, sig=signal.SIGTERM)
        stopped = time.monotonic()
        c.start_edges("site-a")
        # The outage itself is the subject: it must outlast the TTL (no event marks that).
        ttl = c.cluster_opts["observation_ttl_ms"] / 1000
        time.sleep(max(0.0, stopped + ttl + 1 - time.monotonic()))
        for i in range(1, 4):
            c.start_node(i)
        c.wait_leader()

        def forgotten(i):
            h = c.drctl(i, "history", "500", check=False) or {}
            rows = [(r["kind"], r["detail"]) for r in h.get("history", [])]
            return (("verdict", "site-a: down -> unknown (down 0/3 fresh, up 0/3) by probes") in rows
                    and ("verdict", "site-b: up -> unknown (down 0/3 fresh, up 0/3) by probes") in rows
                    and any(k == "time" and "every earlier observation is stale" in d
                            for k, d in rows))
        for i in range(1, 4):
            wait_until(lambda: forgotten(i), 20, f"node {i}: both sites unknown after the restart")
        c.wait_sites_up("site-a", "site-b", timeout=20)
        c.wait_converged(30)
        ops = c.operations(1)
        assert len(ops) == 1 and ops[0]["status"] == "done", ops
        assert all(c.group_active(i) == "premise-b" for i in range(1, 4))
        assert c.puts() == puts, (puts, c.puts())


def test_e_both_premise_sites_down_goes_to_cloud():
    import simctl
    with Cluster(BUILD, name="cloud").start() as c:
        c.wait_leader()
        c.wait_sites_up("site-b", timeout=20)
        c.kill_edges("site-b")
        c.kill_edges("site-a")

        def on_cloud_everywhere():
            return all(c.group_active(i) == "cloud" and c.operations(i)[0]["status"] == "done"
                       for i in range(1, 4))
        wait_until(on_cloud_everywhere, 60, "the cloud target active on every node")
        # Depending on which verdict commits first, drwatch may start towards premise-b, abort
        # when B's verdict arrives, and go on to the cloud; either way exactly one target ends
        # in service and every PUT that switched something on was followed by the right ones.
        st = simctl.get_state(c.genesys_url)["trunk_bases"]
        assert st["tbC"]["enabled"] and not st["tbA"]["enabled"] and not st["tbB"]["enabled"], st
        puts = c.ok_puts()
        assert puts in ([("tbC", True), ("tbA", False)],
                        [("tbB", True), ("tbC", True), ("tbA", False), ("tbB", False)]), puts
        ops = c.operations(1)
        assert ops[0]["to"] == "cloud" and all(o["status"] in ("done", "aborted") for o in ops), ops


def test_f_genesys_409_and_503_are_retried():
    import simctl
    with Cluster(BUILD, name="faults").start() as c:
        c.wait_leader()
        c.wait_sites_up("site-a", timeout=20)
        prefix = "/api/v2/telephony/providers/edges/trunkbasesettings/"
        simctl.set_fault(c.genesys_url, method="PUT", path_prefix=prefix, kind="409", count=1)
        simctl.set_fault(c.genesys_url, method="GET", path_prefix=prefix, kind="status", status=503, count=1)
        c.kill_edges("site-a")
        c.wait_operation_done(range(1, 4), 60, "failover done despite faults")
        ok = c.ok_puts()
        assert ok == [("tbB", True), ("tbA", False)], c.puts()
        assert any(status == 409 for _, _, status, _ in c.puts()), c.puts()
        # Counted on whichever node led when the faults came.
        assert c.metric_sum("drwatch_genesys_conflicts_total") >= 1
        assert c.metric_sum("drwatch_genesys_server_errors_total") >= 1
        assert c.metric_sum("drwatch_genesys_retries_total") >= 1, "the 503 was retried"
        logs = "".join(c.log(i) for i in range(1, 4))
        assert "-> 409 (version" in logs, "the 409 is logged with the stale version"


def test_g_garbage_edges_and_dead_genesys_api():
    """Edges answering garbage count as down; a Genesys API that stays unreachable fails each
    step after bounded retries. Each failed activation is rolled back and the chain moves on
    (premise-b, then the cloud), every daemon keeps running, and the group ends held. Once the API
    is back nothing moves until an operator releases the hold through the log; then the calls
    go to premise-b. (Before, the first failure held the group at once and for good.)"""
    import simctl
    with Cluster(BUILD, name="garbage").start() as c:
        c.wait_leader()
        c.wait_sites_up("site-a", timeout=20)
        prefix = "/api/v2/telephony/providers/edges/trunkbasesettings/"
        simctl.set_fault(c.genesys_url, method="*", path_prefix=prefix, kind="drop", count=-1)
        for e in SITES["site-a"]:
            simctl.edge_mode(c.edge_ports[e], "garbage")

        tried = [("failover", "premise-a", "premise-b"), ("rollback", "premise-b", "premise-a"),
                 ("failover", "premise-a", "cloud"), ("rollback", "cloud", "premise-a")]

        def held():
            cl = c.cluster_view(1)
            ops = cl["operations"]
            return (cl["groups"][0]["hold"] and
                    [(o["kind"], o["from"], o["to"]) for o in reversed(ops)] == tried and
                    all(o["status"] == "failed" for o in ops) and cl)
        cl = wait_until(held, 120, "every target tried, rolled back and the group held")
        for op in cl["operations"]:
            failed = [s for s in op["steps"] if s["status"] == "failed"]
            assert len(failed) == 1 and failed[0]["detail"], op
        assert cl["groups"][0]["active"] == "premise-a", cl["groups"]
        assert c.alive() == [1, 2, 3], "every daemon keeps running"
        for i in range(1, 4):
            assert "bad response" in c.log(i) or "garbage" in c.log(i).lower() or \
                "Weird server reply" in c.log(i), c.log(i)[-2000:]
        # An unreachable API makes every call retry: each call logs its first and last retry.
        import re
        warned = [(m.group(1), m.group(2)) for i in range(1, 4)
                  for m in re.finditer(r"level=warn component=genesys msg=.*, retry (\d+)/(\d+) in", c.log(i))]
        assert warned and all(n in ("1", of) for n, of in warned), warned
        # Held, and every target either down or failed: recovering the API restarts nothing.
        simctl.clear_faults(c.genesys_url)
        before = len(c.requests())
        # Give the leader time to act if the hold were ignored: three refresh rounds in the log.
        c.wait_log_advance(3000, viewer=2)
        c.wait_converged(20)
        assert c.cluster_view(2)["groups"][0]["hold"]
        assert [r for r in c.requests()[before:] if r["method"] == "PUT"] == []
        # A follower cannot release it; the leader proposes the release through the log.
        leader = c.wait_leader()
        follower = next(i for i in range(1, 4) if i != leader)
        r = subprocess.run([os.path.join(BUILD, "drctl"), "--socket", c.socket(follower),
                            "hold", "release", "carrier-1"], capture_output=True, text=True,
                           timeout=15)
        assert r.returncode == 1 and "not the leader" in r.stderr, (r.returncode, r.stderr)
        # answered once applied: the leader's history has the release when drctl returns
        rel = c.drctl(leader, "hold", "release", "carrier-1")
        assert rel["was_held"] and rel["hold_reason"] == "failed", rel
        assert any(h["kind"] == "hold" and "carrier-1: hold released by" in h["detail"]
                   for h in c.drctl(leader, "history", "200")["history"])
        wait_until(lambda: all(c.group_active(i) == "premise-b" and
                               not c.cluster_view(i)["groups"][0]["hold"] for i in range(1, 4)),
                   60, "premise-b active and the hold lifted on every node")
        assert c.ok_puts() == [("tbB", True), ("tbA", False)], c.puts()
        hist = c.drctl(2, "history", "200")["history"]
        assert any(h["kind"] == "hold" and "carrier-1: hold released by" in h["detail"]
                   for h in hist), hist


def test_h_admin_socket_and_drctl_errors():
    import socket
    import stat
    with Cluster(BUILD, name="admin").start() as c:
        c.wait_leader()
        st = os.stat(c.socket(1))
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
        s = socket.socket(socket.AF_UNIX)
        s.connect(c.socket(1))
        f = s.makefile("rw")
        for line, needle in [("this is not json", "not a JSON object"),
                             ('{"v":1}', "cmd: expected a string"),
                             ('{"v":9,"cmd":"status"}', "unsupported admin protocol version"),
                             ('{"v":1,"cmd":"reboot"}', 'unknown command "reboot"'),
                             ('{"v":1,"cmd":"debug","crash_before":"lunch"}', "crash_before"),
                             ('{"v":1,"cmd":"hold","action":"set","group":"carrier-1","by":"x"}',
                              'action: expected "release"'),
                             ('{"v":1,"cmd":"hold","action":"release","group":"nope","by":"x"}',
                              'no group "nope"')]:
            f.write(line + "\n")
            f.flush()
            r = json.loads(f.readline())
            assert r["ok"] is False and needle in r["error"], (line, r)
        f.write('{"v":1,"cmd":"status"}\n')
        f.flush()
        assert json.loads(f.readline())["ok"] is True, "the connection survives bad requests"
        s.close()
        drctl = os.path.join(BUILD, "drctl")
        # once there are two rows (the leader's, the sites' first verdicts), --limit 1 gives one
        wait_until(lambda: len(c.drctl(1, "history")["history"]) >= 2, 20, "two history rows")
        assert len(c.drctl(1, "history", "--limit", "1")["history"]) == 1
        r = subprocess.run([drctl, "--socket", c.socket(1), "history", "--limit", "0"],
                           capture_output=True, text=True)
        assert r.returncode == 2 and "from 1 to 10000" in r.stderr, r
        r = subprocess.run([drctl, "--socket", c.socket(1), "status", "--limit", "3"],
                           capture_output=True, text=True)
        assert r.returncode == 2 and "wrong arguments" in r.stderr, r
        r = subprocess.run([drctl, "--socket", c.socket(1), "frobnicate"], capture_output=True, text=True)
        assert r.returncode == 2 and "unknown command" in r.stderr, r
        r = subprocess.run([drctl, "--socket", c.socket(1), "hold", "carrier-1"], capture_output=True,
                           text=True)
        assert r.returncode == 2 and "wrong arguments" in r.stderr, r
        r = subprocess.run([drctl, "--socket", os.path.join(c.dir, "nope.sock"), "status"],
                           capture_output=True, text=True)
        assert r.returncode == 3 and "cannot connect" in r.stderr, r
        # node 2 lists the sites once it has applied the first config (the leader's file)
        wait_until(lambda: c.status(2)["config"]["committed_version"] == 1, 20,
                   "config version 1 applied on node 2")
        r = subprocess.run([drctl, "--socket", c.socket(2), "status"], capture_output=True, text=True)
        assert r.returncode == 0, r
        for needle in ("leader", "MEMBER", "site-a", "carrier-1", "premise-a"):
            assert needle in r.stdout, (needle, r.stdout)
        assert CLIENT_SECRET_TEXT not in r.stdout
        for i in range(1, 4):
            assert CLIENT_SECRET_TEXT not in c.log(i), "the Genesys secret never reaches a log"


def test_i_leader_cut_off_mid_step_stops_and_the_majority_finishes():
    """The leader loses its majority while a Genesys call is in flight: it must step down without
    crashing and send nothing more; the majority side finishes the operation exactly once."""
    import signal as sig
    import simctl
    with Cluster(BUILD, name="minority").start() as c:
        c.wait_leader()
        c.wait_sites_up("site-a", timeout=20)
        tbb = "/api/v2/telephony/providers/edges/trunkbasesettings/tbB"
        simctl.set_fault(c.genesys_url, method="PUT", path_prefix=tbb, kind="hold", count=1)
        c.kill_edges("site-a")
        # The simulator holds the PUT: it has reached the API and the leader waits for it.
        held = simctl.wait_held(c.genesys_url, "PUT", tbb, timeout=30)
        leader = c.wait_leader()
        followers = [i for i in range(1, 4) if i != leader]
        for i in followers:
            c.procs[i].send_signal(sig.SIGSTOP)
        try:
            # Answered now, the PUT's DONE entry is proposed while the leader still believes it
            # leads: it is pending in raft when the leader steps down an election timeout later.
            assert simctl.release_held(c.genesys_url, seq=held["seq"]) == 1
            wait_until(lambda: (c.status(leader) or {}).get("node", {}).get("raft_state") != "leader",
                       20, "the cut-off leader to step down")
            wait_until(lambda: "tbB" in [tb for tb, _, st, _ in c.puts() if st == 200], 20,
                       "the held PUT to complete")
            assert c.procs[leader].poll() is None, "the deposed leader must not crash"
            assert [tb for tb, *_ in c.puts()] == ["tbB"], c.puts()
        finally:
            for i in followers:
                c.procs[i].send_signal(sig.SIGCONT)
        c.wait_operation_done(range(1, 4), 60, "the majority to finish the operation")
        puts = c.ok_puts()
        assert puts == [("tbB", True), ("tbA", False)], puts


def test_q_verify_waits_until_the_trunks_are_connected():
    """The backup's trunks come into service but stay disconnected (connectedStatus.connected
    false, their Edges ONLINE): the verify step keeps polling and the operation does not finish,
    nor is site A switched off; once they connect, it completes."""
    import simctl
    with Cluster(BUILD, name="connect", genesys_extra={"verify_timeout_ms": 60000}).start() as c:
        c.wait_leader()
        c.wait_sites_up("site-a", "site-b")
        assert len(simctl.set_connected(c.genesys_url, "tbB", False)) == 2
        c.kill_edges("site-a")

        def disconnected_polls():
            polls = [r for r in c.requests()
                     if r["query"].get("trunkBase.id") == "tbB" and r["status"] == 200]
            op = (c.operations(1) or [{}])[0]
            assert op.get("status") != "done", f"done while tbB's trunks are disconnected: {op}"
            return len(polls) >= 3 and op
        op = wait_until(disconnected_polls, 30, "three verify polls of tbB's trunks")
        assert [s["status"] for s in op["steps"]] == ["done", "started", "pending", "pending"], op
        st = simctl.get_state(c.genesys_url)
        assert {(t["inService"], t["connected"]) for t in st["trunks"].values()
                if t["trunkBase"] == "tbB"} == {(True, False)}, st["trunks"]
        assert st["edges"]["edge-b1"] == st["edges"]["edge-b2"] == "ONLINE", st["edges"]
        assert c.ok_puts() == [("tbB", True)], c.puts()
        t_connect = time.time()
        simctl.set_connected(c.genesys_url, "tbB", True)
        c.wait_operation_done(timeout=30, what="the failover once tbB's trunks connect")
        verify = c.operations(1)[0]["steps"][1]
        assert verify["finished"] >= t_connect * 1000, (verify, t_connect)
        assert "2/2 trunks of tbB in service and connected" in verify["detail"], verify
        assert c.ok_puts() == [("tbB", True), ("tbA", False)], c.puts()


def test_example_config_is_valid():
    """deploy/examples/drwatch.json passes --check-config once its secret files exist."""
    import tempfile
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "deploy", "examples", "drwatch.json")) as f:
        cfg = json.load(f)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "client_secret_file")
        with open(path, "w") as f:
            f.write("example-secret\n")
            os.fchmod(f.fileno(), 0o600)  # drwatchd refuses secrets others can read
        cfg["genesys"]["client_secret_file"] = path
        # what this node holds: the secret it shares with each other member
        cfg["cluster"]["peer_secret_dir"] = d
        me = cfg["node"]["id"]
        for m in cfg["cluster"]["members"]:
            if m["id"] != me:
                with open(os.path.join(d, f"{m['id']}.secret"), "w") as f:
                    f.write(f"example-secret-{me}-{m['id']}\n")
                    os.fchmod(f.fileno(), 0o600)
        path = os.path.join(d, "drwatch.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        r = subprocess.run([os.path.join(BUILD, "drwatchd"), "--config", path, "--check-config"],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        assert "configuration is valid" in r.stdout


TESTS = [v for k, v in sorted(globals().items()) if k.startswith("test_")]
TESTS += detection_tests.TESTS
TESTS += fencing_tests.TESTS
TESTS += pacing_tests.TESTS
TESTS += config_tests.TESTS
TESTS += actions_tests.TESTS
TESTS += lifecycle_tests.TESTS
TESTS += notify_tests.TESTS
TESTS += prometheus_tests.TESTS
TESTS += drctl_tests.TESTS
TESTS += humancfg_tests.TESTS
TESTS += ops_signals_tests.TESTS
TESTS += packaging_tests.TESTS


TEST_LIMIT_S = 300


class TestTimeout(Exception):
    pass


def on_alarm(signum, frame):
    # A test that hangs must fail (and clean up through its with-blocks), not stall CI.
    raise TestTimeout(f"test exceeded {TEST_LIMIT_S} s")


def main():
    global BUILD
    signal.signal(signal.SIGALRM, on_alarm)
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("-k", default="")
    ap.add_argument("--skip", default="", help="comma-separated test names not to run")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    unknown = skip - {t.__name__ for t in TESTS}
    if unknown:
        ap.error(f"--skip: no such test: {', '.join(sorted(unknown))}")
    BUILD = os.path.abspath(args.build)
    detection_tests.BUILD = BUILD
    fencing_tests.BUILD = BUILD
    pacing_tests.BUILD = BUILD
    config_tests.BUILD = BUILD
    actions_tests.BUILD = BUILD
    lifecycle_tests.BUILD = BUILD
    notify_tests.BUILD = BUILD
    prometheus_tests.BUILD = BUILD
    drctl_tests.BUILD = BUILD
    humancfg_tests.BUILD = BUILD
    ops_signals_tests.BUILD = BUILD
    packaging_tests.BUILD = BUILD
    removed = netns.remove_stale()
    if removed:
        print(f"removed what an interrupted run left: {' '.join(removed)}", flush=True)
    passed = failed = 0
    for t in TESTS:
        if args.k not in t.__name__ or t.__name__ in skip:
            continue
        t0 = time.monotonic()
        signal.alarm(TEST_LIMIT_S)
        try:
            t()
            passed += 1
            print(f"PASS {t.__name__} ({time.monotonic() - t0:.1f}s)", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL {t.__name__} ({time.monotonic() - t0:.1f}s)", flush=True)
            traceback.print_exc()
        finally:
            signal.alarm(0)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
