#!/usr/bin/env python3
"""Self-test of the Genesys and Edge simulators. Prints "N passed, M failed"."""
import base64
import http.client as httpclient
import json
import os
import socket
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import simctl  # noqa: E402
from simctl import api, get_state, get_token, http, wait_for  # noqa: E402

VERSION_MSG = ("The version number of the modified resource must match the "
               "version number in the database.")
ERROR_KEYS = {"message", "code", "status", "messageWithParams", "messageParams",
              "contextId", "details", "errors"}

ENV = {}          # shared processes and ports
TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def check(cond, msg="check failed"):
    if not cond:
        raise AssertionError(msg)


def eq(a, b, what=""):
    if a != b:
        raise AssertionError("%s: expected %r, got %r" % (what, b, a))


def write_fixture(d, name, obj):
    path = os.path.join(d, name)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh)
    return path


# Edge health probes of the main sim: a probe answered later than EDGE_TIMEOUT_MS counts as
# OFFLINE, so it is far above any loopback answer even on a loaded machine. Probe timeouts
# themselves (hang, slow) are tested on a separate sim with SHORT_TIMEOUT_MS, so they stay
# fast; there a spurious OFFLINE only delays the ONLINE waits.
EDGE_POLL_MS = 100
EDGE_TIMEOUT_MS = 2000
SHORT_TIMEOUT_MS = 300
SLOW_OFFLINE_MS = 1000      # well above SHORT_TIMEOUT_MS
SLOW_ONLINE_MS = 100        # well below EDGE_TIMEOUT_MS


def setup(tmp):
    ENV["tmp"] = tmp
    ports = {n: simctl.free_port() for n in ("edge-a1", "edge-a2", "edge-b1")}
    ENV["ports"] = ports
    ENV["edges"] = {n: simctl.start_edge(p, n) for n, p in ports.items()}
    fixture = {
        "client_id": "drwatch-test", "client_secret": "s3cret", "token_ttl_s": 86399,
        "rate_limit_per_min": 300,
        "sites": [{"id": "site-a", "name": "Site A"}, {"id": "site-b", "name": "Site B"}],
        "edges": [{"id": n, "name": n.upper(), "site": "site-" + n[5],
                   "edgeGroup": "eg-" + n[5],
                   "health_url": "http://127.0.0.1:%d/health" % p}
                  for n, p in ports.items()],
        "trunk_bases": [
            {"id": "tbA", "name": "Carrier via A", "enabled": True,
             "edges": ["edge-a1", "edge-a2"], "managed": False, "site": "site-a"},
            {"id": "tbB", "name": "Carrier via B", "enabled": False,
             "edges": ["edge-b1"], "site": "site-b"},
            {"id": "tbC", "name": "BYOC Cloud", "enabled": False, "edges": []},
            {"id": "tbM", "name": "Genesys Managed", "enabled": True, "edges": [],
             "managed": True}],
        "outbound_routes": [
            {"id": "route1", "name": "Default", "site": "site-a",
             "classificationTypes": ["National"], "distribution": "SEQUENTIAL",
             "externalTrunkBases": ["tbA", "tbB"]}],
    }
    ENV["g"] = simctl.start_genesys(0, write_fixture(tmp, "main.json", fixture),
                                    edge_poll_ms=EDGE_POLL_MS,
                                    edge_timeout_ms=EDGE_TIMEOUT_MS)
    ENV["base"] = ENV["g"].base
    small = {"client_id": "drwatch-test", "client_secret": "s3cret",
             "rate_limit_per_min": 5, "rate_limit_window_s": 2, "trunk_bases": [],
             "edges": [], "sites": []}
    ENV["g_rate"] = simctl.start_genesys(0, write_fixture(tmp, "rate.json", small))
    short = dict(small, rate_limit_per_min=300, token_ttl_s=1)
    ENV["g_ttl"] = simctl.start_genesys(0, write_fixture(tmp, "ttl.json", short))
    busy = dict(small, rate_limit_per_min=100000, trunk_bases=[
        {"id": "tbX", "name": "Busy", "enabled": True, "edges": []}])
    ENV["g_busy"] = simctl.start_genesys(0, write_fixture(tmp, "busy.json", busy))


def teardown():
    for key in ("g", "g_rate", "g_ttl", "g_busy"):
        if key in ENV:
            simctl.stop(ENV[key])
    for p in ENV.get("edges", {}).values():
        simctl.stop(p)


def before_each():
    base = ENV["base"]
    for n, p in ENV["edges"].items():
        if p.poll() is not None:
            ENV["edges"][n] = simctl.start_edge(ENV["ports"][n], n)
        simctl.edge_mode(ENV["ports"][n], "ok")
    for n in ENV["edges"]:
        simctl.set_edge(base, n, None)
    simctl.reset(base, state=True)
    for n in ENV["edges"]:
        simctl.wait_edge_status(base, n, "ONLINE")
    ENV["token"] = get_token(base)


def basic(cid, secret):
    return "Basic " + base64.b64encode(("%s:%s" % (cid, secret)).encode()).decode()


def token_req(base, auth, form="grant_type=client_credentials"):
    return http("POST", base + "/oauth/token", form,
                {"Authorization": auth, "Content-Type": "application/x-www-form-urlencoded"})


def tb_put(base, tok, tb_id, obj):
    return api(base, tok, "PUT", "trunkbasesettings/" + tb_id, obj)


def trunk(base, tok, tid):
    r = api(base, tok, "GET", "trunks/" + tid)
    eq(r.status, 200, "GET trunk " + tid)
    return r.json()


def connected_trunk(base, tok, tid):
    """The trunk when connected, else None (for wait_for)."""
    t = trunk(base, tok, tid)
    return t if t["connectedStatus"]["connected"] else None


def tba_trunks_connected(base, tok, down=()):
    """tbA's trunk listing once every trunk whose edge is not in `down` is connected."""
    j = api(base, tok, "GET", "trunks?trunkBase.id=tbA&trunkType=EXTERNAL").json()
    ok = j["entities"] and all(t["connectedStatus"]["connected"]
                               for t in j["entities"] if t["edge"]["id"] not in down)
    return j if ok else None


def online_edge(base, tok, eid):
    """The edge's public view when ONLINE, else None (for wait_for)."""
    r = api(base, tok, "GET", eid)
    eq(r.status, 200, "GET edge " + eid)
    e = r.json()
    return e if e["onlineStatus"] == "ONLINE" else None


def steady_online(base, eid, rounds=4, what=""):
    """Several health probe rounds of eid, all answered in time: no failure, no OFFLINE."""
    p0 = simctl.edge_polls(base, eid)
    # The round in flight may have started before the caller's change; `rounds` more
    # complete after it.
    p1 = simctl.wait_edge_polls(base, eid, p0["rounds"] + rounds + 1, 15)
    eq((p1["failures"], p1["offline_transitions"]),
       (p0["failures"], p0["offline_transitions"]), what + ": probe failures / OFFLINE changes")
    eq(get_state(base)["edges"][eid], "ONLINE", what)


# ---------------------------------------------------------------- tests
@test
def token_flow_and_bad_credentials():
    base = ENV["base"]
    r = token_req(base, basic("drwatch-test", "s3cret"))
    eq(r.status, 200, "token status")
    j = r.json()
    eq(j["token_type"], "bearer", "token_type")
    eq(j["expires_in"], 86399, "expires_in")
    check(len(j["access_token"]) > 20, "token too short")
    check(j["access_token"] != get_token(base), "tokens must be random")
    r = api(base, j["access_token"], "GET", "trunkbasesettings")
    eq(r.status, 200, "API with token")
    for h in ("inin-ratelimit-allowed", "inin-ratelimit-count", "inin-ratelimit-reset"):
        check(h in r.headers, "missing header " + h)
    eq(r.headers["inin-ratelimit-allowed"], "300", "allowed")
    r = token_req(base, basic("drwatch-test", "wrong"))
    eq(r.status, 401, "bad secret")
    eq(r.json()["error"], "invalid_client", "error")
    check("error_description" in r.json() and "description" in r.json(), "oauth error keys")
    eq(token_req(base, basic("nobody", "s3cret")).status, 401, "bad client id")
    r = token_req(base, basic("drwatch-test", "s3cret"), "grant_type=password")
    eq(r.status, 400, "wrong grant")
    eq(r.json()["error"], "unsupported_grant_type", "grant error")
    r = http("POST", base + "/oauth/token", {"grant_type": "client_credentials"},
             {"Authorization": basic("drwatch-test", "s3cret")})
    eq((r.status, r.json()["error"]), (400, "invalid_request"), "JSON body instead of a form")
    r = api(base, None, "GET", "trunkbasesettings")
    eq(r.status, 401, "no token")
    eq(r.json()["code"], "bad.credentials", "code")
    eq(set(r.json()), ERROR_KEYS, "error body keys")
    eq(api(base, "bogus", "GET", "trunkbasesettings").status, 401, "bogus token")
    eq(http("GET", base + "/oauth/token").status, 405, "GET token endpoint")


@test
def token_expires_after_ttl():
    base = ENV["g_ttl"].base
    tok = get_token(base)
    eq(api(base, tok, "GET", "trunks").status, 200, "fresh token")
    wait_for(lambda: api(base, tok, "GET", "trunks").status == 401, 5, 0.1,
             "token expiry")
    eq(api(base, get_token(base), "GET", "trunks").status, 200, "new token")


@test
def trunkbase_list_and_get():
    base, tok = ENV["base"], ENV["token"]
    r = api(base, tok, "GET", "trunkbasesettings")
    j = r.json()
    for k in ("entities", "pageSize", "pageNumber", "total", "pageCount", "firstUri",
              "lastUri", "selfUri"):
        check(k in j, "envelope key " + k)
    eq((j["total"], j["pageSize"], j["pageNumber"], j["pageCount"]), (4, 25, 1, 1), "envelope")
    check("nextUri" not in j, "no nextUri on last page")
    j = api(base, tok, "GET", "trunkbasesettings?pageSize=1&pageNumber=2").json()
    eq(j["pageCount"], 4, "pageCount")
    eq(j["entities"][0]["id"], "tbB", "page 2 entity")
    check("pageNumber=3" in j["nextUri"], "nextUri")
    j = api(base, tok, "GET", "trunkbasesettings?name=carrier%20via%20a").json()
    eq([e["id"] for e in j["entities"]], ["tbA"], "name filter")
    j = api(base, tok, "GET", "trunkbasesettings?name=Carrier*").json()
    eq(j["total"], 2, "name prefix filter")
    o = api(base, tok, "GET", "trunkbasesettings/tbA").json()
    for k in ("id", "name", "description", "version", "state", "trunkType",
              "trunkMetabase", "managed", "site", "inboundSite", "properties", "selfUri"):
        check(k in o, "object key " + k)
    eq((o["state"], o["trunkType"], o["managed"], o["version"]),
       ("active", "EXTERNAL", False, 1), "object fields")
    eq(o["properties"]["trunk_enabled"],
       {"type": "boolean", "value": {"default": True, "instance": True}}, "trunk_enabled")
    check("trunk_label" in o["properties"], "trunk_label")
    check("id" in o["trunkMetabase"], "trunkMetabase id")
    r = api(base, tok, "GET", "trunkbasesettings/nope")
    eq(r.status, 404, "unknown id")
    eq(r.json()["code"], "not.found", "404 code")
    eq(set(r.json()), ERROR_KEYS, "404 keys")


@test
def put_with_version_and_conflicts():
    base, tok = ENV["base"], ENV["token"]
    o = api(base, tok, "GET", "trunkbasesettings/tbB").json()
    v = o["version"]
    o["properties"]["trunk_enabled"]["value"]["instance"] = True
    r = tb_put(base, tok, "tbB", o)
    eq(r.status, 200, "PUT")
    n = r.json()
    eq(n["version"], v + 1, "version bumped")
    eq(n["properties"]["trunk_enabled"]["value"]["instance"], True, "enabled")
    eq(get_state(base)["trunk_bases"]["tbB"], {"enabled": True, "version": v + 1}, "state")
    r = tb_put(base, tok, "tbB", o)          # stale version
    eq(r.status, 409, "stale PUT")
    eq(r.json()["message"], VERSION_MSG, "409 message")
    eq(r.json()["status"], 409, "409 body status")
    o2 = dict(n)
    del o2["version"]
    eq(tb_put(base, tok, "tbB", o2).status, 409, "missing version")
    r = api(base, tok, "PUT", "trunkbasesettings/tbB", "{not json")
    eq(r.status, 400, "malformed JSON")
    m = api(base, tok, "GET", "trunkbasesettings/tbM").json()
    m["properties"]["trunk_enabled"]["value"]["instance"] = False
    eq(tb_put(base, tok, "tbM", m).status, 400, "managed")
    eq(tb_put(base, tok, "nope", n).status, 404, "PUT unknown")
    big = dict(n, description="x" * (600 * 1024))
    eq(tb_put(base, tok, "tbB", big).status, 413, "body > 512 KB")
    eq(get_state(base)["trunk_bases"]["tbB"]["version"], v + 1, "refused PUTs change nothing")


@test
def patch_405_and_unknown_paths_404():
    base, tok = ENV["base"], ENV["token"]
    for p in ("trunks/trunk-tbA-edge-a1", "trunkbasesettings/tbA", "edge-a1"):
        r = api(base, tok, "PATCH", p, {"inService": False})
        eq(r.status, 405, "PATCH " + p)
        eq(set(r.json()), ERROR_KEYS, "405 body")
    eq(api(base, tok, "DELETE", "trunkbasesettings/tbA").status, 405, "DELETE")
    for p in ("/api/v2/users/me", "/api/v2/telephony/providers/edges/nothing/here/x", "/x"):
        r = api(base, tok, "GET", p)
        eq(r.status, 404, "GET " + p)
        eq(r.json()["code"], "not.found", "404 code")


@test
def trunks_follow_edges_and_bases():
    base, tok = ENV["base"], ENV["token"]
    # Connected follows the last health probe of each edge: wait for both to be up.
    j = wait_for(lambda: tba_trunks_connected(base, tok), 10, what="tbA trunks connected")
    eq(sorted(t["edge"]["id"] for t in j["entities"]), ["edge-a1", "edge-a2"], "tbA trunks")
    for t in j["entities"]:
        eq((t["inService"], t["enabled"], t["connectedStatus"]["connected"], t["state"],
            t["trunkType"], t["trunkBase"]["id"]), (True, True, True, "active", "EXTERNAL", "tbA"),
           "tbA trunk " + t["id"])
    j = api(base, tok, "GET", "trunks?trunkBase.id=tbA&edge.id=edge-a1").json()
    eq(j["total"], 1, "edge filter")
    eq(api(base, tok, "GET", "trunks?trunkType=PHONE").json()["total"], 0, "type filter")
    c = api(base, tok, "GET", "trunks?trunkBase.id=tbC").json()["entities"]
    eq(len(c), 1, "cloud trunk count")
    eq((c[0]["edge"], c[0]["inService"], c[0]["connectedStatus"]["connected"]),
       (None, False, False), "cloud trunk")
    t0 = trunk(base, tok, "trunk-tbA-edge-a1")
    # Kill edge-a1: its trunk loses connection, the other stays up.
    simctl.kill(ENV["edges"]["edge-a1"])
    simctl.wait_edge_status(base, "edge-a1", "OFFLINE", 10)
    t1 = trunk(base, tok, "trunk-tbA-edge-a1")
    eq((t1["inService"], t1["connectedStatus"]["connected"]), (True, False), "dead edge trunk")
    check(t1["connectedStatus"]["connectedStateTime"] > t0["connectedStatus"]["connectedStateTime"],
          "connectedStateTime moves")
    # One listing shows the dead edge's trunk down and the live one's up (a2 follows its own
    # probes, so wait for it rather than sample once).
    j = wait_for(lambda: tba_trunks_connected(base, tok, {"edge-a1"}), 10, what="edge-a2 trunk")
    eq({t["edge"]["id"]: t["connectedStatus"]["connected"] for t in j["entities"]},
       {"edge-a1": False, "edge-a2": True}, "other edge")
    e = api(base, tok, "GET", "edge-a1").json()
    eq((e["onlineStatus"], e["statusCode"]), ("OFFLINE", "INACTIVE"), "edge view")
    # Restart on the same port: back online.
    ENV["edges"]["edge-a1"] = simctl.start_edge(ENV["ports"]["edge-a1"], "edge-a1")
    simctl.wait_edge_status(base, "edge-a1", "ONLINE", 10)
    t2 = wait_for(lambda: connected_trunk(base, tok, "trunk-tbA-edge-a1"), 10,
                  what="restarted edge trunk connected")
    check(t2["connectedStatus"]["connectedStateTime"] > t1["connectedStatus"]["connectedStateTime"],
          "connectedStateTime moves back")
    e = wait_for(lambda: online_edge(base, tok, "edge-a1"), 10, what="edge-a1 view ONLINE")
    eq(e["statusCode"], "ACTIVE", "edge view restarted")
    # Disabling the base takes every derived trunk out of service.
    simctl.set_enabled(base, "tbA", False)
    for t in api(base, tok, "GET", "trunks?trunkBase.id=tbA").json()["entities"]:
        eq((t["inService"], t["connectedStatus"]["connected"]), (False, False), "disabled base")
    simctl.set_enabled(base, "tbC", True)
    c = trunk(base, tok, "trunk-tbC")
    eq((c["inService"], c["connectedStatus"]["connected"]), (True, True), "cloud enabled")
    eq(get_state(base)["trunk_bases"]["tbA"], {"enabled": False, "version": 2}, "set_enabled bumps")


@test
def edges_list_metrics_statuscode_sites():
    base, tok = ENV["base"], ENV["token"]
    j = api(base, tok, "GET", "?site.id=site-a").json()
    eq(sorted(e["id"] for e in j["entities"]), ["edge-a1", "edge-a2"], "site filter")
    j = api(base, tok, "GET", "?edgeGroup.id=eg-b").json()
    eq([e["id"] for e in j["entities"]], ["edge-b1"], "edgeGroup filter")
    e = j["entities"][0]
    for k in ("id", "name", "state", "onlineStatus", "statusCode", "site", "edgeGroup",
              "conversationCount", "callDrainingState"):
        check(k in e, "edge key " + k)
    m = api(base, tok, "GET", "metrics?edgeIds=edge-a1,edge-b1").json()
    eq(sorted(x["edge"]["id"] for x in m), ["edge-a1", "edge-b1"], "metrics")
    ids = ",".join("e%d" % i for i in range(101))
    eq(api(base, tok, "GET", "metrics?edgeIds=" + ids).status, 400, "metrics > 100")
    r = api(base, tok, "POST", "edge-b1/statuscode",
            {"inService": False, "callDrainingWaitTimeSeconds": 300})
    eq(r.status // 100, 2, "statuscode")
    # Online but out of service; ONLINE follows the probes, so wait for it, then the same view
    # must say INACTIVE (which an OFFLINE edge would say anyway).
    e = wait_for(lambda: online_edge(base, tok, "edge-b1"), 10, what="edge-b1 view ONLINE")
    eq((e["statusCode"], e["callDrainingState"]), ("INACTIVE", "COMPLETE"), "out of service")
    eq(trunk(base, tok, "trunk-tbB-edge-b1")["enabled"], False, "trunk enabled follows edge")
    s = api(base, tok, "GET", "sites/site-a").json()
    eq((s["id"], s["name"]), ("site-a", "Site A"), "site")
    eq(api(base, tok, "GET", "sites/nope").status, 404, "unknown site")
    eq(api(base, tok, "GET", "trunks/trunk-tbA-edge-a1/metrics").status, 200, "trunk metrics")


@test
def edge_list_is_the_prefix_and_edges_edges_is_404():
    base, tok = ENV["base"], ENV["token"]
    r = api(base, tok, "GET", "?pageSize=100&pageNumber=1")
    eq(r.status, 200, "Edge list at the prefix")
    j = r.json()
    eq(sorted(e["id"] for e in j["entities"]), ["edge-a1", "edge-a2", "edge-b1"], "all Edges")
    eq((j["pageSize"], j["pageNumber"], j["pageCount"], j["total"]), (100, 1, 1, 3), "envelope")
    eq(j["selfUri"], simctl.PFX + "?pageSize=100&pageNumber=1", "selfUri")
    eq(api(base, tok, "GET", "edge-a1").json()["id"], "edge-a1", "one Edge")
    # The wrong paths an old client used, and a trailing slash, are not the list.
    for p in ("edges", "edges?pageSize=100&pageNumber=1", "edges/edge-a1",
              "edges/metrics?edgeIds=edge-a1", "/api/v2/telephony/providers/edges/"):
        r = api(base, tok, "GET", p)
        eq(r.status, 404, "GET " + p)
        j = r.json()
        eq(set(j), ERROR_KEYS, "404 body of " + p)
        eq((j["code"], j["status"]), ("not.found", 404), "404 of " + p)
    eq(api(base, tok, "POST", "edges/edge-b1/statuscode", {"inService": False}).status, 404,
       "statuscode under edges/")
    eq(api(base, tok, "POST", simctl.PFX, {"inService": False}).status, 405, "POST to the list")
    eq(api(base, tok, "GET", "nope").status, 404, "unknown Edge")


@test
def outbound_routes():
    base, tok = ENV["base"], ENV["token"]
    j = api(base, tok, "GET", "sites/site-a/outboundroutes").json()
    eq(j["total"], 1, "routes")
    r = j["entities"][0]
    eq([x["id"] for x in r["externalTrunkBases"]], ["tbA", "tbB"], "route order")
    eq(r["distribution"], "SEQUENTIAL", "distribution")
    r["externalTrunkBases"] = [{"id": "tbB"}, {"id": "tbA"}]
    del r["version"]
    p = api(base, tok, "PUT", "sites/site-a/outboundroutes/route1", r)
    eq(p.status, 200, "route PUT")
    eq(p.json()["version"], 2, "route version")
    g = api(base, tok, "GET", "sites/site-a/outboundroutes/route1").json()
    eq([x["id"] for x in g["externalTrunkBases"]], ["tbB", "tbA"], "new order")
    r["externalTrunkBases"] = [{"id": "nope"}]
    eq(api(base, tok, "PUT", "sites/site-a/outboundroutes/route1", r).status, 400, "bad tb")
    eq(api(base, tok, "GET", "sites/site-b/outboundroutes/route1").status, 404, "other site")


@test
def edge_modes_drive_online_status():
    base, port = ENV["base"], ENV["ports"]["edge-a2"]
    # Probes failing at once: exactly one ONLINE->OFFLINE change each, counted as failures.
    for mode, kw in (("status", {"status": 503}), ("garbage", {})):
        p0 = simctl.edge_polls(base, "edge-a2")
        simctl.edge_mode(port, mode, **kw)
        simctl.wait_edge_status(base, "edge-a2", "OFFLINE", 10)
        p1 = simctl.edge_polls(base, "edge-a2")
        check(p1["failures"] > p0["failures"] and
              p1["offline_transitions"] == p0["offline_transitions"] + 1,
              "%s: a failed probe made it OFFLINE once (%r -> %r)" % (mode, p0, p1))
        simctl.edge_mode(port, "ok")
        simctl.wait_edge_status(base, "edge-a2", "ONLINE", 10)
    simctl.edge_mode(port, "slow", delay_ms=SLOW_ONLINE_MS)
    steady_online(base, "edge-a2", what="slow but within timeout")
    simctl.edge_mode(port, "status", status=204)
    steady_online(base, "edge-a2", what="any 2xx is ONLINE")
    simctl.set_edge(base, "edge-a2", False)
    eq(get_state(base)["edges"]["edge-a2"], "OFFLINE", "forced offline")


@test
def set_connected_holds_trunks_disconnected():
    base, tok = ENV["base"], ENV["token"]

    def trunks():
        return api(base, tok, "GET", "trunks?trunkBase.id=tbA").json()["entities"]
    eq([(t["inService"], t["connectedStatus"]["connected"]) for t in trunks()],
       [(True, True)] * 2, "tbA in service and connected")
    eq(len(simctl.set_connected(base, "tbA", False)), 2, "the base's trunks are returned")
    eq([(t["inService"], t["connectedStatus"]["connected"]) for t in trunks()],
       [(True, False)] * 2, "held disconnected while in service")
    eq(get_state(base)["edges"]["edge-a1"], "ONLINE", "the Edges are untouched")
    simctl.set_connected(base, "tbA", True)
    eq([t["connectedStatus"]["connected"] for t in trunks()], [True] * 2, "connected again")
    eq(http("POST", base + "/_sim/set_connected", {"id": "tbA"}).status, 400, "no boolean")
    eq(http("POST", base + "/_sim/set_connected", {"id": "nope", "connected": False}).status,
       404, "unknown base")
    simctl.set_connected(base, "tbA", False)
    simctl.reset(base, state=True)
    eq([t["connectedStatus"]["connected"] for t in trunks()], [True] * 2, "reset reloads")


@test
def edge_probe_timeout():
    eport = simctl.free_port()
    edge = simctl.start_edge(eport, "edge-t")
    g = None
    try:
        fx = {"client_id": "drwatch-test", "client_secret": "s3cret", "trunk_bases": [],
              "sites": [{"id": "site-t"}],
              "edges": [{"id": "edge-t", "site": "site-t",
                         "health_url": "http://127.0.0.1:%d/health" % eport}]}
        g = simctl.start_genesys(0, write_fixture(ENV["tmp"], "timeout.json", fx),
                                 edge_poll_ms=EDGE_POLL_MS, edge_timeout_ms=SHORT_TIMEOUT_MS)
        simctl.wait_edge_status(g.base, "edge-t", "ONLINE", 10)
        # No answer, or an answer later than the probe timeout, is OFFLINE.
        for mode, kw in (("hang", {}), ("slow", {"delay_ms": SLOW_OFFLINE_MS})):
            p0 = simctl.edge_polls(g.base, "edge-t")
            simctl.edge_mode(eport, mode, **kw)
            simctl.wait_edge_status(g.base, "edge-t", "OFFLINE", 10)
            check(simctl.edge_polls(g.base, "edge-t")["failures"] > p0["failures"],
                  mode + ": counted as a failed probe")
            simctl.edge_mode(eport, "ok")
            simctl.wait_edge_status(g.base, "edge-t", "ONLINE", 10)
    finally:
        if g is not None:
            simctl.stop(g)
        simctl.stop(edge)


@test
def edge_sim_modes_direct():
    port = simctl.free_port()
    p = simctl.start_edge(port, "solo")
    try:
        url = "http://127.0.0.1:%d/health" % port
        r = http("GET", url)
        eq((r.status, r.body, r.headers["content-type"]), (200, b"ok\n", "text/plain"), "ok")
        simctl.edge_mode(port, "slow", delay_ms=300)
        t = time.monotonic()
        eq(http("GET", url).status, 200, "slow")
        check(time.monotonic() - t >= 0.29, "slow delay")
        simctl.edge_mode(port, "status", status=500)
        eq(http("GET", url).status, 500, "status")
        simctl.edge_mode(port, "garbage")
        with socket.create_connection(("127.0.0.1", port), 2) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            check(data.startswith(b"\x00\xffGARBAGE"), "garbage bytes %r" % data)
        try:
            http("GET", url, timeout=2)
            raise AssertionError("garbage parsed as HTTP")
        except (httpclient.HTTPException, OSError):
            pass
        simctl.edge_mode(port, "hang")
        with socket.create_connection(("127.0.0.1", port), 2) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(0.5)
            try:
                got = s.recv(10)
                raise AssertionError("hang answered %r" % got)
            except socket.timeout:
                pass
        eq(http("GET", "http://127.0.0.1:%d/nope" % port).status, 404, "unknown path")
        eq(http("POST", "http://127.0.0.1:%d/_ctl/mode" % port, {"mode": "bogus"}).status,
           400, "bad mode")
        st = simctl.edge_stats(port)
        eq((st["health_requests"], st["mode"]), (6, "hang"), "stats")
        simctl.edge_mode(port, "ok")
    finally:
        rc = simctl.stop(p)
    eq(rc, 0, "clean exit on SIGTERM")
    p = simctl.start_edge(port, "solo")     # same port right away
    try:
        eq(http("GET", "http://127.0.0.1:%d/health" % port).status, 200, "restart")
    finally:
        simctl.kill(p)


@test
def rate_limit_429_and_recovery():
    base = ENV["g_rate"].base
    tok = get_token(base)
    for i in range(5):
        r = api(base, tok, "GET", "trunks")
        eq(r.status, 200, "request %d" % i)
        eq(r.headers["inin-ratelimit-count"], str(i + 1), "count header")
    r = api(base, tok, "GET", "trunks")
    eq(r.status, 429, "over limit")
    ra = int(r.headers["retry-after"])
    check(1 <= ra <= 2, "Retry-After %d" % ra)
    j = r.json()
    eq((j["code"], j["status"]), ("too.many.requests.retry.after", 429), "429 body")
    eq(j["message"], "Rate limit exceeded the maximum. Retry the request in [%d] seconds" % ra,
       "429 message")
    eq(set(j), ERROR_KEYS, "429 keys")
    eq(r.headers["inin-ratelimit-allowed"], "5", "allowed")
    wait_for(lambda: api(base, tok, "GET", "trunks").status == 200, 5, 0.2, "window reset")


@test
def faults_each_kind():
    base, tok = ENV["base"], ENV["token"]
    tbp = "/api/v2/telephony/providers/edges/trunkbasesettings"
    simctl.set_fault(base, "status", "/api/v2/telephony/providers/edges/trunks", "GET",
                     count=2, status=503)
    eq(api(base, tok, "GET", "trunks").status, 503, "fault 1")
    eq(api(base, tok, "GET", "trunks/trunk-tbC").status, 503, "fault 2 (prefix)")
    eq(api(base, tok, "GET", "trunks").status, 200, "fault used up")
    simctl.set_fault(base, "latency", tbp, "GET", latency_ms=300)
    t = time.monotonic()
    eq(api(base, tok, "GET", "trunkbasesettings/tbA").status, 200, "latency")
    check(time.monotonic() - t >= 0.29, "latency applied")
    simctl.set_fault(base, "drop", tbp, "GET")
    try:
        api(base, tok, "GET", "trunkbasesettings/tbA")
        raise AssertionError("drop answered")
    except (httpclient.HTTPException, OSError):
        pass
    simctl.set_fault(base, "429", tbp, "*", retry_after_s=7)
    r = api(base, tok, "GET", "trunkbasesettings/tbA")
    eq((r.status, r.headers.get("retry-after")), (429, "7"), "429 fault")
    eq(r.json()["message"], "Rate limit exceeded the maximum. Retry the request in [7] seconds",
       "429 fault message")
    o = api(base, tok, "GET", "trunkbasesettings/tbA").json()
    simctl.set_fault(base, "409", tbp, "PUT")
    eq(api(base, tok, "GET", "trunkbasesettings/tbA").status, 200, "GET not hit by PUT fault")
    r = tb_put(base, tok, "tbA", o)
    eq((r.status, r.json()["message"]), (409, VERSION_MSG), "409 fault")
    eq(get_state(base)["trunk_bases"]["tbA"]["version"], o["version"] + 1, "409 bumps version")
    eq(tb_put(base, tok, "tbA", o).status, 409, "old version now stale")
    o = api(base, tok, "GET", "trunkbasesettings/tbA").json()
    eq(tb_put(base, tok, "tbA", o).status, 200, "re-read then PUT")
    # body: a verbatim answer; path narrows the prefix to one exact path (the Edge list)
    simctl.set_fault(base, "body", simctl.PFX, "GET", path=simctl.PFX,
                     body='{"entities":[],"pageCount":1e300}')
    check(api(base, tok, "GET", "trunks").json()["entities"], "path is exact: trunks not hit")
    r = api(base, tok, "GET", "?pageSize=100")
    eq((r.status, r.body), (200, b'{"entities":[],"pageCount":1e300}'), "body fault")
    eq(len(api(base, tok, "GET", "?pageSize=100").json()["entities"]), 3, "body fault used up")
    simctl.set_fault(base, "body", "/oauth/token", status=201, body="nope")
    r = token_req(base, basic("drwatch-test", "s3cret"))
    eq((r.status, r.body), (201, b"nope"), "body fault on the login host")
    simctl.set_fault(base, "expire_token", "/api/v2/")
    eq(api(base, tok, "GET", "trunks").status, 401, "token expired")
    eq(api(base, tok, "GET", "trunks").status, 401, "stays expired")
    tok2 = get_token(base)
    eq(api(base, tok2, "GET", "trunks").status, 200, "new token")
    simctl.set_fault(base, "status", "/oauth/token", "POST", count=-1, status=502)
    r = token_req(base, basic("drwatch-test", "s3cret"))
    eq(r.status, 502, "login fault")
    eq(token_req(base, basic("drwatch-test", "s3cret")).status, 502, "unlimited")
    simctl.clear_faults(base)
    eq(token_req(base, basic("drwatch-test", "s3cret")).status, 200, "faults cleared")
    r = http("POST", base + "/_sim/faults", {"kind": "nope"})
    eq(r.status, 400, "unknown fault kind")


def in_thread(fn, *args):
    """Run fn(*args) in a daemon thread; returns (thread, list that gets its result)."""
    out = []

    def run():
        try:
            out.append(fn(*args))
        except Exception as e:  # handed to the main thread through out
            out.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


@test
def hold_fault():
    base, tok = ENV["base"], ENV["token"]
    tbp = "/api/v2/telephony/providers/edges/trunkbasesettings"
    try:
        o = api(base, tok, "GET", "trunkbasesettings/tbB").json()
        v = o["version"]
        o["properties"]["trunk_enabled"]["value"]["instance"] = True
        f = simctl.set_fault(base, "hold", tbp + "/tbB", "PUT")
        eq(api(base, tok, "GET", "trunkbasesettings/tbB").status, 200, "GET not held")
        th, out = in_thread(tb_put, base, tok, "tbB", o)
        e = simctl.wait_held(base, "PUT", tbp + "/tbB", 10)
        eq((e["method"], e["held"], e["status"], e["fault"], e["body"]["version"]),
           ("PUT", True, None, "hold", v), "held log entry")
        # While held: other requests are served, the PUT has not taken effect nor been answered.
        g = api(base, tok, "GET", "trunkbasesettings/tbB")
        eq((g.status, g.json()["version"]), (200, v), "GET during hold")
        eq(get_state(base)["trunk_bases"]["tbB"], {"enabled": False, "version": v},
           "not applied while held")
        eq([x["seq"] for x in simctl.get_held(base)], [e["seq"]], "held list")
        th.join(0.2)
        check(th.is_alive() and not out, "held PUT answered before release: %r" % out)
        eq(simctl.release_held(base, fault_id=f["id"] + 1000), 0, "other fault releases none")
        check(th.is_alive() and not out, "held PUT answered by an unrelated release")
        eq(simctl.release_held(base, fault_id=f["id"]), 1, "released count")
        th.join(10)
        check(not th.is_alive() and out, "released PUT answered")
        r = out[0]
        check(not isinstance(r, Exception), "released PUT failed: %r" % r)
        eq((r.status, r.json()["version"]), (200, v + 1), "released PUT processed")
        eq(get_state(base)["trunk_bases"]["tbB"], {"enabled": True, "version": v + 1},
           "applied after release")
        le = [x for x in simctl.get_requests(base) if x["seq"] == e["seq"]][0]
        eq((le["held"], le["status"], le["fault"]), (False, 200, "hold"), "log after release")
        eq((le["effect"]["before"], le["effect"]["after"]), (False, True), "effect recorded")
        check("effect" not in e, "no effect while held")
        eq(simctl.get_held(base), [], "nothing held")
        eq(simctl.release_held(base), 0, "release with nothing held")
        # clear_faults releases every held request (count -1: each GET is held).
        simctl.set_fault(base, "hold", "/api/v2/telephony/providers/edges/trunks", "GET",
                         count=-1)
        ths = [in_thread(api, base, tok, "GET", "trunks") for _ in range(2)]
        wait_for(lambda: len(simctl.get_held(base)) == 2, 10, 0.02, "two held GETs")
        for t, res in ths:
            check(t.is_alive() and not res, "held GET answered before clear_faults")
        simctl.clear_faults(base)
        for t, res in ths:
            t.join(10)
            check(res and not isinstance(res[0], Exception), "GET after clear: %r" % res)
            eq(res[0].status, 200, "GET released by clear_faults")
        eq(api(base, tok, "GET", "trunks").status, 200, "fault gone")
        eq(simctl.get_held(base), [], "nothing held after clear")
    finally:
        simctl.clear_faults(base)
    # A sim shutting down answers its held requests instead of dying with them.
    small = {"client_id": "drwatch-test", "client_secret": "s3cret", "trunk_bases": [],
             "edges": [], "sites": []}
    g = simctl.start_genesys(0, write_fixture(ENV["tmp"], "hold.json", small))
    try:
        t2 = get_token(g.base)
        simctl.set_fault(g.base, "hold", "/api/v2/", "GET")
        th, out = in_thread(api, g.base, t2, "GET", "trunks")
        simctl.wait_held(g.base, "GET", "/api/v2/", 10)
    finally:
        rc = simctl.stop(g)
    eq(rc, 0, "clean exit with a held request")
    th.join(10)
    check(out and not isinstance(out[0], Exception), "held GET at shutdown: %r" % out)
    eq(out[0].status, 200, "held GET answered at shutdown")


@test
def latency_option():
    # --latency-ms A-B: every API and login answer after A..B ms; the control API at once.
    small = {"client_id": "drwatch-test", "client_secret": "s3cret", "trunk_bases": [],
             "edges": [], "sites": []}
    g = simctl.start_genesys(0, write_fixture(ENV["tmp"], "latency.json", small),
                             latency_ms="200-250", seed=7)
    try:
        t = time.monotonic()
        tok = get_token(g.base)
        check(time.monotonic() - t >= 0.2, "token answered without the latency")
        for _ in range(3):
            t = time.monotonic()
            eq(api(g.base, tok, "GET", "trunks").status, 200, "GET with latency")
            d = time.monotonic() - t
            check(0.2 <= d < 2.0, "GET took %.3f s, not 0.2..0.25 s plus overhead" % d)
        t = time.monotonic()
        simctl.get_requests(g.base)
        check(time.monotonic() - t < 0.2, "the control API is not delayed")
    finally:
        simctl.stop(g)


@test
def request_log_contents():
    base, tok = ENV["base"], ENV["token"]
    simctl.reset(base)
    eq(simctl.get_requests(base), [], "log cleared")
    t0 = time.time()
    token_req(base, basic("drwatch-test", "s3cret"))
    api(base, tok, "GET", "trunks?trunkBase.id=tbA&edge.id=edge-a1")
    o = api(base, tok, "GET", "trunkbasesettings/tbB").json()
    tb_put(base, tok, "tbB", o)
    api(base, tok, "PATCH", "trunks/x", {"a": 1})
    get_state(base)
    log = simctl.get_requests(base)
    eq([(e["method"], e["path"].rsplit("/", 1)[-1], e["status"]) for e in log],
       [("POST", "token", 200), ("GET", "trunks", 200), ("GET", "tbB", 200),
        ("PUT", "tbB", 200), ("PATCH", "x", 405)], "log entries")
    seqs = [e["seq"] for e in log]
    eq(seqs, sorted(seqs), "seq increasing")
    eq(len(set(seqs)), len(seqs), "seq unique")
    for e in log:
        for k in ("seq", "t", "method", "path", "query", "body", "status"):
            check(k in e, "log key " + k)
        check(t0 - 1 <= e["t"] <= time.time() + 1, "t is wall time")
    eq(log[0]["body"], "grant_type=client_credentials", "form body as string")
    eq(log[1]["query"], {"trunkBase.id": "tbA", "edge.id": "edge-a1"}, "query")
    eq(log[2]["body"], None, "GET body null")
    eq(log[3]["body"]["version"], o["version"], "PUT body parsed")
    eq(simctl.get_requests(base, since=seqs[2]), log[3:], "since filter")


@test
def concurrent_read_modify_write():
    base = ENV["g_busy"].base
    start = get_state(base)["trunk_bases"]["tbX"]["version"]
    errors = []

    def worker():
        try:
            tok = get_token(base)
            for _ in range(5):
                while True:
                    o = api(base, tok, "GET", "trunkbasesettings/tbX").json()
                    v = o["properties"]["trunk_enabled"]["value"]
                    v["instance"] = not v["instance"]
                    r = tb_put(base, tok, "tbX", o)
                    if r.status == 200:
                        break
                    if r.status != 409:
                        raise AssertionError("PUT %d" % r.status)
        except Exception as e:  # collected for the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    check(not errors, "worker errors: %r" % errors)
    eq(get_state(base)["trunk_bases"]["tbX"]["version"], start + 40, "every update landed once")


@test
def keepalive_chunked_and_expect():
    base, tok = ENV["base"], ENV["token"]
    conn = httpclient.HTTPConnection("127.0.0.1", ENV["g"].port, timeout=5)
    hdr = {"Authorization": "Bearer " + tok}
    try:
        for path in ("/trunkbasesettings/nope", "/trunkbasesettings/tbA", ""):
            conn.request("GET", simctl.PFX + path, headers=hdr)
            r = conn.getresponse()
            r.read()
            check(r.status in (200, 404), "keep-alive status")
        o = api(base, tok, "GET", "trunkbasesettings/tbA").json()
        raw = json.dumps(o).encode()
        conn.request("PUT", simctl.PFX + "/trunkbasesettings/tbA",
                     body=iter([raw[:10], raw[10:]]), encode_chunked=True,
                     headers=dict(hdr, **{"Content-Type": "application/json"}))
        r = conn.getresponse()
        r.read()
        eq(r.status, 200, "chunked PUT")
        o = api(base, tok, "GET", "trunkbasesettings/tbA").json()
        o["description"] = "d" * 4096
        conn.request("PUT", simctl.PFX + "/trunkbasesettings/tbA", body=json.dumps(o),
                     headers=dict(hdr, **{"Content-Type": "application/json",
                                          "Expect": "100-continue"}))
        r = conn.getresponse()
        r.read()
        eq(r.status, 200, "PUT with Expect")
    finally:
        conn.close()


def main():
    tmp = tempfile.mkdtemp(prefix="drwatch-sims-")
    passed = failed = 0
    try:
        setup(tmp)
        for fn in TESTS:
            t = time.monotonic()
            try:
                before_each()
                fn()
                passed += 1
                print("PASS %s (%.2fs)" % (fn.__name__, time.monotonic() - t), flush=True)
            except Exception as e:  # report and continue with the next test
                failed += 1
                print("FAIL %s: %s" % (fn.__name__, e), flush=True)
                traceback.print_exc()
    except Exception as e:
        failed += 1
        print("FAIL setup: %s" % e, flush=True)
        traceback.print_exc()
    finally:
        teardown()
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
