// Package collect reads a physical server's facts on the server itself — host name,
// OS release, kernel, CPUs, memory, network interfaces, disks with partitions, file
// systems and mount points, /etc/fstab, and whether cloud-init is installed — from
// /proc, /sys, /run/udev/data, /etc and /usr. It only reads: it runs no command and
// changes nothing on the host.
package collect

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
)

// Collect reads the facts of the system whose root file system is at root ("/" for
// this one; another path reads a copy, as the tests do). Network addresses are read
// from the kernel only for root "/".
func Collect(root string) (*inventoryv1.PhysicalFacts, error) {
	c := collector{root: root}
	f := &inventoryv1.PhysicalFacts{CollectTime: timestamppb.Now()}
	f.Hostname = c.hostname()
	f.OsRelease = c.osRelease()
	f.Kernel = strings.TrimSpace(c.read("proc/sys/kernel/osrelease"))
	f.Cpus = int32(strings.Count(c.read("proc/cpuinfo"), "\nprocessor") + boolInt(strings.HasPrefix(c.read("proc/cpuinfo"), "processor")))
	f.MemoryBytes = c.memTotal()
	var err error
	if f.Nics, err = c.nics(); err != nil {
		return nil, err
	}
	f.Fstab = c.fstab()
	if f.Disks, err = c.disks(f.Fstab); err != nil {
		return nil, err
	}
	f.GuestCloudInit, f.CloudInitVersion = c.cloudInit()
	return f, nil
}

var cloudInitVersion = regexp.MustCompile(`(?m)^__VERSION__ = "([0-9A-Za-z.+~-]{1,32})"`)

// cloudInit reports whether cloud-init is installed, and its version from its
// Python package (what `cloud-init --version` prints, without running it).
func (c collector) cloudInit() (inventoryv1.GuestCloudInit, string) {
	if _, err := os.Stat(c.path("usr/bin/cloud-init")); err != nil {
		return inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_ABSENT, ""
	}
	vs, _ := filepath.Glob(c.path("usr/lib/python3*/*-packages/cloudinit/version.py"))
	for _, v := range vs {
		if m := cloudInitVersion.FindStringSubmatch(c.read(strings.TrimPrefix(v, c.root))); m != nil {
			return inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_PRESENT, m[1]
		}
	}
	return inventoryv1.GuestCloudInit_GUEST_CLOUD_INIT_PRESENT, ""
}

type collector struct{ root string }

func (c collector) path(p string) string { return filepath.Join(c.root, p) }

// read returns a file's content, "" when it cannot be read.
func (c collector) read(p string) string {
	b, err := os.ReadFile(c.path(p))
	if err != nil {
		return ""
	}
	return string(b)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (c collector) hostname() string {
	if h := strings.TrimSpace(c.read("proc/sys/kernel/hostname")); h != "" {
		return h
	}
	return strings.TrimSpace(c.read("etc/hostname"))
}

func (c collector) osRelease() string {
	for _, line := range strings.Split(c.read("etc/os-release"), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"'`)
		}
	}
	return strings.TrimSpace(c.read("etc/redhat-release")) // CentOS 6 has no os-release
}

func (c collector) memTotal() int64 {
	for _, line := range strings.Split(c.read("proc/meminfo"), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// nics lists the Ethernet interfaces (ARPHRD_ETHER, type 1) but loopback; a virtual
// one (bridge, bond, VLAN, ifb) only when it holds an address.
func (c collector) nics() ([]*inventoryv1.Nic, error) {
	entries, err := os.ReadDir(c.path("sys/class/net"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("collect: network interfaces: %w", err)
	}
	var out []*inventoryv1.Nic
	for _, e := range entries {
		dir := "sys/class/net/" + e.Name()
		if strings.TrimSpace(c.read(dir+"/type")) != "1" || e.Name() == "lo" {
			continue
		}
		n := &inventoryv1.Nic{Name: e.Name(), MacAddress: strings.TrimSpace(c.read(dir + "/address"))}
		mtu, _ := strconv.Atoi(strings.TrimSpace(c.read(dir + "/mtu")))
		n.Mtu = int32(mtu)
		if c.root == "/" {
			if ifc, err := net.InterfaceByName(e.Name()); err == nil {
				addrs, _ := ifc.Addrs()
				for _, a := range addrs {
					n.Addresses = append(n.Addresses, a.String())
				}
			}
			if link, err := os.Readlink(c.path(dir)); err == nil && strings.Contains(link, "/virtual/") && len(n.Addresses) == 0 {
				continue
			}
		}
		out = append(out, n)
	}
	return out, nil
}

// fstab parses /etc/fstab.
func (c collector) fstab() []*inventoryv1.FstabEntry {
	var out []*inventoryv1.FstabEntry
	sc := bufio.NewScanner(strings.NewReader(c.read("etc/fstab")))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		e := &inventoryv1.FstabEntry{Spec: f[0], MountPoint: f[1], FsType: f[2]}
		if len(f) > 3 {
			e.Options = f[3]
		}
		out = append(out, e)
	}
	return out
}

// mounts maps a device path to where it is mounted and with which file system.
func (c collector) mounts() map[string][2]string {
	out := map[string][2]string{}
	for _, line := range strings.Split(c.read("proc/self/mounts"), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && strings.HasPrefix(f[0], "/dev/") {
			if _, seen := out[f[0]]; !seen {
				out[f[0]] = [2]string{f[1], f[2]}
			}
		}
	}
	return out
}

// udev reads udev's database entry of a block device ("8:1"): ID_FS_TYPE, ID_FS_UUID.
func (c collector) udev(dev string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(c.read("run/udev/data/b"+dev), "\n") {
		if kv, ok := strings.CutPrefix(line, "E:"); ok {
			if k, v, ok := strings.Cut(kv, "="); ok {
				out[k] = v
			}
		}
	}
	return out
}

// skipDisk says which block devices hold no data to move.
func skipDisk(name string) bool {
	for _, p := range []string{"loop", "ram", "zram", "sr", "fd", "nbd"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func (c collector) disks(fstab []*inventoryv1.FstabEntry) ([]*inventoryv1.Disk, error) {
	entries, err := os.ReadDir(c.path("sys/block"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("collect: block devices: %w", err)
	}
	mounts := c.mounts()
	// fstab by UUID, for partitions not mounted now.
	byUUID := map[string]string{}
	for _, e := range fstab {
		if u, ok := strings.CutPrefix(e.GetSpec(), "UUID="); ok {
			byUUID[u] = e.GetMountPoint()
		}
	}
	sectors := func(p string) int64 {
		n, _ := strconv.ParseInt(strings.TrimSpace(c.read(p+"/size")), 10, 64)
		return n * 512 // /sys counts 512-byte sectors whatever the device's block size
	}
	var out []*inventoryv1.Disk
	for _, e := range entries {
		name := e.Name()
		if skipDisk(name) {
			continue
		}
		dir := "sys/block/" + name
		d := &inventoryv1.Disk{Device: "/dev/" + name, SizeBytes: sectors(dir), Model: strings.TrimSpace(c.read(dir + "/device/model"))}
		parts, _ := os.ReadDir(c.path(dir))
		for _, p := range parts {
			if _, err := os.Stat(c.path(dir + "/" + p.Name() + "/partition")); err != nil {
				continue
			}
			pd := dir + "/" + p.Name()
			part := &inventoryv1.Partition{Device: "/dev/" + p.Name(), SizeBytes: sectors(pd)}
			u := c.udev(strings.TrimSpace(c.read(pd + "/dev")))
			part.Filesystem, part.Uuid = u["ID_FS_TYPE"], u["ID_FS_UUID"]
			if m, ok := mounts[part.Device]; ok {
				part.MountPoint = m[0]
				if part.Filesystem == "" {
					part.Filesystem = m[1]
				}
			} else if mp, ok := byUUID[part.Uuid]; ok && part.Uuid != "" {
				part.MountPoint = mp
			}
			d.Partitions = append(d.Partitions, part)
		}
		sort.Slice(d.Partitions, func(a, b int) bool { return d.Partitions[a].GetDevice() < d.Partitions[b].GetDevice() })
		if len(d.Partitions) == 0 {
			u := c.udev(strings.TrimSpace(c.read(dir + "/dev")))
			d.Filesystem = u["ID_FS_TYPE"]
			if m, ok := mounts[d.Device]; ok {
				d.MountPoint = m[0]
				if d.Filesystem == "" {
					d.Filesystem = m[1]
				}
			}
		}
		out = append(out, d)
	}
	return out, nil
}
