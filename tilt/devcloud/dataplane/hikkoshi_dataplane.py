"""The dev cloud's data plane: one network namespace where its servers and load
balancers answer, shared by the Nova driver (hikkoshi_devcloud_nova), the Octavia
drivers (hikkoshi_devcloud_octavia) and devcloud.sh.

Test infrastructure, not product code. It stands in for what the dev cloud lacks (L2
agents, guests, amphorae) the way its ML2 driver stands in for the agents:

- One namespace, NETNS ("the fabric"), with an interface dp0 and no link out.
  Every address of an ACTIVE server and every load balancer VIP is a /32 on dp0, so
  traffic between them stays inside the namespace. The private and documentation
  ranges are routed to dp0 as well: an address nobody holds is a dead host (ARP
  unanswered: the SYN goes nowhere), not an unreachable network. The host's own namespace has
  no route to any of it.
- Each address belongs to one owner at a time (a server's stand-in, a load
  balancer's haproxy), recorded under STATE/dataplane/addr/<ip> and taken under a
  lock, so two servers of two Novas never answer on one address.
- Processes (stand-ins, haproxy) run in their own sessions with PID files, so a
  restart of nova-compute or octavia-worker leaves them running, as a hypervisor's
  guests and amphorae outlive their controllers. devcloud.sh down stops them all.
"""
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time

NETNS = "hikkoshi-dp"
DEV = "dp0"
# The address the traffic meter sends from: a client outside every dev cloud subnet
# (the shared address space of RFC 6598), so the PROXY header a member receives names
# it and nothing else.
CLIENT_ADDR = "100.64.0.10"
# The dev cloud's address ranges: its VLAN subnets (10.<vlan>.0.0/24, VLANs 100-199,
# and the routed tests' 10.201.0.0/24) and its external network (198.51.100.0/24).
# Inside the namespace they are routed to dp0. In the host's namespace they are
# unreachable routes (up adds them, down removes them): this machine's default route
# would otherwise carry a stray connection out, and no traffic to these ranges may
# leave the namespace. A connection from the host to them fails at once.
DEVCLOUD_RANGES = ("10.96.0.0/11", "10.128.0.0/10", "10.192.0.0/12", "198.51.100.0/24")
ROUTES = DEVCLOUD_RANGES + ("100.64.0.0/10",)
IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "/sbin/ip"
PY = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))


def state_dir():
    """STATE/dataplane, from HIKKOSHI_DATAPLANE_DIR (set by devcloud.sh)."""
    d = os.environ.get("HIKKOSHI_DATAPLANE_DIR")
    if not d:
        raise RuntimeError("HIKKOSHI_DATAPLANE_DIR is not set: start this service with devcloud.sh")
    os.makedirs(d, exist_ok=True)
    return d


def _run(*args, check=True):
    p = subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and p.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(args), p.stderr.strip() or p.stdout.strip()))
    return p


_local_locks = {}
_local_guard = threading.Lock()


@contextlib.contextmanager
def locked(name):
    """An exclusive flock on STATE/dataplane/NAME.lock, across processes.

    Nova's and Octavia's processes run eventlet: a blocking flock would stop every
    green thread of the process, and a second one waiting for a lock the first holds
    (two servers started at once) would never let the first go on: a deadlock seen
    with nova-compute. So the process's own threads queue on a threading lock (green
    under eventlet), and the flock is polled without blocking.
    """
    with _local_guard:
        local = _local_locks.setdefault(name, threading.Lock())
    path = os.path.join(state_dir(), name + ".lock")
    with local, open(path, "a") as f:
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_netns():
    """Creates the namespace with dp0, its routes and the client address (idempotent)."""
    with locked("netns"):
        if not os.path.exists("/run/netns/" + NETNS):
            _run(IP, "netns", "add", NETNS)
        ns = (IP, "-n", NETNS)
        _run(*ns, "link", "set", "lo", "up")
        if _run(*ns, "link", "show", DEV, check=False).returncode != 0:
            # A veth pair with both ends inside (the kernels here have no dummy
            # links): nothing on the far end answers ARP, so a SYN to an address
            # nobody holds fails as it would to a dead host.
            _run(*ns, "link", "add", DEV, "type", "veth", "peer", "name", DEV + "-peer")
        _run(*ns, "link", "set", DEV, "up")
        _run(*ns, "link", "set", DEV + "-peer", "up")
        for r in ROUTES:
            _run(*ns, "route", "replace", r, "dev", DEV)
        _run(*ns, "addr", "replace", CLIENT_ADDR + "/32", "dev", DEV)
        guard_host()


def guard_host():
    """Makes the dev cloud's ranges unreachable from the host's namespace."""
    for r in DEVCLOUD_RANGES:
        _run(IP, "route", "replace", "unreachable", r)


def unguard_host():
    for r in DEVCLOUD_RANGES:
        _run(IP, "route", "del", "unreachable", r, check=False)


def remove_netns():
    if os.path.exists("/run/netns/" + NETNS):
        _run(IP, "netns", "del", NETNS, check=False)


def _addr_path(ip):
    d = os.path.join(state_dir(), "addr")
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, ip)


class AddressTaken(Exception):
    """An address is held by another owner that is still alive."""


def claim_addresses(owner, ips, alive):
    """Puts each IP on dp0 for OWNER. An IP another owner holds is refused while
    alive(that owner) is true; a dead owner's claim is taken over."""
    ensure_netns()
    with locked("addr"):
        for ip in ips:
            path = _addr_path(ip)
            if os.path.exists(path):
                with open(path) as f:
                    holder = json.load(f)
                if holder["owner"] != owner and alive(holder["owner"]):
                    raise AddressTaken("%s is already answered by %s" % (ip, holder.get("what", holder["owner"])))
        for ip in ips:
            with open(_addr_path(ip), "w") as f:
                json.dump({"owner": owner, "what": owner, "since": time.time()}, f)
            _run(IP, "-n", NETNS, "addr", "replace", ip + "/32", "dev", DEV)


def release_addresses(owner, ips=None):
    """Takes OWNER's addresses (all of them, or IPS) off dp0."""
    d = os.path.join(state_dir(), "addr")
    if not os.path.isdir(d):
        return
    with locked("addr"):
        for ip in os.listdir(d):
            if ips is not None and ip not in ips:
                continue
            path = os.path.join(d, ip)
            try:
                with open(path) as f:
                    holder = json.load(f)
            except (OSError, ValueError):
                continue
            if holder["owner"] != owner:
                continue
            _run(IP, "-n", NETNS, "addr", "del", ip + "/32", "dev", DEV, check=False)
            os.unlink(path)


def addresses():
    """{ip: owner} of every claimed address."""
    d = os.path.join(state_dir(), "addr")
    out = {}
    if os.path.isdir(d):
        for ip in os.listdir(d):
            try:
                with open(os.path.join(d, ip)) as f:
                    out[ip] = json.load(f)["owner"]
            except (OSError, ValueError):
                pass
    return out


def pid_alive(pidfile):
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0
    if pid <= 0:
        return 0
    try:
        os.kill(pid, 0)
    except OSError:
        return 0
    # A zombie (a child nobody reaped) is not alive.
    try:
        with open("/proc/%d/stat" % pid) as f:
            if f.read().split(")")[-1].split()[0] == "Z":
                return 0
    except OSError:
        return 0
    return pid


def owner_pidfile(owner):
    """The PID file of an address owner: "server:<uuid>" (a stand-in) or "lb:<id>"
    (a load balancer's haproxy)."""
    kind, _, ident = owner.partition(":")
    if kind == "server":
        return os.path.join(state_dir(), "standin", ident + ".pid")
    if kind == "lb":
        return os.path.join(state_dir(), "lb", ident, "haproxy.pid")
    return os.path.join(state_dir(), "unknown.pid")


def owner_alive(owner):
    return bool(pid_alive(owner_pidfile(owner)))


def spawn(args, pidfile, logfile):
    """Starts ARGS inside the namespace in a session of its own (it outlives its
    starter) and records its PID."""
    ensure_netns()
    os.makedirs(os.path.dirname(pidfile), exist_ok=True)
    with open(logfile, "ab") as log:
        p = subprocess.Popen([IP, "netns", "exec", NETNS] + list(args), stdin=subprocess.DEVNULL,
                             stdout=log, stderr=log, start_new_session=True)
    with open(pidfile + ".tmp", "w") as f:
        f.write(str(p.pid))
    os.replace(pidfile + ".tmp", pidfile)
    return p


def kill(pidfile, sig=signal.SIGTERM, wait=5.0):
    """Stops the process group of the PID in PIDFILE (TERM, then KILL)."""
    pid = pid_alive(pidfile)
    if pid:
        for s in (sig, signal.SIGKILL):
            with contextlib.suppress(OSError):
                os.killpg(pid, s)
            with contextlib.suppress(OSError):
                os.kill(pid, s)
            t0 = time.time()
            while time.time() - t0 < wait and pid_alive(pidfile):
                with contextlib.suppress(ChildProcessError, OSError):
                    os.waitpid(pid, os.WNOHANG)
                time.sleep(0.05)
            if not pid_alive(pidfile):
                break
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pidfile)


def wait_listening(ip, port, timeout=10.0):
    """Waits until something listens on IP:PORT inside the namespace."""
    t0 = time.time()
    want = "%s:%d" % (ip, port)
    while time.time() - t0 < timeout:
        out = _run(IP, "netns", "exec", NETNS, "ss", "-ltnH", check=False).stdout
        if any(line.split()[3] == want for line in out.splitlines() if len(line.split()) > 3):
            return True
        time.sleep(0.05)
    return False


def stop_all():
    """Stops every stand-in and haproxy of this state and removes the namespace."""
    d = state_dir()
    pidfiles = []
    sd = os.path.join(d, "standin")
    if os.path.isdir(sd):
        pidfiles += [os.path.join(sd, f) for f in os.listdir(sd) if f.endswith(".pid")]
    ld = os.path.join(d, "lb")
    if os.path.isdir(ld):
        pidfiles += [os.path.join(ld, x, "haproxy.pid") for x in os.listdir(ld)
                     if os.path.exists(os.path.join(ld, x, "haproxy.pid"))]
    for p in pidfiles:
        kill(p, wait=3.0)
    ad = os.path.join(d, "addr")
    if os.path.isdir(ad):
        for ip in os.listdir(ad):
            os.unlink(os.path.join(ad, ip))
    remove_netns()
    unguard_host()
    return len(pidfiles)


def main(argv):
    if len(argv) != 2 or argv[1] not in ("up", "down", "status"):
        print("usage: hikkoshi_dataplane.py up | down | status", file=sys.stderr)
        return 2
    if argv[1] == "up":
        ensure_netns()
        print("namespace %s: %s up, routes %s, client address %s; unreachable from the host: %s" % (
            NETNS, DEV, " ".join(ROUTES), CLIENT_ADDR, " ".join(DEVCLOUD_RANGES)))
    elif argv[1] == "down":
        n = stop_all()
        print("data plane stopped: %d processes, namespace %s removed" % (n, NETNS))
    else:
        for ip, owner in sorted(addresses().items()):
            print("%-16s %-45s %s" % (ip, owner, "alive" if owner_alive(owner) else "dead"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
