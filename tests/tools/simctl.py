#!/usr/bin/env python3
"""Helpers to run and steer the Genesys and Edge simulators from tests.

Importable (start_edge, start_genesys, get_requests, set_fault, edge_mode, ...)
and usable as a CLI:  simctl.py <command> ...  (see --help).
All traffic stays on 127.0.0.1; no proxy settings are consulted.
"""
import argparse
import base64
import http.client as httpclient
import json
import os
import select
import signal
import random
import socket
import subprocess
import sys
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
EDGE_SIM = os.path.join(HERE, "edge_sim.py")
GENESYS_SIM = os.path.join(HERE, "genesys_sim.py")
PFX = "/api/v2/telephony/providers/edges"


_GIVEN_PORTS = set()


# Below the kernel's ephemeral range (32768-60999 by default): a port handed out here cannot be
# taken meanwhile as the local port of some process's outgoing connection (a node's raft or
# HTTP client), which made a node's listen fail now and then between pick and bind.
_PORT_LO, _PORT_HI = 20000, 32000


def free_port():
    """A port free on 127.0.0.1 now, outside the ephemeral range, and never handed out before by
    this process (without the memory two of the dozen ports a cluster needs could be equal)."""
    while True:
        port = random.randint(_PORT_LO, _PORT_HI)
        if port in _GIVEN_PORTS:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN_PORTS.add(port)
        return port


def _wait_ready(proc, timeout):
    """Read stdout until the 'READY <port>' line; returns the port."""
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
    line = buf.split(b"\n", 1)[0].decode(errors="replace").strip()
    if not line.startswith("READY "):
        proc.kill()
        proc.wait()
        raise RuntimeError("simulator did not become ready (got %r, rc=%s)"
                           % (line, proc.returncode))
    return int(line.split()[1])


def _start(argv, timeout):
    proc = subprocess.Popen([sys.executable] + argv, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE)
    proc.port = _wait_ready(proc, timeout)
    return proc


def start_edge(port, name="edge", timeout=10.0, host="127.0.0.1"):
    """Start an edge_sim on host:port (127.0.0.1 unless a test reaches it from a network
    namespace it made); returns a Popen with .port and .url (always via 127.0.0.1)."""
    proc = _start([EDGE_SIM, "--port", str(port), "--name", name, "--host", host], timeout)
    proc.url = "http://127.0.0.1:%d/health" % proc.port
    return proc


def start_genesys(port, fixture_path, edge_poll_ms=300, edge_timeout_ms=500,
                  timeout=15.0, host="127.0.0.1", latency_ms=None, seed=1):
    """Start a genesys_sim (port 0 = pick one); returns a Popen with .port and .base.
    latency_ms: "A-B" delays every API answer by a random A..B ms (drawn from seed)."""
    extra = ["--latency-ms", latency_ms, "--seed", str(seed)] if latency_ms else []
    proc = _start([GENESYS_SIM, "--port", str(port), "--fixture", fixture_path,
                   "--edge-poll-ms", str(edge_poll_ms),
                   "--edge-timeout-ms", str(edge_timeout_ms), "--host", host] + extra, timeout)
    proc.base = "http://127.0.0.1:%d" % proc.port
    return proc


def stop(proc, timeout=5.0):
    """SIGTERM, then SIGKILL if it lingers. Returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout:
        proc.stdout.close()
    return proc.returncode


def kill(proc):
    """Abrupt death (SIGKILL), as a crashed Edge."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stdout:
        proc.stdout.close()


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers       # lower-cased names
        self.body = body

    def json(self):
        return json.loads(self.body) if self.body else None


def http(method, url, body=None, headers=None, timeout=10.0):
    """One request on a fresh connection. body: dict/list -> JSON, str/bytes raw."""
    u = urllib.parse.urlsplit(url)
    hdrs = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode()
    conn = httpclient.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        target = u.path + ("?" + u.query if u.query else "")
        conn.request(method, target, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        conn.close()


def _ctl(method, url, body=None):
    r = http(method, url, body)
    if r.status >= 400:
        raise RuntimeError("%s %s -> %d %r" % (method, url, r.status, r.body))
    return r.json()


# ---- Genesys simulator control -------------------------------------------
def get_requests(base, since=0):
    return _ctl("GET", "%s/_sim/requests?since=%d" % (base, since))["requests"]


def reset(base, state=False):
    return _ctl("POST", base + "/_sim/reset", {"state": bool(state)})


def get_state(base):
    return _ctl("GET", base + "/_sim/state")


def set_fault(base, kind, path_prefix="/api/v2/", method="*", count=1, **kw):
    """kw: status, latency_ms, retry_after_s. count=-1 means every match."""
    f = {"kind": kind, "path_prefix": path_prefix, "method": method, "count": count}
    f.update(kw)
    return _ctl("POST", base + "/_sim/faults", f)


def clear_faults(base):
    return _ctl("DELETE", base + "/_sim/faults")


def set_enabled(base, base_id, enabled):
    return _ctl("POST", base + "/_sim/set_enabled", {"id": base_id, "enabled": enabled})


def set_edge(base, edge_id, online):
    """Force an edge ONLINE/OFFLINE (None = follow its health_url again)."""
    return _ctl("POST", base + "/_sim/set_edge", {"id": edge_id, "online": online})


def set_connected(base, base_id, connected):
    """Hold a trunk base's trunks disconnected (connectedStatus.connected false while in
    service), or let them follow their Edges again; returns the base's trunks."""
    return _ctl("POST", base + "/_sim/set_connected",
                {"id": base_id, "connected": connected})["trunks"]


def get_token(base, client_id="drwatch-test", secret="s3cret"):
    cred = base64.b64encode(("%s:%s" % (client_id, secret)).encode()).decode()
    r = http("POST", base + "/oauth/token", "grant_type=client_credentials",
             {"Authorization": "Basic " + cred,
              "Content-Type": "application/x-www-form-urlencoded"})
    if r.status != 200:
        raise RuntimeError("token request failed: %d %r" % (r.status, r.body))
    return r.json()["access_token"]


def api(base, token, method, path, body=None, timeout=10.0):
    """Call the public API; path may be relative to the edges prefix ('trunks?...'), or a
    query of the prefix itself ('?pageSize=100': the Edge list)."""
    if path.startswith("?"):
        path = PFX + path
    elif not path.startswith("/"):
        path = PFX + "/" + path
    hdrs = {"Authorization": "Bearer " + token} if token else {}
    return http(method, base + path, body, hdrs, timeout)


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    """Poll pred() until truthy; returns its value or raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out waiting for " + what)
        time.sleep(interval)


def wait_edge_status(base, edge_id, status, timeout=10.0):
    return wait_for(lambda: get_state(base)["edges"].get(edge_id) == status,
                    timeout, what="%s %s" % (edge_id, status))


def release_held(base, fault_id=None, seq=None):
    """Let requests blocked by hold faults proceed (all, or those of one fault / one log
    seq); returns how many were released."""
    body = {}
    if fault_id is not None:
        body["fault_id"] = fault_id
    if seq is not None:
        body["seq"] = seq
    return _ctl("POST", base + "/_sim/release", body)["released"]


def get_held(base):
    """Log entries of the requests a hold fault blocks right now."""
    return _ctl("GET", base + "/_sim/requests?held=1")["requests"]


def wait_held(base, method="*", path_prefix="/", timeout=10.0):
    """Wait until a request matching method ('*' = any) and path_prefix is blocked by a hold
    fault (it has reached the API and is in flight); returns its log entry."""
    def find():
        for e in get_held(base):
            if method in ("*", e["method"]) and e["path"].startswith(path_prefix):
                return e
        return None
    return wait_for(find, timeout, 0.02, "held %s %s" % (method, path_prefix))


def edge_polls(base, edge_id):
    """{"rounds", "failures", "offline_transitions"} of the sim's health probes of an edge."""
    return get_state(base)["edge_polls"][edge_id]


def wait_edge_polls(base, edge_id, rounds, timeout=10.0):
    """Wait until the sim has completed at least `rounds` health probe rounds of edge_id in
    total; returns edge_polls() then."""
    def done():
        p = edge_polls(base, edge_id)
        return p if p["rounds"] >= rounds else None
    return wait_for(done, timeout, 0.02, "%s poll round %d" % (edge_id, rounds))


# ---- Edge simulator control ----------------------------------------------
def edge_mode(port, mode, delay_ms=None, status=None):
    body = {"mode": mode}
    if delay_ms is not None:
        body["delay_ms"] = delay_ms
    if status is not None:
        body["status"] = status
    return _ctl("POST", "http://127.0.0.1:%d/_ctl/mode" % port, body)


def edge_stats(port):
    return _ctl("GET", "http://127.0.0.1:%d/_ctl/stats" % port)


def main():
    ap = argparse.ArgumentParser(description="Steer the drwatch simulators.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("free-port")
    p = sub.add_parser("requests"); p.add_argument("base"); p.add_argument("--since", type=int, default=0)
    p = sub.add_parser("state"); p.add_argument("base")
    p = sub.add_parser("reset"); p.add_argument("base"); p.add_argument("--state", action="store_true")
    p = sub.add_parser("fault"); p.add_argument("base"); p.add_argument("kind")
    p.add_argument("--path-prefix", default="/api/v2/"); p.add_argument("--method", default="*")
    p.add_argument("--count", type=int, default=1); p.add_argument("--status", type=int)
    p.add_argument("--latency-ms", type=int); p.add_argument("--retry-after-s", type=int)
    p = sub.add_parser("clear-faults"); p.add_argument("base")
    p = sub.add_parser("set-enabled"); p.add_argument("base"); p.add_argument("id")
    p.add_argument("enabled", choices=["true", "false"])
    p = sub.add_parser("edge-mode"); p.add_argument("port", type=int); p.add_argument("mode")
    p.add_argument("--delay-ms", type=int); p.add_argument("--status", type=int)
    p = sub.add_parser("edge-stats"); p.add_argument("port", type=int)
    a = ap.parse_args()

    if a.cmd == "free-port":
        out = free_port()
    elif a.cmd == "requests":
        out = get_requests(a.base, a.since)
    elif a.cmd == "state":
        out = get_state(a.base)
    elif a.cmd == "reset":
        out = reset(a.base, a.state)
    elif a.cmd == "fault":
        kw = {k: v for k, v in (("status", a.status), ("latency_ms", a.latency_ms),
                                ("retry_after_s", a.retry_after_s)) if v is not None}
        out = set_fault(a.base, a.kind, a.path_prefix, a.method, a.count, **kw)
    elif a.cmd == "clear-faults":
        out = clear_faults(a.base)
    elif a.cmd == "set-enabled":
        out = set_enabled(a.base, a.id, a.enabled == "true")
    elif a.cmd == "edge-mode":
        out = edge_mode(a.port, a.mode, a.delay_ms, a.status)
    else:
        out = edge_stats(a.port)
    print(json.dumps(out, indent=2) if not isinstance(out, int) else out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
