"""A Cinder volume driver for the dev cloud: every volume a sparse file. Test
infrastructure (tilt/devcloud), not product code.

  [file]
  volume_driver = hikkoshi_devcloud_cinder.FileVolumeDriver
  volume_backend_name = file
  hikkoshi_volumes_dir = <the dev cloud's state>/lib/cinder-<region>/volumes

This machine has no device-mapper and no kernel NFS, so neither the LVM nor the NFS
driver can work here. This driver keeps what a storage backend keeps, in files:

- A volume is <dir>/volume-<id>, a sparse file of the volume's size: create, delete,
  extend (grow the file), clone (a sparse copy), snapshots (<dir>/snapshots/
  snapshot-<id>, a sparse copy taken when asked; a volume made from one is a copy of
  it), revert to a snapshot.
- Image to volume and volume to image move real bytes through the region's Glance with
  Cinder's own image_utils (qemu-img converts a qcow2 image to raw, as for any raw
  backend): a volume made from an image holds exactly the image's bytes, and an image
  uploaded from a volume holds exactly the volume's.
- Attaching answers the connection info of a shared file system whose volumes are
  files (driver_volume_type "gpfs", data.device_path = the file), which both the fake
  Nova and the libvirt driver's GPFS volume driver (a <disk type='file'>) accept on
  this one host.
"""
import os
import subprocess

from oslo_config import cfg
from oslo_log import log as logging

from cinder import exception
from cinder.image import image_utils
from cinder import interface
from cinder.volume import configuration
from cinder.volume import driver
from cinder.volume import volume_utils

LOG = logging.getLogger(__name__)

file_opts = [
    cfg.StrOpt("hikkoshi_volumes_dir",
               help="Where the dev cloud's file driver keeps its volumes and snapshots."),
]
CONF = cfg.CONF
CONF.register_opts(file_opts, group=configuration.SHARED_CONF_GROUP)

GIB = 1 << 30


@interface.volumedriver
class FileVolumeDriver(driver.VolumeDriver):
    """Volumes as sparse files on the cinder-volume host."""

    VERSION = "1.0.0"
    CI_WIKI_NAME = "hikkoshi-devcloud"  # not a vendor driver: the dev cloud's own

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.configuration.append_config_values(file_opts)
        self.backend_name = self.configuration.safe_get("volume_backend_name") or "file"
        self.protocol = "file"
        self._dir = None

    # ------------------------------------------------------------ setup

    def do_setup(self, context):
        self._dir = self.configuration.hikkoshi_volumes_dir
        if not self._dir:
            raise exception.InvalidConfigurationValue(option="hikkoshi_volumes_dir", value=self._dir)
        os.makedirs(os.path.join(self._dir, "snapshots"), exist_ok=True)

    def check_for_setup_error(self):
        if not os.access(self._dir, os.W_OK):
            raise exception.VolumeBackendAPIException(data="%s is not writable" % self._dir)

    # ------------------------------------------------------------ paths and bytes

    def local_path(self, volume):
        return os.path.join(self._dir, "volume-%s" % volume.id)

    def _snapshot_path(self, snapshot):
        return os.path.join(self._dir, "snapshots", "snapshot-%s" % snapshot.id)

    @staticmethod
    def _grow(path, size_gb):
        """Grow (never shrink) path to size_gb GiB, sparse."""
        want = int(size_gb) * GIB
        if os.path.getsize(path) < want:
            os.truncate(path, want)

    @staticmethod
    def _copy(src, dst):
        """A sparse copy of src at dst, whole or not at all."""
        if not os.path.exists(src):
            raise exception.VolumeBackendAPIException(data="%s does not exist" % src)
        part = dst + ".part"
        subprocess.run(["cp", "--sparse=always", "--", src, part], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.replace(part, dst)

    @staticmethod
    def _remove(path):
        for p in (path, path + ".part"):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass

    # ------------------------------------------------------------ volumes

    def create_volume(self, volume):
        path = self.local_path(volume)
        with open(path + ".part", "wb"):
            pass
        os.truncate(path + ".part", int(volume.size) * GIB)
        os.replace(path + ".part", path)
        LOG.info("volume %s: %d GiB at %s", volume.id, volume.size, path)
        return None

    def delete_volume(self, volume):
        self._remove(self.local_path(volume))

    def extend_volume(self, volume, new_size):
        self._grow(self.local_path(volume), new_size)

    def create_cloned_volume(self, volume, src_vref):
        path = self.local_path(volume)
        self._copy(self.local_path(src_vref), path)
        self._grow(path, volume.size)

    def create_snapshot(self, snapshot):
        self._copy(self.local_path(snapshot.volume), self._snapshot_path(snapshot))

    def delete_snapshot(self, snapshot):
        self._remove(self._snapshot_path(snapshot))

    def create_volume_from_snapshot(self, volume, snapshot):
        path = self.local_path(volume)
        self._copy(self._snapshot_path(snapshot), path)
        self._grow(path, volume.size)

    def revert_to_snapshot(self, context, volume, snapshot):
        path = self.local_path(volume)
        self._copy(self._snapshot_path(snapshot), path)
        self._grow(path, volume.size)

    # ------------------------------------------------------------ images

    def copy_image_to_volume(self, context, volume, image_service, image_id):
        path = self.local_path(volume)
        image_utils.fetch_to_raw(context, image_service, image_id, path,
                                 self.configuration.volume_dd_blocksize,
                                 size=volume.size, run_as_root=False)
        # qemu-img wrote the image's virtual size: the volume keeps its own.
        self._grow(path, volume.size)

    def copy_volume_to_image(self, context, volume, image_service, image_meta):
        volume_utils.upload_volume(context, image_service, image_meta, self.local_path(volume),
                                   volume, run_as_root=False)

    # ------------------------------------------------------------ attachments

    def initialize_connection(self, volume, connector, **kwargs):
        return {
            "driver_volume_type": "gpfs",
            "data": {"name": volume.name, "device_path": self.local_path(volume),
                     "access_mode": "rw", "volume_id": volume.id},
        }

    def terminate_connection(self, volume, connector, **kwargs):
        pass

    def create_export(self, context, volume, connector):
        return None

    def ensure_export(self, context, volume):
        return None

    def remove_export(self, context, volume):
        pass

    # ------------------------------------------------------------ stats

    def _update_volume_stats(self):
        st = os.statvfs(self._dir)
        total = st.f_blocks * st.f_frsize / GIB
        free = st.f_bavail * st.f_frsize / GIB
        provisioned = 0
        for name in os.listdir(self._dir):
            if name.startswith("volume-") and not name.endswith(".part"):
                provisioned += os.path.getsize(os.path.join(self._dir, name))
        self._stats = {
            "volume_backend_name": self.backend_name,
            "vendor_name": "hikkoshi dev cloud",
            "driver_version": self.VERSION,
            "storage_protocol": self.protocol,
            "total_capacity_gb": round(total, 2),
            "free_capacity_gb": round(free, 2),
            "provisioned_capacity_gb": round(provisioned / GIB, 2),
            "reserved_percentage": 0,
            "thin_provisioning_support": True,
            "thick_provisioning_support": False,
            "max_over_subscription_ratio": 20.0,
            "sparse_copy_volume": True,
            "QoS_support": False,
            "multiattach": False,
        }
