package p2v

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrUnsupported is a source this converter refuses, with the reason.
var ErrUnsupported = errors.New("p2v: unsupported source")

// Partition is one partition of a disk with what blkid says of it.
type Partition struct {
	Number   int    `json:"number"`
	Start    int64  `json:"start_bytes"`
	Size     int64  `json:"size_bytes"`
	Type     string `json:"type"` // the table's type (83, 8e, a GPT GUID …)
	Bootable bool   `json:"bootable"`
	FSType   string `json:"fs_type"` // ext4, xfs, swap, LVM2_member, vfat, …
	UUID     string `json:"uuid"`
	Label    string `json:"label"`
	// Volume is "vg/lv" for an LVM logical volume; Number is then its physical
	// volume's partition, Start where its first extent lies on the disk.
	Volume string `json:"logical_volume,omitempty"`
	// Disk is the index of the server's disk it is on (0: the first, sda; 1: sdb …).
	Disk       int    `json:"disk,omitempty"`
	MountPoint string `json:"mount_point,omitempty"` // from the server's fstab
	UsedBytes  int64  `json:"used_bytes,omitempty"`
	device     string
	mnt        string
	diskLoop   string // the loop device of its whole disk
	partUUID   string // the kernel's PARTUUID: the GPT entry's GUID, or disk id-NN on MBR
}

// Disk is an attached disk: a loop device with its partitions.
type Disk struct {
	Path       string      `json:"path"`
	Label      string      `json:"label"` // dos or gpt
	Size       int64       `json:"size_bytes"`
	Partitions []Partition `json:"partitions"`
	// More are the server's further disks, whose partitions are in Partitions too.
	More []string `json:"more_disks,omitempty"`
	loop string
}

// undo is a stack of clean-up steps, run last-in first-out.
type undo struct {
	steps []func() error
	log   *slog.Logger
	// record, if set, is told each loop device made, so that Sweep finds it after
	// the process was killed before it could undo.
	record func(loop string)
}

func (u *undo) push(f func() error) { u.steps = append(u.steps, f) }

// run runs every step, newest first, and returns their errors joined.
func (u *undo) run() error {
	var errs []error
	for i := len(u.steps) - 1; i >= 0; i-- {
		if err := u.steps[i](); err != nil {
			errs = append(errs, err)
		}
	}
	u.steps = nil
	return errors.Join(errs...)
}

// run runs a command and returns its standard output; the error carries stderr.
func run(ctx context.Context, name string, args ...string) (string, error) {
	return runEnv(ctx, nil, name, args...)
}

// runEnv is run with env added to the worker's environment.
func runEnv(ctx context.Context, env []string, name string, args ...string) (string, error) {
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out.String(), nil
}

// umount unmounts dir, retrying while it is busy (a process that just left it).
func umount(dir string) error {
	var err error
	for range 20 {
		if err = syscall.Unmount(dir, 0); err == nil || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("umount %s: %w", dir, err)
}

// detach detaches a loop device and waits (up to 10 s) until it is gone: a
// device that someone still has open (udev's blkid probing it after the last
// write, say) is only marked to go when they close it, and the next job or a
// clean-up check would still see it.
func detach(loop string) error {
	if _, err := run(context.Background(), "losetup", "-d", loop); err != nil {
		return err
	}
	backing := filepath.Join("/sys/block", filepath.Base(loop), "loop/backing_file")
	for range 100 {
		if _, err := os.Stat(backing); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil // it goes when its last user closes it (autoclear)
}

// attach attaches path as a loop device (read-only when ro) with its partitions,
// and pushes their detaching onto u.
func attach(ctx context.Context, u *undo, path string, ro bool) (*Disk, error) {
	args := []string{"-f", "--show"}
	if ro {
		args = append(args, "-r")
	}
	out, err := run(ctx, "losetup", append(args, path)...)
	if err != nil {
		return nil, err
	}
	loop := strings.TrimSpace(out)
	u.push(func() error { return detach(loop) })
	if u.record != nil {
		u.record(loop)
	}
	d := &Disk{Path: path, loop: loop}
	js, err := run(ctx, "sfdisk", "--json", loop)
	if err != nil {
		return nil, fmt.Errorf("%w: %s has no partition table sfdisk reads (%v)", ErrUnsupported, path, err)
	}
	var t struct {
		PartitionTable struct {
			Label      string `json:"label"`
			ID         string `json:"id"` // the disk's: 0x… (dos) or a GUID (gpt)
			SectorSize int64  `json:"sectorsize"`
			Partitions []struct {
				Node     string `json:"node"`
				Start    int64  `json:"start"`
				Size     int64  `json:"size"`
				Type     string `json:"type"`
				UUID     string `json:"uuid"` // gpt
				Bootable bool   `json:"bootable"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal([]byte(js), &t); err != nil {
		return nil, fmt.Errorf("sfdisk --json %s: %w", loop, err)
	}
	ss := t.PartitionTable.SectorSize
	if ss == 0 {
		ss = 512
	}
	d.Label = t.PartitionTable.Label
	if fi, err := os.Stat(path); err == nil {
		d.Size = fi.Size()
	}
	// The kernel here may lack partition parsers: partx makes the partition devices.
	// A reused loop number can still carry partition devices from its last use.
	_, _ = run(ctx, "partx", "-d", loop)
	if _, err := run(ctx, "partx", "-a", loop); err != nil {
		if _, uerr := run(ctx, "partx", "-u", loop); uerr != nil {
			return nil, err
		}
	}
	u.push(func() error { _, _ = run(context.Background(), "partx", "-d", loop); return nil })
	for i, p := range t.PartitionTable.Partitions {
		// The number is the node's (an MBR's logical partitions are 5, 6, … whatever
		// the primary ones are).
		n := i + 1
		if m := nodeNumRE.FindStringSubmatch(p.Node); m != nil {
			n, _ = strconv.Atoi(m[1])
		}
		part := Partition{Number: n, Start: p.Start * ss, Size: p.Size * ss, Type: p.Type, Bootable: p.Bootable, device: fmt.Sprintf("%sp%d", loop, n), diskLoop: loop}
		part.FSType, part.UUID, part.Label = blkid(ctx, part.device)
		switch d.Label {
		case "gpt":
			part.partUUID = strings.ToLower(p.UUID)
		case "dos":
			if id := strings.TrimPrefix(strings.ToLower(t.PartitionTable.ID), "0x"); id != "" {
				part.partUUID = fmt.Sprintf("%08s-%02x", id, n)
			}
		}
		d.Partitions = append(d.Partitions, part)
	}
	return d, nil
}

// mtoolsEnv lets mtools work on partitions and images of any geometry.
var mtoolsEnv = []string{"MTOOLS_SKIP_CHECK=1"}

// extractFAT copies every file of the FAT file system on dev into dir (mcopy: the
// device is only read) and returns the bytes copied.
func extractFAT(ctx context.Context, dev, dir string) (int64, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, err
	}
	ls, err := runEnv(ctx, mtoolsEnv, "mdir", "-b", "-i", dev, "::/")
	if err != nil {
		return 0, err
	}
	if strings.TrimSpace(ls) != "" {
		if _, err := runEnv(ctx, mtoolsEnv, "mcopy", "-s", "-p", "-n", "-i", dev, "::/*", dir+"/"); err != nil {
			return 0, err
		}
	}
	var n int64
	err = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return err
	})
	return n, err
}

// fillFAT makes a FAT32 file system on dev labelled label with volume ID vol and
// copies the tree at dir into it (mtools; no mount).
func fillFAT(ctx context.Context, dev, vol, label, dir string) error {
	if _, err := run(ctx, "mkfs.vfat", "-F", "32", "-n", label, "-i", vol, dev); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	args := []string{"-s", "-p", "-i", dev}
	for _, e := range ents {
		args = append(args, filepath.Join(dir, e.Name()))
	}
	if len(ents) == 0 {
		return nil
	}
	_, err = runEnv(ctx, mtoolsEnv, "mcopy", append(args, "::/")...)
	return err
}

// blkid says what file system a device holds.
func blkid(ctx context.Context, dev string) (fsType, uuid, label string) {
	kv, err := run(ctx, "blkid", "-o", "export", dev)
	if err != nil {
		return "", "", ""
	}
	for _, line := range strings.Split(kv, "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "TYPE":
			fsType = v
		case "UUID":
			uuid = v
		case "LABEL":
			label = v
		}
	}
	return fsType, uuid, label
}

// attachSource attaches a server's disks read-only — path is the first (sda),
// more the others in the server's own order — with their partitions, and the
// logical volumes on their LVM physical volumes (a volume group may span them).
// The partitions of all of them are the returned Disk's, each with its Disk index.
func attachSource(ctx context.Context, u *undo, path, work string, more ...string) (*Disk, error) {
	d, err := attach(ctx, u, path, true)
	if err != nil {
		return nil, err
	}
	for i, m := range more {
		e, err := attach(ctx, u, m, true)
		if err != nil {
			return d, fmt.Errorf("disk %d (%s): %w", i+2, m, err)
		}
		for _, p := range e.Partitions {
			p.Disk = i + 1
			d.Partitions = append(d.Partitions, p)
		}
		d.More = append(d.More, m)
	}
	return d, lvmVolumes(ctx, u, d, work)
}

// name is how a volume of the disk is called in messages: "partition 2", or
// "logical volume vg/lv".
func (p *Partition) name() string {
	if p.Volume != "" {
		return "logical volume " + p.Volume
	}
	return fmt.Sprintf("partition %d", p.Number)
}

// dirName names a partition's mount directory: p2, or d1-p1 on the second disk.
func (p *Partition) dirName() string {
	if p.Disk > 0 {
		return fmt.Sprintf("d%d-p%d", p.Disk, p.Number)
	}
	return fmt.Sprintf("p%d", p.Number)
}

// mountRO mounts every file system of d read-only (ext: without replaying its
// journal; xfs: without recovery) under dir/pN, pushing the unmounts onto u.
func mountRO(ctx context.Context, u *undo, d *Disk, dir string) error {
	for i := range d.Partitions {
		p := &d.Partitions[i]
		var opts string
		switch p.FSType {
		case "ext2", "ext3", "ext4":
			opts = "ro,noload"
		case "xfs":
			opts = "ro,norecovery"
		case "vfat":
			// FAT (an EFI system partition) is read with mtools, not mounted: the
			// kernels here have no vfat, and a copy is all the converter needs of it.
			mnt := filepath.Join(dir, p.dirName())
			n, err := extractFAT(ctx, p.device, mnt)
			if err != nil {
				return fmt.Errorf("%s (vfat): %w", p.name(), err)
			}
			p.mnt, p.UsedBytes = mnt, n
			continue
		case "btrfs":
			opts = "ro"
		default:
			continue // swap, an LVM physical volume (its logical volumes are mounted), unknown: nothing to copy
		}
		mnt := filepath.Join(dir, p.dirName())
		if p.Volume != "" {
			mnt = filepath.Join(dir, "lv-"+strings.ReplaceAll(p.Volume, "/", "-"))
		}
		if err := os.MkdirAll(mnt, 0o700); err != nil {
			return err
		}
		if _, err := run(ctx, "mount", "-o", opts, "-t", p.FSType, p.device, mnt); err != nil {
			return fmt.Errorf("%s (%s): %w", p.name(), p.FSType, err)
		}
		p.mnt = mnt
		u.push(func() error { return umount(mnt) })
		var st syscall.Statfs_t
		if syscall.Statfs(mnt, &st) == nil {
			p.UsedBytes = int64(st.Blocks-st.Bfree) * st.Bsize
		}
	}
	return nil
}

// roots finds the root file system (the one with /etc/fstab) and maps the
// server's mount points to the mounted partitions by its fstab (UUID=, LABEL=,
// PARTUUID-less /dev/sdXN and /dev/hdXN, /dev/disk/by-uuid/…).
func roots(d *Disk) (map[string]string, *Partition, error) {
	var root *Partition
	for i := range d.Partitions {
		p := &d.Partitions[i]
		if p.mnt != "" && existsIn(p.mnt, "/etc/fstab") {
			root = p
			break
		}
	}
	if root == nil {
		return nil, nil, fmt.Errorf("%w: no partition holds /etc/fstab (no root file system found)", ErrUnsupported)
	}
	root.MountPoint = "/"
	m := map[string]string{"/": root.mnt}
	fstab, err := readFstab(guest{"/": root.mnt})
	if err != nil {
		return nil, nil, err
	}
	var missing []string
	for _, e := range fstab {
		if p := d.byFstabSpec(e.Spec); p != nil && p.mnt != "" && e.MountPoint != "/" && strings.HasPrefix(e.MountPoint, "/") {
			p.MountPoint = e.MountPoint
			m[e.MountPoint] = p.mnt
		} else if p == nil && localMount(e) {
			missing = append(missing, fmt.Sprintf("%s (%s)", e.MountPoint, e.Spec))
		}
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("%w: the server's fstab mounts %s from devices on none of the disks given: add the server's other disks (more_disk_paths, in its own order), or the image would lack them",
			ErrUnsupported, strings.Join(missing, ", "))
	}
	return m, root, nil
}

var (
	devNameRE = regexp.MustCompile(`^/dev/(?:sd|hd|vd|xvd)([a-z])([0-9]+)$`)
	nodeNumRE = regexp.MustCompile(`p?([0-9]+)$`)
)

// localMount reports whether an fstab entry mounts a local block device's file
// system at boot: by UUID, label or device path, not swap, not noauto, not removable
// media.
func localMount(e FstabEntry) bool {
	spec := e.Spec
	local := strings.HasPrefix(spec, "UUID=") || strings.HasPrefix(spec, "LABEL=") || strings.HasPrefix(spec, "PARTUUID=") || strings.HasPrefix(spec, "/dev/")
	if !local || !strings.HasPrefix(e.MountPoint, "/") || e.MountPoint == "/" {
		return false
	}
	switch e.FSType {
	case "swap", "iso9660", "udf", "auto", "none":
		return false
	}
	for _, o := range strings.Split(e.Options, ",") {
		if o == "noauto" || o == "bind" {
			return false
		}
	}
	return true
}

// byFstabSpec returns the partition an fstab spec names, if it is on d.
func (d *Disk) byFstabSpec(spec string) *Partition {
	for i := range d.Partitions {
		p := &d.Partitions[i]
		switch {
		case p.UUID != "" && (spec == "UUID="+p.UUID || spec == "/dev/disk/by-uuid/"+p.UUID):
			return p
		case p.Label != "" && (spec == "LABEL="+p.Label || spec == "/dev/disk/by-label/"+p.Label):
			return p
		case p.partUUID != "" && (strings.EqualFold(spec, "PARTUUID="+p.partUUID) || strings.EqualFold(spec, "/dev/disk/by-partuuid/"+p.partUUID)):
			return p
		case p.Volume != "":
			vg, lv, _ := strings.Cut(p.Volume, "/")
			if spec == "/dev/mapper/"+mapperName(vg, lv) || spec == "/dev/"+p.Volume {
				return p
			}
		default:
			// By kernel name: sda is the first disk given, sdb the second, …
			if m := devNameRE.FindStringSubmatch(spec); m != nil && int(m[1][0]-'a') == p.Disk && m[2] == fmt.Sprint(p.Number) {
				return p
			}
		}
	}
	return nil
}
