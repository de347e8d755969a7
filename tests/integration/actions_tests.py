"""Action kinds on real processes: a failover whose targets also order an outbound route, switch
one off (mode "enabled") and drain their site's Edges, as the Genesys simulator's request log
sees it: every change made once, in the documented order, each read back; and a step run again
by a new leader after the first died mid-step finds everything already so and writes nothing."""
import signal

from harness import Cluster, wait_until  # first: it puts tests/tools (simctl) on the path
import simctl  # noqa: E402

BUILD = None
PFX = "/api/v2/telephony/providers/edges"
R1 = PFX + "/sites/site-a/outboundroutes/route-1"

# route-1 tries tbA first; route-2 carries calls through site A only.
ROUTES = [{"id": "route-1", "site": "site-a", "externalTrunkBases": ["tbA", "tbB"]},
          {"id": "route-2", "site": "site-a", "enabled": True, "externalTrunkBases": ["tbA"]}]
ORDER = {"site_id": "site-a", "route_id": "route-1", "mode": "order"}
TARGETS = {
    "premise-a": {"outbound_routes": [ORDER, {"site_id": "site-a", "route_id": "route-2",
                                              "mode": "enabled"}],
                  "drain_edges": True, "drain_wait_s": 120},
    "premise-b": {"outbound_routes": [ORDER], "drain_edges": True},
}
DRAIN = {"inService": False, "callDrainingWaitTimeSeconds": 120}


def _cluster(name):
    return Cluster(BUILD, name=name, target_extra=TARGETS, outbound_routes=ROUTES)


def _writes(c, since_t=0.0):
    """(method, path under the prefix, body, status) of every API write, in arrival order."""
    return [(r["method"], r["path"][len(PFX):], r.get("body"), r.get("status"))
            for r in c.requests() if r["method"] in ("PUT", "POST")
            and r["path"].startswith(PFX) and r["t"] >= since_t]


def _check_failover(c):
    """The operation's writes: each once, in the documented order, with the right bodies."""
    w = _writes(c)
    assert [(m, p) for m, p, _, _ in w] == [
        ("PUT", "/trunkbasesettings/tbB"),              # activate premise-b: its Edges read
        ("PUT", "/sites/site-a/outboundroutes/route-1"),  # in service, so no POST; then routes
        ("PUT", "/sites/site-a/outboundroutes/route-2"),  # deactivate premise-a: routes off,
        ("PUT", "/trunkbasesettings/tbA"),              # trunk bases off,
        ("POST", "/edge-a1/statuscode"),                # Edges drained
        ("POST", "/edge-a2/statuscode")], w
    by = {(m, p): (b, st) for m, p, b, st in w}
    ids = [x["id"] for x in by[("PUT", "/sites/site-a/outboundroutes/route-1")][0]
           ["externalTrunkBases"]]
    assert ids == ["tbB", "tbA"], ids
    assert by[("PUT", "/sites/site-a/outboundroutes/route-2")][0]["enabled"] is False
    assert by[("POST", "/edge-a1/statuscode")][0] == DRAIN, by
    assert by[("POST", "/edge-a2/statuscode")][0] == DRAIN, by
    st = simctl.get_state(c.genesys_url)
    assert st["routes"]["route-1"]["externalTrunkBases"] == ["tbB", "tbA"], st["routes"]
    assert st["routes"]["route-2"]["enabled"] is False, st["routes"]
    assert st["trunk_bases"]["tbB"]["enabled"] and not st["trunk_bases"]["tbA"]["enabled"], st
    # Deactivate reads back: a GET of each written object follows its write.
    reqs = c.requests()
    for path in ("/trunkbasesettings/tbA", "/sites/site-a/outboundroutes/route-2", "/edge-a1"):
        write = max(i for i, r in enumerate(reqs) if r["method"] in ("PUT", "POST")
                    and r["path"].startswith(PFX + path))
        assert any(r["method"] == "GET" and r["path"] == PFX + path and r["status"] == 200
                   for r in reqs[write + 1:]), f"no read back of {path}"


def test_actions_failover_orders_route_and_drains_edges():
    with _cluster("actions").start() as c:
        c.wait_leader()
        c.wait_sites_up("site-a", "site-b")
        assert _writes(c) == []
        c.kill_edges("site-a")
        c.wait_operation_done(range(1, 4), 60, "failover done on every node")
        _check_failover(c)
        op = c.operations(1)[0]
        assert [(s["action"], s["target"], s["status"]) for s in op["steps"]] == [
            ("activate", "premise-b", "done"), ("verify", "premise-b", "done"),
            ("deactivate", "premise-a", "done"), ("deactivate", "cloud", "done")], op["steps"]
        details = {(s["action"], s["target"]): s["detail"] for s in op["steps"]}
        act = details[("activate", "premise-b")]
        assert "Edge edge-b1 already in service" in act and "route-1 trunk bases first" in act, act
        deact = details[("deactivate", "premise-a")]
        assert "read back: trunk_enabled false" in deact, deact
        assert "read back: callDrainingState COMPLETE" in deact, deact


def test_actions_step_run_again_writes_nothing():
    """The leader dies while its route PUT is held by the simulator; the PUT lands after. The
    new leader runs the STARTED activate step again: Edges, trunk base and route read as already
    so, and nothing is written a second time."""
    with _cluster("actions-again").start() as c:
        c.wait_leader()
        c.wait_sites_up("site-a", "site-b")
        simctl.set_fault(c.genesys_url, "hold", path_prefix=R1, method="PUT", count=1)
        c.kill_edges("site-a")
        held = simctl.wait_held(c.genesys_url, "PUT", R1, timeout=40)
        fence = held["headers"].get("X-Drwatch-Fence", "")
        writer = int(fence.split()[0].split("=")[1])
        c.kill_node(writer, signal.SIGKILL)
        crash_t = max(r["t"] for r in c.requests())
        assert simctl.release_held(c.genesys_url) == 1
        survivors = [i for i in range(1, 4) if i != writer]
        c.wait_operation_done(survivors, 60, "the new leader to finish the operation")
        _check_failover(c)
        # What the new leader sent for the activate step's objects: reads only.
        again = [(r["method"], r["path"][len(PFX):]) for r in c.requests()
                 if r["t"] > crash_t and r["path"].startswith(PFX)
                 and (r["path"].endswith("/tbB") or r["path"].endswith("/route-1")
                      or "/edge-b" in r["path"])]
        assert again and all(m == "GET" for m, _ in again), again
        op = c.operations(survivors[0])[0]
        act = [s for s in op["steps"] if s["action"] == "activate"][0]["detail"]
        assert "route site-a/route-1 already trunk bases first" in act, act
        assert "trunkbasesettings/tbB trunk_enabled already true" in act, act


def test_actions_route_lacking_the_trunk_base_fails_the_step_clearly():
    """drwatch reorders a route's trunk bases but never adds one: activating premise-b against a
    route that does not list tbB fails the step, saying so, and the route is never written."""
    routes = [{"id": "route-3", "site": "site-a", "externalTrunkBases": ["tbA"]}]
    extra = {"premise-b": {"outbound_routes": [{"site_id": "site-a", "route_id": "route-3",
                                                "mode": "order"}]}}
    with Cluster(BUILD, name="actions-refused", target_extra=extra,
                 outbound_routes=routes).start() as c:
        c.wait_leader()
        c.wait_sites_up("site-a", "site-b")
        c.kill_edges("site-a")

        def failed_step():
            for op in c.operations(1) or []:
                for s in op["steps"]:
                    if s["status"] == "failed":
                        return s
            return None
        s = wait_until(failed_step, 60, "the activate step to fail")
        assert (s["action"], s["target"]) == ("activate", "premise-b"), s
        assert s["detail"].startswith("route site-a/route-3: the route does not list trunk base "
                                      "tbB"), s["detail"]
        assert not [w for w in _writes(c) if "/outboundroutes/" in w[1]], _writes(c)
        assert simctl.get_state(c.genesys_url)["routes"]["route-3"]["externalTrunkBases"] == \
            ["tbA"]


TESTS = [v for k, v in sorted(globals().items()) if k.startswith("test_")]
