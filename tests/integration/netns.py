"""Network namespaces and veth links the integration tests make, and removal of any that a run
killed mid-test left behind (they would make the next run fail).

Everything the tests create in the host's network is named with PREFIX: namespaces
"drwit-<name>", links "drwit-<name>-<link><h|n>". Nothing without the prefix is ever touched, and
the tests add no iptables rules. A test holds an exclusive lock on LOCK (flock, one per machine,
shared by every checkout) for as long as its namespace exists. The kernel drops the lock with its
holder, even on SIGKILL, so whoever holds it knows that anything carrying the prefix is stale."""
import fcntl
import os
import signal
import subprocess

from harness import wait_until

PREFIX = "drwit"
LOCK = "/run/lock/drwatch-it-netns.lock"


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


# Other suites (tests/chaos) pass their own prefix and lock, so neither removes the other's.
def owned_namespaces(prefix=PREFIX):
    return [line.split()[0] for line in _ip("netns", "list").stdout.splitlines()
            if line.startswith(prefix + "-")]


def owned_links(prefix=PREFIX):
    """Host links with the prefix ("N: name@peer: <...>" lines)."""
    names = [line.split(":")[1].strip().split("@")[0]
             for line in _ip("-o", "link", "show").stdout.splitlines()]
    return [n for n in names if n.startswith(prefix + "-")]


def _gone(pid):
    """True once pid has exited (a zombie has left its namespaces already)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def remove_owned(prefix=PREFIX):
    """Removes every owned namespace (killing what still runs in it) and link; the lock is held.
    Returns what it removed."""
    removed = []
    for ns in owned_namespaces(prefix):
        pids = [int(p) for p in _ip("netns", "pids", ns, check=False).stdout.split()]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until(lambda: all(_gone(p) for p in pids), 10, f"the processes left in {ns} to die")
        _ip("netns", "del", ns, check=False)
        removed.append(ns)
    for link in owned_links(prefix):
        _ip("link", "del", link, check=False)  # takes its veth peer with it
        removed.append(link)
    left = owned_namespaces(prefix) + owned_links(prefix)
    assert not left, f"could not remove {left}"
    return removed


def lock(wait, path=LOCK):
    """The lock's file descriptor, or None when another live run holds it and wait is false."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)

    def take():
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
    try:
        if take() or (wait and wait_until(take, 240, f"{path} (another run's namespace test)",
                                          interval=0.2)):
            return fd
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None


def remove_stale():
    """At the start of a run: removes what an interrupted run left, unless a live run (another
    checkout's, say) holds the lock, in which case nothing is stale. Returns what it removed."""
    try:
        fd = lock(wait=False)
    except OSError:
        return []  # no right to the lock: this user cannot have made namespaces either
    if fd is None:
        return []
    try:
        return remove_owned()
    finally:
        os.close(fd)


class Netns:
    """A node's own network: a namespace with veth links to this host (by default two: "c" for the
    cluster, raft and peer channel; "e" for its probes). Taking a link down partitions the node
    on that link only. Addresses exist only on these links: <net>.1 on the host, <net>.2 inside.
    Entering takes the lock and first removes whatever a killed run left."""

    def __init__(self, name="n", links=(("c", "10.203.1"), ("e", "10.203.2"))):
        self.ns = f"{PREFIX}-{name}"
        self.links = {k: (f"{self.ns}-{k}h", f"{self.ns}-{k}n", net) for k, net in links}
        assert all(len(n) <= 15 for h, p, _ in self.links.values() for n in (h, p)), "IFNAMSIZ"
        self.fd = None

    def host_ip(self, link):
        return self.links[link][2] + ".1"

    def ns_ip(self, link):
        return self.links[link][2] + ".2"

    def __enter__(self):
        self.fd = lock(wait=True)
        try:
            remove_owned()
            _ip("netns", "add", self.ns)
            _ip("-n", self.ns, "link", "set", "lo", "up")
            for host_if, ns_if, net in self.links.values():
                _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
                _ip("link", "set", ns_if, "netns", self.ns)
                _ip("addr", "add", f"{net}.1/24", "dev", host_if)
                _ip("link", "set", host_if, "up")
                _ip("-n", self.ns, "addr", "add", f"{net}.2/24", "dev", ns_if)
                _ip("-n", self.ns, "link", "set", ns_if, "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def set_link(self, link, up):
        _ip("link", "set", self.links[link][0], "up" if up else "down")

    def set_cluster_link(self, up):
        self.set_link("c", up)

    def leave_behind(self):
        """Drops the lock and nothing else, as a run killed now would."""
        os.close(self.fd)
        self.fd = None

    def __exit__(self, *exc):
        if self.fd is None:
            return
        try:
            remove_owned()
        finally:
            os.close(self.fd)
            self.fd = None
