"""Config for humans on real processes: one shared cluster file plus a node file per node (or
--node-id), relative secrets under $CREDENTIALS_DIRECTORY, what start-up says about a secret
others can read and a missing socket directory, and the shipped examples."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from harness import CLIENT_SECRET, ROOT, Cluster, wait_until

BUILD = None

# Settings a node keeps for itself (docs/config.md): never in the committed configuration.
LOCAL = {"cluster": ["peer_secret_dir"],
         "genesys": ["region", "api_base_url", "login_base_url", "client_id", "client_secret_file"]}


def shared_layout(c, id_on_command_line=()):
    """Rewrites the harness's per-node files as ONE cluster file (every n<i>.json becomes a
    symlink to cluster.json) plus node<i>.json holding what differs per node. A node in
    id_on_command_line has no id in its node file: it gets --node-id. Returns {i: extra args}."""
    docs = {i: c.config(i) for i in range(1, c.n + 1)}
    local = {}
    for i, d in docs.items():
        local[i] = {"node": d.pop("node"),
                    "cluster": {"peer_secret_dir": d["cluster"].pop("peer_secret_dir")}}
        if i in id_on_command_line:
            del local[i]["node"]["id"]
    shared = docs[1]
    assert all(d == shared for d in docs.values()), "the harness's files differ beyond node-local"
    shared["genesys"]["client_secret_file"] = "genesys.secret"  # next to the cluster file
    with open(os.path.join(c.dir, "cluster.json"), "w") as f:
        json.dump(shared, f, indent=2)
    args = {}
    for i in docs:
        path = os.path.join(c.dir, f"node{i}.json")
        with open(path, "w") as f:
            json.dump(local[i], f, indent=2)
        os.unlink(os.path.join(c.dir, f"n{i}.json"))
        os.symlink("cluster.json", os.path.join(c.dir, f"n{i}.json"))
        args[i] = ["--node", path] + (["--node-id", str(i)] if i in id_on_command_line else [])
    return args


def cluster_part(doc):
    out = json.loads(json.dumps(doc))
    out.pop("node", None)
    out.pop("notifications", None)
    for sec, keys in LOCAL.items():
        for k in keys:
            out.get(sec, {}).pop(k, None)
    return out


def drwatchd(*args, env=None):
    return subprocess.run([os.path.join(BUILD, "drwatchd"), *args], capture_output=True,
                          text=True, timeout=10, env=env)


def test_humancfg_one_shared_file_fails_over():
    """Three nodes from one identical cluster file (node 3: --node-id over a node file without
    an id) elect a leader, commit exactly the cluster part, see no local difference, and fail a
    dead site over; `drctl config diff` of the shared file changes nothing."""
    with Cluster(BUILD, name="shared") as c:
        c.write_configs()
        single = c.config(1)
        args = shared_layout(c, id_on_command_line=(3,))
        c.start_sims()
        for i in (1, 2, 3):
            c.start_node(i, *args[i])
        leader = c.wait_leader()
        wait_until(lambda: all((c.status(i) or {}).get("config", {}).get("running_version") == 1
                               for i in (1, 2, 3)), 20, "config version 1 on every node")
        committed = c.drctl(leader, "config", "show")["config"]
        assert committed == cluster_part(single), committed
        for i in (1, 2, 3):
            st = c.status(i)
            assert st["node"]["id"] == i, st["node"]
            assert not st["config"]["local_differs"], st["config"]
        # the shared file is what an operator applies: nothing to change
        diff = c.drctl(leader, "config", "diff", os.path.join(c.dir, "cluster.json"))
        assert diff["count"] == 0 and diff["differences"] == "", diff

        c.wait_sites_up("site-a", "site-b")
        c.kill_edges("site-a")
        c.wait_operation_done(timeout=30, what="the failover")
        assert c.group_active(leader) == "premise-b"


def test_humancfg_credentials_directory():
    """A relative client_secret_file is read from $CREDENTIALS_DIRECTORY (systemd's
    LoadCredential=) before the config file's directory: the token request carries that one."""
    creds = tempfile.mkdtemp(prefix="drwatch-creds-")
    try:
        with open(os.path.join(creds, "genesys.secret"), "w") as f:
            f.write(CLIENT_SECRET + "\n")
            os.fchmod(f.fileno(), 0o400)  # as systemd leaves a credential
        with Cluster(BUILD, name="creds", n=1, node_env={"CREDENTIALS_DIRECTORY": creds}) as c:
            c.write_configs()
            # next to the config file, a wrong secret: the credential must win
            with open(os.path.join(c.dir, "genesys.secret"), "w") as f:
                f.write("not-the-secret\n")
            cfg = c.config(1)
            cfg["genesys"]["client_secret_file"] = "genesys.secret"
            with open(os.path.join(c.dir, "n1.json"), "w") as f:
                json.dump(cfg, f)
            c.start_sims()
            c.start_node(1)
            c.wait_leader()
            c.wait_sites_up("site-a", "site-b")
            c.kill_edges("site-a")  # a failover: the first call to Genesys logs in
            c.wait_operation_done(timeout=30, what="the failover")
            tokens = [r for r in c.requests() if r["path"] == "/oauth/token"]
            assert tokens and all(r["status"] == 200 for r in tokens), tokens
    finally:
        shutil.rmtree(creds, ignore_errors=True)


def test_humancfg_refuses_open_secrets_and_missing_dirs():
    """A secret others can read, a peer secret likewise, and a missing admin socket directory
    each stop start-up with exit 2 and the command that fixes it; --check-config refuses the
    secrets too but only warns about the directory (systemd makes it at start)."""
    c = Cluster(BUILD, name="modes")
    try:
        c.write_configs()
        cfg = os.path.join(c.dir, "n1.json")
        secret = os.path.join(c.dir, "genesys.secret")
        os.chmod(secret, 0o644)
        want = (f"genesys.client_secret_file: {secret} is readable by other users (mode 0644); "
                f"run: chmod 0640 {secret}")
        for extra in ([], ["--check-config"]):
            r = drwatchd("--config", cfg, *extra)
            assert r.returncode == 2 and want in r.stderr, (extra, r.returncode, r.stderr)
        os.chmod(secret, 0o600)
        peer = os.path.join(c.peer_secret_dir(1), "2.secret")
        os.chmod(peer, 0o604)
        r = drwatchd("--config", cfg)
        assert r.returncode == 2 and f"{peer} is readable by other users (mode 0604); run: " \
            f"chmod 0600 {peer}" in r.stderr, r.stderr
        os.chmod(peer, 0o600)

        doc = c.config(1)
        sock_dir = os.path.join(c.dir, "run-drwatch")
        doc["node"]["admin_socket"] = os.path.join(sock_dir, "admin.sock")
        with open(cfg, "w") as f:
            json.dump(doc, f)
        want = (f"node.admin_socket: directory {sock_dir} does not exist; create it (mkdir -m 0750 "
                f"{sock_dir}) or, under systemd, RuntimeDirectory=drwatch creates it")
        r = drwatchd("--config", cfg)
        assert r.returncode == 2 and want in r.stderr, (r.returncode, r.stderr)
        r = drwatchd("--config", cfg, "--check-config")
        assert r.returncode == 0 and f"warning: {want}" in r.stderr, (r.returncode, r.stderr)
        assert not os.path.exists(c.node_dir(1)), "a refused start-up must not touch data_dir"

        # a secret the daemon's user cannot read: which user, and how to let it (as nobody)
        if os.geteuid() == 0 and shutil.which("setpriv"):
            d = tempfile.mkdtemp(prefix="drwatch-unreadable-")
            try:
                os.chmod(d, 0o755)
                doc["genesys"]["client_secret_file"] = "genesys.secret"
                shutil.copy(secret, os.path.join(d, "genesys.secret"))  # 0600, root's
                path = os.path.join(d, "drwatch.json")
                with open(path, "w") as f:
                    json.dump(doc, f)
                os.chmod(path, 0o644)
                r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                    os.path.join(BUILD, "drwatchd"), "--config", path,
                                    "--check-config"], capture_output=True, text=True, timeout=10)
                want = (f"genesys.client_secret_file: cannot read \"{d}/genesys.secret\": "
                        f"permission denied for user nobody (uid 65534); chgrp drwatch and chmod 0640 it, "
                        f"or pass it with systemd's LoadCredential=")
                assert r.returncode == 2 and want in r.stderr, (r.returncode, r.stderr)
            finally:
                shutil.rmtree(d, ignore_errors=True)
    finally:
        c.stop()


def test_humancfg_examples_pass_check_config():
    """deploy/examples: the shared cluster.json with each node<i>.json passes --check-config
    (its secrets written next to it, as the relative client_secret_file expects), and README's
    metrics curl lines ask the addresses the examples serve metrics on, which are what the example
    Prometheus config scrapes."""
    examples = os.path.join(ROOT, "deploy", "examples")
    with open(os.path.join(examples, "cluster.json")) as f:
        shared = json.load(f)
    nodes = sorted(n for n in os.listdir(examples) if re.fullmatch(r"node\d+\.json", n))
    members = {m["id"] for m in shared["cluster"]["members"]}
    assert len(nodes) == len(members) >= 3, nodes
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    curls = set(re.findall(r"curl -s http://([0-9.]+:[0-9]+)/metrics", readme))
    with open(os.path.join(examples, "drwatch.json")) as f:
        single = json.load(f)
    # the single-file example's address and a three-region node's are both in README
    assert single["node"]["metrics_address"] in curls, (curls, single["node"])
    with open(os.path.join(ROOT, "deploy", "prometheus", "prometheus.yml")) as f:
        scraped = set(re.findall(r'targets: \["([0-9.]+:[0-9]+)"\]', f.read()))
    served = set()
    with tempfile.TemporaryDirectory() as d:
        shutil.copy(os.path.join(examples, "cluster.json"), d)
        with open(os.path.join(d, "genesys.secret"), "w") as f:
            f.write("example-secret\n")
            os.fchmod(f.fileno(), 0o600)
        for name in nodes:
            with open(os.path.join(examples, name)) as f:
                node = json.load(f)
            me = node["node"]["id"]
            served.add(node["node"]["metrics_address"])
            # what this host would hold: the secret it shares with each other member
            peer = os.path.join(d, f"peer-{me}")
            os.makedirs(peer)
            for m in members - {me}:
                with open(os.path.join(peer, f"{m}.secret"), "w") as f:
                    f.write(f"example-secret-{min(me, m)}-{max(me, m)}\n")
                    os.fchmod(f.fileno(), 0o600)
            node["cluster"] = {"peer_secret_dir": peer}
            path = os.path.join(d, name)
            with open(path, "w") as f:
                json.dump(node, f)
            r = drwatchd("--config", os.path.join(d, "cluster.json"), "--node", path,
                         "--check-config")
            assert r.returncode == 0 and "configuration is valid" in r.stdout, (name, r.stderr)
            # the same with the id on the command line and the node keys left to their defaults
            with open(path, "w") as f:
                json.dump({"cluster": node["cluster"]}, f)
            r = drwatchd("--config", os.path.join(d, "cluster.json"), "--node", path,
                         "--node-id", str(me), "--check-config")
            assert r.returncode == 0 and "configuration is valid" in r.stdout, (name, r.stderr)
        # Prometheus scrapes what the node files serve; README's curl lines ask those addresses
        assert served == scraped, (served, scraped)
        assert curls - {single["node"]["metrics_address"]} and curls <= served | {
            single["node"]["metrics_address"]}, (curls, served)
        # an error in the node file: the heading blames no file, the line names the node file
        with open(path, "w") as f:
            json.dump({"cluster": node["cluster"], "node": {"log_level": "loud"}}, f)
        r = drwatchd("--config", os.path.join(d, "cluster.json"), "--node", path,
                     "--node-id", str(me), "--check-config")
        lines = r.stderr.splitlines()
        assert r.returncode == 2 and lines[0] == "drwatchd: 1 configuration error:" and \
            lines[1].startswith(f"  {path}: node.log_level: "), (r.returncode, r.stderr)


def test_humancfg_demo_runs():
    """deploy/demo end to end (about 20 s): the leader killed mid-failover, the new leader
    finishing it, the failback after stable_for; the demo asserts each write happened once."""
    r = subprocess.run([sys.executable, os.path.join(ROOT, "deploy", "demo.py"), "--build", BUILD],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert re.search(r"step 1 verify +premise-b +done +n(\d) started .*, n(?!\1)\d resumed", r.stdout), \
        r.stdout[-3000:]
    assert "active target now: premise-a" in r.stdout, r.stdout[-3000:]


TESTS = [test_humancfg_one_shared_file_fails_over, test_humancfg_credentials_directory,
         test_humancfg_refuses_open_secrets_and_missing_dirs,
         test_humancfg_examples_pass_check_config, test_humancfg_demo_runs]
