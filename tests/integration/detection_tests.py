"""Detection integration tests: every probe kind, the Genesys signal, freshness, TILT, bounded
log cost and metrics, with three real drwatchd processes (imported by run.py)."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from harness import ROOT, SITES, Cluster, wait_until
from netns import Netns

sys.path.insert(0, os.path.join(ROOT, "tests", "tools"))
import simctl  # noqa: E402

TOOLS = os.path.join(ROOT, "tests", "tools")
BUILD = None  # set by run.py


def make_certs(d):
    """A CA and a server certificate for 127.0.0.1, made with the openssl CLI."""
    subprocess.run(
        "set -e; printf 'subjectAltName=IP:127.0.0.1\\n' > srv.ext; "
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
        "-keyout ca.key -out ca.pem -days 2 -subj /CN=drwatch-it-ca; "
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
        "-keyout srv.key -out srv.csr -subj /CN=edge.test; "
        "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
        "-out srv.pem -days 2 -extfile srv.ext",
        shell=True, cwd=d, check=True, capture_output=True)
    return os.path.join(d, "ca.pem"), os.path.join(d, "srv.pem"), os.path.join(d, "srv.key")


def start_line(argv, word):
    """Starts a helper that prints '<word> <port>' once listening; .port is that port."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    if not line.startswith(word):
        p.kill()
        p.wait()
        raise AssertionError(f"{argv[1]} did not start: {line!r}")
    p.port = int(line.split()[1])
    return p


def sipp(port, transport, scenario="uas_200.xml"):
    return subprocess.Popen(["sipp", "-sf", os.path.join(TOOLS, "sip", scenario), "-i", "127.0.0.1",
                             "-p", str(port), "-t", transport, "-nostdin", "-trace_err"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=tempfile.gettempdir())


def stop_all(procs):
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def probe_ok_counts(text):
    """{(edge, kind): ok runs} from a /metrics scrape."""
    out = {}
    for line in text.splitlines():
        if line.startswith("drwatch_probe_total{") and 'result="ok"' in line:
            labels = dict(kv.split("=", 1) for kv in line[line.index("{") + 1:line.index("}")].split(","))
            key = (labels["edge"].strip('"'), labels["kind"].strip('"'))
            out[key] = out.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return out


def check_metrics_doc(text):
    """docs/metrics.md names every series a node serves and nothing it does not (the cloud
    poller's only appear on a leader polling Genesys), and its alert rules pass promtool."""
    import re
    with open(os.path.join(ROOT, "docs", "metrics.md")) as f:
        doc = f.read()
    documented = set(re.findall(r"^\| `(drwatch_[a-z_]+)` \|", doc, re.M))
    served = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    assert served - documented == set(), f"undocumented metrics: {served - documented}"
    # the cloud poller's and the notifier's series appear only where they are configured, the
    # operation ones only once an operation runs or has ended
    missing = {m for m in documented - served
               if not m.startswith(("drwatch_cloud_", "drwatch_notify_", "drwatch_operation_"))}
    assert missing == set(), f"documented but not served: {missing}"
    rules = re.search(r"```yaml\n(.*?)```", doc, re.S).group(1)
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
        f.write(rules)
        f.flush()
        r = subprocess.run(["promtool", "check", "rules", f.name], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_j_every_probe_kind_end_to_end():
    """SIP OPTIONS over UDP and TCP (sipp), SIP over TLS and HTTPS with a test CA, TCP connect:
    every node sees every Edge up through its own probe kind, metrics pass promtool, and losing
    site A's SIP peers and ports fails over to site B."""
    d = tempfile.mkdtemp(prefix="drwatch-certs-")
    ca, crt, key = make_certs(d)
    p_a1, p_a2 = simctl.free_port(), simctl.free_port()
    helpers = [sipp(p_a1, "u1"), sipp(p_a2, "t1")]
    https = start_line([sys.executable, os.path.join(TOOLS, "tls_http_server.py"), "--port", "0",
                        "--cert", crt, "--key", key], "READY")
    sip_tls = start_line([sys.executable, os.path.join(TOOLS, "sip_fake.py"), "--transport", "tls",
                          "--script", "ok", "--cert", crt, "--key", key], "PORT")
    helpers += [https, sip_tls]
    try:
        c = Cluster(BUILD, name="kinds")
        c.edge_overrides = {
            (None, "edge-a1"): {"health_url": None, "probes": [
                {"kind": "sip", "address": f"127.0.0.1:{p_a1}", "transport": "udp"}]},
            (None, "edge-a2"): {"health_url": None, "probes": [
                {"kind": "sip", "address": f"127.0.0.1:{p_a2}", "transport": "tcp",
                 "alive_codes": ["2xx"]},
                {"kind": "tcp", "address": f"127.0.0.1:{c.edge_ports['edge-a2']}"}]},
            (None, "edge-b1"): {"health_url": None, "probes": [
                {"kind": "http", "url": f"https://127.0.0.1:{https.port}/body/edge-ok",
                 "ca_file": ca, "expect_status": [200], "body_match": "edge-ok"}]},
            (None, "edge-b2"): {"health_url": None, "probes": [
                {"kind": "sip", "address": f"127.0.0.1:{sip_tls.port}", "transport": "tls",
                 "ca_file": ca, "tls_server_name": "127.0.0.1"}]},
        }
        with c.start():
            c.wait_leader()

            def all_edges_up():
                for i in range(1, 4):
                    st = c.status(i)
                    if not st or any(e["state"] != "up" for s in st["local"] for e in s["edges"]):
                        return False
                return True
            wait_until(all_edges_up, 30, "every Edge up on every node through its probes")
            kinds = (("edge-a1", "sip"), ("edge-a2", "sip"), ("edge-a2", "tcp"),
                     ("edge-b1", "http"), ("edge-b2", "sip"))
            for i in range(1, 4):
                # An Edge is up once one of its probes is: edge-a2's second kind may lag a run.
                wait_until(lambda: all(probe_ok_counts(c.metrics(i)).get(k, 0) > 0 for k in kinds),
                           10, f"node {i}: a successful run of every probe kind")
                text = c.metrics(i)
                r = subprocess.run(["promtool", "check", "metrics"], input=text,
                                   capture_output=True, text=True)
                assert r.returncode == 0, r.stdout + r.stderr
                assert "drwatch_is_leader" in text

            check_metrics_doc(c.metrics(1))

            def leaders():
                return sum(float(line.split()[-1]) for i in range(1, 4)
                           for line in c.metrics(i).splitlines()
                           if line.startswith("drwatch_is_leader "))
            # Three scrapes one after another can straddle a change of leader: wait for one
            # scrape round that shows exactly one, and never more than one.
            seen = []
            wait_until(lambda: seen.append(leaders()) or seen[-1] == 1, 10, "exactly one leader")
            assert max(seen) <= 1, seen
            # Site A loses its SIP peers and its TCP port.
            stop_all(helpers[:2])
            c.kill_edges("site-a")
            c.wait_operation_done(timeout=40, what="failover to premise-b")
            puts = c.ok_puts()
            assert puts == [("tbB", True), ("tbA", False)], puts
    finally:
        stop_all(helpers)


def _freshness_cluster(name, hosts=None, views=(1, 3), **kw):
    """The nodes in views (1 and 3 by default) reach site A through their own Edge processes (same
    Edge ids), so the test can break one watchdog's path to A without touching the others'."""
    hosts = hosts or {}
    views = {i: {e: simctl.free_port() for e in SITES["site-a"]} for i in views}
    urls = {(i, e): f"http://{hosts.get(i, '127.0.0.1')}:{p}/health"
            for i, v in views.items() for e, p in v.items()}
    c = Cluster(BUILD, name=name, per_node_urls=urls, **kw)
    c.views = {i: {e: simctl.start_edge(p, e, host=kw.get("sim_host", "127.0.0.1"))
                   for e, p in v.items()} for i, v in views.items()}
    for v in c.views.values():
        c.extra_edges.update({f"{id(p)}": p for p in v.values()})
    return c


def _break_view(c, i):
    for p in c.views[i].values():
        p.kill()
        p.wait()


def _restore_view(c, i, host="127.0.0.1"):
    for e, p in list(c.views[i].items()):
        c.views[i][e] = simctl.start_edge(p.port, e, host=host)
        c.extra_edges[f"{id(c.views[i][e])}"] = c.views[i][e]


def _stale_vote_then_second(c, state, change_view, silence):
    """Node 3 reports `state` for site-a and is silenced; once that observation is stale, node 1
    reports `state` too. Returns after two more seconds of committed refreshes, for the caller to
    check that one fresh vote plus one stale one moved nothing."""
    change_view(3)
    wait_until(lambda: (c.observation(1, 3, "site-a") or {}).get("state") == state, 20,
               f"node 3's {state} committed")
    silence()
    wait_until(lambda: not c.observation(1, 3, "site-a")["fresh"], 20,
               "node 3's observation to go stale")
    change_view(1)
    wait_until(lambda: (c.observation(2, 1, "site-a") or {}).get("state") == state, 20,
               f"node 1's {state} committed")
    base = c.observation(2, 2, "site-a")["refreshed"]
    wait_until(lambda: c.observation(2, 2, "site-a")["refreshed"] >= base + 2000, 20,
               "two more seconds of committed refreshes")


def test_k_silent_watchdog_cannot_tip_the_verdict_and_tilt_abstains():
    """Node 3 reports site A down, then goes silent (SIGSTOP). Its DOWN goes stale, so when node 1
    later loses A too there is one fresh DOWN of three: no verdict, no failover. Node 3 resumes
    with a stalled loop: TILT, visible in drctl and /metrics, and while it abstains its fresh DOWN
    still does not count. When TILT ends, two fresh DOWNs make the verdict."""
    c = _freshness_cluster("fresh", ttl_ms=3000, refresh_ms=500,
                           tilt={"stall_ms": 1500, "clock_jump_ms": 5000, "abstain_ms": 6000})
    with c:
        c.write_configs()
        c.start_sims()
        for i in range(1, 4):
            c.start_node(i)
        c.wait_leader()
        c.wait_sites_up("site-a", timeout=20)
        try:
            _stale_vote_then_second(c, "down", lambda i: _break_view(c, i),
                                    lambda: c.procs[3].send_signal(signal.SIGSTOP))
            for i in (1, 2):
                assert c.site_verdict(i, "site-a") == "up", c.cluster_view(i)["sites"]
                assert c.operations(i) == []
        finally:
            c.procs[3].send_signal(signal.SIGCONT)
        # Node 3's loop was stopped for seconds: it distrusts itself.
        wait_until(lambda: (lambda s: s if s and s["node"]["tilt"]["active"] else None)(c.status(3)),
                   20, "node 3 in TILT")
        # the late probe runs the stop caused may trip TILT first (as probe overload): the stall
        # is seen all the same
        wait_until(lambda: "loop stalled" in c.log(3), 20, "node 3's stalled loop detected")
        assert any(line.startswith("drwatch_tilt 1") for line in c.metrics(3).splitlines())
        wait_until(lambda: (c.observation(1, 3, "site-a") or {}).get("tilt") and
                   c.observation(1, 3, "site-a")["fresh"], 20, "node 3's tilted DOWN committed")
        assert c.site_verdict(1, "site-a") == "up", "a tilted node's vote must not count"
        assert c.puts() == []
        # TILT ends; two fresh DOWN observations now decide.
        wait_until(lambda: c.site_verdict(1, "site-a") == "down", 30, "site-a down after TILT")
        c.wait_operation_done(timeout=40, what="failover done")


def test_l_genesys_signal_and_combination():
    """Site A uses probes_and_genesys: while the Genesys simulator says A's Edges are ONLINE the
    watchdogs' DOWN alone changes nothing; once the cloud agrees (OFFLINE), the site goes down."""
    c = Cluster(BUILD, name="cloudsig",
                site_overrides={"site-a": {"combine": "probes_and_genesys"}},
                genesys_extra={"poll_interval_ms": 500, "cloud_ttl_ms": 3000})
    with c.start():
        c.wait_leader()
        c.wait_sites_up("site-a", timeout=20)
        for e in SITES["site-a"]:
            simctl.set_edge(c.genesys_url, e, True)  # the cloud keeps saying ONLINE
        c.kill_edges("site-a")

        def probes_down():
            cl = c.cluster_view(1)
            s = [x for x in cl["sites"] if x["id"] == "site-a"][0]
            return s["probe_verdict"] == "down" and s
        s = wait_until(probes_down, 20, "the watchdogs' quorum DOWN on site-a")
        assert s["verdict"] == "up" and s["cloud_verdict"] == "up", s
        base = [x for x in c.cluster_view(1)["sites"] if x["id"] == "site-a"][0]["since"]
        assert c.puts() == [], "probes alone must not fail over a probes_and_genesys site"
        for e in SITES["site-a"]:
            simctl.set_edge(c.genesys_url, e, None)  # follow the (dead) Edge processes again
        c.wait_operation_done(timeout=40, what="failover once the cloud agrees")
        s = [x for x in c.cluster_view(2)["sites"] if x["id"] == "site-a"][0]
        assert s["verdict"] == "down" and s["cloud_verdict"] == "down" and s["since"] > base, s
        reqs = c.requests()
        # the Edge list is the API prefix itself
        lists = [r for r in reqs if r["path"] in (simctl.PFX, simctl.PFX + "/trunks")]
        assert {r["path"] for r in lists} == {simctl.PFX, simctl.PFX + "/trunks"}, lists[:4]
        assert not [r for r in lists if r["status"] == 404], "a listing got 404"
        assert not [r for r in reqs if r["path"].startswith(simctl.PFX + "/edges")], \
            "no request to .../edges/edges"


def test_l_backup_trunks_still_connecting_are_not_a_genesys_down(grace_ms=30000):
    """Site B uses probes_or_genesys. A failover activates premise-b and Genesys reports B's
    trunks in service but not yet connected: within genesys.cloud_grace_ms that is not a DOWN, so
    the failover is neither aborted nor moved on; it completes once the trunks connect."""
    c = Cluster(BUILD, name="cloudgrace",
                site_overrides={"site-b": {"combine": "probes_or_genesys"}},
                genesys_extra={"poll_interval_ms": 500, "cloud_ttl_ms": 3000,
                               "cloud_grace_ms": grace_ms})

    def site_b():
        return [x for x in (c.cluster_view(1) or {"sites": []})["sites"] if x["id"] == "site-b"][0]
    with c.start():
        c.wait_leader()
        c.wait_sites_up("site-a", "site-b", timeout=20)
        wait_until(lambda: site_b()["cloud_verdict"] == "up", 20, "Genesys sees site-b up")
        simctl.set_connected(c.genesys_url, "tbB", False)  # once switched on, they connect slowly
        c.kill_edges("site-a")

        def connecting():
            s = site_b()
            return all(e["fresh"] and e["trunks_disconnected"] for e in s["cloud"]) and s
        wait_until(connecting, 30, "Genesys reporting premise-b's trunks not connected")
        c.wait_log_advance(2000, viewer=1)  # a few more views, still unconnected
        ops = c.operations(1)
        assert [(o["to"], o["status"]) for o in ops] == [("premise-b", "running")], ops
        s = site_b()
        assert s["verdict"] == "up" and s["cloud_verdict"] == "unknown", s
        simctl.set_connected(c.genesys_url, "tbB", True)
        c.wait_operation_done(timeout=40, what="failover to premise-b once its trunks connect")
        ops = c.operations(1)
        assert [(o["to"], o["status"]) for o in ops] == [("premise-b", "done")], ops
        assert c.group_active(1) == "premise-b"


def test_m_log_cost_is_bounded():
    """A flapping Edge (faster than the thresholds) and a site whose 60 Edges die at once add a
    bounded number of entries: refreshes plus at most a few per node for the change."""
    import threading
    flap_port, shared_port = simctl.free_port(), simctl.free_port()
    sites = dict(SITES, **{"site-c": [f"edge-c{k}" for k in range(60)]})
    flap = simctl.start_edge(flap_port, "flapper")
    shared = simctl.start_edge(shared_port, "site-c")
    c = Cluster(BUILD, name="logcost", refresh_ms=1000, sites=sites,
                shared_edge_ports={e: shared_port for e in sites["site-c"]},
                edge_overrides={(None, "edge-b2"): {
                    "health_url": f"http://127.0.0.1:{flap_port}/health"}})
    c.extra_edges.update({"flap": flap, "shared": shared})
    with c.start():
        c.wait_leader()
        c.wait_sites_up("site-a", "site-b", "site-c", timeout=30)

        def index():
            return max(c.status(i)["node"]["last_index"] for i in range(1, 4))

        def term():
            return max(c.status(i)["leader"]["term"] for i in range(1, 4))
        counter = c.metric_sum
        stop = threading.Event()

        def flapper():  # 200 ms up, 200 ms down: never 3 failed runs in a row at 500 ms
            up = False
            while not stop.wait(0.2):
                simctl.edge_mode(flap_port, "ok") if up else simctl.edge_mode(flap_port, "status", status=500)
                up = not up
        t = threading.Thread(target=flapper, daemon=True)
        start_term, start_failed = term(), counter("drwatch_observations_failed_total")
        start_trips = counter("drwatch_tilt_trips_total")
        start_idx, start_ts = index(), c.cluster_view(1)["last_ts"]
        t.start()
        shared.kill()
        shared.wait()
        try:
            wait_until(lambda: c.site_verdict(1, "site-c") == "down", 20, "site-c down")
            wait_until(lambda: c.cluster_view(1)["last_ts"] >= start_ts + 10000, 30, "10 s of log")
        finally:
            stop.set()
            t.join()
        entries = index() - start_idx
        seconds = (c.cluster_view(1)["last_ts"] - start_ts) / 1000
        # Bound (docs/detection.md): each node adds one refresh per refresh interval plus one entry
        # per change of its view (at most one per min_submit_interval); here 3 nodes, one change.
        # A loaded machine may add what the bound also allows for: a leader entry per new term, a
        # resubmission per observation whose commit timed out (it may have committed anyway), and
        # a view change per TILT trip.
        extra = (term() - start_term) + (counter("drwatch_observations_failed_total") - start_failed) \
            + (counter("drwatch_tilt_trips_total") - start_trips)
        bound = 3 * (seconds / 1.0 + 1) + 3 * 2 + 2 + extra
        print(f"    log cost: {entries} entries in {seconds:.1f} s (bound {bound:.0f}, "
              f"of which {extra:.0f} for elections, retries and TILT)", flush=True)
        assert entries <= bound, (entries, bound, seconds)
        assert c.site_verdict(1, "site-b") == "up", "a flapping Edge below the thresholds changes nothing"


def test_n_partitioned_watchdog_cannot_tip_the_verdict_either_way():
    """Node 3 runs in its own network namespace. Cut off from the cluster (its link down) while
    still probing, its last committed view goes stale: it can neither add to a DOWN majority nor
    to an UP majority. Healed, its fresh view counts again."""
    with Netns() as ns:
        c = _freshness_cluster(
            "partition", hosts={3: ns.host_ip("e")}, ttl_ms=3000, refresh_ms=500,
            member_ips={1: ns.host_ip("c"), 2: ns.host_ip("c"), 3: ns.ns_ip("c")},
            node_prefix={3: ["ip", "netns", "exec", ns.ns]},
            url_hosts={3: ns.host_ip("e")}, sim_host="0.0.0.0")
        with c:
            c.write_configs()
            c.start_sims()
            for i in range(1, 4):
                c.start_node(i)
            c.wait_leader(30)
            c.wait_sites_up("site-a", timeout=30)
            # DOWN side: node 3 reports A down, is partitioned, goes stale; node 1 loses A.
            _stale_vote_then_second(c, "down", lambda i: _break_view(c, i),
                                    lambda: ns.set_cluster_link(False))
            assert c.site_verdict(2, "site-a") == "up", c.cluster_view(2)["sites"]
            assert c.operations(2) == [] and c.puts() == []
            # Healed: two fresh DOWNs decide, and the failover runs.
            ns.set_cluster_link(True)
            c.wait_operation_done(timeout=60, what="failover after healing")
            # UP side: site A is really dead for node 2 too. Node 3 sees A again and says so, is
            # partitioned, goes stale; node 1 sees A again. One fresh UP of three: still DOWN.
            c.kill_edges("site-a")
            wait_until(lambda: (c.observation(1, 2, "site-a") or {}).get("state") == "down", 20,
                       "node 2's DOWN committed")
            _stale_vote_then_second(c, "up", lambda i: _restore_view(c, i, host="0.0.0.0"),
                                    lambda: ns.set_cluster_link(False))
            assert c.site_verdict(2, "site-a") == "down", c.cluster_view(2)["sites"]
            ns.set_cluster_link(True)
            wait_until(lambda: c.site_verdict(2, "site-a") == "up", 30, "site-a up after healing")


def test_n_stale_namespace_of_a_killed_run_is_removed_first():
    """A run killed during test n leaves its namespace, links, addresses and a node running inside
    (here a sleeper). The next namespace test removes them before making its own, and passes."""
    stale = Netns()
    stale.__enter__()
    sleeper = subprocess.Popen(["ip", "netns", "exec", stale.ns, "sleep", "600"])
    try:
        wait_until(lambda: subprocess.run(["ip", "netns", "pids", stale.ns], capture_output=True,
                                          text=True).stdout.split() == [str(sleeper.pid)],
                   10, "the sleeper inside the stale namespace")
        stale.leave_behind()
        test_n_partitioned_watchdog_cannot_tip_the_verdict_either_way()
        assert sleeper.wait(timeout=10) == -signal.SIGKILL, sleeper.returncode
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
        stale.__exit__()


def _strict_majority(n):
    """n watchdogs; n // 2 of them lose their own paths to site A (A itself is fine): that is no
    strict majority, so the verdict stays up and nothing is sent. One more: it fails over, once."""
    half = n // 2
    c = _freshness_cluster(f"major{n}", views=range(1, half + 2), n=n)
    with c.start():
        c.wait_leader(30)
        c.wait_sites_up("site-a", timeout=30)
        for i in range(1, half + 1):
            _break_view(c, i)
        wait_until(lambda: all((c.observation(n, i, "site-a") or {}).get("state") == "down" and
                               c.observation(n, i, "site-a")["fresh"] for i in range(1, half + 1)),
                   20, f"fresh DOWNs of nodes 1..{half} committed")
        c.wait_log_advance(3000, viewer=n)
        for i in range(1, n + 1):
            assert c.site_verdict(i, "site-a") == "up", (i, c.cluster_view(i)["sites"])
            assert c.operations(i) == [], (i, c.operations(i))
        assert c.puts() == [], c.puts()
        _break_view(c, half + 1)
        c.wait_operation_done(timeout=40, what="failover once a strict majority sees A down")
        assert [(tb, inst, st) for tb, inst, st, _ in c.puts()] == [
            ("tbB", True, 200), ("tbA", False, 200)], c.puts()
        assert len(c.operations(n)) == 1, c.operations(n)
        verdicts = [h["detail"] for h in c.drctl(n, "history", "1000")["history"]
                    if h["kind"] == "verdict" and h["detail"].startswith("site-a: up -> down")]
        assert len(verdicts) == 1 and f"(down {half + 1}/{n} fresh" in verdicts[0], verdicts


def test_p_two_of_five_down_is_no_majority_three_is():
    _strict_majority(5)


def test_p_two_of_four_down_is_no_majority_three_is():
    _strict_majority(4)


def test_o_egress_proxy_carries_genesys_calls_only():
    """With http(s)_proxy set for the daemons, every Genesys call (login and API) goes through the
    proxy and the failover still happens; Edge probes and the peer channel never do, so a proxy
    can neither answer for a dead Edge nor sit between members."""
    proxy = start_line([sys.executable, os.path.join(TOOLS, "http_proxy.py")], "READY")
    purl = f"http://127.0.0.1:{proxy.port}"
    try:
        env = {"http_proxy": purl, "https_proxy": purl, "HTTPS_PROXY": purl, "no_proxy": ""}
        with Cluster(BUILD, name="proxy", node_env=env).start() as c:
            c.wait_leader()
            c.wait_sites_up("site-a", timeout=30)
            c.kill_edges("site-a")
            c.wait_operation_done(timeout=40, what="failover through the proxy")
            puts = c.ok_puts()
            assert puts == [("tbB", True), ("tbA", False)], puts
            no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with no_proxy.open(purl + "/_proxy/log", timeout=5) as r:
                log = json.loads(r.read())
            genesys = f"http://127.0.0.1:{urllib.parse.urlsplit(c.genesys_url).port}/"
            assert any("/oauth/token" in e["url"] for e in log), log[:5]
            assert sum(1 for e in log if e["method"] == "PUT") == 2, [e for e in log if e["method"] == "PUT"]
            others = [e for e in log if not e["url"].startswith(genesys)]
            assert not others, f"only Genesys calls may use the proxy: {others[:5]}"
    finally:
        stop_all([proxy])


def test_s_leader_in_tilt_hands_leadership_over():
    """The leader's loop stalls for less than the election timeout: the followers keep it as
    leader, but it trips TILT and must not stamp entries. It hands leadership to another voter,
    which takes over; the cluster keeps committing."""
    with Cluster(BUILD, name="tiltlead", election_ms=4000, heartbeat_ms=100,
                 tilt={"stall_ms": 700, "clock_jump_ms": 5000, "abstain_ms": 5000}).start() as c:
        old = c.wait_leader(timeout=40)
        c.wait_sites_up("site-a", "site-b")
        term = c.status(old)["leader"]["term"]
        c.procs[old].send_signal(signal.SIGSTOP)
        try:
            # The stall is the stimulus: longer than stall_ms, well short of the election timeout.
            time.sleep(1.5)
        finally:
            c.procs[old].send_signal(signal.SIGCONT)
        new = wait_until(lambda: (lambda l: l if l and l != old else None)(c.leader()), 20,
                         "another node leading")
        log = c.log(old)
        assert "TILT: handing leadership over" in log, log[-3000:]
        assert c.metric_sum("drwatch_raft_tilt_handovers_total", [old]) == 1
        st = c.status(old)
        assert st["leader"]["term"] > term and not st["node"]["acting_leader"], st
        # the new leader stamps, the cluster goes on: a fresh refresh from the old leader commits
        base = c.observation(new, old, "site-a")["refreshed"]
        wait_until(lambda: c.observation(new, old, "site-a")["refreshed"] > base, 20,
                   "an observation of the tilted node committed through the new leader")
        c.wait_converged(30)


TESTS = [test_j_every_probe_kind_end_to_end,
         test_k_silent_watchdog_cannot_tip_the_verdict_and_tilt_abstains,
         test_l_genesys_signal_and_combination,
         test_l_backup_trunks_still_connecting_are_not_a_genesys_down,
         test_m_log_cost_is_bounded,
         test_n_partitioned_watchdog_cannot_tip_the_verdict_either_way,
         test_n_stale_namespace_of_a_killed_run_is_removed_first,
         test_o_egress_proxy_carries_genesys_calls_only,
         test_p_two_of_five_down_is_no_majority_three_is,
         test_p_two_of_four_down_is_no_majority_three_is,
         test_s_leader_in_tilt_hands_leadership_over]
