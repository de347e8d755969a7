"""Fencing on real processes: a leader deposed while its Genesys write waits (on a held read, or
in a Retry-After wait) sends nothing for it once it runs again; the new leader finishes the
operation and every trunk base is switched exactly once."""
import re
import signal

import simctl
from harness import Cluster, wait_until

BUILD = None
TBB = "/api/v2/telephony/providers/edges/trunkbasesettings/tbB"


def _other_leader(c, old):
    """A leader elected by the nodes other than old (which is stopped)."""
    for i in c.alive():
        if i == old:
            continue
        st = c.status(i)
        if st and st["node"]["acting_leader"]:
            return i
    return None


def _depose(c, old, while_stopped):
    """SIGSTOP old past an election, run while_stopped(new leader), then SIGCONT it."""
    c.procs[old].send_signal(signal.SIGSTOP)
    try:
        new = wait_until(lambda: _other_leader(c, old), 20, "the others to elect a leader")
        while_stopped(new)
    finally:
        c.procs[old].send_signal(signal.SIGCONT)
    return new


def _fenced(c, i):
    return c.metric_sum("drwatch_genesys_fenced_total", [i])


def _assert_sent_no_write(c, i):
    # The client logs every PUT it got an answer to ("PUT trunkbasesettings/tbB trunk_enabled=..
    # -> 200" or "... -> 409"); a fenced one only as "not sent". (Committed step results quote
    # the leader's PUTs on every node: only the client's own lines count.)
    sent = [l for l in c.log(i).splitlines() if " component=genesys " in l and
            re.search(r"PUT trunkbasesettings/tbB( trunk_enabled=| -> )", l)]
    assert not sent, f"the deposed leader {i} wrote to Genesys:\n" + "\n".join(sent)


def _finish(c, old):
    c.wait_operation_done(range(1, 4), 60, "the new leader to finish the operation")
    assert c.ok_puts() == [("tbB", True), ("tbA", False)], c.ok_puts()
    assert c.procs[old].poll() is None, "the deposed leader must keep running"
    _assert_sent_no_write(c, old)


def test_fence_deposed_during_held_read_sends_no_put():
    """The read-first GET of the activate step is held by the simulator; the leader is stopped
    past an election; the GET is answered while it is stopped, so the answer is waiting when it
    runs again, before it has heard of the new term: no PUT may follow."""
    with Cluster(BUILD, name="fence-read").start() as c:
        c.wait_leader()
        c.wait_sites_up("site-a", "site-b")
        simctl.set_fault(c.genesys_url, method="GET", path_prefix=TBB, kind="hold", count=1)
        c.kill_edges("site-a")
        held = simctl.wait_held(c.genesys_url, "GET", TBB, timeout=30)
        old = c.wait_leader()
        before = _fenced(c, old)

        def release(_new):
            assert simctl.release_held(c.genesys_url, seq=held["seq"]) == 1
            wait_until(lambda: any(r["seq"] == held["seq"] and r.get("status") == 200
                                   for r in c.requests()), 10, "the held GET to be answered")

        _depose(c, old, release)
        wait_until(lambda: _fenced(c, old) > before, 20, "the deposed leader's write to be fenced")
        _finish(c, old)


def test_fence_deposed_during_retry_wait_sends_nothing_more():
    """The leader's GET draws a 429 with Retry-After (3 s at the tests' back-off scale); it is
    deposed during the wait and resumed while the new leader still waits out its request: the
    retry, and any PUT after it, must not be sent."""
    with Cluster(BUILD, name="fence-retry").start() as c:
        c.wait_leader()
        c.wait_sites_up("site-a", "site-b")
        simctl.set_fault(c.genesys_url, method="GET", path_prefix=TBB, kind="429",
                         retry_after_s=60, count=1)
        c.kill_edges("site-a")
        wait_until(lambda: any(r["method"] == "GET" and r["path"].startswith(TBB) and
                               r.get("status") == 429 for r in c.requests()), 30,
                   "the leader's GET to draw a 429")
        old = c.wait_leader()
        before = _fenced(c, old)
        _depose(c, old, lambda new: None)
        wait_until(lambda: _fenced(c, old) > before, 20, "the deposed leader's retry to be fenced")
        _finish(c, old)


TESTS = [v for k, v in sorted(globals().items()) if k.startswith("test_")]
