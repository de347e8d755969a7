"""One chaos trial: a fresh three-node cluster in the chaos network (chaosnet.py), one seeded fault
scenario, then the checks every trial ends with (check_writes, check_end).

A scenario only injects faults and waits for what they must lead to; every choice it makes (which
node, which order, which variant, how long an outage lasts) comes from the trial's Random, so a
seed replays the same schedule. Time never synchronises anything: waits are on observable state
(drctl, the simulator's request log) with deadlines; only an outage's length is slept."""
import errno
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
import traceback

import chaosnet
import simctl
from harness import Cluster, wait_until

PFX = "/api/v2/telephony/providers/edges/trunkbasesettings/"
TB = {"premise-a": "tbA", "premise-b": "tbB", "cloud": "tbC"}
NODES = (1, 2, 3)
ELECTION_MS = 600
# A leader may write while its lease lasts (3/4 of an election timeout after a majority last
# acknowledged it), so a write may still arrive that long after its node was cut off; the rest
# is for a loaded machine (the request's trip to the simulator).
GRACE_S = (ELECTION_MS * 3 / 4 + 1000) / 1000
FENCE_RE = re.compile(r"^node=(\d+) term=(\d+) op=(-?\d+) step=(\d+)$")
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"


class Trial:
    def __init__(self, build, net, seed, scenario, force=None):
        self.force = force or {}  # {choice name: value} overriding the seed's draw
        self.build = build
        self.net = net
        self.seed = seed
        self.scenario = scenario
        self.rng = random.Random(f"{seed}/{scenario}")
        self.events = []
        self.isolated = {}    # node -> [[start, end or None], ...] cut from every peer
        self.may_be_down = {}  # node -> why it may have stopped for good
        self.wrap = {}        # node -> command prefix inside its namespace (faketime)
        self.mounts = []
        self.variant = []
        self.summary = ""
        self.c = None

    # ---- bookkeeping ----------------------------------------------------------------------
    def note(self, text):
        self.events.append((time.time(), text))

    def choose(self, name, options):
        v = self.rng.choice(options)  # drawn even when forced: later draws stay the same
        if name in self.force:
            by_text = {str(o): o for o in options}
            assert self.force[name] in by_text, f"--force {name}: one of {options}"
            v = by_text[self.force[name]]
        self.variant.append(f"{name}={v}")
        return v

    def uniform(self, name, lo, hi):
        v = round(self.rng.uniform(lo, hi), 2)
        self.variant.append(f"{name}={v}")
        return v

    # ---- the cluster ----------------------------------------------------------------------
    def make_cluster(self):
        ips = {i: chaosnet.node_ip(i) for i in NODES}
        # DRWATCH_CHAOS_WRAP: a command every node runs under (gdb, valgrind) when debugging.
        wrap = shlex.split(os.environ.get("DRWATCH_CHAOS_WRAP", ""))
        prefix = {i: ["ip", "netns", "exec", chaosnet.ns_name(i)] + self.wrap.get(i, []) + wrap
                  for i in NODES}
        c = Cluster(self.build, name=f"chaos-{self.seed}", member_ips=ips, node_prefix=prefix,
                    url_hosts={i: chaosnet.HUB_IP for i in NODES}, sim_host="0.0.0.0",
                    metrics_hosts=ips, election_ms=ELECTION_MS,
                    # Long enough that a step outlives every outage a scenario makes: a step that
                    # fails rolls the operation back, which is not what these trials look at.
                    genesys_extra={"step_timeout_ms": 30000, "verify_timeout_ms": 20000})
        # Small thresholds make snapshots (and their writes, installs and loads) part of most
        # trials; the disk-full trial needs a snapshot to write while the disk is full.
        snap = self.choose("snapshot", [16] if self.scenario == "disk-full" else [16, 64, 1024])
        c.cluster_opts.update(snapshot_threshold=snap, snapshot_trailing=max(4, snap // 4))
        self.net.genesys_port = c.genesys_port
        self.c = c
        return c

    def start(self, skip=()):
        c = self.c
        c.write_configs()
        c.start_sims()
        for i in NODES:
            if i not in skip:
                c.start_node(i)
        c.wait_leader(30)
        c.wait_sites_up("site-a", "site-b", timeout=30)
        self.note("cluster up, sites up")

    def running(self):
        return [i for i in NODES if i in self.c.procs and self.c.procs[i].poll() is None]

    def restart(self, i):
        c = self.c
        p = c.procs.get(i)
        if p is not None and p.poll() is None:
            raise AssertionError(f"node {i} is still running")
        c.node_logs.pop(i).close()
        c.procs.pop(i, None)
        c.start_node(i)
        self.note(f"node {i} restarted")

    def leader_among(self, nodes):
        ids = set()
        for i in nodes:
            st = self.c.status(i)
            if st is None:
                return None
            ids.add(st["leader"]["id"])
        if len(ids) == 1:
            lid = ids.pop()
            if lid in nodes and self.c.status(lid)["node"]["acting_leader"]:
                return lid
        return None

    def wait_leader_among(self, nodes, timeout=30):
        return wait_until(lambda: self.leader_among(nodes), timeout, f"a leader among {nodes}")

    def failed_over(self, nodes):
        """Every given node has no running operation and premise-a out of service."""
        for i in nodes:
            cl = self.c.cluster_view(i)
            if cl is None or any(o["status"] == "running" for o in cl["operations"]):
                return False
            g = [g for g in cl["groups"] if g["id"] == "carrier-1"]
            if not g or g[0]["active"] in (None, "premise-a") or g[0]["hold"]:
                return False
        return True

    def wait_failed_over(self, nodes, timeout=60):
        wait_until(lambda: self.failed_over(nodes), timeout, f"the failover to finish on {list(nodes)}")
        self.note(f"failover finished on {list(nodes)}")

    def kill_site_a(self):
        self.c.kill_edges("site-a")
        self.note("site-a's Edges killed")

    # ---- faults ---------------------------------------------------------------------------
    def isolate(self, i):
        self.net.isolate(i)
        self.isolated.setdefault(i, []).append([time.time(), None])
        self.note(f"node {i} cut from its peers")

    def cut_genesys(self, i):
        self.net.cut_genesys(i)
        self.note(f"node {i} cut from Genesys")

    def heal(self):
        now = time.time()
        for ivs in self.isolated.values():
            for iv in ivs:
                if iv[1] is None:
                    iv[1] = now
        self.net.heal()
        self.note("network healed")

    def hold(self, method, tb):
        f = simctl.set_fault(self.c.genesys_url, method=method, path_prefix=PFX + tb, kind="hold",
                             count=1)
        self.note(f"hold fault on {method} {tb}")
        return f

    def wait_held(self, method, tb, timeout=40):
        h = simctl.wait_held(self.c.genesys_url, method, PFX + tb, timeout=timeout)
        node = fence_of(h)[0]
        self.note(f"{method} {tb} from node {node} held (seq {h['seq']})")
        return h, node

    def release(self, held):
        n = simctl.release_held(self.c.genesys_url, seq=held["seq"])
        self.note(f"held request seq {held['seq']} released ({n})")
        wait_until(lambda: any(r["seq"] == held["seq"] and r.get("status") is not None
                               for r in self.c.requests()), 15, "the released request's answer")

    def fenced_requests(self, node=None):
        return [r for r in self.c.requests() if fence_of(r) and (node is None or fence_of(r)[0] == node)]

    # ---- the end --------------------------------------------------------------------------
    def settle(self):
        """Heals everything, then waits until the live nodes agree on a leader, no operation
        runs, premise-a is out of service and every node's state is identical."""
        self.heal()
        nodes = self.running()
        assert len(nodes) >= 2, f"only {nodes} running"
        self.wait_leader_among(nodes, 40)
        for i in nodes:
            cl = self.c.cluster_view(i)
            held = [g["id"] for g in (cl or {}).get("groups", []) if g["hold"]]
            assert not held, f"node {i}: group held: {held}"
        self.wait_failed_over(nodes, 60)
        self.c.wait_converged(30)
        self.note("settled")


def fence_of(r):
    """(node, term, op, step) of a request carrying X-Drwatch-Fence, else None."""
    m = FENCE_RE.match((r.get("headers") or {}).get("X-Drwatch-Fence") or "")
    return tuple(int(x) for x in m.groups()) if m else None


def summarize(reqs):
    """The PUTs as "n<node>t<term>:<tb>=<status>[*]" (* when it changed trunk_enabled)."""
    out = []
    for r in reqs:
        f = fence_of(r)
        if r["method"] == "PUT" and f:
            e = r.get("effect")
            out.append(f"n{f[0]}t{f[1]}:{r['path'].rsplit('/', 1)[1]}={r['status']}"
                       f"{'*' if e and e['before'] != e['after'] else ''}")
    return "puts: " + " ".join(out)


def check_writes(t, reqs):
    """The invariants on the simulator's request log; returns the problems found."""
    bad = []
    puts = [r for r in reqs if r["method"] in ("PUT", "PATCH", "POST", "DELETE")
            and r["path"].startswith(PFX.rstrip("/"))]
    for r in puts:
        if r["method"] != "PUT":
            bad.append(f"seq {r['seq']}: {r['method']} {r['path']} (only PUT may write)")
        elif fence_of(r) is None:
            bad.append(f"seq {r['seq']}: PUT without a fencing header: {r.get('headers')}")
    puts = [r for r in puts if r["method"] == "PUT" and fence_of(r)]
    # Terms never go back, in arrival order nor in the order the writes took effect: a write of
    # term t after one of a higher term is a deposed leader's.
    for what, seq in (("arrival", sorted(puts, key=lambda r: r["seq"])),
                      ("effect", sorted((r for r in puts if r.get("effect")),
                                        key=lambda r: r["effect"]["n"]))):
        hi = None
        for r in seq:
            term = fence_of(r)[1]
            if hi and term < fence_of(hi)[1]:
                bad.append(f"{what} order: seq {r['seq']} {fence_of(r)} after seq {hi['seq']} "
                           f"{fence_of(hi)} of a higher term")
            if hi is None or term > fence_of(hi)[1]:
                hi = r
    # No write from a node cut off from the majority (beyond its lease).
    for r in puts:
        node = fence_of(r)[0]
        for start, end in t.isolated.get(node, []):
            if r["t"] > start + GRACE_S and (end is None or r["t"] < end):
                bad.append(f"seq {r['seq']}: PUT from node {node} {r['t'] - start:.2f} s after it "
                           f"was cut from its peers")
    # A step's change takes effect at most once.
    changed = {}
    for r in puts:
        e = r.get("effect")
        if e and e["before"] != e["after"]:
            _, _, op, step = fence_of(r)
            changed.setdefault((op, step, r["path"].rsplit("/", 1)[1]), []).append(r["seq"])
    for k, seqs in changed.items():
        if len(seqs) > 1:
            bad.append(f"op {k[0]} step {k[1]} changed {k[2]} {len(seqs)} times: seqs {seqs}")
    return bad


def check_end(t):
    """After settle(): exactly one target in service at the simulator, the one every node
    names, and not the dead site's."""
    c = t.c
    bad = []
    st = simctl.get_state(c.genesys_url)
    on = sorted(tb for tb, v in st["trunk_bases"].items() if v["enabled"])
    actives = {i: c.group_active(i) for i in t.running()}
    if len(set(actives.values())) != 1:
        bad.append(f"nodes disagree on the active target: {actives}")
    active = next(iter(actives.values()))
    if on != [TB.get(active)]:
        bad.append(f"in service at Genesys: {on}; the cluster says {active}")
    if active == "premise-a":
        bad.append("the dead site's target is in service")
    for i in NODES:
        if i not in t.running() and i not in t.may_be_down:
            bad.append(f"node {i} is not running (exit {c.procs[i].returncode if i in c.procs else '?'})")
    return bad


# ---- scenarios ----------------------------------------------------------------------------
def s_minority_partition(t):
    """A minority partition (one node cut from the other two) while site-a's Edges die."""
    c = t.c
    lead = c.wait_leader()
    m = t.choose("cut", ["leader", "follower"])
    m = lead if m == "leader" else t.rng.choice([i for i in NODES if i != lead])
    rest = [i for i in NODES if i != m]
    if t.choose("order", ["cut-then-kill", "kill-then-cut"]) == "cut-then-kill":
        t.isolate(m)
        t.kill_site_a()
    else:
        t.kill_site_a()
        time.sleep(t.uniform("gap_s", 0, 1.5))  # the fault's timing, not a synchronisation
        t.isolate(m)
    t.wait_failed_over(rest)
    # The cut node must not have acted: nothing of its own beyond its lease (check_writes), and
    # it cannot have committed anything the majority did not.
    t.note(f"node {m} rejoins")


def s_leader_cut_from_genesys(t):
    """The leader loses Genesys (not its peers) once its failover has begun."""
    c = t.c
    c.wait_leader()
    t.kill_site_a()
    r = wait_until(lambda: t.fenced_requests(), 40, "the failover's first Genesys request")[0]
    writer = fence_of(r)[0]
    at = t.choose("cut_at", ["first-request", "later"])
    if at == "later":
        time.sleep(t.uniform("delay_s", 0.1, 1.0))  # the fault's timing
    t.cut_genesys(writer)
    time.sleep(t.uniform("outage_s", 1.0, 8.0))  # the outage itself
    t.heal()
    t.wait_failed_over(NODES)


def s_leader_cut_from_peers_in_flight(t):
    """The leader's activate PUT is held at the simulator (provably in flight); the leader is cut
    from its peers, not from Genesys; the PUT is answered at a seeded moment."""
    c = t.c
    c.wait_leader()
    t.hold("PUT", "tbB")
    t.kill_site_a()
    held, writer = t.wait_held("PUT", "tbB")
    t.isolate(writer)
    rest = [i for i in NODES if i != writer]
    when = t.choose("release", ["at-once", "after-election", "after-new-leader-acted"])
    if when == "at-once":
        t.release(held)
    t.wait_leader_among(rest)
    if when == "after-election":
        t.release(held)
    t.wait_failed_over(rest)
    if when == "after-new-leader-acted":
        t.release(held)


def s_kill_at_step_boundary(t):
    """kill -9 of the acting leader at a step boundary, then a restart from its data dir."""
    c = t.c
    lead = c.wait_leader()
    where = t.choose("kill", ["before-activate", "activate-read-held", "activate-put-held",
                              "before-verify", "before-deactivate"])
    held = None
    if where.startswith("before-"):
        action = where[len("before-"):]
        # Step 0 would kill every armed node that takes it over: arm only the leader.
        for i in ([lead] if action == "activate" else NODES):
            c.drctl(i, "debug", "crash-before", action)
        t.kill_site_a()

        def died():
            dead = [i for i in NODES if c.procs[i].poll() is not None]
            return dead or (t.failed_over(NODES) and ["none"])
        victim = wait_until(died, 60, f"a node to kill itself before {action}")[0]
        if victim == "none":
            t.note("no node died: leadership moved before the armed step")
            return
        assert c.procs[victim].returncode == -signal.SIGKILL, c.procs[victim].returncode
        t.note(f"node {victim} killed itself before {action}")
    else:
        method = "GET" if where == "activate-read-held" else "PUT"
        t.hold(method, "tbB")
        t.kill_site_a()
        held, victim = t.wait_held(method, "tbB")
        c.procs[victim].kill()
        c.procs[victim].wait()
        t.note(f"node {victim} killed (SIGKILL) with its {method} held")
    rest = [i for i in NODES if i != victim]
    if held and t.choose("release", ["at-once", "after-survivors-acted"]) == "at-once":
        t.release(held)
        held = None
    restart = t.choose("restart", ["at-once", "after-survivors-acted"])
    if restart == "at-once":
        t.restart(victim)
    t.wait_failed_over(rest)
    if held:
        t.release(held)
    if restart != "at-once":
        t.restart(victim)


def s_sigstop_leader_put_held(t):
    """The leader's activate PUT is held; the leader is stopped past the election timeout until
    the new leader has finished the failover, continued while its PUT is still held, and the
    PUT answered afterwards: the late write must change nothing."""
    c = t.c
    c.wait_leader()
    t.hold("PUT", "tbB")
    t.kill_site_a()
    held, old = t.wait_held("PUT", "tbB")
    c.procs[old].send_signal(signal.SIGSTOP)
    t.note(f"node {old} stopped")
    rest = [i for i in NODES if i != old]
    try:
        t.wait_leader_among(rest)
        t.wait_failed_over(rest)
    finally:
        c.procs[old].send_signal(signal.SIGCONT)
        t.note(f"node {old} continued")
    if t.choose("release", ["at-once", "after-it-follows"]) == "after-it-follows":
        wait_until(lambda: (c.status(old) or {"node": {"acting_leader": True}})["node"]["acting_leader"]
                   is False and c.status(old)["leader"]["id"] in rest, 20,
                   f"node {old} to follow the new leader")
    t.release(held)
    r = [x for x in c.requests() if x["seq"] == held["seq"]][0]
    t.note(f"late PUT answered {r['status']}, effect {r.get('effect')}")


def s_disk_full(t):
    """One node's data dir is a small tmpfs that is filled up while site-a fails over; space is
    freed afterwards and the node, restarted if it stopped, must catch up."""
    c = t.c
    victim = t.victim
    path = os.path.join(c.node_dir(victim), "filler")
    rest = [i for i in NODES if i != victim]
    if t.full_at_start:
        # Started on a full disk: raft cannot prepare its first open segment.
        p = c.procs[victim] = start_quietly(c, victim)
        wait_until(lambda: p.poll() is not None or c.dump(victim) is not None, 20,
                   f"node {victim} to run or to stop on a full disk")
        t.note(f"node {victim} on a full disk: " + (f"exit {p.returncode}: " if p.poll() is not None
               else "running; ") + last_error(c.log(victim)))
        t.kill_site_a()
        t.wait_failed_over(rest)
        os.unlink(path)
        t.note("space freed")
        if p.poll() is not None:
            assert p.returncode > 0, f"node {victim} died of signal {-p.returncode} on a full disk"
            t.restart(victim)
        return
    order = t.choose("order", ["fill-then-kill", "kill-then-fill"])
    if order == "kill-then-fill":
        t.kill_site_a()
    filler = Filler(path)
    st = os.statvfs(path)
    t.note(f"node {victim}'s data dir is full ({st.f_bavail * st.f_frsize} bytes free)")
    if order == "fill-then-kill":
        t.kill_site_a()
    t.wait_failed_over(rest)
    # Let the full node run on the full disk until the cluster moved on (its log grows).
    c.wait_log_advance(t.uniform("full_for_ms", 3000, 8000), viewer=rest[0], timeout=30)
    files = sorted(f for f in os.listdir(c.node_dir(victim)) if f != "filler")
    filler.stop()
    os.unlink(path)
    t.note(f"space freed; node {victim} has {files}, said: {last_error(c.log(victim))}")
    p = c.procs[victim]
    if p.poll() is not None:
        t.note(f"node {victim} had exited {p.returncode}: {last_error(c.log(victim))}")
        # Stopping on a full disk is fine; crashing is not (a core, no word in the log).
        assert p.returncode > 0, f"node {victim} died of signal {-p.returncode} on a full disk"
        t.restart(victim)


def start_quietly(c, i):
    """Starts node i without waiting for its admin socket (it may stop at once)."""
    log = c.node_logs[i] = open(os.path.join(c.dir, f"n{i}.log"), "a")
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(DRWATCH_GENESYS_BACKOFF_SCALE="0.05", **c.node_env)
    return subprocess.Popen(c.node_prefix.get(i, []) + [os.path.join(c.build, "drwatchd"), "--config",
                            os.path.join(c.dir, f"n{i}.json")], stdout=log,
                            stderr=subprocess.STDOUT, env=env)


class Filler:
    """Keeps a filesystem full: whatever the node frees (raft deletes old segments and
    snapshots after a snapshot) is taken again within a few milliseconds."""

    def __init__(self, path):
        self.stopping = threading.Event()
        self.f = open(path, "wb", buffering=0)
        fill_file(self.f)
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def run(self):
        while not self.stopping.wait(0.005):
            fill_file(self.f)

    def stop(self):
        self.stopping.set()
        self.th.join()
        self.f.close()


def fill(path):
    with open(path, "wb", buffering=0) as f:
        fill_file(f)


def fill_file(f):
    for size in (1 << 20, 4096, 512):
        try:
            while True:
                f.write(b"\0" * size)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise


def last_error(log):
    lines = [l for l in log.splitlines() if "level=error" in l or "error" in l.lower()]
    return lines[-1] if lines else (log.splitlines() or [""])[-1]


def s_corrupt_data_dir(t):
    """A node's data dir is damaged while it is down (a raft segment truncated or garbled, its
    metadata or snapshot damaged); restarted, it must refuse clearly or recover from its peers,
    and the cluster must not act wrongly meanwhile."""
    c = t.c
    victim = t.choose("node", NODES)
    # Enough log that there are closed segments and (often) a snapshot.
    c.wait_log_advance(t.uniform("run_ms", 500, 3000), timeout=30)
    how = t.choose("stop", ["SIGKILL", "SIGTERM"])
    c.kill_node(victim, signal.SIGKILL if how == "SIGKILL" else signal.SIGTERM)
    c.procs[victim] = _Exited()
    t.note(f"node {victim} stopped ({how})")
    damage = corrupt(t, c.node_dir(victim))
    t.note(f"damaged {damage}")
    rest = [i for i in NODES if i != victim]
    t.kill_site_a()
    if t.choose("restart", ["before-failover", "after-failover"]) == "after-failover":
        t.wait_failed_over(rest)
    c.node_logs.pop(victim).close()
    p = c.procs[victim] = start_quietly(c, victim)
    t.note(f"node {victim} restarted")
    # It either runs and catches up, or stops and says why.
    wait_until(lambda: p.poll() is not None or (c.dump(victim) is not None), 20,
               f"node {victim} to run (answer drctl) or to refuse (exit); it did neither, "
               f"log: {last_error(c.log(victim))!r}")
    if p.poll() is not None:
        why = last_error(c.log(victim))
        t.note(f"node {victim} refused to start: exit {p.returncode}: {why}")
        assert p.returncode not in (0, -signal.SIGSEGV, -signal.SIGABRT), (p.returncode, why)
        t.may_be_down[victim] = why
        c.procs.pop(victim)
    else:
        # Without its metadata a node has forgotten its term and vote: running would let it vote
        # twice in one term (raft 0.15 bootstraps into such a directory when it can).
        assert not damage.startswith("delete-metadata"), \
            f"node {victim} runs without its raft metadata (term and vote forgotten)"
    t.wait_failed_over(rest)


class _Exited:
    """Stands in for a stopped node's process until it is restarted."""
    returncode = -signal.SIGKILL

    def poll(self):
        return self.returncode


def corrupt(t, d):
    files = sorted(os.listdir(d))
    segs = [f for f in files if re.match(r"^\d{16}-\d{16}$", f)]
    opens = [f for f in files if f.startswith("open-")]
    snaps = [f for f in files if f.startswith("snapshot-") and not f.endswith(".meta")]
    metas = [f for f in files if f.startswith("metadata")]
    opens = [f for f in opens if os.path.getsize(os.path.join(d, f)) > 0]
    kinds = ["delete-metadata"]
    if opens:  # none after a clean stop
        kinds += ["truncate-open-segment", "garble-open-segment"]
    if segs:
        kinds += ["truncate-closed-segment", "garble-closed-segment"]
    if snaps:
        kinds += ["garble-snapshot"]
    kind = t.choose("damage", kinds)
    if kind.endswith("open-segment"):
        name = opens[0]
    elif kind.endswith("closed-segment"):
        name = t.rng.choice(segs)
    elif kind == "garble-snapshot":
        name = snaps[-1]
    else:
        name = None
    if kind == "delete-metadata":
        for m in metas:
            os.unlink(os.path.join(d, m))
        return f"{kind} ({metas})"
    p = os.path.join(d, name)
    size = os.path.getsize(p)
    if kind.startswith("truncate"):
        n = t.rng.randrange(8, max(9, size))
        os.truncate(p, n)
        return f"{kind} {name} {size} -> {n} bytes"
    with open(p, "r+b") as f:
        # An open segment is preallocated: only its first KiBs hold entries.
        end = min(size, 4096) if kind.endswith("open-segment") else size
        at = t.rng.randrange(0, max(1, end - 64))
        f.seek(at)
        f.write(bytes(t.rng.randrange(256) for _ in range(64)))
    return f"{kind} {name} 64 bytes at {at} of {size}"


def s_clock_jump(t):
    """The leader's wall clock is stepped (libfaketime, monotonic clock untouched) while site-a
    fails over; the cluster's time must not follow a forward step."""
    c = t.c
    lead = c.wait_leader()
    jump = t.rng.choice([-1, 1]) * t.rng.randrange(60, 900)
    t.variant.append(f"jump_s={jump}")
    order = t.choose("order", ["jump-then-kill", "kill-then-jump"])
    if order == "kill-then-jump":
        t.kill_site_a()
    with open(t.clock_file(lead), "w") as f:
        f.write(f"{jump:+d}\n")
    jumped_at = time.time()
    t.note(f"node {lead}'s clock stepped by {jump:+d} s")
    if order == "jump-then-kill":
        t.kill_site_a()
    t.wait_failed_over(NODES)
    if t.choose("restore", ["no", "yes"]) == "yes":
        with open(t.clock_file(lead), "w") as f:
            f.write("+0\n")
        t.note(f"node {lead}'s clock set right again")
    last = max(c.cluster_view(i)["last_ts"] for i in t.running())
    # Held back (docs/architecture.md): at most the stamp slack ahead, plus a loaded machine.
    assert last <= time.time() * 1000 + 5000, \
        f"the cluster's time {last} ran ahead of the real clock {time.time() * 1000:.0f} ({jump:+d} s at {jumped_at})"


SCENARIOS = {
    "minority-partition": s_minority_partition,
    "leader-cut-from-genesys": s_leader_cut_from_genesys,
    "leader-cut-from-peers-in-flight": s_leader_cut_from_peers_in_flight,
    "kill-at-step-boundary": s_kill_at_step_boundary,
    "sigstop-leader-put-held": s_sigstop_leader_put_held,
    "disk-full": s_disk_full,
    "corrupt-data-dir": s_corrupt_data_dir,
    "clock-jump": s_clock_jump,
}


def run(build, net, seed, scenario, keep=False, force=None):
    """Runs one trial; returns (problems, events, variant, run dir or None)."""
    t = Trial(build, net, seed, scenario, force)
    problems = []
    c = t.make_cluster()
    if scenario == "disk-full":
        t.victim = t.choose("node", NODES)
        chaosnet.ChaosNet.mount_tmpfs(c.node_dir(t.victim), 64)
        t.mounts.append(c.node_dir(t.victim))
        t.full_at_start = t.choose("full", ["at-start", "while-running"]) == "at-start"
        if t.full_at_start:
            fill(os.path.join(c.node_dir(t.victim), "filler"))
    if scenario == "clock-jump":
        t.clock_file = lambda i: os.path.join(c.dir, f"n{i}.faketime")
        for i in NODES:
            with open(t.clock_file(i), "w") as f:
                f.write("+0\n")
            c.node_prefix[i] += ["env", f"LD_PRELOAD={FAKETIME_LIB}",
                                 f"FAKETIME_TIMESTAMP_FILE={t.clock_file(i)}",
                                 "FAKETIME_NO_CACHE=1", "FAKETIME_DONT_FAKE_MONOTONIC=1"]
    try:
        try:
            t.start(skip=[t.victim] if scenario == "disk-full" and t.full_at_start else ())
            SCENARIOS[scenario](t)
            t.settle()
            problems += check_end(t)
        except AssertionError as e:
            problems.append(f"{type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001 - a trial's own error is a failed trial
            problems.append("".join(traceback.format_exception(e)).strip())
        try:
            reqs = c.requests()
            problems += check_writes(t, reqs)
            t.summary = summarize(reqs)
        except Exception as e:  # noqa: BLE001
            problems.append(f"cannot read the simulator's log: {e}")
        if problems:
            c.keep = True
            try:
                with open(os.path.join(c.dir, "requests.json"), "w") as f:
                    json.dump(c.requests(), f, indent=1)
            except Exception:  # noqa: BLE001
                pass
            with open(os.path.join(c.dir, "events.txt"), "w") as f:
                f.write("".join(f"{ts:.3f} {e}\n" for ts, e in t.events))
        for i in list(t.may_be_down):
            c.procs.pop(i, None)
        # A node that already exited was judged above (check_end, the scenario): stop() judges
        # only the clean shutdown of those still running.
        for i in NODES:
            p = c.procs.get(i)
            if p is not None and p.poll() is not None:
                # The trials send SIGKILL (and the debug knob raises it); any other signal is a crash.
                if p.returncode < 0 and p.returncode != -signal.SIGKILL:
                    msg = f"node {i} died of signal {-p.returncode}"
                    if not any(msg in x for x in problems):
                        problems.append(msg)
                c.procs.pop(i)
    finally:
        try:
            c.keep = c.keep or keep
            c.stop()
        except AssertionError as e:
            problems.append(str(e))
        except Exception as e:  # noqa: BLE001
            problems.append(f"teardown: {e}")
        for m in t.mounts:
            chaosnet.ChaosNet.umount(m)
        if t.mounts and not c.keep:
            shutil.rmtree(c.dir, ignore_errors=True)  # stop() could not remove a mount point
        net.heal()
    return problems, t.events, t.variant + [t.summary], c.dir if c.keep else None
