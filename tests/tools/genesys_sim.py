#!/usr/bin/env python3
"""Simulator of the Genesys Cloud Platform API subset drwatch uses.

Serves the login host (/oauth/token) and the API host (/api/v2/...) on one
loopback port, with the real API's paths, bodies and errors. Edge online status
follows simulated Edge processes (their health_url is polled).

Fixture keys: client_id, client_secret, token_ttl_s, rate_limit_per_min,
rate_limit_window_s (default 60), sites, edges, trunk_bases, outbound_routes.

Control API (no auth), never recorded in the request log:
  GET    /_sim/requests[?since=seq][&held=1]
                                      {"requests":[...]}, each with "method",
                                      "path", "query", "target" (the request
                                      target as sent), "body", "status",
                                      "headers", ...; an accepted trunk base
                                      PUT also "effect": {"n" (order in which
                                      PUTs took effect, which for held ones is
                                      not arrival order), "t", "before",
                                      "after" (trunk_enabled)};
                                      held=1 lists only requests blocked by a
                                      hold fault now
  POST   /_sim/reset                  clear log, faults, rate windows, release
                                      held requests; body {"state":true} also
                                      reloads the fixture
  GET    /_sim/state                  trunk bases, edges, trunks, routes, and
                                      edge_polls {id: {"rounds","failures",
                                      "offline_transitions"}}: health probe
                                      rounds done, failed probes, ONLINE->OFFLINE
                                      changes caused by probes (never reset)
  GET    /_sim/faults                 active faults
  POST   /_sim/faults                 add a fault (count -1 = unlimited), body
                                      {"kind","path_prefix","path","method",
                                      "count","status","latency_ms",
                                      "retry_after_s","body"}; "path" (exact)
                                      narrows path_prefix, e.g. to the Edge
                                      list, which is the API prefix itself
  DELETE /_sim/faults                 remove all faults, release held requests
  POST   /_sim/release                release held requests: all, or only those
                                      of {"fault_id":N} and/or {"seq":N};
                                      answers {"released":count}
  POST   /_sim/set_enabled            {"id":"tbA","enabled":true}
  POST   /_sim/set_edge               {"id":"edge-a1","online":true|false|null}
                                      (null = follow health_url again)
  POST   /_sim/set_connected          {"id":"tbB","connected":false|true}: the
                                      base's trunks report connectedStatus
                                      .connected false whatever their Edges
                                      and inService say (true = derived again)
Fault kinds: status, latency, drop, 429, 409 (bumps the version first),
expire_token, body (answers "status", default 200, with the fault's "body"
text verbatim: numbers JSON allows but no sane API sends), and hold: the
matching request is recorded, then its handler blocks until released (POST
/_sim/release, DELETE /_sim/faults, reset, or the sim shutting down) and only
then is processed as usual, so its effect and its answer come after the
release. Request log entries carry "held": true while
blocked (status stays null until answered; "fault" is "hold" for good).
A client that gave up meanwhile still gets its request applied on release.

--latency-ms A-B (or A) delays the answer to every API and login request by a
uniformly random A..B ms (the real API's usual 150-300 ms), drawn from --seed.

Prints "READY <port>" on stdout once listening; exits on SIGTERM (held
requests are released first and get up to 2 s to be answered).
"""
import argparse
import base64
import copy
import http.client
import json
import math
import random
import secrets
import signal
import socket
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PFX = "/api/v2/telephony/providers/edges"
# Sub-collections of PFX: never read as an Edge id.
COLLECTIONS = ("trunkbasesettings", "trunks", "sites", "metrics", "edgegroups", "edges")
MAX_BODY = 512 * 1024
MAX_DRAIN = 64 * 1024 * 1024
VERSION_MSG = ("The version number of the modified resource must match the "
               "version number in the database.")
DEFAULT_METABASE = "external_sip_pcv_byoc_carrier.json"


def iso(t):
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
            + ".%03dZ" % int((t % 1) * 1000))


class ApiError(Exception):
    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class Drop(Exception):
    """Close the connection without answering."""


def error_body(status, code, message):
    return {"message": message, "code": code, "status": status,
            "messageWithParams": message, "messageParams": {},
            "contextId": str(uuid.uuid4()), "details": [], "errors": []}


def not_found(what="The requested resource was not found."):
    return ApiError(404, "not.found", what)


def bad_request(msg):
    return ApiError(400, "bad.request", msg)


def rate_error(retry_after):
    return ApiError(429, "too.many.requests.retry.after",
                    "Rate limit exceeded the maximum. Retry the request in "
                    "[%d] seconds" % retry_after,
                    {"Retry-After": str(retry_after)})


def probe(url, timeout):
    """True when url answers 2xx within timeout."""
    try:
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http":
            return False
        conn = http.client.HTTPConnection(u.hostname, u.port or 80,
                                          timeout=timeout)
        try:
            conn.request("GET", (u.path or "/") + ("?" + u.query if u.query else ""))
            resp = conn.getresponse()
            resp.read()
            return 200 <= resp.status < 300
        finally:
            conn.close()
    except (OSError, http.client.HTTPException, ValueError):
        return False


class Sim:
    def __init__(self, fixture, poll_ms, timeout_ms, latency=None, seed=1):
        self.lock = threading.RLock()
        self.latency = latency    # (lo_ms, hi_ms) added to every API answer, or None
        self.rng = random.Random(seed)
        self.fixture = fixture
        self.client_id = fixture.get("client_id", "drwatch-test")
        self.client_secret = fixture.get("client_secret", "s3cret")
        self.token_ttl = int(fixture.get("token_ttl_s", 86399))
        self.rate_limit = int(fixture.get("rate_limit_per_min", 300))
        self.rate_window = float(fixture.get("rate_limit_window_s", 60))
        self.poll_s = poll_ms / 1000.0
        self.timeout_s = timeout_ms / 1000.0
        self.stopping = threading.Event()
        self.tokens = {}          # token -> (client_id, expiry)
        self.windows = {}         # client_id -> deque of request times
        self.log = []
        self.seq = 0
        self.effects = 0          # accepted trunk base PUTs, in the order they took effect
        self.faults = []
        self.fault_seq = 0
        self.held = []            # {"ev","fault_id","entry"} of blocked requests
        self.hold_cv = threading.Condition(self.lock)
        self.holding = 0          # handlers held or released but not yet answered
        self.sites = {}
        for s in fixture.get("sites", []):
            self.sites[s["id"]] = {"id": s["id"], "name": s.get("name", s["id"])}
        self.edges = {}
        for e in fixture.get("edges", []):
            self.edges[e["id"]] = {
                "id": e["id"], "name": e.get("name", e["id"]),
                "site": e.get("site"), "edgeGroup": e.get("edgeGroup"),
                "health_url": e.get("health_url"),
                "online": bool(e.get("online", not e.get("health_url"))),
                "force": None, "in_service": True, "polled": threading.Event(),
                "rounds": 0, "failures": 0, "offline_transitions": 0}
        self.trunks = {}          # id -> {"base","edge","connected","since"}
        self.load_state()

    # ---- state -------------------------------------------------------
    def load_state(self):
        with self.lock:
            self.bases = {}
            for b in self.fixture.get("trunk_bases", []):
                self.bases[b["id"]] = self._make_base(b)
            self.routes = {}
            for r in self.fixture.get("outbound_routes", []):
                self.routes[r["id"]] = {
                    "id": r["id"], "name": r.get("name", r["id"]),
                    "site": r.get("site"),
                    "version": int(r.get("version", 1)),
                    "classificationTypes": list(r.get("classificationTypes", [])),
                    "enabled": bool(r.get("enabled", True)),
                    "distribution": r.get("distribution", "SEQUENTIAL"),
                    "externalTrunkBases": [x["id"] if isinstance(x, dict) else x
                                           for x in r.get("externalTrunkBases", [])]}
            self.disconnected = set()  # trunk base ids held disconnected (set_connected)
            self.recompute()

    def _make_base(self, b):
        proxies = b.get("proxies", ["sip.%s.example.net" % b["id"].lower()])
        props = {
            "trunk_enabled": {"type": "boolean", "value": {
                "default": True, "instance": bool(b.get("enabled", True))}},
            "trunk_label": {"type": "string", "value": {
                "default": "", "instance": b.get("name", b["id"])}},
            "trunk_transport_serverProxyList": {"type": "array", "value": {
                "default": None, "instance": proxies}},
            "trunk_access_acl_allowList": {"type": "array", "value": {
                "default": [], "instance": []}},
        }
        props.update(copy.deepcopy(b.get("properties", {})))
        return {"id": b["id"], "name": b.get("name", b["id"]),
                "description": b.get("description", ""),
                "version": int(b.get("version", 1)),
                "trunkType": b.get("trunkType", "EXTERNAL"),
                "trunkMetabase": b.get("trunkMetabase", DEFAULT_METABASE),
                "managed": bool(b.get("managed", False)),
                "site": b.get("site"), "inboundSite": b.get("inboundSite"),
                "edges": list(b.get("edges", [])),
                "properties": props, "dateModified": time.time()}

    @staticmethod
    def base_enabled(b):
        try:
            return bool(b["properties"]["trunk_enabled"]["value"]["instance"])
        except (KeyError, TypeError):
            return False

    def edge_online(self, eid):
        e = self.edges.get(eid)
        if e is None:
            return False
        return e["force"] if e["force"] is not None else e["online"]

    def recompute(self):
        """Refresh derived trunk status; connectedStateTime moves on change."""
        now = time.time()
        with self.lock:
            seen = set()
            for b in self.bases.values():
                pairs = [(e, "trunk-%s-%s" % (b["id"], e)) for e in b["edges"]]
                if not b["edges"]:
                    pairs = [(None, "trunk-%s" % b["id"])]
                for eid, tid in pairs:
                    seen.add(tid)
                    conn = (self.base_enabled(b) and b["id"] not in self.disconnected
                            and (eid is None or self.edge_online(eid)))
                    t = self.trunks.get(tid)
                    if t is None:
                        self.trunks[tid] = {"id": tid, "base": b["id"], "edge": eid,
                                            "connected": conn, "since": now}
                    elif t["connected"] != conn:
                        t["connected"] = conn
                        t["since"] = now
            for tid in list(self.trunks):
                if tid not in seen:
                    del self.trunks[tid]

    def set_connected(self, base_id, connected):
        """Hold a trunk base's trunks disconnected (or let them follow their Edges again);
        returns the base's trunks as the API shows them."""
        with self.lock:
            if base_id not in self.bases:
                raise not_found()
            (self.disconnected.discard if connected else self.disconnected.add)(base_id)
            self.recompute()
            return [self.trunk_view(t) for t in self.trunks.values() if t["base"] == base_id]

    def set_edge_online(self, eid, online):
        with self.lock:
            e = self.edges[eid]
            if e["online"] != online:
                if not online:
                    e["offline_transitions"] += 1
                e["online"] = online
                self.recompute()

    # ---- edge polling ------------------------------------------------
    def start_pollers(self):
        for eid, e in self.edges.items():
            if not e["health_url"]:
                e["polled"].set()
                continue
            threading.Thread(target=self._poll_edge, args=(eid, e["health_url"]),
                             daemon=True).start()
        deadline = time.time() + self.timeout_s + 2.0
        for e in self.edges.values():
            e["polled"].wait(max(0.0, deadline - time.time()))

    def _poll_edge(self, eid, url):
        while not self.stopping.is_set():
            ok = probe(url, self.timeout_s)
            with self.lock:
                # Counted with the status change so a reader never sees the round without it.
                self.set_edge_online(eid, ok)
                e = self.edges[eid]
                e["rounds"] += 1
                if not ok:
                    e["failures"] += 1
            self.edges[eid]["polled"].set()
            self.stopping.wait(self.poll_s)

    # ---- log, faults, tokens, rate limits ----------------------------
    def latency_s(self):
        if self.latency is None:
            return 0.0
        with self.lock:
            return self.rng.uniform(*self.latency) / 1000.0

    def record(self, entry):
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.log.append(entry)
        return entry

    def requests_since(self, since, held_only=False):
        with self.lock:
            return [dict(e) for e in self.log
                    if e["seq"] > since and (e["held"] or not held_only)]

    def hold(self, fault, entry):
        """Block the calling handler until released; True when it was held."""
        h = {"ev": threading.Event(), "fault_id": fault["id"], "entry": entry}
        with self.lock:
            if self.stopping.is_set():
                return False
            self.held.append(h)
            self.holding += 1
            entry["held"] = True
        h["ev"].wait()
        return True

    def hold_done(self):
        with self.lock:
            self.holding -= 1
            self.hold_cv.notify_all()

    def release(self, fault_id=None, seq=None):
        with self.lock:
            keep, out = [], []
            for h in self.held:
                if ((fault_id is None or h["fault_id"] == fault_id)
                        and (seq is None or h["entry"]["seq"] == seq)):
                    out.append(h)
                else:
                    keep.append(h)
            self.held = keep
            for h in out:
                h["entry"]["held"] = False
                h["ev"].set()
        return len(out)

    def drain_holds(self, timeout):
        """Release everything and give the released requests time to be answered."""
        self.release()
        with self.lock:
            self.hold_cv.wait_for(lambda: self.holding == 0, timeout)

    def take_faults(self, method, path):
        hit = []
        with self.lock:
            for f in self.faults:
                if f["count"] == 0:
                    continue
                if f["method"] not in ("*", method):
                    continue
                if not path.startswith(f["path_prefix"]):
                    continue
                if f["path"] is not None and path != f["path"]:
                    continue
                if f["count"] > 0:
                    f["count"] -= 1
                f["hits"] += 1
                hit.append(dict(f))
            self.faults = [f for f in self.faults if f["count"] != 0]
        return hit

    def issue_token(self):
        tok = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[tok] = (self.client_id, time.time() + self.token_ttl)
        return tok

    def client_for(self, token):
        with self.lock:
            rec = self.tokens.get(token)
            if rec is None:
                return None
            if rec[1] <= time.time():
                del self.tokens[token]
                return None
            return rec[0]

    def _window(self, client, now):
        w = self.windows.setdefault(client, deque())
        while w and w[0] <= now - self.rate_window:
            w.popleft()
        return w

    def rate_take(self, client):
        """Count one request; returns Retry-After seconds when over the limit."""
        now = time.time()
        with self.lock:
            w = self._window(client, now)
            if len(w) >= self.rate_limit:
                return max(1, math.ceil(w[0] + self.rate_window - now))
            w.append(now)
            return None

    def rate_headers(self, client):
        now = time.time()
        with self.lock:
            w = self._window(client, now)
            reset = math.ceil(w[0] + self.rate_window - now) if w else math.ceil(self.rate_window)
            return {"inin-ratelimit-allowed": str(self.rate_limit),
                    "inin-ratelimit-count": str(len(w)),
                    "inin-ratelimit-reset": str(max(0, reset))}

    # ---- JSON views --------------------------------------------------
    def site_ref(self, sid):
        if sid is None:
            return None
        s = self.sites.get(sid, {"id": sid, "name": sid})
        return {"id": sid, "name": s["name"], "selfUri": "%s/sites/%s" % (PFX, sid)}

    def base_view(self, b):
        return {"id": b["id"], "name": b["name"], "description": b["description"],
                "version": b["version"], "dateModified": iso(b["dateModified"]),
                "state": "active", "trunkType": b["trunkType"],
                "trunkMetabase": {"id": b["trunkMetabase"], "name": b["trunkMetabase"]},
                "managed": b["managed"], "site": self.site_ref(b["site"]),
                "inboundSite": self.site_ref(b["inboundSite"]),
                "properties": copy.deepcopy(b["properties"]),
                "selfUri": "%s/trunkbasesettings/%s" % (PFX, b["id"])}

    def edge_view(self, e):
        online = self.edge_online(e["id"])
        active = online and e["in_service"]
        v = {"id": e["id"], "name": e["name"], "description": "", "version": 1,
             "state": "active", "onlineStatus": "ONLINE" if online else "OFFLINE",
             "statusCode": "ACTIVE" if active else "INACTIVE",
             "site": self.site_ref(e["site"]), "edgeGroup": None,
             "conversationCount": 0,
             "callDrainingState": "NONE" if e["in_service"] else "COMPLETE",
             "make": "Genesys", "model": "Virtual Edge",
             "selfUri": "%s/%s" % (PFX, e["id"])}
        if e["edgeGroup"]:
            v["edgeGroup"] = {"id": e["edgeGroup"],
                              "selfUri": "%s/edgegroups/%s" % (PFX, e["edgeGroup"])}
        return v

    def trunk_view(self, t):
        b = self.bases[t["base"]]
        e = self.edges.get(t["edge"]) if t["edge"] else None
        since = iso(t["since"])
        proxies = (b["properties"].get("trunk_transport_serverProxyList", {})
                   .get("value", {}).get("instance")) or []
        name = b["name"] if t["edge"] is None else "%s - %s" % (
            b["name"], e["name"] if e else t["edge"])
        return {"id": t["id"], "name": name, "state": "active",
                "trunkType": b["trunkType"],
                "edge": None if t["edge"] is None else {
                    "id": t["edge"], "name": e["name"] if e else t["edge"],
                    "selfUri": "%s/%s" % (PFX, t["edge"])},
                "trunkBase": {"id": b["id"], "name": b["name"],
                              "selfUri": "%s/trunkbasesettings/%s" % (PFX, b["id"])},
                "trunkMetabase": {"id": b["trunkMetabase"]},
                "inService": self.base_enabled(b),
                "enabled": True if e is None else e["in_service"],
                "connectedStatus": {"connected": t["connected"],
                                    "connectedStateTime": since},
                "optionsStatus": [{"proxyAddress": p, "optionState": t["connected"],
                                   "optionStateTime": since} for p in proxies],
                "registersStatus": [],
                "selfUri": "%s/trunks/%s" % (PFX, t["id"])}

    def route_view(self, r):
        return {"id": r["id"], "name": r["name"], "version": r["version"],
                "classificationTypes": list(r["classificationTypes"]),
                "enabled": r["enabled"], "distribution": r["distribution"],
                "externalTrunkBases": [
                    {"id": tb, "name": self.bases[tb]["name"] if tb in self.bases else tb,
                     "selfUri": "%s/trunkbasesettings/%s" % (PFX, tb)}
                    for tb in r["externalTrunkBases"]],
                "site": self.site_ref(r["site"]), "state": "active",
                "selfUri": "%s/sites/%s/outboundroutes/%s" % (PFX, r["site"], r["id"])}

    def state_view(self):
        with self.lock:
            return {
                "trunk_bases": {i: {"enabled": self.base_enabled(b), "version": b["version"]}
                                for i, b in self.bases.items()},
                "edges": {i: "ONLINE" if self.edge_online(i) else "OFFLINE"
                          for i in self.edges},
                "trunks": {i: {"inService": self.base_enabled(self.bases[t["base"]]),
                               "connected": t["connected"], "edge": t["edge"],
                               "trunkBase": t["base"]}
                           for i, t in self.trunks.items()},
                "routes": {i: {"version": r["version"], "enabled": r["enabled"],
                               "externalTrunkBases": list(r["externalTrunkBases"])}
                           for i, r in self.routes.items()},
                "edge_polls": {i: {"rounds": e["rounds"], "failures": e["failures"],
                                   "offline_transitions": e["offline_transitions"]}
                               for i, e in self.edges.items()},
            }


def int_param(query, name, default):
    if name not in query:
        return default
    try:
        return int(query[name])
    except ValueError:
        raise bad_request("Invalid value for %s." % name) from None


def page(path, query, items):
    size = int_param(query, "pageSize", 25)
    num = int_param(query, "pageNumber", 1)
    if size < 1 or num < 1:
        raise bad_request("pageSize and pageNumber must be positive.")
    size = min(size, 500)
    total = len(items)
    count = math.ceil(total / size)
    filters = [(k, v) for k, v in query.items() if k not in ("pageSize", "pageNumber")]

    def uri(n):
        return path + "?" + urllib.parse.urlencode(
            filters + [("pageSize", size), ("pageNumber", n)])
    env = {"entities": items[(num - 1) * size:num * size], "pageSize": size,
           "pageNumber": num, "total": total, "pageCount": count,
           "firstUri": uri(1), "selfUri": uri(num), "lastUri": uri(max(count, 1))}
    if num < count:
        env["nextUri"] = uri(num + 1)
    if num > 1:
        env["previousUri"] = uri(num - 1)
    return env


def name_matches(pattern, name):
    pattern, name = pattern.lower(), name.lower()
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return name == pattern


class SimServer(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # A client resetting a kept-alive connection is normal here (probes time out and close).
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)

    def __init__(self, addr, sim, verbose):
        super().__init__(addr, Handler)
        self.sim = sim
        self.verbose = verbose


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "GenesysSim/1.0"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("genesys_sim: " + (fmt % args) + "\n")

    # ---- transport ---------------------------------------------------
    def read_body(self):
        """Returns (bytes or None when too large, length)."""
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data = self.rfile.read(size)
                self.rfile.readline(8)
                total += size
                if total > MAX_DRAIN:
                    raise ValueError("body too large to drain")
                if total <= MAX_BODY:
                    chunks.append(data)
            return (b"".join(chunks) if total <= MAX_BODY else None), total
        n = int(self.headers.get("Content-Length") or 0)
        if n < 0 or n > MAX_DRAIN:
            raise ValueError("bad Content-Length")
        if n > MAX_BODY:
            left = n
            while left > 0:
                got = self.rfile.read(min(left, 65536))
                if not got:
                    raise ValueError("short body")
                left -= len(got)
            return None, n
        return (self.rfile.read(n) if n else b""), n

    def respond(self, status, obj=None, headers=None):
        self.respond_raw(status, None if obj is None else json.dumps(obj).encode(), headers)

    def respond_raw(self, status, body, headers=None):
        sim = self.server.sim
        if self.entry is not None:
            self.entry["status"] = status
        hdrs = sim.rate_headers(sim.client_id)
        hdrs.update(headers or {})
        try:
            self.send_response(status)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            body = body or b""
            self.send_header("Content-Length", str(len(body)))
            self.send_header("inin-correlation-id", str(uuid.uuid4()))
            for k, v in hdrs.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            self.close_connection = True

    def drop(self):
        if self.entry is not None:
            self.entry["status"] = None
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def dispatch(self):
        self.entry = None
        self.was_held = False
        sim = self.server.sim
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = {k: v[0] for k, v in
                 urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        try:
            raw, blen = self.read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        if path.startswith("/_sim/"):
            try:
                self.handle_sim(path, query, raw)
            except ApiError as e:
                self.respond(e.status, error_body(e.status, e.code, e.message), e.headers)
            return
        body = None
        if raw:
            text = raw.decode("utf-8", "replace")
            try:
                body = json.loads(text)
            except ValueError:
                body = text
        self.entry = sim.record({
            "t": time.time(), "method": self.command, "path": path, "query": query,
            "target": self.path,  # as sent, so tests can pin the exact request line
            "body": body, "body_len": blen, "status": None, "fault": None,
            "held": False, "headers": {k: v for k, v in self.headers.items()}})
        try:
            self.handle_request(path, query, raw, body)
        except ApiError as e:
            self.respond(e.status, error_body(e.status, e.code, e.message), e.headers)
        except Drop:
            self.drop()
        except Exception:  # a simulator bug must still answer
            traceback.print_exc()
            self.respond(500, error_body(500, "internal.server.error",
                                         "The server encountered an internal error."))
        finally:
            if self.was_held:
                sim.hold_done()

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = dispatch

    # ---- control API -------------------------------------------------
    def handle_sim(self, path, query, raw):
        sim = self.server.sim
        m = self.command
        try:
            req = json.loads(raw) if raw else {}
        except ValueError:
            raise bad_request("malformed JSON") from None
        if not isinstance(req, dict):
            raise bad_request("body must be a JSON object")
        if path == "/_sim/requests" and m == "GET":
            since = int_param(query, "since", 0)
            held = query.get("held") in ("1", "true")
            self.respond(200, {"requests": sim.requests_since(since, held)})
        elif path == "/_sim/reset" and m == "POST":
            with sim.lock:
                sim.log.clear()
                sim.faults.clear()
                sim.windows.clear()
                if req.get("state"):
                    sim.load_state()
            sim.release()
            self.respond(200, {"ok": True, "seq": sim.seq})
        elif path == "/_sim/state" and m == "GET":
            self.respond(200, sim.state_view())
        elif path == "/_sim/faults" and m == "GET":
            with sim.lock:
                out = {"faults": [dict(f) for f in sim.faults]}
            self.respond(200, out)
        elif path == "/_sim/faults" and m == "DELETE":
            with sim.lock:
                sim.faults.clear()
            released = sim.release()
            self.respond(200, {"ok": True, "released": released})
        elif path == "/_sim/release" and m == "POST":
            try:
                fid = None if req.get("fault_id") is None else int(req["fault_id"])
                seq = None if req.get("seq") is None else int(req["seq"])
            except (TypeError, ValueError):
                raise bad_request("fault_id and seq must be integers") from None
            self.respond(200, {"released": sim.release(fid, seq)})
        elif path == "/_sim/faults" and m == "POST":
            kind = req.get("kind")
            if kind not in ("status", "latency", "drop", "429", "409", "expire_token",
                            "hold", "body"):
                raise bad_request("unknown fault kind %r" % kind)
            if not all(isinstance(req.get(k, ""), str) for k in ("body", "path")):
                raise bad_request("body and path must be strings")
            try:
                f = {"method": str(req.get("method", "*")).upper(),
                     "path_prefix": str(req.get("path_prefix", "/")),
                     "path": req.get("path"), "body": req.get("body", ""),
                     "kind": kind,
                     "status": int(req.get("status", 200 if kind == "body" else 503)),
                     "latency_ms": int(req.get("latency_ms", 0)),
                     "retry_after_s": int(req.get("retry_after_s", 1)),
                     "count": int(req.get("count", 1)), "hits": 0}
            except (TypeError, ValueError):
                raise bad_request("bad fault field") from None
            with sim.lock:
                sim.fault_seq += 1
                f["id"] = sim.fault_seq
                sim.faults.append(f)
            self.respond(200, f)
        elif path == "/_sim/set_enabled" and m == "POST":
            with sim.lock:
                b = sim.bases.get(req.get("id"))
                if b is None:
                    raise not_found()
                b["properties"]["trunk_enabled"]["value"]["instance"] = bool(req.get("enabled"))
                b["version"] += 1
                b["dateModified"] = time.time()
                sim.recompute()
                out = sim.base_view(b)
            self.respond(200, out)
        elif path == "/_sim/set_edge" and m == "POST":
            with sim.lock:
                e = sim.edges.get(req.get("id"))
                if e is None:
                    raise not_found()
                online = req.get("online")
                e["force"] = None if online is None else bool(online)
                sim.recompute()
                out = sim.edge_view(e)
            self.respond(200, out)
        elif path == "/_sim/set_connected" and m == "POST":
            if not isinstance(req.get("connected"), bool):
                raise bad_request("connected (boolean) is required.")
            self.respond(200, {"trunks": sim.set_connected(req.get("id"), req["connected"])})
        else:
            raise not_found("unknown control path")

    # ---- public API --------------------------------------------------
    def handle_request(self, path, query, raw, body):
        sim = self.server.sim
        m = self.command
        lat = sim.latency_s()
        if lat > 0:
            time.sleep(lat)  # the network and server time of a real answer
        for f in sim.take_faults(m, path):
            self.entry["fault"] = f["kind"]
            k = f["kind"]
            if k == "hold":
                if sim.hold(f, self.entry):
                    self.was_held = True
            elif k == "latency":
                time.sleep(f["latency_ms"] / 1000.0)
            elif k == "expire_token":
                with sim.lock:
                    sim.tokens.clear()
            elif k == "drop":
                raise Drop()
            elif k == "429":
                raise rate_error(f["retry_after_s"])
            elif k == "409":
                self.bump_version(path)
                raise ApiError(409, "general.conflict", VERSION_MSG)
            elif k == "status":
                st = f["status"]
                raise ApiError(st, "simulated.fault.%d" % st,
                               "Simulated failure with status %d." % st)
            elif k == "body":
                self.respond_raw(f["status"], f["body"].encode())
                return
        if raw is None:
            raise ApiError(413, "request.entity.too.large",
                           "The request body exceeds the maximum size of 512 KB.")
        if path == "/oauth/token":
            if m != "POST":
                raise ApiError(405, "method.not.allowed", "HTTP 405 Method Not Allowed")
            return self.token(raw)
        if m == "PATCH":
            raise ApiError(405, "method.not.allowed", "HTTP 405 Method Not Allowed")
        if not path.startswith("/api/v2/"):
            raise not_found()
        auth = self.headers.get("Authorization") or ""
        client = None
        if auth[:7].lower() == "bearer ":
            client = sim.client_for(auth[7:].strip())
        if client is None:
            raise ApiError(401, "bad.credentials", "Invalid login credentials.")
        retry = sim.rate_take(client)
        if retry is not None:
            raise rate_error(retry)
        # The Edge list is the prefix itself; a trailing slash is not the same path.
        if path == PFX:
            parts = []
        elif path.startswith(PFX + "/"):
            parts = [urllib.parse.unquote(p) for p in path[len(PFX) + 1:].split("/")]
        else:
            raise not_found()
        if "" in parts:
            raise not_found()
        status, obj = self.route(parts, query, body)
        self.respond(status, obj)

    def token(self, raw):
        sim = self.server.sim
        form = {k: v[0] for k, v in urllib.parse.parse_qs(
            raw.decode("utf-8", "replace"), keep_blank_values=True).items()}
        cid = secret = None
        auth = self.headers.get("Authorization") or ""
        if auth[:6].lower() == "basic ":
            try:
                cid, _, secret = base64.b64decode(auth[6:].strip(),
                                                  validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                cid = secret = None
        if cid != sim.client_id or secret != sim.client_secret:
            msg = "client authentication failed"
            self.respond(401, {"error": "invalid_client", "description": msg,
                               "error_description": msg})
            return
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            # Without the form type the body is not read as a form: no grant_type at all.
            msg = "Content-Type must be application/x-www-form-urlencoded"
            self.respond(400, {"error": "invalid_request", "description": msg,
                               "error_description": msg})
            return
        grant = form.get("grant_type")
        if grant != "client_credentials":
            err = "invalid_request" if grant is None else "unsupported_grant_type"
            msg = "grant_type must be client_credentials"
            self.respond(400, {"error": err, "description": msg,
                               "error_description": msg})
            return
        self.respond(200, {"access_token": sim.issue_token(), "token_type": "bearer",
                           "expires_in": sim.token_ttl})

    def bump_version(self, path):
        sim = self.server.sim
        parts = path[len(PFX) + 1:].split("/") if path.startswith(PFX + "/") else []
        with sim.lock:
            if len(parts) == 2 and parts[0] == "trunkbasesettings" and parts[1] in sim.bases:
                sim.bases[parts[1]]["version"] += 1
            elif (len(parts) == 4 and parts[0] == "sites" and parts[2] == "outboundroutes"
                  and parts[3] in sim.routes):
                sim.routes[parts[3]]["version"] += 1

    def need(self, *methods):
        if self.command not in methods:
            raise ApiError(405, "method.not.allowed", "HTTP 405 Method Not Allowed")

    def route(self, parts, query, body):
        sim = self.server.sim
        path = PFX + "".join("/" + p for p in parts)
        n, p0 = len(parts), parts[0] if parts else None
        with sim.lock:
            if n == 0:
                self.need("GET")
                items = [sim.edge_view(e) for e in sim.edges.values()
                         if query.get("site.id", e["site"]) == e["site"]
                         and query.get("edgeGroup.id", e["edgeGroup"]) == e["edgeGroup"]]
                return (200, page(path, query, items))
            if p0 == "trunkbasesettings" and n == 1:
                self.need("GET")
                items = [sim.base_view(b) for b in sim.bases.values()
                         if "name" not in query or name_matches(query["name"], b["name"])]
                return (200, page(path, query, items))
            if p0 == "trunkbasesettings" and n == 2:
                self.need("GET", "PUT")
                b = sim.bases.get(parts[1])
                if b is None:
                    raise not_found("Trunk base settings %s not found." % parts[1])
                if self.command == "GET":
                    return (200, sim.base_view(b))
                return self.put_base(b, body)
            if p0 == "trunks" and n == 1:
                self.need("GET")
                items = []
                for t in sim.trunks.values():
                    b = sim.bases[t["base"]]
                    if query.get("trunkBase.id", t["base"]) != t["base"]:
                        continue
                    if "edge.id" in query and query["edge.id"] != t["edge"]:
                        continue
                    if query.get("trunkType", b["trunkType"]) != b["trunkType"]:
                        continue
                    items.append(sim.trunk_view(t))
                return (200, page(path, query, items))
            if p0 == "trunks" and n in (2, 3):
                t = sim.trunks.get(parts[1])
                if n == 3 and parts[2] != "metrics":
                    raise not_found()
                self.need("GET")
                if t is None:
                    raise not_found("Trunk %s not found." % parts[1])
                if n == 2:
                    return (200, sim.trunk_view(t))
                return (200, {
                    "logicalInterface": {"id": "li-" + t["id"]},
                    "trunk": {"id": t["id"], "selfUri": "%s/trunks/%s" % (PFX, t["id"])},
                    "calls": {"inboundCallCount": 0, "outboundCallCount": 0},
                    "qos": {"mismatchCount": 0}, "eventTime": iso(time.time())})
            if p0 == "metrics" and n == 1:
                self.need("GET")
                ids = [i for i in query.get("edgeIds", "").split(",") if i]
                if not ids or len(ids) > 100:
                    raise bad_request("edgeIds must list 1 to 100 edge ids.")
                now = time.time()
                return (200, [
                    {"edge": {"id": i, "selfUri": "%s/%s" % (PFX, i)},
                     "eventTime": iso(now), "upTimeMsec": 3600000,
                     "processors": [{"cpuId": "0", "activeTimePct": 1.0}],
                     "memory": [], "disks": [], "subsystems": []}
                    for i in ids if i in sim.edges])
            # Anything else one level down is an Edge id (there is no .../edges/edges).
            if n in (1, 2) and p0 not in COLLECTIONS and (n == 1 or parts[1] == "statuscode"):
                e = sim.edges.get(p0)
                if n == 1:
                    self.need("GET")
                    if e is None:
                        raise not_found("Edge %s not found." % p0)
                    return (200, sim.edge_view(e))
                self.need("POST")
                if e is None:
                    raise not_found("Edge %s not found." % p0)
                if not isinstance(body, dict) or not isinstance(body.get("inService"), bool):
                    raise bad_request("inService (boolean) is required.")
                e["in_service"] = body["inService"]
                sim.recompute()
                return 204, None
            if p0 == "sites" and n == 2:
                self.need("GET")
                s = sim.sites.get(parts[1])
                if s is None:
                    raise not_found("Site %s not found." % parts[1])
                return (200, {
                    "id": s["id"], "name": s["name"], "state": "active", "version": 1,
                    "selfUri": "%s/sites/%s" % (PFX, s["id"])})
            if p0 == "sites" and n in (3, 4) and parts[2] == "outboundroutes":
                if parts[1] not in sim.sites:
                    raise not_found("Site %s not found." % parts[1])
                if n == 3:
                    self.need("GET")
                    items = [sim.route_view(r) for r in sim.routes.values()
                             if r["site"] == parts[1]]
                    return (200, page(path, query, items))
                self.need("GET", "PUT")
                r = sim.routes.get(parts[3])
                if r is None or r["site"] != parts[1]:
                    raise not_found("Outbound route %s not found." % parts[3])
                if self.command == "GET":
                    return (200, sim.route_view(r))
                return self.put_route(r, body)
        raise not_found()

    def put_base(self, b, body):
        sim = self.server.sim
        if not isinstance(body, dict):
            raise bad_request("The request could not be understood by the server due "
                              "to malformed syntax.")
        if b["managed"]:
            raise bad_request("Managed trunk base settings cannot be modified.")
        if body.get("id", b["id"]) != b["id"]:
            raise bad_request("The id in the body does not match the id in the path.")
        if body.get("version") != b["version"] or isinstance(body.get("version"), bool):
            raise ApiError(409, "general.conflict", VERSION_MSG)
        props = body.get("properties")
        if not isinstance(body.get("name"), str) or not body["name"] or not isinstance(props, dict):
            raise bad_request("name and properties are required.")
        try:
            enabled = props["trunk_enabled"]["value"]["instance"]
        except (KeyError, TypeError):
            raise bad_request("properties.trunk_enabled.value.instance is required.") from None
        if not isinstance(enabled, bool):
            raise bad_request("properties.trunk_enabled.value.instance must be a boolean.")
        before = sim.base_enabled(b)
        b["name"] = body["name"]
        b["description"] = body.get("description") or ""
        b["properties"] = copy.deepcopy(props)
        b["version"] += 1
        b["dateModified"] = time.time()
        sim.recompute()
        sim.effects += 1
        self.entry["effect"] = {"n": sim.effects, "t": b["dateModified"], "before": before,
                                "after": enabled}
        return 200, sim.base_view(b)

    def put_route(self, r, body):
        sim = self.server.sim
        if not isinstance(body, dict):
            raise bad_request("The request could not be understood by the server due "
                              "to malformed syntax.")
        tbs = body.get("externalTrunkBases", [])
        if not isinstance(tbs, list) or not all(isinstance(x, dict) for x in tbs):
            raise bad_request("externalTrunkBases must be a list of objects.")
        ids = [x.get("id") for x in tbs]
        for i in ids:
            if i not in sim.bases:
                raise bad_request("Unknown trunk base settings %s." % i)
        dist = body.get("distribution", r["distribution"])
        if dist not in ("SEQUENTIAL", "RANDOM"):
            raise bad_request("distribution must be SEQUENTIAL or RANDOM.")
        r["name"] = body.get("name") or r["name"]
        r["classificationTypes"] = list(body.get("classificationTypes", r["classificationTypes"]))
        r["enabled"] = bool(body.get("enabled", r["enabled"]))
        r["distribution"] = dist
        r["externalTrunkBases"] = ids
        r["version"] += 1
        return 200, sim.route_view(r)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--fixture", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--edge-poll-ms", type=int, default=300)
    ap.add_argument("--edge-timeout-ms", type=int, default=500,
                    help="health probe timeout; slower answers count as OFFLINE")
    ap.add_argument("--latency-ms", default=None,
                    help="A-B or A: every API answer comes after uniformly random A..B ms")
    ap.add_argument("--seed", type=int, default=1, help="seed of the --latency-ms draws")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    latency = None
    if args.latency_ms:
        lo, _, hi = args.latency_ms.partition("-")
        latency = (float(lo), float(hi or lo))
        if not 0 <= latency[0] <= latency[1]:
            ap.error("--latency-ms: want A-B with 0 <= A <= B")
    with open(args.fixture, encoding="utf-8") as fh:
        fixture = json.load(fh)

    sim = Sim(fixture, args.edge_poll_ms, args.edge_timeout_ms, latency, args.seed)
    server = SimServer((args.host, args.port), sim, args.verbose)

    def on_signal(_signo, _frame):
        sim.stopping.set()
        sim.release()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sim.start_pollers()
    print("READY %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        sim.stopping.set()
        sim.drain_holds(2.0)
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
