"""A real drwatch cluster on loopback for integration tests, benchmarks and the demo.

Three (or more) drwatchd processes, one Genesys API simulator, and one edge_sim process per
Edge. Everything binds 127.0.0.1 and is stopped by the harness."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "tools"))
import simctl  # noqa: E402

CLIENT_ID = "drwatch-it"
CLIENT_SECRET = "it-secret-not-for-logs"
PEER_SECRET = "peer-secret-it"

SITES = {"site-a": ["edge-a1", "edge-a2"], "site-b": ["edge-b1", "edge-b2"]}
TARGETS = [("premise-a", "site-a", "tbA"), ("premise-b", "site-b", "tbB"), ("cloud", None, "tbC")]


class Timeout(AssertionError):
    pass


def wait_until(pred, timeout, what, interval=0.05):
    """Polls pred() until it returns a truthy value; raises Timeout naming what was awaited."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise Timeout(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Cluster:
    def __init__(self, build, n=3, name="cluster", probe_interval_ms=500, fail_threshold=3,
                 recover_threshold=2, election_ms=600, heartbeat_ms=60, ttl_ms=5000,
                 refresh_ms=1000, debug=True, keep=False, per_node_urls=None,
                 edge_overrides=None, site_overrides=None, tilt=None, genesys_extra=None,
                 sites=None, shared_edge_ports=None, member_ips=None, node_prefix=None,
                 url_hosts=None, sim_host="127.0.0.1", node_env=None, initial_members=None,
                 metrics_hosts=None, target_extra=None, outbound_routes=None, group_extra=None,
                 trunk_bases_per_target=1, rate_limit_per_min=300, sim_latency_ms=None,
                 sim_seed=1):
        self.build = os.path.abspath(build)
        self.n = n
        # Nodes 1..initial_members form the cluster; a later node's file lists every member
        # (itself included) and it joins with --join.
        self.initial = initial_members or n
        self.dir = tempfile.mkdtemp(prefix=f"drwatch-{name}-")
        self.keep = keep
        self.node_env = node_env or {}
        self.procs = {}
        self.node_logs = {}
        self.edges = {}
        self.edge_ports = {}
        self.extra_edges = {}
        self.probe = dict(interval_ms=probe_interval_ms, timeout_ms=min(probe_interval_ms * 4 // 5, 800),
                          fail_threshold=fail_threshold, recover_threshold=recover_threshold)
        self.cluster_opts = dict(election_timeout_ms=election_ms, heartbeat_ms=heartbeat_ms,
                                 observation_ttl_ms=ttl_ms, refresh_interval_ms=refresh_ms)
        self.debug = debug
        self.per_node_urls = per_node_urls or {}
        # {(node or None, edge): {...}} merged into that Edge's config (None: every node)
        self.edge_overrides = edge_overrides or {}
        self.site_overrides = site_overrides or {}  # {site: {"rule": ..., "combine": ...}}
        self.tilt = tilt
        self.genesys_extra = genesys_extra or {}
        # merged into the group (failback, stable_for_ms, max_auto_operations, ...)
        self.group_extra = group_extra or {}
        # {target id: {key: value}} merged into that target (outbound_routes, drain_edges, ...)
        self.target_extra = target_extra or {}
        # the simulator's fixture routes: [{"id", "site", "externalTrunkBases", "enabled"}]
        self.outbound_routes = list(outbound_routes or [])
        # Each target's trunk bases: its TARGETS one ("tbA"), then "tbA01", "tbA02", ...
        self.trunk_bases = {tid: [tb] + [f"{tb}{k:02d}" for k in range(1, trunk_bases_per_target)]
                            for tid, _, tb in TARGETS}
        self.rate_limit_per_min = rate_limit_per_min
        self.sim_latency_ms, self.sim_seed = sim_latency_ms, sim_seed
        self.metrics_ports = [simctl.free_port() for _ in range(n)]
        self.sites = {k: list(v) for k, v in (sites or SITES).items()}
        # Network-namespace tests: a node's own IP, a command prefix ("ip netns exec NS"), the
        # host its URLs use to reach the simulators, and the address the simulators bind.
        self.member_ips = member_ips or {}
        self.node_prefix = node_prefix or {}
        self.url_hosts = url_hosts or {}
        self.sim_host = sim_host
        self.metrics_hosts = metrics_hosts or {}  # a node in a namespace serves /metrics there
        # {edge: port} for Edges served by a process the test runs itself (many Edges, one port)
        self.shared_edge_ports = dict(shared_edge_ports or {})
        self.raft_ports = [simctl.free_port() for _ in range(n)]
        self.peer_ports = [simctl.free_port() for _ in range(n)]
        self.genesys_port = simctl.free_port()
        self.genesys_url = f"http://127.0.0.1:{self.genesys_port}"
        for site, edges in self.sites.items():
            for e in edges:
                self.edge_ports[e] = self.shared_edge_ports.get(e) or simctl.free_port()

    # ---- simulators -------------------------------------------------------------------
    def start_sims(self):
        for e, port in self.edge_ports.items():
            if e not in self.shared_edge_ports:
                self.edges[e] = simctl.start_edge(port, e, host=self.sim_host)
        fixture = {
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "token_ttl_s": 86399,
            "rate_limit_per_min": self.rate_limit_per_min,
            "sites": [{"id": s, "name": s} for s in self.sites],
            "edges": [{"id": e, "name": e, "site": s,
                       "health_url": f"http://127.0.0.1:{self.edge_ports[e]}/health"}
                      for s, es in self.sites.items() for e in es],
            "trunk_bases": [
                {"id": tb, "name": name, "enabled": tid == "premise-a", "edges": edges}
                for tid, name, edges in (("premise-a", "Carrier via A", self.sites["site-a"]),
                                         ("premise-b", "Carrier via B", self.sites["site-b"]),
                                         ("cloud", "BYOC Cloud", []))
                for tb in self.trunk_bases[tid]],
            "outbound_routes": self.outbound_routes,
        }
        path = os.path.join(self.dir, "fixture.json")
        with open(path, "w") as f:
            json.dump(fixture, f)
        self.genesys = simctl.start_genesys(self.genesys_port, path, host=self.sim_host,
                                            latency_ms=self.sim_latency_ms, seed=self.sim_seed)

    def kill_edge(self, e):
        p = self.edges.pop(e, None)
        if p:
            p.kill()
            p.wait()

    def kill_edges(self, site):
        for e in self.sites[site]:
            self.kill_edge(e)
        return time.time()

    def local_site(self, i, site):
        """(node i's own verdict on site, {edge: state}) from its status, or None."""
        for s in (self.status(i) or {}).get("local", []):
            if s["id"] == site:
                return s["local"], {e["id"]: e["state"] for e in s["edges"]}
        return None

    def start_edges(self, site):
        for e in self.sites[site]:
            if e not in self.edges:
                self.edges[e] = simctl.start_edge(self.edge_ports[e], e, host=self.sim_host)

    def requests(self, since=0):
        return simctl.get_requests(self.genesys_url, since)

    def wait_sites_up(self, *sites, timeout=20):
        """Until every live node's cluster verdict on each of sites is up."""
        nodes = self.alive()
        wait_until(lambda: all(self.site_verdict(i, s) == "up" for i in nodes for s in sites),
                   timeout, f"{', '.join(sites)} up on nodes {nodes}")

    def ok_puts(self):
        """(trunk base, trunk_enabled) of every PUT the simulator accepted, in order."""
        return [(tb, inst) for tb, inst, status, _ in self.puts() if status == 200]

    def puts(self):
        """The trunkbasesettings PUTs the simulator accepted or refused, in order."""
        out = []
        for r in self.requests():
            if r["method"] == "PUT" and "/trunkbasesettings/" in r["path"]:
                body = r.get("body") or {}
                try:
                    inst = body["properties"]["trunk_enabled"]["value"]["instance"]
                except (KeyError, TypeError):
                    inst = None
                out.append((r["path"].rsplit("/", 1)[1], inst, r.get("status"), r["t"]))
        return out

    # ---- nodes --------------------------------------------------------------------------
    def node_dir(self, i):
        return os.path.join(self.dir, f"n{i}")

    def socket(self, i):
        return os.path.join(self.dir, f"n{i}.sock")

    def config(self, i):
        sites = []
        # Where a node reaches an Edge by another URL (its own path, its own namespace), its
        # file says so in node.probe_overrides; the sites (committed) carry the common URL.
        overrides = {}
        for s, es in self.sites.items():
            edges = []
            host = self.url_hosts.get(i, "127.0.0.1")
            for e in es:
                url = f"http://127.0.0.1:{self.edge_ports[e]}/health"
                mine = self.per_node_urls.get((i, e), f"http://{host}:{self.edge_ports[e]}/health")
                if mine != url:
                    overrides[e] = {"health_url": mine}
                edge = {"id": e, "genesys_edge_id": e, "health_url": url}
                for key in ((None, e), (i, e)):
                    edge.update(self.edge_overrides.get(key, {}))
                edges.append({k: v for k, v in edge.items() if v is not None})
            sites.append(dict({"id": s, "edges": edges}, **self.site_overrides.get(s, {})))
        targets = []
        for tid, site, tb in TARGETS:
            t = {"id": tid, "trunk_base_ids": self.trunk_bases[tid]}
            if site:
                t["site"] = site
            t.update(self.target_extra.get(tid, {}))
            targets.append(t)
        return {
            "node": {"id": i, "data_dir": self.node_dir(i), "admin_socket": self.socket(i),
                     "debug": self.debug,
                     "metrics_address": f"{self.metrics_hosts.get(i, '127.0.0.1')}:{self.metrics_ports[i - 1]}",
                     **({"probe_overrides": overrides} if overrides else {})},
            "cluster": dict(
                members=[{"id": j, "name": f"n{j}",
                          "raft_address": f"{self.member_ips.get(j, '127.0.0.1')}:{self.raft_ports[j - 1]}",
                          "peer_address": f"{self.member_ips.get(j, '127.0.0.1')}:{self.peer_ports[j - 1]}"}
                         for j in range(1, (self.initial if i <= self.initial else self.n) + 1)],
                peer_secret_dir=self.peer_secret_dir(i),
                **self.cluster_opts),
            "genesys": {"api_base_url": self.genesys_for(i), "login_base_url": self.genesys_for(i),
                        "client_id": CLIENT_ID,
                        "client_secret_file": os.path.join(self.dir, "genesys.secret"),
                        "request_timeout_ms": 3000, "verify_timeout_ms": 10000, "step_timeout_ms": 3000,
                        "verify_interval_ms": 300, **self.genesys_extra},
            "probe": self.probe,
            "sites": sites,
            "failover_groups": [{"id": "carrier-1", "targets": targets, **self.group_extra}],
            **({"tilt": self.tilt} if self.tilt else {}),
        }

    def genesys_for(self, i):
        return f"http://{self.url_hosts.get(i, '127.0.0.1')}:{self.genesys_port}"

    def peer_secret_dir(self, i):
        return os.path.join(self.dir, f"n{i}.peer")

    def write_configs(self):
        # One secret per pair of members: node i holds "<j>.secret" for every other member j.
        for i in range(1, self.n + 1):
            os.makedirs(self.peer_secret_dir(i), mode=0o700, exist_ok=True)
            for j in range(1, self.n + 1):
                if j != i:
                    with open(os.path.join(self.peer_secret_dir(i), f"{j}.secret"), "w") as f:
                        f.write(f"{PEER_SECRET}-{min(i, j)}-{max(i, j)}\n")
                        os.fchmod(f.fileno(), 0o600)  # drwatchd refuses secrets others can read
        with open(os.path.join(self.dir, "genesys.secret"), "w") as f:
            f.write(CLIENT_SECRET + "\n")
            os.fchmod(f.fileno(), 0o600)
        for i in range(1, self.n + 1):
            with open(os.path.join(self.dir, f"n{i}.json"), "w") as f:
                json.dump(self.config(i), f, indent=2)

    def start_node(self, i, *args):
        # A node killed by SIGKILL leaves its socket behind: waiting for it must mean this start.
        if os.path.exists(self.socket(i)):
            os.unlink(self.socket(i))
        log = open(os.path.join(self.dir, f"n{i}.log"), "a")
        # The simulators are on loopback: a proxy set for the machine must not come between.
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env.update({"DRWATCH_GENESYS_BACKOFF_SCALE": "0.05", **self.node_env})  # node_env wins
        p = subprocess.Popen(self.node_prefix.get(i, []) +
                             [os.path.join(self.build, "drwatchd"), "--config",
                              os.path.join(self.dir, f"n{i}.json"), *args],
                             stdout=log, stderr=subprocess.STDOUT, env=env)
        self.procs[i] = p
        self.node_logs[i] = log
        wait_until(lambda: os.path.exists(self.socket(i)) or p.poll() is not None, 10,
                   f"node {i} admin socket")
        if p.poll() is not None:
            raise AssertionError(f"node {i} exited with {p.returncode}:\n{self.log(i)}")
        return p

    def start(self):
        # `with Cluster(...).start()` enters only after start() returns: clean up here if it fails.
        try:
            self.write_configs()
            self.start_sims()
            for i in range(1, self.initial + 1):
                self.start_node(i)
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def kill_node(self, i, sig=signal.SIGKILL):
        p = self.procs.pop(i)
        p.send_signal(sig)
        rc = p.wait(timeout=20)
        if sig == signal.SIGTERM:
            # A clean shutdown is part of every test that asks for one (sanitizer reports too).
            assert rc == 0, f"node {i} exited {rc} on SIGTERM:\n" + "\n".join(self.log(i).splitlines()[-30:])
        return rc

    def alive(self):
        return [i for i, p in self.procs.items() if p.poll() is None]

    def log(self, i):
        try:
            with open(os.path.join(self.dir, f"n{i}.log")) as f:
                return f.read()
        except OSError:
            return ""

    # ---- drctl --------------------------------------------------------------------------
    def drctl(self, i, *args, check=True):
        r = subprocess.run([os.path.join(self.build, "drctl"), "--socket", self.socket(i),
                            "--json", *args], capture_output=True, text=True, timeout=15)
        if r.returncode == 4 and args and args[0] in ("status", "list"):
            return json.loads(r.stdout)  # no leader seen: the JSON still says what there is
        if r.returncode != 0:
            if check:
                raise AssertionError(f"drctl on node {i} {args} -> {r.returncode}: {r.stderr}{r.stdout}")
            return None
        return json.loads(r.stdout)

    def run_drctl(self, i, *args, timeout=75):
        """drctl as an operator runs it: the finished process (exit code, stdout, stderr)."""
        return subprocess.run([os.path.join(self.build, "drctl"), "--socket", self.socket(i), *args],
                              capture_output=True, text=True, timeout=timeout)

    def status(self, i):
        return self.drctl(i, "status", check=False)

    def leader(self):
        """The node that is acting leader, as it says itself and every live node agrees."""
        ids = set()
        for i in self.alive():
            st = self.status(i)
            if st is None:
                return None
            ids.add(st["leader"]["id"])
            if st["node"]["acting_leader"]:
                acting = i
        if len(ids) == 1 and 0 not in ids:
            lid = ids.pop()
            st = self.status(lid) if lid in self.alive() else None
            if st and st["node"]["acting_leader"]:
                return lid
        return None

    def wait_leader(self, timeout=20):
        return wait_until(self.leader, timeout, "an agreed acting leader")

    def cluster_view(self, i):
        st = self.status(i)
        return st["cluster"] if st else None

    def site_verdict(self, i, site):
        c = self.cluster_view(i)
        if not c:
            return None
        for s in c["sites"]:
            if s["id"] == site:
                return s["verdict"]
        return None

    def operations(self, i):
        c = self.cluster_view(i)
        return c["operations"] if c else []

    def group_active(self, i, group="carrier-1"):
        c = self.cluster_view(i)
        for g in (c or {}).get("groups", []):
            if g["id"] == group:
                return g["active"]
        return None

    def metric_sum(self, name, nodes=None):
        """A metric summed over its samples (all label sets) and over the live nodes."""
        return sum(float(line.rsplit(" ", 1)[1]) for i in (nodes or self.alive())
                   for line in self.metrics(i).splitlines()
                   if line.startswith(name + " ") or line.startswith(name + "{"))

    def metrics(self, i):
        import urllib.request
        host = self.metrics_hosts.get(i, "127.0.0.1")
        with urllib.request.urlopen(f"http://{host}:{self.metrics_ports[i - 1]}/metrics",
                                    timeout=5) as r:
            return r.read().decode()

    def observation(self, viewer, node, site):
        """node's committed observation of site, as viewer's replica has it (or None)."""
        cl = self.cluster_view(viewer)
        for s in (cl or {}).get("sites", []):
            if s["id"] == site:
                for o in s["observations"]:
                    if o["node"] == node:
                        return o
        return None

    def wait_operation_done(self, nodes=None, timeout=40, what="the operation to finish"):
        """Until the newest operation is done as every given node's replica sees it."""
        nodes = list(nodes or range(1, self.n + 1))
        return wait_until(lambda: all((self.operations(i) or [{}])[0].get("status") == "done"
                                      for i in nodes), timeout, f"{what} on nodes {nodes}")

    def wait_log_advance(self, ms, viewer=None, timeout=20):
        """Until ms more of leader time is committed, as viewer's replica sees it: time for the
        cluster to act on what it already has, measured in its own log."""
        viewer = viewer or self.alive()[0]
        t0 = self.cluster_view(viewer)["last_ts"]
        wait_until(lambda: self.cluster_view(viewer)["last_ts"] >= t0 + ms, timeout,
                   f"{ms} ms more of log on node {viewer}")

    def dump(self, i):
        """(applied index, replicated state as text) of node i, or None."""
        r = self.drctl(i, "dump", check=False)
        return (r["applied"], r["dump"]) if r else None

    def wait_converged(self, timeout=20):
        """Until every live node has shown its replicated state at one same applied index; the
        states must be byte-identical there (any difference at an equal index fails at once)."""
        seen = {}  # applied index -> {node: dump}

        def same():
            nodes = self.alive()
            for i in nodes:
                d = self.dump(i)
                if d is None:
                    continue
                at = seen.setdefault(d[0], {})
                at[i] = d[1]
                assert len(set(at.values())) == 1, f"nodes differ at applied index {d[0]}: {sorted(at)}"
                if all(j in at for j in nodes):
                    return at[i]
            return None
        return wait_until(same, timeout, "every node's state at one same applied index", interval=0.05)

    # ---- teardown -----------------------------------------------------------------------
    def stop(self):
        for i, p in list(self.procs.items()):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        bad = []
        for i, p in list(self.procs.items()):
            try:
                rc = p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                rc = "hung on SIGTERM"
            if rc != 0:
                bad.append((i, rc))
        self.procs.clear()
        for p in list(self.edges.values()) + list(self.extra_edges.values()) + [getattr(self, "genesys", None)]:
            if p and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for f in self.node_logs.values():
            f.close()
        if bad:
            # A node that does not shut down cleanly (or a sanitizer report) fails the test.
            detail = "\n".join(f"node {i}: exit {rc}\n" + "\n".join(self.log(i).splitlines()[-30:])
                               for i, rc in bad)
            self.keep = True
            raise AssertionError(f"unclean shutdown, kept {self.dir}:\n{detail}")
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, etype, exc, tb):
        if etype is not None:
            for p in self.procs.values():
                if p.poll() is None:
                    p.kill()
                p.wait()
            self.procs.clear()
            self.keep = self.keep or bool(os.environ.get("DRWATCH_KEEP"))
            for i in range(1, self.n + 1):
                tail = self.log(i).splitlines()[-40:]
                sys.stderr.write(f"---- node {i} log (last {len(tail)} lines) ----\n" + "\n".join(tail) + "\n")
            if self.keep:
                sys.stderr.write(f"kept {self.dir}\n")
        self.stop()
