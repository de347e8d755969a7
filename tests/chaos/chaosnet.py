"""The chaos trials' network: one namespace per node and a hub namespace with a Linux bridge.

    drch-hub   br0 10.231.0.1/24: the Genesys and Edge simulators, and this runner's sockets
    drch-n<i>  eth0 10.231.0.1<i>/24, a veth whose other end is a port of br0

Nothing is made in the host's own network: both ends of every veth are created inside the
namespaces, so deleting the namespaces removes everything, and a host firewall (br_netfilter
with FORWARD DROP) never sees the bridge. The runner enters the hub (setns) so that the
simulators it starts listen there and its HTTP calls go there; drctl talks over Unix sockets,
which namespaces do not separate. Partitions are iptables DROP rules inside the node namespaces.

Names carry PREFIX, the lock is LOCK: netns.py's discipline with its own prefix and lock, so the
chaos runner and the integration tests never remove each other's namespaces. tmpfs mounts (the
disk-full trial) have MOUNT_SOURCE as their source, so stale ones are found in /proc/mounts."""
import ctypes
import os
import subprocess

import netns

PREFIX = "drch"
LOCK = "/run/lock/drwatch-chaos-netns.lock"
MOUNT_SOURCE = "drwatch-chaos"
NET = "10.231.0"
HUB = f"{PREFIX}-hub"
CLONE_NEWNET = 0x40000000


def _run(*argv, check=True):
    r = subprocess.run(argv, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


def ns_name(i):
    return f"{PREFIX}-n{i}"


def node_ip(i):
    return f"{NET}.{10 + i}"


HUB_IP = f"{NET}.1"


def _setns(path):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


def stale_mounts():
    out = []
    with open("/proc/mounts") as f:
        for line in f:
            src, mnt = line.split()[:2]
            if src == MOUNT_SOURCE:
                out.append(mnt.replace("\\040", " "))
    return out


def remove_stale_mounts():
    for m in stale_mounts():
        _run("umount", "-l", m, check=False)


class ChaosNet:
    """Entering takes the lock, removes what a killed run left (namespaces, mounts), builds the
    network for n nodes and moves this process into the hub; leaving undoes all of it."""

    def __init__(self, n=3):
        self.n = n
        self.fd = None
        self.home = None  # this process's own network namespace, to return to
        self.cuts = set()  # frozenset({a, b}) node pairs cut; ("g", i) node i cut from Genesys
        self.genesys_port = None

    def __enter__(self):
        self.fd = netns.lock(wait=True, path=LOCK)
        try:
            self._clean()
            _run("ip", "netns", "add", HUB)
            _run("ip", "-n", HUB, "link", "set", "lo", "up")
            _run("ip", "-n", HUB, "link", "add", "br0", "type", "bridge")
            _run("ip", "-n", HUB, "addr", "add", f"{HUB_IP}/24", "dev", "br0")
            _run("ip", "-n", HUB, "link", "set", "br0", "up")
            for i in range(1, self.n + 1):
                ns = ns_name(i)
                _run("ip", "netns", "add", ns)
                _run("ip", "-n", ns, "link", "set", "lo", "up")
                _run("ip", "link", "add", f"{PREFIX}-t{i}", "netns", HUB, "type", "veth",
                     "peer", "name", "eth0", "netns", ns)
                _run("ip", "-n", HUB, "link", "set", f"{PREFIX}-t{i}", "master", "br0", "up")
                _run("ip", "-n", ns, "addr", "add", f"{node_ip(i)}/24", "dev", "eth0")
                _run("ip", "-n", ns, "link", "set", "eth0", "up")
            self.home = os.open("/proc/self/ns/net", os.O_RDONLY)
            _setns(f"/run/netns/{HUB}")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _clean(self):
        remove_stale_mounts()
        netns.remove_owned(PREFIX)
        left = stale_mounts()
        assert not left, f"could not unmount {left}"

    def __exit__(self, *exc):
        if self.fd is None:
            return
        try:
            if self.home is not None:
                try:
                    _setns(f"/proc/self/fd/{self.home}")
                finally:
                    os.close(self.home)
                    self.home = None
            self._clean()
        finally:
            os.close(self.fd)
            self.fd = None

    # ---- faults -------------------------------------------------------------------------
    def _ipt(self, i, *rule):
        _run("ip", "netns", "exec", ns_name(i), "iptables", "-w", *rule)

    def _apply(self):
        """Rewrites every node's rules from self.cuts (flush, then one DROP pair per cut)."""
        for i in range(1, self.n + 1):
            self._ipt(i, "-F", "INPUT")
            self._ipt(i, "-F", "OUTPUT")
        for c in self.cuts:
            if isinstance(c, tuple):
                i = c[1]
                port = str(self.genesys_port)
                self._ipt(i, "-A", "OUTPUT", "-p", "tcp", "-d", HUB_IP, "--dport", port, "-j", "DROP")
                self._ipt(i, "-A", "INPUT", "-p", "tcp", "-s", HUB_IP, "--sport", port, "-j", "DROP")
                continue
            a, b = sorted(c)
            for x, y in ((a, b), (b, a)):
                self._ipt(x, "-A", "OUTPUT", "-d", node_ip(y), "-j", "DROP")
                self._ipt(x, "-A", "INPUT", "-s", node_ip(y), "-j", "DROP")

    def isolate(self, i):
        """Cuts node i from every other node (it still reaches the simulators)."""
        self.cuts |= {frozenset((i, j)) for j in range(1, self.n + 1) if j != i}
        self._apply()

    def cut_genesys(self, i):
        self.cuts.add(("g", i))
        self._apply()

    def heal(self):
        self.cuts.clear()
        self._apply()

    def majority_side(self, i):
        """True when node i reaches a strict majority of the nodes (itself included)."""
        reach = 1 + sum(1 for j in range(1, self.n + 1) if j != i and frozenset((i, j)) not in self.cuts)
        return reach * 2 > self.n

    # ---- disk ---------------------------------------------------------------------------
    @staticmethod
    def mount_tmpfs(path, size_mb):
        os.makedirs(path, exist_ok=True)
        _run("mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", MOUNT_SOURCE, path)

    @staticmethod
    def umount(path):
        _run("umount", "-l", path, check=False)
