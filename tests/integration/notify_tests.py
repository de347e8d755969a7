"""Notifications on real processes (docs/notifications.md): a failover reaches Slack, PagerDuty, a
signed webhook and a hook exactly once each, in the documented formats; failed sends are
retried; a new leader delivers what a killed one had not, once."""
import datetime
import glob
import hashlib
import hmac
import json
import os
import subprocess

import simctl
from detection_tests import check_metrics_doc
from harness import Cluster, wait_until

BUILD = None
HERE = os.path.dirname(os.path.abspath(__file__))
SINK = os.path.join(os.path.dirname(HERE), "tools", "notify_sink.py")
ROUTING_KEY = "R0UTINGKEY0123456789abcdefghijkl"
HMAC_KEY = "webhook-hmac-key-for-tests"
EVENT_KEYS = {"v", "id", "ts", "time", "kind", "group", "summary", "cluster"}


class NotifyCluster(Cluster):
    """A cluster whose nodes' files carry a notifications section (node-local, same on each)."""

    def __init__(self, *a, channels=None, **kw):
        super().__init__(*a, **kw)
        self.channels = channels or {}

    def config(self, i):
        cfg = super().config(i)
        cfg["notifications"] = {"cluster": "it", "channels": self.channels}
        return cfg


class Sink:
    def __init__(self):
        self.proc = simctl._start([SINK, "--port", "0"], 10)
        self.base = f"http://127.0.0.1:{self.proc.port}"

    def requests(self, prefix=""):
        return [r for r in simctl.http("GET", self.base + "/_ctl/requests").json()
                if r["path"].startswith(prefix)]

    def fail(self, prefix, status, count, retry_after=None):
        simctl.http("POST", self.base + "/_ctl/fail", {"path_prefix": prefix, "status": status,
                                                       "count": count, "retry_after": retry_after})

    def clear_faults(self):
        simctl.http("POST", self.base + "/_ctl/clear", {})

    def stop(self):
        simctl.stop(self.proc)


def _write(path, text):
    with open(path, "w") as f:
        f.write(text + "\n")
        os.fchmod(f.fileno(), 0o600)  # a secret: drwatchd refuses one others can read


def _channels(c, sink, kinds):
    """The channel configs of kinds, their secret files written under the cluster's dir."""
    out = {}
    if "slack" in kinds:
        _write(os.path.join(c.dir, "slack.url"), f"{sink.base}/slack/T000/B000/XXXX")
        out["slack"] = {"webhook_url_file": os.path.join(c.dir, "slack.url")}
    if "pagerduty" in kinds:
        _write(os.path.join(c.dir, "pd.key"), ROUTING_KEY)
        out["pagerduty"] = {"routing_key_file": os.path.join(c.dir, "pd.key"),
                            "url": f"{sink.base}/pagerduty/v2/enqueue"}
    if "webhook" in kinds:
        _write(os.path.join(c.dir, "hmac.key"), HMAC_KEY)
        out["audit"] = {"kind": "webhook", "url": f"{sink.base}/webhook",
                        "secret_file": os.path.join(c.dir, "hmac.key")}
    if "hook" in kinds:
        os.makedirs(os.path.join(c.dir, "hooks"), exist_ok=True)
        # one file per run: stdin as the hook got it
        out["hook"] = {"command": ["/bin/sh", "-c", 'cat > "$0/hook.$DRWATCH_EVENT_ID.$$"',
                                   os.path.join(c.dir, "hooks")], "timeout_ms": 5000}
    return out


def _start(kinds, name, sink):
    c = NotifyCluster(BUILD, name=name)
    c.channels = _channels(c, sink, kinds)
    return c.start()


def _delivered(c, channels, nodes=None, event=1):
    """Until every node's replica records event's delivery to each channel."""
    def done():
        for i in nodes or c.alive():
            d = c.dump(i)
            if d is None or not all(f"deliveries|event={event}|channel={ch}|" in d[1]
                                    for ch in channels):
                return False
        return True
    wait_until(done, 40, f"event {event} delivered to {channels} on every node")


def _failover(c):
    c.wait_leader()
    c.wait_sites_up("site-a", "site-b")
    c.kill_edges("site-a")
    c.wait_operation_done(range(1, 4), 40, "the failover")


def _iso(s):
    assert s.endswith("Z"), s
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ")


def _check_event(ev, kind="failover"):
    assert set(ev) == EVENT_KEYS, ev
    assert (ev["v"], ev["id"], ev["kind"], ev["group"], ev["cluster"]) == \
        (1, 1, kind, "carrier-1", "it"), ev
    assert ev["summary"] == "carrier-1: failover #1 premise-a -> premise-b done", ev
    assert abs(_iso(ev["time"]).replace(tzinfo=datetime.timezone.utc).timestamp() * 1000
               - ev["ts"]) < 1, ev


def test_notify_failover_reaches_every_channel_once():
    sink = Sink()
    try:
        with _start({"slack", "pagerduty", "webhook", "hook"}, "notify", sink) as c:
            _failover(c)
            _delivered(c, ["slack", "pagerduty", "audit", "hook"])
            c.wait_log_advance(2000)  # and nothing is sent again once recorded
            slack, pd, wh = (sink.requests(p) for p in ("/slack", "/pagerduty", "/webhook"))
            hooks = glob.glob(os.path.join(c.dir, "hooks", "hook.*"))
            assert (len(slack), len(pd), len(wh), len(hooks)) == (1, 1, 1, 1), \
                (slack, pd, wh, hooks)

            s = json.loads(slack[0]["body"])
            assert list(s) == ["text"] and "\n" not in s["text"], s
            assert s["text"].startswith("[it] failover in group carrier-1 at 20"), s
            assert s["text"].endswith(": carrier-1: failover #1 premise-a -&gt; premise-b done"), s
            assert slack[0]["path"] == "/slack/T000/B000/XXXX"

            p = json.loads(pd[0]["body"])
            assert (p["routing_key"], p["event_action"], p["dedup_key"]) == \
                (ROUTING_KEY, "trigger", "drwatch/carrier-1"), p
            pl = p["payload"]
            assert set(pl) == {"summary", "source", "severity", "timestamp", "component", "group",
                               "class", "custom_details"}, pl
            assert (pl["source"], pl["severity"], pl["component"], pl["group"], pl["class"]) == \
                ("it", "critical", "carrier-1", "it", "failover"), pl
            assert pl["summary"] == "carrier-1: failover #1 premise-a -> premise-b done"
            _iso(pl["timestamp"])
            _check_event(pl["custom_details"])

            h = {k.lower(): v for k, v in wh[0]["headers"].items()}
            want = "sha256=" + hmac.new(HMAC_KEY.encode(), wh[0]["body"].encode(),
                                        hashlib.sha256).hexdigest()
            assert h["x-drwatch-signature"] == want, (h, want)
            assert (h["x-drwatch-event"], h["x-drwatch-delivery"], h["content-type"]) == \
                ("failover", "1", "application/json"), h
            ev = json.loads(wh[0]["body"])
            _check_event(ev)

            with open(hooks[0]) as f:
                stdin = f.read()
            assert stdin.endswith("\n") and stdin.count("\n") == 1, stdin
            assert json.loads(stdin) == ev, stdin
            assert os.path.basename(hooks[0]).startswith("hook.1."), hooks

            leader = c.wait_leader()
            text = c.metrics(leader)
            r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                               text=True)
            assert r.returncode == 0, r.stdout + r.stderr
            check_metrics_doc(text)
            assert c.metric_sum("drwatch_notify_sent_total", [leader]) == 4
            assert c.metric_sum("drwatch_notify_failed_total") == 0
            assert c.metric_sum("drwatch_notify_pending") == 0
    finally:
        sink.stop()


def test_notify_retries_and_refusals():
    sink = Sink()
    try:
        with _start({"slack", "pagerduty", "webhook"}, "notify-retry", sink) as c:
            sink.fail("/slack", 500, 2)
            sink.fail("/pagerduty", 429, 1, retry_after=1)
            sink.fail("/webhook", 400, 1)
            _failover(c)
            _delivered(c, ["slack", "pagerduty", "audit"])
            c.wait_log_advance(2000)
            slack, pd, wh = (sink.requests(p) for p in ("/slack", "/pagerduty", "/webhook"))
            assert [r["status"] for r in slack] == [500, 500, 200], slack
            # 1 s, then 2 s of back-off
            assert slack[1]["t"] - slack[0]["t"] >= 0.9 and slack[2]["t"] - slack[1]["t"] >= 1.9
            assert len({r["body"] for r in slack}) == 1, "the same message each time"
            assert [r["status"] for r in pd] == [429, 202], pd
            assert [r["status"] for r in wh] == [400], "refused for good: not sent again"
            assert c.metric_sum("drwatch_notify_failed_total") == 3
            assert c.metric_sum("drwatch_notify_rejected_total") == 1
            assert c.metric_sum("drwatch_notify_sent_total") == 2
            leader = c.wait_leader()
            assert "refused by the receiver, not sent again: HTTP 400" in c.log(leader)
    finally:
        sink.stop()


def test_notify_new_leader_delivers_once():
    sink = Sink()
    try:
        with _start({"webhook"}, "notify-leader", sink) as c:
            sink.fail("/webhook", 500, 1000)
            c.wait_leader()
            c.wait_sites_up("site-a", "site-b")
            c.kill_edges("site-a")
            wait_until(lambda: sink.requests("/webhook"), 40, "the leader's first attempt")
            old = c.wait_leader()
            c.kill_node(old)
            sink.clear_faults()
            survivors = c.alive()
            _delivered(c, ["audit"], survivors)
            new = c.wait_leader()
            assert new != old
            c.wait_log_advance(3000, survivors[0])
            reqs = sink.requests("/webhook")
            ok = [r for r in reqs if r["status"] == 200]
            assert len(ok) == 1, reqs
            assert all(r["body"] == ok[0]["body"] for r in reqs), "one event, one payload"
            assert ok[0] is reqs[-1], "nothing after the delivery"
    finally:
        sink.stop()



def test_notify_pagerduty_resolves_on_failback():
    """The failover triggers a PagerDuty incident; the failback after stable_for resolves it
    under the same dedup_key; the failback reaches Slack too."""
    sink = Sink()
    try:
        c = NotifyCluster(BUILD, name="notifyfb", group_extra={"stable_for_ms": 1500})
        c.channels = _channels(c, sink, {"slack", "pagerduty"})
        with c.start():
            _failover(c)
            c.start_edges("site-a")
            wait_until(lambda: len(sink.requests("/pagerduty")) >= 2, 40,
                       "the failback's PagerDuty resolve")
            pd = [json.loads(r["body"]) for r in sink.requests("/pagerduty")]
            assert [p["event_action"] for p in pd] == ["trigger", "resolve"], pd
            assert pd[0]["dedup_key"] == pd[1]["dedup_key"] == "drwatch/carrier-1", pd
            assert "payload" not in pd[1], pd[1]
            wait_until(lambda: len(sink.requests("/slack")) >= 2, 20, "the failback on Slack")
            text = json.loads(sink.requests("/slack")[1]["body"])["text"]
            assert "failback in group carrier-1" in text and "premise-b -&gt; premise-a done" \
                in text, text
    finally:
        sink.stop()

TESTS = [v for k, v in sorted(globals().items()) if k.startswith("test_")]
