package collect

import (
	"os"
	"path/filepath"
	"testing"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
)

// write creates files under root: path → content.
func write(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCollectCentOS6Layout reads a copy of what a CentOS 6 database server shows:
// /etc/redhat-release (no os-release), two partitions of sda (one mounted, one only
// in fstab by UUID), LVM-less swap, a loop device to skip, a NIC and loopback.
func TestCollectCentOS6Layout(t *testing.T) {
	root := t.TempDir()
	write(t, root, map[string]string{
		"proc/sys/kernel/hostname":  "db02.shop.example\n",
		"proc/sys/kernel/osrelease": "2.6.32-431.el6.x86_64\n",
		"proc/cpuinfo":              "processor\t: 0\nmodel name\t: Xeon\n\nprocessor\t: 1\nmodel name\t: Xeon\n",
		"proc/meminfo":              "MemTotal:       16330568 kB\nMemFree:  1 kB\n",
		"proc/self/mounts":          "rootfs / rootfs rw 0 0\n/dev/sda1 / ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\n",
		"etc/redhat-release":        "CentOS release 6.5 (Final)\n",
		"etc/fstab": "# /etc/fstab\nUUID=1111-aaaa /     ext4 defaults 1 1\nUUID=2222-bbbb /data xfs  noatime  1 2\n" +
			"UUID=3333-cccc swap swap defaults 0 0\nproc /proc proc defaults 0 0\n",
		"sys/block/sda/size":                   "419430400\n",
		"sys/block/sda/dev":                    "8:0\n",
		"sys/block/sda/device/model":           "PERC H710\n",
		"sys/block/sda/sda1/partition":         "1\n",
		"sys/block/sda/sda1/size":              "41943040\n",
		"sys/block/sda/sda1/dev":               "8:1\n",
		"sys/block/sda/sda2/partition":         "2\n",
		"sys/block/sda/sda2/size":              "377487360\n",
		"sys/block/sda/sda2/dev":               "8:2\n",
		"sys/block/loop0/size":                 "0\n",
		"run/udev/data/b8:1":                   "E:ID_FS_TYPE=ext4\nE:ID_FS_UUID=1111-aaaa\n",
		"run/udev/data/b8:2":                   "E:ID_FS_TYPE=xfs\nE:ID_FS_UUID=2222-bbbb\n",
		"sys/class/net/eth0/type":              "1\n",
		"sys/class/net/eth0/address":           "00:25:90:aa:bb:cc\n",
		"sys/class/net/eth0/mtu":               "9000\n",
		"sys/class/net/lo/type":                "772\n",
		"sys/class/net/lo/address":             "00:00:00:00:00:00\n",
		"sys/block/sda/sda1/holders/.keep":     "",
		"sys/block/sda/queue/logical_block_sz": "512\n",
	})
	f, err := Collect(root)
	if err != nil {
		t.Fatal(err)
	}
	if f.GetHostname() != "db02.shop.example" || f.GetOsRelease() != "CentOS release 6.5 (Final)" || f.GetKernel() != "2.6.32-431.el6.x86_64" ||
		f.GetCpus() != 2 || f.GetMemoryBytes() != 16330568*1024 {
		t.Fatalf("system facts %v", f)
	}
	if len(f.GetNics()) != 1 || f.GetNics()[0].GetMacAddress() != "00:25:90:aa:bb:cc" || f.GetNics()[0].GetMtu() != 9000 {
		t.Fatalf("nics %v", f.GetNics())
	}
	if len(f.GetDisks()) != 1 {
		t.Fatalf("disks %v: want sda only (loop0 skipped)", f.GetDisks())
	}
	d := f.GetDisks()[0]
	if d.GetDevice() != "/dev/sda" || d.GetSizeBytes() != 419430400*512 || d.GetModel() != "PERC H710" || len(d.GetPartitions()) != 2 {
		t.Fatalf("disk %v", d)
	}
	p1, p2 := d.GetPartitions()[0], d.GetPartitions()[1]
	if p1.GetDevice() != "/dev/sda1" || p1.GetFilesystem() != "ext4" || p1.GetUuid() != "1111-aaaa" || p1.GetMountPoint() != "/" {
		t.Fatalf("sda1 %v", p1)
	}
	if p2.GetFilesystem() != "xfs" || p2.GetMountPoint() != "/data" || p2.GetSizeBytes() != 377487360*512 {
		t.Fatalf("sda2 %v: want xfs on /data from fstab", p2)
	}
	if f.GetGuestCloudInit() != inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_ABSENT {
		t.Fatalf("cloud-init %v on a server without it", f.GetGuestCloudInit())
	}
	write(t, root, map[string]string{
		"usr/bin/cloud-init": "#!/usr/bin/python3\n",
		"usr/lib/python3/dist-packages/cloudinit/version.py": "# This file is part of cloud-init.\n__VERSION__ = \"22.4.2\"\n_PACKAGED_VERSION = \"@@PACKAGED_VERSION@@\"\n",
	})
	if f, err = Collect(root); err != nil || f.GetGuestCloudInit() != inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_PRESENT || f.GetCloudInitVersion() != "22.4.2" {
		t.Fatalf("cloud-init installed: %v %q (%v)", f.GetGuestCloudInit(), f.GetCloudInitVersion(), err)
	}
	if len(f.GetFstab()) != 4 || f.GetFstab()[1].GetOptions() != "noatime" {
		t.Fatalf("fstab %v", f.GetFstab())
	}
}
