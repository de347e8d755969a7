"""The replicated config on real processes: bootstrap, drctl config show|diff|apply, a node whose
file differs, and drctl members add|remove (3 -> 4 -> 3 while a site fails over)."""
import json
import os

from harness import Cluster, simctl, wait_until

BUILD = None


def config_state(c, i):
    st = c.status(i)
    return st["config"] if st else None


def wait_config(c, version, nodes):
    wait_until(lambda: all((config_state(c, i) or {}).get("running_version") == version and
                           config_state(c, i)["committed_version"] == version for i in nodes),
               20, f"config version {version} committed and running on nodes {nodes}")


def file_of(c, i):
    """A copy of node i's file to edit (the harness shares some sections between nodes)."""
    return json.loads(json.dumps(c.config(i)))


def write(c, name, doc):
    path = os.path.join(c.dir, name)
    with open(path, "w") as f:
        if isinstance(doc, str):
            f.write(doc)
        else:
            json.dump(doc, f, indent=2)
    return path


def test_config_bootstrap_apply_and_local_differences():
    c = Cluster(BUILD, name="cfgapply")
    try:
        c.write_configs()
        # node 3's file disagrees (fail_threshold): whichever file bootstraps, the nodes whose
        # file is not the committed one say so, and all run by the committed one
        cfg3 = file_of(c, 3)
        cfg3["probe"]["fail_threshold"] = 7
        write(c, "n3.json", cfg3)
        c.start_sims()
        for i in (1, 2, 3):
            c.start_node(i)
        c.wait_leader()
        wait_config(c, 1, [1, 2, 3])
        c.wait_sites_up("site-a", "site-b")
        shown = c.drctl(1, "config", "show")
        assert shown["version"] == 1, shown
        committed = shown["config"]
        assert "node" not in committed and "peer_secret_dir" not in committed["cluster"], committed
        threshold = committed["probe"]["fail_threshold"]
        differs = {i for i in (1, 2, 3) if config_state(c, i)["local_differs"]}
        assert differs == ({1, 2} if threshold == 7 else {3}), (threshold, differs)
        for i in differs:
            assert "probe.fail_threshold" in config_state(c, i)["differences"], config_state(c, i)
            assert f"differs from committed config version 1" in c.log(i), c.log(i)[-2000:]
            assert c.metric_sum("drwatch_config_local_differs", [i]) == 1
        assert c.metric_sum("drwatch_config_version") == 3

        leader = c.leader()
        follower = next(i for i in (1, 2, 3) if i != leader)
        # the change: site-a needs both Edges, and edge-a1 now points at a port nobody serves
        new = file_of(c, leader)
        new["probe"]["fail_threshold"] = threshold
        new["sites"][0]["rule"] = "all"
        new["sites"][0]["edges"][0]["health_url"] = f"http://127.0.0.1:{simctl.free_port()}/health"
        path = write(c, "change.json", new)

        r = c.run_drctl(follower, "--json", "config", "diff", path)
        assert r.returncode == 0, r.stderr
        diff = json.loads(r.stdout)
        assert diff["count"] == 2, diff
        assert "sites[site-a].rule: added \"all\"" in diff["differences"], diff
        assert "sites[site-a].edges[edge-a1].health_url" in diff["differences"], diff

        r = c.run_drctl(leader, "config", "apply", path, "--dry-run")
        assert r.returncode == 0 and "dry run" in r.stdout, (r.returncode, r.stdout, r.stderr)
        r = c.run_drctl(follower, "config", "apply", path)
        assert r.returncode == 1 and f"node {leader}" in r.stderr, (r.returncode, r.stderr)
        c.wait_log_advance(1500)
        assert all(config_state(c, i)["committed_version"] == 1 for i in (1, 2, 3))

        r = c.run_drctl(leader, "--json", "config", "apply", path)
        assert r.returncode == 0, (r.stdout, r.stderr)
        applied = json.loads(r.stdout)
        assert applied["version"] == 2 and applied["count"] == 2, applied
        wait_config(c, 2, [1, 2, 3])
        # one index for everyone: the replicated state agrees byte for byte
        state = c.wait_converged()
        assert "config version 2 (apply, by " in json.dumps(c.drctl(1, "history")), "history"
        assert "config|version=2|" in state, state[:2000]
        # every node probes the new URL: site-a goes down under its new rule and fails over
        c.wait_operation_done(what="the failover the new config causes")
        assert all(c.group_active(i) == "premise-b" for i in (1, 2, 3))
        assert len(c.ok_puts()) == 2, c.puts()
        # every file now differs from the committed config
        wait_until(lambda: all(config_state(c, i)["local_differs"] for i in (1, 2, 3)), 10,
                   "every node to report its file differs")
        # applying the committed document again changes nothing and commits nothing
        r = c.run_drctl(leader, "--json", "config", "apply", path)
        assert r.returncode == 0 and json.loads(r.stdout)["count"] == 0, r.stdout
        assert config_state(c, leader)["committed_version"] == 2
    finally:
        c.stop()


def test_config_apply_refuses_bad_files():
    with Cluster(BUILD, name="cfgbad").start() as c:
        leader = c.wait_leader()
        wait_config(c, 1, [1, 2, 3])
        bad = file_of(c, leader)
        bad["sites"][1]["edges"][0]["health_url"] = 42
        bad["probe"]["fail_treshold"] = 3
        bad["failover_groups"][0]["targets"][1]["site"] = "site-z"
        r = c.run_drctl(leader, "config", "apply", write(c, "bad.json", bad))
        assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
        for needle in ["sites[1].edges[0].health_url: expected a string",
                       "probe.fail_treshold: unknown key",
                       "failover_groups[0].targets[1].site"]:
            assert needle in r.stderr, f"{needle!r} not in:\n{r.stderr}"

        r = c.run_drctl(leader, "config", "apply", write(c, "broken.json", '{"sites": [\n  1,\n'))
        assert r.returncode == 2 and "not valid JSON (line" in r.stderr, r.stderr

        members = file_of(c, leader)
        members["cluster"]["members"][2]["peer_address"] = "127.0.0.1:1"
        r = c.run_drctl(leader, "config", "apply", write(c, "members.json", members))
        assert r.returncode == 2 and "cluster.members" in r.stderr and "drctl members" in r.stderr, \
            r.stderr

        r = c.run_drctl(leader, "config", "apply", os.path.join(c.dir, "missing.json"))
        assert r.returncode == 2 and "missing.json" in r.stderr, r.stderr
        # nothing was committed
        c.wait_log_advance(1500)
        assert all(config_state(c, i)["committed_version"] == 1 for i in (1, 2, 3))
        assert "config version 2" not in json.dumps(c.drctl(leader, "history"))


def test_members_3_to_4_to_3_while_a_site_fails_over():
    with Cluster(BUILD, name="members", n=4, initial_members=3).start() as c:
        leader = c.wait_leader()
        wait_config(c, 1, [1, 2, 3])
        c.wait_sites_up("site-a", "site-b")
        listed = c.drctl(leader, "members", "list")
        assert [m["id"] for m in listed["committed"]] == [1, 2, 3], listed
        assert sorted(s["id"] for s in listed["raft"] if s["role"] == "voter") == [1, 2, 3], listed

        # refused: removing the leader, leaving two voters, adding without a reachable node
        r = c.run_drctl(leader, "members", "remove", str(leader))
        assert r.returncode == 1 and "is the leader" in r.stderr, r.stderr
        other = next(i for i in (1, 2, 3) if i != leader)
        r = c.run_drctl(leader, "members", "remove", str(other))
        assert r.returncode == 1 and "leaves 2 voters" in r.stderr, r.stderr
        r = c.run_drctl(leader, "members", "add", "4", "--raft-address", "localhost:7001",
                        "--peer-address", f"127.0.0.1:{c.peer_ports[3]}")
        assert r.returncode == 2 and "cluster.members[3].raft_address" in r.stderr, r.stderr

        c.start_node(4, "--join")
        # one follower lacks the secret it is to share with node 4: it runs the new config all the
        # same (its vote counts) and says what is missing until the file is there
        lagging = other
        secret = os.path.join(c.peer_secret_dir(lagging), "4.secret")
        os.rename(secret, secret + ".later")
        r = c.run_drctl(leader, "--json", "members", "add", "4",
                        "--raft-address", f"127.0.0.1:{c.raft_ports[3]}",
                        "--peer-address", f"127.0.0.1:{c.peer_ports[3]}", "--name", "n4")
        assert r.returncode == 0, (r.stdout, r.stderr)
        version = json.loads(r.stdout)["version"]
        assert version == 3, r.stdout  # a non-voting entry, then the vote
        wait_config(c, version, [1, 2, 3, 4])
        wait_until(lambda: "4.secret" in config_state(c, lagging)["error"], 20,
                   f"node {lagging} to report the missing secret")
        assert c.metric_sum("drwatch_config_errors_total", [lagging]) >= 1
        os.rename(secret + ".later", secret)
        wait_until(lambda: config_state(c, lagging)["error"] == "", 20,
                   f"node {lagging} to take the secret")
        for i in (1, 2, 3, 4):
            listed = c.drctl(i, "members", "list")
            assert [(m["id"], m["voter"]) for m in listed["committed"]] == \
                [(1, True), (2, True), (3, True), (4, True)], (i, listed)
            assert sorted(s["id"] for s in listed["raft"] if s["role"] == "voter") == [1, 2, 3, 4]
        # the new member probes and votes: its observation reaches the log
        wait_until(lambda: (c.observation(1, 4, "site-a") or {}).get("state") == "up", 20,
                   "node 4's observation of site-a committed")
        assert not config_state(c, 4)["local_differs"], config_state(c, 4)

        # under load: site-a dies and the change back to three runs while it fails over
        c.kill_edges("site-a")
        wait_until(lambda: c.site_verdict(1, "site-a") == "down", 20, "site-a down")
        hist = json.dumps(c.drctl(1, "history"))
        assert "/4 fresh" in hist, "the verdict counted four voters"
        r = c.run_drctl(c.wait_leader(), "--json", "members", "remove", "4")
        assert r.returncode == 0, (r.stdout, r.stderr)
        c.kill_node(4, __import__("signal").SIGTERM)
        c.wait_operation_done(nodes=[1, 2, 3])
        assert len(c.ok_puts()) == 2, c.puts()
        for i in (1, 2, 3):
            listed = c.drctl(i, "members", "list")
            assert [m["id"] for m in listed["committed"]] == [1, 2, 3], (i, listed)
            assert sorted(s["id"] for s in listed["raft"]) == [1, 2, 3], (i, listed)
        # the majority is three voters' again
        c.start_edges("site-a")
        wait_until(lambda: c.site_verdict(1, "site-a") == "up", 20, "site-a up again")
        assert "/3 fresh" in json.dumps(c.drctl(1, "history")), "the verdict counts three voters"

        c.wait_converged()


TESTS = [v for k, v in sorted(globals().items()) if k.startswith("test_")]
