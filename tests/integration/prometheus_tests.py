"""Prometheus against real processes: the shipped rules and dashboard checked by promtool, then a
real `prometheus` scraping a live three-node cluster: all targets up, exactly one leader,
/health and /leader as a load balancer sees them, the failed-failover alert firing after a
failover whose verify fails, and /health turning 503 on a leader that lost its majority. The test runs the repository's rule file unchanged: the alerts it
waits for have no `for:` (they fire on the first evaluation that sees the failure)."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request

from harness import ROOT, Cluster, wait_until  # first: it puts tests/tools (simctl) on the path
import simctl  # noqa: E402

BUILD = None
PROM_DIR = os.path.join(ROOT, "deploy", "prometheus")
RULES = os.path.join(PROM_DIR, "drwatch.rules.yml")
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "drwatch-dashboard.json")
# Series that exist only while something is going on (docs/metrics.md says when).
ONLY_WHILE = {"drwatch_operation_running_seconds": "an operation runs"}


def _run(*argv):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{' '.join(argv)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def _panels(dash):
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])  # collapsed rows keep theirs inside


def dashboard_exprs():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    return [t["expr"] for p in _panels(dash) for t in p.get("targets", []) if t.get("expr")]


def metric_names(expr):
    """drwatch series names an expression reads (histograms by their family name)."""
    names = set(re.findall(r"\b(drwatch_[a-z0-9_]+)", expr))
    return {re.sub(r"_(bucket|sum|count)$", "", n) if n.startswith("drwatch_step_duration")
            else n for n in names}


def test_prometheus_rules_and_dashboard_check():
    """promtool: the scrape config and rules are valid, the rules' unit tests (every alert firing
    and not firing) pass, and every dashboard query parses (each wrapped in a recording rule)."""
    assert shutil.which("promtool"), "promtool not found (apt-get install prometheus)"
    _run("promtool", "check", "config", os.path.join(PROM_DIR, "prometheus.yml"))
    _run("promtool", "check", "rules", RULES)
    out = _run("promtool", "test", "rules", os.path.join(PROM_DIR, "drwatch.rules.test.yml"))
    assert "SUCCESS" in out, out
    with open(RULES) as f:
        alerts = set(re.findall(r"^\s+- alert: (\w+)", f.read(), re.M))
    with open(os.path.join(PROM_DIR, "drwatch.rules.test.yml")) as f:
        tested = set(re.findall(r"alertname: (\w+)", f.read()))
    assert alerts and alerts == tested, f"alerts without a unit test: {alerts - tested}"
    # every runbook annotation names a section that exists (GitHub's heading anchors)
    with open(os.path.join(ROOT, "docs", "operations.md")) as f:
        anchors = {re.sub(r"[^a-z0-9 _-]", "", h.strip().lower()).replace(" ", "-")
                   for h in re.findall(r"^#+ (.*)$", f.read(), re.M)}
    with open(RULES) as f:
        runbooks = re.findall(r'runbook: "docs/operations\.md#([^"]+)"', f.read())
    assert len(runbooks) == len(alerts), runbooks
    assert set(runbooks) <= anchors, f"no such section in docs/operations.md: {set(runbooks) - anchors}"
    exprs = dashboard_exprs()
    assert len(exprs) >= 15, exprs
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "dashboard-exprs.yml")
        with open(path, "w") as f:
            f.write("groups:\n  - name: dashboard\n    rules:\n")
            for k, e in enumerate(exprs):
                # Grafana's $__rate_interval is not PromQL: give it a value to parse
                f.write(f"      - record: dashboard:expr{k}\n        expr: {json.dumps(e.replace('$__rate_interval', '1m'))}\n")
        _run("promtool", "check", "rules", path)
        bad = os.path.join(d, "bad.yml")
        with open(bad, "w") as f:
            f.write('groups:\n  - name: x\n    rules:\n      - record: x\n        expr: "sum(("\n')
        assert subprocess.run(["promtool", "check", "rules", bad], capture_output=True).returncode != 0


def _get(url, method="GET"):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Prometheus:
    """A real prometheus scraping the cluster every second with the repository's rules."""

    def __init__(self, c):
        self.dir = tempfile.mkdtemp(prefix="drwatch-prom-")
        self.port = simctl.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        shutil.copy(RULES, os.path.join(self.dir, "drwatch.rules.yml"))
        targets = "\n".join(
            f'      - targets: ["127.0.0.1:{c.metrics_ports[i - 1]}"]\n        labels: {{node: n{i}}}'
            for i in range(1, c.n + 1))
        with open(os.path.join(self.dir, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                    "rule_files:\n  - drwatch.rules.yml\n"
                    "scrape_configs:\n  - job_name: drwatch\n    scrape_timeout: 1s\n"
                    f"    static_configs:\n{targets}\n")
        self.log = open(os.path.join(self.dir, "prometheus.log"), "w")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={self.dir}/prometheus.yml",
             f"--storage.tsdb.path={self.dir}/data", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir)
        wait_until(lambda: self._ready(), 20, "prometheus /-/ready")

    def _ready(self):
        assert self.proc.poll() is None, f"prometheus exited: {self.tail()}"
        try:
            return _get(self.url + "/-/ready")[0] == 200
        except OSError:
            return False

    def tail(self):
        with open(os.path.join(self.dir, "prometheus.log")) as f:
            return f.read()[-3000:]

    def query(self, q):
        st, body = _get(self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": q}))
        assert st == 200, (q, st, body)
        return json.loads(body)["data"]["result"]

    def alerts(self):
        st, body = _get(self.url + "/api/v1/alerts")
        assert st == 200, body
        return json.loads(body)["data"]["alerts"]

    def firing(self, name, **labels):
        return [a for a in self.alerts() if a["labels"]["alertname"] == name and
                a["state"] == "firing" and all(a["labels"].get(k) == v for k, v in labels.items())]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _endpoint(c, i, path, method="GET"):
    return _get(f"http://127.0.0.1:{c.metrics_ports[i - 1]}{path}", method)


def test_prometheus_live_cluster_one_leader_and_failed_failover_alert():
    assert shutil.which("prometheus"), "prometheus not found (apt-get install prometheus)"
    with Cluster(BUILD, name="prom", genesys_extra={"verify_timeout_ms": 2000}).start() as c:
        leader = c.wait_leader()
        c.wait_sites_up("site-a", "site-b")
        # /health and /leader, as a load balancer polls them
        wait_until(lambda: all(_endpoint(c, i, "/health")[0] == 200 for i in range(1, 4)), 10,
                   "/health 200 on every node")
        codes = {i: _endpoint(c, i, "/leader")[0] for i in range(1, 4)}
        assert codes == {i: 200 if i == leader else 503 for i in range(1, 4)}, (leader, codes)
        for i in range(1, 4):
            body = json.loads(_endpoint(c, i, "/health")[1])
            assert body["healthy"] and body["is_leader"] == (i == leader), body
            assert body["node"] == {"id": i, "name": f"n{i}"}, body
            assert body["leader"] == {"id": leader, "name": f"n{leader}"}, body
            assert body["role"] == ("leader" if i == leader else "follower"), body
            assert body["term"] >= 1 and body["reason"] == "", body
        assert _endpoint(c, 1, "/leader", "HEAD") == (200 if leader == 1 else 503, "")
        assert _endpoint(c, 1, "/health", "HEAD") == (200, "")
        assert _endpoint(c, 1, "/health", "POST")[0] == 405
        assert _endpoint(c, 1, "/healthz")[0] == 404

        prom = Prometheus(c)
        try:
            def targets_up():
                r = prom.query('up{job="drwatch"}')
                return len(r) == 3 and all(s["value"][1] == "1" for s in r)
            wait_until(targets_up, 20, "three drwatch targets up in prometheus")

            def one_leader():
                r = prom.query("drwatch_is_leader == 1")
                h = prom.query("sum(drwatch_healthy)")
                return (len(r) == 1 and h and h[0]["value"][1] == "3" and r[0]["metric"]["node"])
            assert wait_until(one_leader, 20, "exactly one leader, three healthy") == f"n{leader}"
            r = prom.query("count(drwatch_member_leader == 1) by (member)")
            assert [s["metric"]["member"] for s in r] == [f"n{leader}"], r
            info = prom.query("drwatch_build_info")
            assert len(info) == 3 and all(info[0]["metric"].get(k) for k in (
                "version", "commit", "raft_version", "libuv_version", "sqlite_version")), info
            assert not prom.firing("DrwatchNoLeader") and not prom.firing("DrwatchOperationFailed")

            # A failover whose verify fails: premise-b's trunk never connects.
            simctl.set_connected(c.genesys_url, "tbB", False)
            c.kill_edges("site-a")
            alert = wait_until(lambda: prom.firing("DrwatchOperationFailed", kind="failover"), 40,
                               "DrwatchOperationFailed{kind=failover} firing")[0]
            assert alert["annotations"]["runbook"].startswith("docs/operations.md#"), alert
            wait_until(lambda: prom.firing("DrwatchGroupHeld", group="carrier-1", reason="failed"),
                       20, "DrwatchGroupHeld firing")
            wait_until(lambda: prom.firing("DrwatchSiteDown", site="site-a"), 20,
                       "DrwatchSiteDown{site=site-a} firing")
            failed = prom.query('max(drwatch_operations_total{kind="failover",result="failed"})')
            assert failed[0]["value"][1] == "1", failed
            # the node that ran the failed verify (the leader of then) timed it: at least
            # verify_timeout_ms
            texts = {i: c.metrics(i) for i in range(1, 4)}
            timed = {i: float(m.group(1)) for i, t in texts.items() for m in [re.search(
                r'^drwatch_step_duration_seconds_sum\{kind="verify",result="failed"\} (\S+)$',
                t, re.M)] if m}
            assert timed and max(timed.values()) >= 2.0, timed
            text = texts[max(timed, key=timed.get)]
            assert re.search(r'^drwatch_step_duration_seconds_count\{kind="verify",result="failed"\} [1-9]',
                             text, re.M), text
            # every series the dashboard reads is one a live node serves
            served = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
            used = set().union(*(metric_names(e) for e in dashboard_exprs()))
            missing = used - served - set(ONLY_WHILE)
            assert not missing, f"dashboard reads series no node serves: {sorted(missing)}"
            assert all(_endpoint(c, i, "/health")[0] == 200 for i in range(1, 4))
        except Exception:
            print(prom.tail())
            raise
        finally:
            prom.stop()

        # The two followers gone: the leader loses its majority, steps down within an election
        # timeout, and both endpoints say so.
        lead = c.wait_leader()
        for i in c.alive():
            if i != lead:
                c.kill_node(i)

        def out_of_quorum():
            st, body = _endpoint(c, lead, "/health")
            return st == 503 and json.loads(body)
        body = wait_until(out_of_quorum, 10, "/health 503 on the leader left alone")
        assert not body["healthy"] and not body["is_leader"] and body["reason"], body
        assert _endpoint(c, lead, "/leader")[0] == 503
        assert re.search(r"^drwatch_healthy 0$", c.metrics(lead), re.M)


TESTS = [test_prometheus_rules_and_dashboard_check,
         test_prometheus_live_cluster_one_leader_and_failed_failover_alert]
