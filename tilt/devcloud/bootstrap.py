#!/usr/bin/python3
"""bootstrap.py registers the dev cloud's catalog and seeds it, from one process.

Phases (each idempotent: what exists is found and kept):
  catalog       regions, service users, services and endpoints, the two clouds'
                projects and users, and clouds.yaml (entries old, new, admin, old-admin, new-admin)
  wait-compute  wait until a region's nova-compute (on --host, if given) has registered
  tcg-zone      the host aggregate "tcg" (availability zone "tcg") in each region,
                holding its libvirt/qemu-TCG compute: tcg-libvirt (old) and
                tcg-libvirt-new (new)
  seed          flavors and volume types in both regions, a small raw image with real
                bytes in the old cloud, a VLAN provider network with a subnet and two
                allocation pools in the old project, and an external network

Run with Debian's /usr/bin/python3 (openstacksdk from python3-openstackclient).
Passwords come from STATE/secrets.env and are written only to clouds.yaml (mode 600).
"""
import argparse
import hashlib
import os
import sys
import time

import openstack

AUTH_URL = "http://127.0.0.1:5000/v3"
REGIONS = {"old": "RegionOld", "new": "RegionNew"}
PORTS = {
    "old": {"image": 9292, "placement": 8778, "compute": 8774, "volumev3": 8776},
    "new": {"image": 9293, "placement": 8779, "compute": 8775, "volumev3": 8777},
}
SHARED = {"network": ("neutron", "http://127.0.0.1:9696"), "load-balancer": ("octavia", "http://127.0.0.1:9876")}
PER_REGION = {"image": "glance", "placement": "placement", "compute": "nova", "volumev3": "cinderv3"}
SERVICE_USERS = ["glance", "placement", "nova", "neutron", "octavia", "cinder"]
# Volume types per region (all on the file backend): the old cloud's "legacy-ssd" has
# no namesake in the new one, as happens between two clouds built years apart.
VOLUME_TYPES = {"old": ["standard", "legacy-ssd"], "new": ["standard", "ssd"]}
PROJECTS = {"old": "hikkoshi-old", "new": "hikkoshi-new"}
USERS = {"old": "old-operator", "new": "new-operator"}
MEMBER_ROLES = ["member", "load-balancer_member"]

SEED_IMAGE = "hikkoshi-seed-raw"
SEED_IMAGE_MIB = 8


def log(msg):
    print("[bootstrap] %s" % msg, flush=True)


def secrets(state):
    out = {}
    with open(os.path.join(state, "secrets.env")) as f:
        for line in f:
            k, _, v = line.strip().partition("=")
            out[k] = v
    return out


def connect(sec, project="admin", user="admin", password=None, region="RegionOld"):
    return openstack.connect(
        auth_url=AUTH_URL, project_name=project, username=user,
        password=password or sec["ADMIN_PASSWORD"], user_domain_name="Default",
        project_domain_name="Default", region_name=region, identity_api_version="3",
        app_name="hikkoshi-devcloud")


def ensure_role(idc, name):
    return idc.find_role(name) or idc.create_role(name=name)


def ensure_endpoints(idc, service, region, url):
    have = {(e.interface) for e in idc.endpoints(service_id=service.id, region_id=region)}
    for iface in ("public", "internal", "admin"):
        if iface not in have:
            idc.create_endpoint(service_id=service.id, interface=iface, url=url, region_id=region)


def phase_catalog(state, sec):
    conn = connect(sec)
    idc = conn.identity
    default = idc.find_domain("Default")
    for region in REGIONS.values():
        if not idc.find_region(region):
            idc.create_region(id=region)
    keystone = idc.find_service("keystone")
    ensure_endpoints(idc, keystone, "RegionNew", AUTH_URL)

    service_project = idc.find_project("service", domain_id=default.id) or idc.create_project(
        name="service", domain_id=default.id, description="OpenStack service users")
    admin_role = ensure_role(idc, "admin")
    service_role = ensure_role(idc, "service")
    for r in MEMBER_ROLES + ["load-balancer_admin", "load-balancer_observer", "load-balancer_global_observer", "reader"]:
        ensure_role(idc, r)
    for name in SERVICE_USERS:
        user = idc.find_user(name, domain_id=default.id)
        if user is None:
            user = idc.create_user(name=name, password=sec["SERVICE_PASSWORD"], domain_id=default.id)
        else:
            idc.update_user(user, password=sec["SERVICE_PASSWORD"])
        for role in (admin_role, service_role):
            idc.assign_project_role_to_user(service_project, user, role)

    for stype, sname in PER_REGION.items():
        svc = idc.find_service(sname) or idc.create_service(name=sname, type=stype)
        for cloud, region in REGIONS.items():
            port = PORTS[cloud][stype]
            url = "http://127.0.0.1:%d" % port + {"compute": "/v2.1", "volumev3": "/v3/$(project_id)s"}.get(stype, "")
            ensure_endpoints(idc, svc, region, url)
    for stype, (sname, url) in SHARED.items():
        svc = idc.find_service(sname) or idc.create_service(name=sname, type=stype)
        for region in REGIONS.values():
            ensure_endpoints(idc, svc, region, url)

    admin_user = idc.find_user("admin", domain_id=default.id)
    admin_project = idc.find_project("admin", domain_id=default.id)
    lb_admin = idc.find_role("load-balancer_admin")
    idc.assign_project_role_to_user(admin_project, admin_user, lb_admin)
    for cloud, pname in PROJECTS.items():
        project = idc.find_project(pname, domain_id=default.id) or idc.create_project(
            name=pname, domain_id=default.id, description="the %s cloud's workloads" % cloud)
        uname = USERS[cloud]
        pw = sec["%s_PASSWORD" % cloud.upper()]
        user = idc.find_user(uname, domain_id=default.id)
        if user is None:
            user = idc.create_user(name=uname, password=pw, domain_id=default.id, default_project_id=project.id)
        else:
            idc.update_user(user, password=pw)
        for r in MEMBER_ROLES:
            idc.assign_project_role_to_user(project, user, idc.find_role(r))
        # The admin can act in both projects (creating provider networks, fixed IPs).
        idc.assign_project_role_to_user(project, admin_user, admin_role)
    write_clouds_yaml(state, sec)
    log("catalog registered: regions %s" % ", ".join(REGIONS.values()))


def write_clouds_yaml(state, sec):
    entries = {
        "old": (PROJECTS["old"], USERS["old"], sec["OLD_PASSWORD"], REGIONS["old"]),
        "new": (PROJECTS["new"], USERS["new"], sec["NEW_PASSWORD"], REGIONS["new"]),
        "admin": ("admin", "admin", sec["ADMIN_PASSWORD"], REGIONS["old"]),
        # The admin scoped to each cloud's project: what netbridge needs (provider
        # networks, fixed IPs, other projects' ports), as an SRE's credentials would.
        "old-admin": (PROJECTS["old"], "admin", sec["ADMIN_PASSWORD"], REGIONS["old"]),
        "new-admin": (PROJECTS["new"], "admin", sec["ADMIN_PASSWORD"], REGIONS["new"]),
    }
    lines = ["# Written by tilt/devcloud/bootstrap.py. Holds passwords: keep it private.", "clouds:"]
    for name, (project, user, pw, region) in entries.items():
        lines += [
            "  %s:" % name,
            "    auth:",
            "      auth_url: %s" % AUTH_URL,
            "      username: %s" % user,
            "      password: %s" % pw,
            "      project_name: %s" % project,
            "      user_domain_name: Default",
            "      project_domain_name: Default",
            "    region_name: %s" % region,
            "    interface: public",
            "    identity_api_version: 3",
        ]
    path = os.path.join(state, "clouds.yaml")
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(path + ".tmp", path)


def phase_wait_compute(sec, region, host=None):
    conn = connect(sec, region=region)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            up = [s for s in conn.compute.services() if s.binary == "nova-compute" and s.state == "up"
                  and host in (None, s.host)]
            if up:
                log("%s: nova-compute up on %s" % (region, up[0].host))
                return
        except Exception as e:  # the API may still be warming up
            log("%s: waiting for nova-compute (%s)" % (region, type(e).__name__))
        time.sleep(2)
    sys.exit("%s: nova-compute did not register within 180s" % region)


def seed_image_file(state):
    """A raw disk image with real, reproducible bytes: made here, not downloaded."""
    path = os.path.join(state, "lib", "%s.img" % SEED_IMAGE)
    if os.path.exists(path) and os.path.getsize(path) == SEED_IMAGE_MIB << 20:
        return path
    block = hashlib.sha256(b"hikkoshi devcloud seed image").digest()
    with open(path + ".tmp", "wb") as f:
        for i in range((SEED_IMAGE_MIB << 20) // 4096):
            chunk = hashlib.sha256(block + i.to_bytes(8, "big")).digest()
            f.write((b"HIKKOSHI" + i.to_bytes(8, "big") + chunk) * (4096 // 48) + b"\0" * (4096 % 48))
    os.replace(path + ".tmp", path)
    return path


def phase_seed(state, sec):
    admin = connect(sec)
    for cloud, region in REGIONS.items():
        c = connect(sec, region=region)
        for name, ram, vcpus, disk in (("m1.tiny", 512, 1, 1), ("m1.small", 2048, 1, 20), ("m1.medium", 4096, 2, 40)):
            if not c.compute.find_flavor(name, ignore_missing=True):
                c.compute.create_flavor(name=name, ram=ram, vcpus=vcpus, disk=disk, is_public=True)

    for cloud, region in REGIONS.items():
        seed_volume_types(connect(sec, region=region), cloud, region)

    old = connect(sec, PROJECTS["old"], USERS["old"], sec["OLD_PASSWORD"], REGIONS["old"])
    if not old.image.find_image(SEED_IMAGE, ignore_missing=True):
        path = seed_image_file(state)
        old.image.create_image(name=SEED_IMAGE, filename=path, disk_format="raw", container_format="bare",
                               visibility="private", wait=True, validate_checksum=True, use_import=False,
                               min_disk=1, os_distro="hikkoshi-seed")
        log("image %s uploaded to the old Glance (%d MiB)" % (SEED_IMAGE, SEED_IMAGE_MIB))

    old_project = admin.identity.find_project(PROJECTS["old"])
    net = admin.network.find_network("old-vlan-101")
    if net is None:
        net = admin.network.create_network(
            name="old-vlan-101", project_id=old_project.id, provider_network_type="vlan",
            provider_physical_network="physnet1", provider_segmentation_id=101,
            description="the old cloud's project VLAN")
    if not admin.network.find_subnet("old-vlan-101-v4"):
        admin.network.create_subnet(
            name="old-vlan-101-v4", network_id=net.id, project_id=old_project.id, ip_version=4,
            cidr="10.101.0.0/24", gateway_ip="10.101.0.1", enable_dhcp=True,
            allocation_pools=[{"start": "10.101.0.10", "end": "10.101.0.99"},
                              {"start": "10.101.0.150", "end": "10.101.0.199"}])
    ext = admin.network.find_network("ext-net")
    if ext is None:
        ext = admin.network.create_network(
            name="ext-net", is_router_external=True, provider_network_type="flat",
            provider_physical_network="physnet2", description="external network (no traffic leaves this machine)")
    if not admin.network.find_subnet("ext-net-v4"):
        admin.network.create_subnet(
            name="ext-net-v4", network_id=ext.id, ip_version=4, cidr="198.51.100.0/24",
            gateway_ip="198.51.100.1", enable_dhcp=False,
            allocation_pools=[{"start": "198.51.100.10", "end": "198.51.100.200"}])
    log("seeded: flavors in both regions, image in old, networks old-vlan-101 and ext-net")


def seed_volume_types(c, cloud, region):
    """The region's volume types, once its cinder-volume reports its pool (a volume
    asked for before that fails in the scheduler: no valid backend)."""
    deadline = time.time() + 180
    while True:
        try:
            pools = list(c.block_storage.backend_pools())
        except Exception as e:  # the API may still be warming up
            pools = []
            log("%s: waiting for cinder-volume (%s)" % (region, type(e).__name__))
        if pools:
            break
        if time.time() > deadline:
            sys.exit("%s: cinder-volume did not report a pool within 180s" % region)
        time.sleep(2)
    for name in VOLUME_TYPES[cloud]:
        t = c.block_storage.find_type(name, ignore_missing=True)
        if t is None:
            c.block_storage.create_type(name=name, is_public=True,
                                        extra_specs={"volume_backend_name": "file"})
    log("%s: cinder-volume up (pool %s), volume types %s" % (region, pools[0].name, ", ".join(VOLUME_TYPES[cloud])))


TCG_HOSTS = {"RegionOld": "tcg-libvirt", "RegionNew": "tcg-libvirt-new"}


def phase_tcg_zone(sec):
    """Aggregate "tcg" with availability zone "tcg" in each region: only a server that
    asks for the zone lands on the region's TCG compute (nova.conf's
    default_schedule_zone is "nova")."""
    for region, host in TCG_HOSTS.items():
        c = connect(sec, region=region)
        agg = next((a for a in c.compute.aggregates() if a.name == "tcg"), None)
        if agg is None:
            agg = c.compute.create_aggregate(name="tcg", availability_zone="tcg")
        if host not in (agg.hosts or []):
            c.compute.add_host_to_aggregate(agg, host)
        log("%s: availability zone tcg holds host %s" % (region, host))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--state", required=True)
    ap.add_argument("--phase", required=True, choices=["catalog", "wait-compute", "tcg-zone", "seed"])
    ap.add_argument("--region")
    ap.add_argument("--host")
    a = ap.parse_args()
    sec = secrets(a.state)
    if a.phase == "catalog":
        phase_catalog(a.state, sec)
    elif a.phase == "wait-compute":
        phase_wait_compute(sec, a.region, a.host)
    elif a.phase == "tcg-zone":
        phase_tcg_zone(sec)
    else:
        phase_seed(a.state, sec)


if __name__ == "__main__":
    main()
