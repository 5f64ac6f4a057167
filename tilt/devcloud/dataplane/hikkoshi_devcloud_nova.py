"""A Nova compute driver for the dev cloud: the fake driver, with a disk and a guest
that answers. Test infrastructure (tilt/devcloud), not product code.

compute_driver = hikkoshi_devcloud_nova.DiskFakeDriver

- Disk. spawn downloads the boot image's bytes from the region's Glance into the
  instance directory (CONF.instances_path/<uuid>/disk), as a hypervisor's image cache
  would. A raw disk without a marker gets one: a 4 KiB block appended at its end,
  "HIKKOSHI-DEVCLOUD-DISK" and the server's ID and name — what the guest "wrote".
  A disk booted from a snapshot that has a marker keeps it: a moved server carries
  the marker of the server it was. snapshot uploads the disk's bytes to the region's
  Glance the way the libvirt driver's standard snapshot does (IMAGE_PENDING_UPLOAD,
  IMAGE_UPLOADING, then image_api.update with the data).
- Guest. While a server is RUNNING, a stand-in (standin.py) answers on its fixed IPv4
  addresses inside the data plane's namespace (hikkoshi_dataplane). It is started
  before spawn and power_on return — so ACTIVE means answering — and stopped before
  power_off and destroy return. Server metadata sets what it serves:
  hikkoshi_http_ports (default "80,8080"), hikkoshi_tcp_ports, and
  hikkoshi_proxy_protocol = required (refuse a connection without a PROXY header, as
  nginx's proxy_protocol does) or optional (default).
- Memory. The fake driver forgets its instances when nova-compute restarts; this one
  keeps each instance's power state in its directory and finds it again at
  init_host, and stand-ins run in sessions of their own, so a restart of
  nova-compute leaves the guests running, as libvirt's do.
"""
import json
import os
import shutil

from oslo_log import log as logging

from nova.compute import power_state
from nova.compute import task_states
import nova.conf
from nova import exception
from nova.image import glance
from nova.virt import fake

import hikkoshi_dataplane as dp

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

MARKER_MAGIC = b"HIKKOSHI-DEVCLOUD-DISK"
MARKER_SIZE = 4096


def marker_block(instance):
    text = "%s v1\nserver_id=%s\nname=%s\nproject_id=%s\nhost=%s\n" % (
        MARKER_MAGIC.decode(), instance.uuid, instance.display_name, instance.project_id, CONF.host)
    b = text.encode()
    return b + b"\0" * (MARKER_SIZE - len(b))


def has_marker(path):
    size = os.path.getsize(path)
    if size < MARKER_SIZE:
        return False
    with open(path, "rb") as f:
        f.seek(size - MARKER_SIZE)
        return f.read(len(MARKER_MAGIC)) == MARKER_MAGIC


class DiskFakeDriver(fake.FakeDriver):
    """The fake driver with disks that snapshot real bytes and guests that answer."""

    def __init__(self, virtapi, read_only=False):
        super().__init__(virtapi, read_only)
        self._image_api = glance.API()

    # ------------------------------------------------------------ bookkeeping

    def _dir(self, uuid):
        return os.path.join(CONF.instances_path, uuid)

    def _record(self, uuid):
        return os.path.join(self._dir(uuid), "hikkoshi.json")

    def _load(self, uuid):
        try:
            with open(self._record(uuid)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def _save(self, uuid, **kw):
        rec = self._load(uuid)
        rec.update(kw)
        os.makedirs(self._dir(uuid), exist_ok=True)
        with open(self._record(uuid) + ".tmp", "w") as f:
            json.dump(rec, f)
        os.replace(self._record(uuid) + ".tmp", self._record(uuid))

    def init_host(self, host):
        super().init_host(host)
        if not os.path.isdir(CONF.instances_path):
            return
        for uuid in os.listdir(CONF.instances_path):
            rec = self._load(uuid)
            if not rec.get("name"):
                continue
            state = power_state.RUNNING if rec.get("running") else power_state.SHUTDOWN
            self.instances[uuid] = fake.FakeInstance(rec["name"], state, uuid)
            if rec.get("running"):
                try:
                    self._start_guest(uuid, rec)
                except Exception:  # noqa: BLE001 - one guest must not stop the compute
                    LOG.exception("could not start the stand-in of %s again", uuid)
        LOG.info("found %d instances of an earlier run", len(self.instances))

    # ------------------------------------------------------------ the guest

    @staticmethod
    def _guest(instance, network_info):
        ips = []
        for vif in network_info or []:
            for ip in vif.fixed_ips():
                if ip["version"] == 4 and ip["address"] not in ips:
                    ips.append(ip["address"])
        md = instance.metadata or {}
        proxy = md.get("hikkoshi_proxy_protocol", "optional")
        if proxy not in ("optional", "required"):
            proxy = "optional"
        return {"name": instance.display_name, "ips": ips,
                "http": md.get("hikkoshi_http_ports", "80,8080"),
                "tcp": md.get("hikkoshi_tcp_ports", ""), "proxy": proxy}

    def _start_guest(self, uuid, rec):
        d = dp.state_dir()
        os.makedirs(os.path.join(d, "standin"), exist_ok=True)
        pidfile = dp.owner_pidfile("server:" + uuid)
        if dp.pid_alive(pidfile):
            return
        if not rec.get("ips"):
            return  # no port: nothing to answer on
        owner = "server:" + uuid
        dp.claim_addresses(owner, rec["ips"], dp.owner_alive)
        args = [dp.PY, os.path.join(dp.HERE, "standin.py"), "--name", rec["name"], "--id", uuid,
                "--http", rec["http"], "--tcp", rec["tcp"], "--proxy", rec["proxy"]]
        for ip in rec["ips"]:
            args += ["--addr", ip]
        dp.spawn(args, pidfile, os.path.join(d, "standin", uuid + ".log"))
        port = int((rec["http"] or rec["tcp"]).split(",")[0])
        if not dp.wait_listening(rec["ips"][0], port):
            self._stop_guest(uuid)
            raise exception.NovaException("the stand-in of %s did not listen on %s:%d (log: %s)" % (
                uuid, rec["ips"][0], port, os.path.join(d, "standin", uuid + ".log")))
        LOG.info("stand-in of %s answers on %s", uuid, ", ".join(rec["ips"]))

    def _stop_guest(self, uuid):
        dp.kill(dp.owner_pidfile("server:" + uuid))
        dp.release_addresses("server:" + uuid)

    def _run_guest(self, instance, network_info):
        rec = self._guest(instance, network_info)
        self._save(instance.uuid, running=True, **rec)
        try:
            self._start_guest(instance.uuid, self._load(instance.uuid))
        except dp.AddressTaken as e:
            self._save(instance.uuid, running=False)
            raise exception.NovaException("data plane: %s" % e)

    # ------------------------------------------------------------ the disk

    def _make_disk(self, context, instance):
        if not instance.image_ref:
            return  # booted from a volume: no local disk
        path = os.path.join(self._dir(instance.uuid), "disk")
        os.makedirs(self._dir(instance.uuid), exist_ok=True)
        self._image_api.download(context, instance.image_ref, dest_path=path + ".part")
        fmt = instance.image_meta.disk_format if instance.image_meta.obj_attr_is_set("disk_format") else "raw"
        if fmt == "raw" and not has_marker(path + ".part"):
            with open(path + ".part", "ab") as f:
                f.write(marker_block(instance))
        os.replace(path + ".part", path)
        self._save(instance.uuid, disk_format=fmt)

    # ------------------------------------------------------------ driver API

    def spawn(self, context, instance, image_meta, injected_files, admin_password, allocations,
              network_info=None, block_device_info=None, power_on=True, accel_info=None):
        super().spawn(context, instance, image_meta, injected_files, admin_password, allocations,
                      network_info, block_device_info, power_on, accel_info)
        self._save(instance.uuid, name=instance.display_name, running=False)
        self._make_disk(context, instance)
        if power_on:
            self._run_guest(instance, network_info)

    def power_off(self, instance, timeout=0, retry_interval=0):
        super().power_off(instance, timeout, retry_interval)
        self._stop_guest(instance.uuid)
        self._save(instance.uuid, running=False)

    def power_on(self, context, instance, network_info, block_device_info=None, accel_info=None):
        super().power_on(context, instance, network_info, block_device_info, accel_info)
        self._run_guest(instance, network_info)

    def reboot(self, context, instance, network_info, reboot_type, block_device_info=None,
               bad_volumes_callback=None, accel_info=None):
        if instance.uuid in self.instances:
            self._stop_guest(instance.uuid)
        super().reboot(context, instance, network_info, reboot_type, block_device_info,
                       bad_volumes_callback, accel_info)
        if instance.uuid in self.instances:
            self._run_guest(instance, network_info)

    def destroy(self, context, instance, network_info, block_device_info=None, destroy_disks=True,
                destroy_secrets=True):
        self._stop_guest(instance.uuid)
        super().destroy(context, instance, network_info, block_device_info, destroy_disks, destroy_secrets)
        if destroy_disks:
            shutil.rmtree(self._dir(instance.uuid), ignore_errors=True)
        else:
            self._save(instance.uuid, running=False)

    def attach_interface(self, context, instance, image_meta, vif):
        super().attach_interface(context, instance, image_meta, vif)
        self._rewire(instance, add=vif)

    def detach_interface(self, context, instance, vif):
        super().detach_interface(context, instance, vif)
        self._rewire(instance, remove=vif)

    def _rewire(self, instance, add=None, remove=None):
        rec = self._load(instance.uuid)
        ips = list(rec.get("ips", []))
        for ip in (add.fixed_ips() if add else []):
            if ip["version"] == 4 and ip["address"] not in ips:
                ips.append(ip["address"])
        for ip in (remove.fixed_ips() if remove else []):
            if ip["address"] in ips:
                ips.remove(ip["address"])
        self._save(instance.uuid, ips=ips)
        if rec.get("running"):
            self._stop_guest(instance.uuid)
            self._start_guest(instance.uuid, self._load(instance.uuid))

    def snapshot(self, context, instance, image_id, update_task_state):
        if instance.uuid not in self.instances:
            raise exception.InstanceNotRunning(instance_id=instance.uuid)
        path = os.path.join(self._dir(instance.uuid), "disk")
        if not os.path.exists(path):
            raise exception.ImageUnacceptable(image_id=image_id, reason="the server has no local disk")
        snap = self._image_api.get(context, image_id)
        rec = self._load(instance.uuid)
        metadata = {
            "status": "active",
            "name": snap["name"],
            "disk_format": rec.get("disk_format", "raw"),
            "container_format": "bare",
            "properties": {"image_location": "snapshot", "image_state": "available",
                           "owner_id": instance.project_id},
        }
        update_task_state(task_state=task_states.IMAGE_PENDING_UPLOAD)
        update_task_state(task_state=task_states.IMAGE_UPLOADING,
                          expected_state=task_states.IMAGE_PENDING_UPLOAD)
        with open(path, "rb") as f:
            self._image_api.update(context, image_id, metadata, f, purge_props=False)
        LOG.info("snapshot %s of %s uploaded (%d bytes)", image_id, instance.uuid, os.path.getsize(path))
