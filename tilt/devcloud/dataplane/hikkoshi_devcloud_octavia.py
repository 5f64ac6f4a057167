"""Octavia drivers for the dev cloud: load balancers that forward. Test
infrastructure (tilt/devcloud), not product code.

[controller_worker]
amphora_driver = hikkoshi_netns_amphora_driver   (NetnsAmphoraDriver)
network_driver = hikkoshi_vip_network_driver     (VipNetworkDriver)

NetnsAmphoraDriver plays the amphora. Where Octavia's REST driver renders an
amphora's haproxy.cfg and uploads it to the amphora agent, which checks it and
reloads haproxy (SIGUSR2 to the master, Octavia's systemd unit's ExecReload) inside
the amphora's network namespace, this driver renders the same configuration with the
same renderer (octavia.common.jinja.haproxy.combined_listeners) and does the agent's
part on this host: Debian's haproxy in master-worker mode, inside the data plane's
namespace, bound to the load balancer's VIP. Octavia calls it from the worker's flows
before it marks a change ACTIVE, so an ACTIVE load balancer forwards as configured:
PROXY pools send-proxy, PROXYV2 send-proxy-v2, weight 0 drains, a disabled member is
disabled, monitors check. A reload hands the listening sockets to the new worker and
lets the old one finish its connections. What it cannot do: TLS listeners (no
Barbican here), UDP/SCTP (keepalived LVS), ACTIVE_STANDBY (no VRRP).

A thread of the worker stands in for the amphora agent's heartbeat and the health
manager: every second it reads each haproxy's status through its stats socket
(octavia.amphorae.backends.utils.haproxy_query, what the agent reads) and hands it
to the health manager's own code (heartbeat_udp.UpdateHealthDb), which sets the
operating_status of members, pools, listeners and the load balancer in Octavia's
database. So Octavia's API reports member health as haproxy sees it — ONLINE, ERROR
(failing checks), DRAINING (weight 0), NO_MONITOR — as it would with amphorae. The same
thread stops the haproxy of a load balancer that is gone, and starts the haproxy of an
ACTIVE one that has none (after devcloud.sh down and up).

VipNetworkDriver is the no-op network driver with a real VIP: allocate_vip makes the
VIP's Neutron port as the allowed-address-pairs driver does (octavia-lb-<id>,
device_owner Octavia, the load balancer's project, on the VIP subnet; an address asked
for is kept, else the highest free address of the subnet's pools), so every load
balancer has an address of its own that Neutron will not give to anyone else;
deallocate_vip deletes it. Everything that would plug ports into
amphora VMs stays no-op.
"""
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import threading
import time

from neutronclient.common import exceptions as neutron_exceptions
from oslo_config import cfg
from oslo_log import log as logging

from octavia.amphorae.backends.utils import haproxy_query
from octavia.amphorae.drivers.health import heartbeat_udp
from octavia.amphorae.drivers.noop_driver import driver as noop_amp
from octavia.common import clients
from octavia.common import constants as consts
from octavia.common import data_models
from octavia.common.jinja.haproxy.combined_listeners import jinja_cfg
from octavia.db import api as db_apis
from octavia.db import repositories as repo
from octavia.network import base as network_base
from octavia.network.drivers.noop_driver import driver as noop_net

import hikkoshi_dataplane as dp

CONF = cfg.CONF
LOG = logging.getLogger(__name__)

LVS = (consts.PROTOCOL_UDP, getattr(consts, "PROTOCOL_SCTP", "SCTP"))
HEALTH_INTERVAL = float(os.environ.get("HIKKOSHI_HEALTH_INTERVAL", "1"))


def haproxy_versions():
    out = subprocess.run(["/usr/sbin/haproxy", "-v"], stdout=subprocess.PIPE, text=True).stdout
    ver = out.split()[2] if len(out.split()) > 2 else "2.6.0"
    return tuple(ver.split("-")[0].split(".")[:3])


def base_path():
    p = os.path.join(dp.state_dir(), "lb")
    os.makedirs(p, exist_ok=True)
    return p


_locks = {}
_locks_guard = threading.Lock()


def lb_lock(lb_id):
    with _locks_guard:
        return _locks.setdefault(lb_id, threading.Lock())


class Haproxy:
    """One load balancer's haproxy in the namespace: files under STATE/dataplane/lb/<id>/."""

    def __init__(self, lb_id):
        self.lb_id = lb_id
        self.dir = os.path.join(base_path(), lb_id)
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        self.ug = os.path.join(self.dir, "haproxy_user_group.cfg")
        self.pid = os.path.join(self.dir, "haproxy.pid")
        self.sock = os.path.join(base_path(), lb_id + ".sock")
        self.state = os.path.join(self.dir, "servers-state")
        self.meta = os.path.join(self.dir, "meta.json")
        self.log = os.path.join(self.dir, "haproxy.log")

    def running(self):
        return dp.pid_alive(self.pid)

    def read_meta(self):
        try:
            with open(self.meta) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def _haproxy(self, *args, check=True):
        cmd = [dp.IP, "netns", "exec", dp.NETNS, "/usr/sbin/haproxy"] + list(args)
        with open(self.log, "ab") as log:
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
        if check and p.returncode != 0:
            tail = open(self.log, "rb").read()[-2000:].decode("utf-8", "replace")
            raise RuntimeError("haproxy %s failed: %s" % (" ".join(args), tail))
        return p

    def worker_pid(self):
        try:
            return haproxy_query.HAProxyQuery(self.sock).show_info().get("Pid")
        except Exception:  # noqa: BLE001 - not answering yet
            return None

    def apply(self, config, vip, amphora_id, ports):
        """Writes CONFIG, checks it, then starts haproxy or reloads it (SIGUSR2 to the
        master, as the amphora's ExecReload does), and waits until the new worker
        answers and every listener port is bound."""
        os.makedirs(self.dir, exist_ok=True)
        dp.claim_addresses("lb:" + self.lb_id, [vip], owner_alive)
        with open(self.cfg + ".new", "w") as f:
            f.write(config)
        with open(self.ug, "w") as f:
            f.write("global\n    group nogroup\n")
        peer = self.lb_id.replace("-", "")[:16]
        self._haproxy("-c", "-q", "-f", self.cfg + ".new", "-f", self.ug, "-L", peer)
        os.replace(self.cfg + ".new", self.cfg)
        with open(self.meta, "w") as f:
            json.dump({"vip": vip, "amphora_id": amphora_id, "ports": ports}, f)
        master = self.running()
        if master:
            old = self.worker_pid()
            try:  # what the agent does before a reload: keep the servers' state
                with open(self.state, "w") as f:
                    f.write(haproxy_query.HAProxyQuery(self.sock)._query("show servers state"))
            except Exception:  # noqa: BLE001
                pass
            os.kill(master, signal.SIGUSR2)  # reload
            deadline = time.time() + 15
            while time.time() < deadline:
                cur = self.worker_pid()
                if cur and cur != old:
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError("haproxy of %s did not reload within 15 s (log %s)" % (self.lb_id, self.log))
        else:
            if not os.path.exists(self.state):
                open(self.state, "w").close()  # no state yet: an empty one, not a warning
            self._haproxy("-W", "-f", self.cfg, "-f", self.ug, "-p", self.pid, "-L", peer)
        for port in ports:
            if not dp.wait_listening(vip, port, 15):
                raise RuntimeError("haproxy of %s does not listen on %s:%d (log %s)" % (self.lb_id, vip, port, self.log))

    def stop(self):
        dp.kill(self.pid, wait=5.0)
        # The master's workers are its children in its session.
        dp.release_addresses("lb:" + self.lb_id)

    def remove(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        for p in (self.sock,):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


def lb_gone(lb_id):
    """A load balancer is deleted, or being deleted, as the database says now."""
    try:
        lb = repo.LoadBalancerRepository().get(db_apis.get_session(), id=lb_id)
    except Exception:  # noqa: BLE001 - the database cannot say: not gone
        LOG.exception("data plane: could not read load balancer %s", lb_id)
        return False
    return lb is None or lb.provisioning_status in (consts.PENDING_DELETE, consts.DELETED)


def owner_alive(owner):
    """An address's owner is alive while its process runs; a load balancer's haproxy
    only while its load balancer is not gone besides. One that is gone (a late flow
    of a deleted load balancer started it) is stopped here, and its address is free
    for the load balancer Neutron gave it to next."""
    if not dp.owner_alive(owner):
        return False
    kind, _, ident = owner.partition(":")
    if kind == "lb" and lb_gone(ident):
        dp.kill(dp.owner_pidfile(owner), wait=5.0)
        LOG.warning("data plane: stopped the haproxy of load balancer %s, which is gone, to free its address", ident)
        return False
    return True


class NetnsAmphoraDriver(noop_amp.NoopAmphoraLoadBalancerDriver):
    """The no-op amphora driver, with haproxy run for real in the data plane."""

    def __init__(self):
        super().__init__()
        self.jinja = jinja_cfg.JinjaTemplater(
            base_amp_path=base_path(), base_crt_dir=os.path.join(base_path(), "certs"),
            haproxy_template=None, connection_logging=True)
        self.versions = haproxy_versions()
        start_health_thread(self)

    def render(self, loadbalancer, amphora, exclude=None):
        listeners = [ln for ln in loadbalancer.listeners
                     if ln.id != exclude and ln.provisioning_status != consts.DELETED
                     and ln.protocol not in LVS]
        for ln in loadbalancer.listeners:
            if ln.protocol in LVS:
                LOG.warning("dev cloud data plane: %s listener %s is not served (no keepalived LVS here)",
                            ln.protocol, ln.id)
        if not listeners:
            return None, []
        config = self.jinja.build_config(host_amphora=amphora, listeners=listeners, tls_certs={},
                                         haproxy_versions=self.versions)
        return config, [ln.protocol_port for ln in listeners if ln.enabled]

    def apply(self, loadbalancer, amphora, exclude=None):
        if amphora is None or amphora.status == consts.DELETED or loadbalancer.vip is None:
            return
        with lb_lock(loadbalancer.id), dp.locked("lb-" + loadbalancer.id):
            h = Haproxy(loadbalancer.id)
            if loadbalancer.provisioning_status in (consts.PENDING_DELETE, consts.DELETED) or lb_gone(loadbalancer.id):
                # A cascade delete updates the amphora as it deletes the pools and
                # listeners: an amphora being deleted serves nothing (started again
                # here, it would hold the VIP that Neutron hands the next load
                # balancer). The flow's own copy of the load balancer may be older
                # than a delete begun since (a create flow still running when its
                # load balancer is deleted): the database says.
                h.stop()
                return
            config, ports = self.render(loadbalancer, amphora, exclude)
            if config is None:
                h.stop()
                return
            h.apply(config, loadbalancer.vip.ip_address, amphora.id, ports)
            LOG.info("data plane: haproxy of %s serves %s on %s", loadbalancer.id,
                     loadbalancer.vip.ip_address, ports)

    def update_amphora_listeners(self, loadbalancer, amphora, timeout_dict=None):
        super().update_amphora_listeners(loadbalancer, amphora, timeout_dict)
        self.apply(loadbalancer, amphora)

    def update(self, loadbalancer):
        super().update(loadbalancer)
        for amp in loadbalancer.amphorae:
            self.apply(loadbalancer, amp)

    def start(self, loadbalancer, amphora=None, timeout_dict=None):
        super().start(loadbalancer, amphora, timeout_dict)
        for amp in [amphora] if amphora else loadbalancer.amphorae:
            self.apply(loadbalancer, amp)

    def reload(self, loadbalancer, amphora=None, timeout_dict=None):
        super().reload(loadbalancer, amphora, timeout_dict)
        for amp in [amphora] if amphora else loadbalancer.amphorae:
            self.apply(loadbalancer, amp)

    def delete(self, listener):
        super().delete(listener)
        lb = listener.load_balancer
        for amp in lb.amphorae:
            self.apply(lb, amp, exclude=listener.id)


# ------------------------------------------------------------------ heartbeat

_health_started = False
_health_guard = threading.Lock()


def start_health_thread(driver):
    global _health_started
    with _health_guard:
        if _health_started:
            return
        _health_started = True
    t = threading.Thread(target=_health_loop, args=(driver,), name="hikkoshi-dataplane-health", daemon=True)
    t.start()


def _health_loop(driver):
    updater = heartbeat_udp.UpdateHealthDb()
    seq = 0
    last_reconcile = 0.0
    while True:
        time.sleep(HEALTH_INTERVAL)
        try:
            if time.time() - last_reconcile > 5:
                _reconcile(driver)
                last_reconcile = time.time()
            for lb_id in _lb_dirs():
                h = Haproxy(lb_id)
                meta = h.read_meta()
                if not h.running() or not meta.get("amphora_id"):
                    continue
                try:
                    q = haproxy_query.HAProxyQuery(h.sock)
                    stats = q.show_stat()
                    pools = q.get_pool_status()
                except Exception:  # noqa: BLE001 - reloading, or gone
                    continue
                seq += 1
                msg = {"id": meta["amphora_id"], "seq": seq, "listeners": {}, "pools": {}, "ver": 2,
                       "recv_time": time.time()}
                for row in stats:
                    if row["svname"] == "FRONTEND":
                        msg["listeners"][row["pxname"]] = {
                            "status": row["status"],
                            "stats": {"tx": int(row["bout"] or 0), "rx": int(row["bin"] or 0),
                                      "conns": int(row["scur"] or 0), "totconns": int(row["stot"] or 0),
                                      "ereq": int(row["ereq"] or 0)}}
                for name, pool in pools.items():
                    msg["pools"][name] = {"status": pool.get("status", "DOWN"), "members": pool["members"]}
                updater.update_health(msg, "127.0.0.1")
        except Exception:  # noqa: BLE001 - keep beating
            LOG.exception("data plane heartbeat")


def _lb_dirs():
    b = base_path()
    return [d for d in os.listdir(b) if os.path.isdir(os.path.join(b, d)) and d != "certs"]


def _reconcile(driver):
    """Stops the haproxy of a load balancer that is gone; starts the one of an ACTIVE
    load balancer whose haproxy is not running (the namespace was made anew)."""
    session = db_apis.get_session()
    lb_repo = repo.LoadBalancerRepository()
    live = {}
    for lb in lb_repo.get_all(session)[0]:
        if lb.provisioning_status != consts.DELETED:
            live[lb.id] = lb
    for lb_id in _lb_dirs():
        if lb_id not in live:
            with lb_lock(lb_id), dp.locked("lb-" + lb_id):
                Haproxy(lb_id).remove()
            LOG.info("data plane: load balancer %s is gone; its haproxy stopped", lb_id)
    for lb_id, lb in live.items():
        if lb.provisioning_status != consts.ACTIVE or not lb.listeners:
            continue
        if Haproxy(lb_id).running():
            continue
        try:
            for amp in lb.amphorae:
                driver.apply(lb, amp)
        except Exception:  # noqa: BLE001
            LOG.exception("data plane: could not start the haproxy of %s", lb_id)


# ------------------------------------------------------------------ VIPs


class VipNetworkDriver(noop_net.NoopNetworkDriver):
    """The no-op network driver with VIP ports made in Neutron."""

    def _neutron(self):
        # Neutron is shared by both regions here: its endpoint is the same in each.
        return clients.NeutronAuth.get_neutron_client(
            region=CONF.neutron.region_name,
            service_name=CONF.neutron.service_name, endpoint=CONF.neutron.endpoint,
            endpoint_type=CONF.neutron.endpoint_type, insecure=CONF.neutron.insecure,
            ca_cert=CONF.neutron.ca_certificates_file)

    def allocate_vip(self, loadbalancer):
        nc = self._neutron()
        vip = loadbalancer.vip
        name = "octavia-lb-" + loadbalancer.id
        try:
            if vip.port_id:
                port = nc.show_port(vip.port_id)["port"]
            else:
                found = nc.list_ports(name=name)["ports"]
                if found:
                    port = found[0]
                else:
                    if not vip.subnet_id and not vip.network_id:
                        raise network_base.AllocateVIPException("a VIP needs a subnet or a network")
                    network_id = vip.network_id
                    if vip.subnet_id:
                        network_id = nc.show_subnet(vip.subnet_id)["subnet"]["network_id"]
                    body = {"name": name, "network_id": network_id, "admin_state_up": False,
                            "device_id": "lb-" + loadbalancer.id, "device_owner": "Octavia",
                            "project_id": loadbalancer.project_id}
                    port = self._create_port(nc, body, vip)
        except network_base.AllocateVIPException:
            raise
        except Exception as e:  # noqa: BLE001 - Neutron's refusal, passed on as the AAP driver does
            raise network_base.AllocateVIPException(
                "Error creating neutron port for the VIP: %s" % e,
                orig_msg=getattr(e, "message", str(e)), orig_code=getattr(e, "status_code", None))
        ip = port["fixed_ips"][0]
        LOG.info("data plane: VIP %s (port %s) for load balancer %s", ip["ip_address"], port["id"],
                 loadbalancer.id)
        return data_models.Vip(ip_address=ip["ip_address"], subnet_id=ip["subnet_id"],
                               network_id=port["network_id"], port_id=port["id"],
                               load_balancer_id=loadbalancer.id,
                               octavia_owned=port.get("device_owner") == "Octavia"), []

    @staticmethod
    def _create_port(nc, body, vip):
        """Creates the VIP port. An address asked for is kept; otherwise the VIP takes
        the highest free address of the subnet's allocation pools, where Neutron would
        pick one at random: the dev cloud's tests and demo hand-pick low addresses for
        their servers, and a VIP that took one of them would fail a test by chance."""
        if vip.ip_address or not vip.subnet_id:
            fixed = {}
            if vip.subnet_id:
                fixed["subnet_id"] = vip.subnet_id
            if vip.ip_address:
                fixed["ip_address"] = vip.ip_address
            if fixed:
                body["fixed_ips"] = [fixed]
            return nc.create_port({"port": body})["port"]
        subnet = nc.show_subnet(vip.subnet_id)["subnet"]
        used = set()
        for p in nc.list_ports(network_id=body["network_id"])["ports"]:
            used.update(ip["ip_address"] for ip in p["fixed_ips"] if ip["subnet_id"] == vip.subnet_id)
        candidates = []
        for pool in reversed(subnet.get("allocation_pools") or []):
            a, b = ipaddress.ip_address(pool["start"]), ipaddress.ip_address(pool["end"])
            while b >= a and len(candidates) < 8:
                if str(b) not in used:
                    candidates.append(str(b))
                b -= 1
        last = None
        for ip in candidates:
            body["fixed_ips"] = [{"subnet_id": vip.subnet_id, "ip_address": ip}]
            try:
                return nc.create_port({"port": body})["port"]
            except neutron_exceptions.Conflict as e:  # taken since the list: the next one
                last = e
        if last is not None:
            raise last
        body["fixed_ips"] = [{"subnet_id": vip.subnet_id}]  # let Neutron say the subnet is full
        return nc.create_port({"port": body})["port"]

    def deallocate_vip(self, vip):
        super().deallocate_vip(vip)
        # The VIP leaves with its amphora: the load balancer's haproxy stops now, so the
        # address is free for the next load balancer Neutron gives it to.
        if vip.load_balancer_id:
            with lb_lock(vip.load_balancer_id), dp.locked("lb-" + vip.load_balancer_id):
                Haproxy(vip.load_balancer_id).remove()
        if not vip.port_id:
            return
        nc = self._neutron()
        try:
            port = nc.show_port(vip.port_id)["port"]
        except neutron_exceptions.NotFound:
            return
        if port.get("device_owner") == "Octavia":
            try:
                nc.delete_port(vip.port_id)
            except neutron_exceptions.NotFound:
                pass
        else:
            LOG.info("Port %s will not be deleted by Octavia as it was not created by Octavia.", vip.port_id)
