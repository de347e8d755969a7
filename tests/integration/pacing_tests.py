"""Pacing on real processes: a 429 storm during a failover. The client waits out every
Retry-After (real time here: the back-off scale is 1) before it sends anything more, the step
rides out the storm instead of failing, and the failover completes exactly once."""
import simctl
from harness import Cluster, wait_until

BUILD = None
API = "/api/v2/"
RETRY_AFTER_S = 2
STORM = 8  # 429 answers in a row: more than one call's 5 retries, so the actuator retries too


def test_429_storm_during_failover():
    with Cluster(BUILD, name="storm", node_env={"DRWATCH_GENESYS_BACKOFF_SCALE": "1"},
                 genesys_extra={"step_timeout_ms": 60000}) as c:
        c.start()
        c.wait_leader()
        c.wait_sites_up("site-a", "site-b")
        simctl.set_fault(c.genesys_url, kind="429", path_prefix=API, count=STORM,
                         retry_after_s=RETRY_AFTER_S)
        c.kill_edges("site-a")
        c.wait_operation_done(range(1, 4), 90, "the failover to finish through the storm")
        leader = c.wait_leader()

        reqs = [r for r in c.requests() if r["path"].startswith(API)]
        storm = [r for r in reqs if r.get("status") == 429]
        assert len(storm) == STORM, [(r["method"], r["path"], r.get("status")) for r in reqs]
        # Retry-After honoured: after each 429 nothing at all reached the API before it elapsed
        # (50 ms for timer and clock granularity).
        for r429 in storm:
            early = [r for r in reqs
                     if r429["t"] < r["t"] < r429["t"] + RETRY_AFTER_S - 0.05]
            assert not early, (f"sent {early[0]['t'] - r429['t']:.3f} s after a 429 with "
                               f"Retry-After {RETRY_AFTER_S}: {early[0]['method']} {early[0]['path']}")

        # exactly once: one failover, each trunk base switched once
        ops = c.operations(1)
        assert [o["kind"] for o in ops] == ["failover"], ops
        assert ops[0]["status"] == "done", ops[0]
        assert c.ok_puts() == [("tbB", True), ("tbA", False)], c.ok_puts()
        assert all(c.group_active(i) == "premise-b" for i in range(1, 4))

        assert c.metric_sum("drwatch_genesys_rate_limited_total", [leader]) == STORM
        # the actuator's retry after the call gave up was held until the last Retry-After ran out
        assert c.metric_sum("drwatch_genesys_server_held_total", [leader]) >= 1
        assert sorted(c.alive()) == [1, 2, 3], "a node died"
        # a clean SIGTERM shutdown of every node is checked when the cluster stops


TESTS = [v for k, v in sorted(globals().items()) if k.startswith("test_")]
