package p2v

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Options of a conversion.
type Options struct {
	// Work is a scratch directory on the worker; the new disk is built there and it
	// is removed at the end.
	Work string
	// MoreDisks are the server's further disks after the one given to Convert, in
	// its own order (the first of them is its sdb): all their file systems go into
	// the one root.
	MoreDisks []string
	// NICs pin interface names to MAC addresses (from the inventory's facts).
	NICs []NIC
	// Headroom is the free share added to the used bytes (0: 0.3).
	Headroom float64
	// CloudInitDebs is a directory of .deb files to install cloud-init from (an
	// offline worker); empty: from the server's own package sources.
	CloudInitDebs string
	// KeyPairUser is the server's existing user whose authorized_keys get the
	// cloud's key pair at the first boot; empty: nobody's.
	KeyPairUser string
	Log         *slog.Logger
	// Step is told each step as it begins ("inspect", "build", "copy", …).
	Step func(string)
}

// Result is a conversion's outcome.
type Result struct {
	Source   *Disk     `json:"source"`
	Analysis *Analysis `json:"analysis"`
	// Image is the qcow2 file (in Options.Work: the caller uploads, then removes it).
	Image    string `json:"image"`
	RootUUID string `json:"root_uuid"`
	// Firmware is what the image boots with: "bios", or "uefi" (GRUB in an EFI
	// system partition at the removable-media path, EFI/BOOT/BOOTX64.EFI).
	Firmware string           `json:"firmware"`
	ESPUUID  string           `json:"esp_uuid,omitempty"`
	Size     int64            `json:"size_bytes"` // the new disk's virtual size
	Notes    []string         `json:"notes,omitempty"`
	Timings  map[string]int64 `json:"timings_ms"`
}

func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// Inspect attaches the disk at path read-only and reports what is on it, changing
// nothing; everything is detached again before it returns.
//
// more are the server's further disks, in its own order (the second is its sdb).
func Inspect(ctx context.Context, path, work string, more ...string) (*Disk, *Analysis, error) {
	if err := os.MkdirAll(work, 0o700); err != nil {
		return nil, nil, err
	}
	u := &undo{record: recorder(work)}
	defer u.run()
	return inspect(ctx, u, path, work, more...)
}

func inspect(ctx context.Context, u *undo, path, work string, more ...string) (*Disk, *Analysis, error) {
	d, err := attachSource(ctx, u, path, work, more...)
	if err != nil {
		return d, nil, err
	}
	if err := mountRO(ctx, u, d, filepath.Join(work, "src")); err != nil {
		return d, nil, err
	}
	rs, _, err := roots(d)
	if err != nil {
		return d, nil, err
	}
	a, err := AnalyzeTree(rs)
	if err != nil {
		return d, nil, err
	}
	a.Firmware = "bios"
	if esp := d.esp(); esp != nil {
		a.Firmware = "uefi"
		if esp.FSType != "vfat" {
			return d, a, fmt.Errorf("%w: the EFI system partition (partition %d) holds %q, not a FAT file system", ErrUnsupported, esp.Number, esp.FSType)
		}
	}
	return d, a, nil
}

// ESPType is the GPT type of an EFI system partition.
const ESPType = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"

// esp returns the disk's EFI system partition, or nil.
func (d *Disk) esp() *Partition {
	for i := range d.Partitions {
		if p := &d.Partitions[i]; p.Volume == "" && (strings.EqualFold(p.Type, ESPType) || p.Type == "ef") {
			return p
		}
	}
	return nil
}

// Convert builds one cloud image from the disk at path: a single root file system
// sized from the used bytes plus headroom, everything copied (owners, modes,
// xattrs, ACLs, hard links, device nodes), fstab by UUID, a serial console, virtio
// drivers in the initramfs, cloud-init set for OpenStack without touching the
// network, the interface names pinned to their MACs, GRUB (BIOS), then qcow2. The
// source is never written to (read-only loop device, read-only mounts without
// journal replay). Whatever happens, no mount or loop device is left behind, and on
// failure no image file either.
func Convert(ctx context.Context, path string, o Options) (res *Result, err error) {
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Step == nil {
		o.Step = func(string) {}
	}
	if o.Headroom == 0 {
		o.Headroom = 0.3
	}
	if err := os.MkdirAll(o.Work, 0o700); err != nil {
		return nil, err
	}
	u := &undo{log: o.Log, record: recorder(o.Work)}
	raw := filepath.Join(o.Work, "disk.raw") // scratch: removed whatever happens
	defer func() {
		if uerr := u.run(); uerr != nil {
			err = errors.Join(err, fmt.Errorf("p2v clean-up: %w", uerr))
		}
		_ = os.Remove(raw)
		_ = os.Remove(filepath.Join(o.Work, "core.img"))
		if err != nil && res != nil && res.Image != "" {
			_ = os.Remove(res.Image)
		}
	}()
	res = &Result{Timings: map[string]int64{}}
	t0 := time.Now()
	lap := func(name string) { res.Timings[name] = time.Since(t0).Milliseconds(); t0 = time.Now() }
	o.Step("inspect")
	src, a, err := inspect(ctx, u, path, o.Work, o.MoreDisks...)
	res.Source, res.Analysis = src, a
	if err != nil {
		return res, err
	}
	lap("inspect")

	// The new disk: one partition, sized from what the mounted file systems use.
	o.Step("build")
	var used int64
	var mounted []Partition
	srcESP := src.esp()
	for _, p := range src.Partitions {
		if p.MountPoint != "" && p.mnt != "" && (srcESP == nil || p.device != srcESP.device) {
			used += p.UsedBytes
			mounted = append(mounted, p)
		}
	}
	uefi := a.Firmware == "uefi"
	res.Firmware = a.Firmware
	espVol := newVolumeID()
	if uefi {
		res.ESPUUID = espVol[:4] + "-" + espVol[4:]
	}
	size := int64(float64(used)*(1+o.Headroom)) + 512<<20
	size = max(size, 2<<30)
	size = (size + 1<<20 - 1) &^ (1<<20 - 1)
	res.Size, res.RootUUID = size, newUUID()
	res.Image = filepath.Join(o.Work, "disk.qcow2")
	f, err := os.Create(raw)
	if err != nil {
		return res, err
	}
	_ = f.Close()
	if err := os.Truncate(raw, size); err != nil {
		return res, err
	}
	table := "label: dos\nstart=2048, type=83, bootable\n"
	if uefi {
		// GPT: the EFI system partition, then the root.
		table = "label: gpt\nstart=2048, size=" + fmt.Sprint(espBytes/512) + ", type=" + ESPType + ", name=EFI\ntype=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root\n"
		size += espBytes
		res.Size = size
		if err := os.Truncate(raw, size); err != nil {
			return res, err
		}
	}
	if err := runIn(ctx, table, "sfdisk", "-q", raw); err != nil {
		return res, err
	}
	dst, err := attach(ctx, u, raw, false)
	if err != nil {
		return res, err
	}
	part := dst.Partitions[0].device
	if uefi {
		part = dst.Partitions[1].device
	}
	if _, err := run(ctx, "mkfs.ext4", "-q", "-F", "-U", res.RootUUID, "-L", "root", part); err != nil {
		return res, err
	}
	nt := filepath.Join(o.Work, "new")
	if err := os.MkdirAll(nt, 0o755); err != nil {
		return res, err
	}
	if _, err := run(ctx, "mount", "-t", "ext4", part, nt); err != nil {
		return res, err
	}
	u.push(func() error { return umount(nt) })
	lap("build")

	// Copy each file system into place, the root first.
	o.Step("copy")
	sort.Slice(mounted, func(i, j int) bool { return len(mounted[i].MountPoint) < len(mounted[j].MountPoint) })
	for _, p := range mounted {
		to, err := safeDir(nt, p.MountPoint)
		if err != nil {
			return res, err
		}
		if err := copyTree(ctx, p.mnt, to, p.MountPoint != "/"); err != nil {
			return res, fmt.Errorf("copy %s: %w", p.MountPoint, err)
		}
	}
	lap("copy")

	// Fix it up: files from Go, then commands in a chroot.
	o.Step("fixup")
	kernel := ""
	if n := len(a.Kernels); n > 0 {
		kernel = a.Kernels[n-1]
	}
	fx, err := PlanFixup(nt, a, res.RootUUID, kernel, o.NICs, o.KeyPairUser)
	if err != nil {
		return res, err
	}
	res.Notes = append(res.Notes, fx.Notes...)
	if uefi {
		fx.Files["/etc/fstab"] += fmt.Sprintf("UUID=%s  /boot/efi  vfat  umask=0077  0  1\n", res.ESPUUID)
	}
	for p, content := range fx.Files {
		if err := writeIn(nt, p, content, 0o644); err != nil {
			return res, err
		}
		if m, ok := fx.Modes[p]; ok {
			if err := chmodIn(nt, p, m); err != nil {
				return res, err
			}
		}
	}
	if err := chrootPrep(u, nt); err != nil {
		return res, err
	}
	if !a.CloudInit {
		o.Step("cloud-init")
		if err := installCloudInit(ctx, nt, a, o.CloudInitDebs); err != nil {
			return res, err
		}
		res.Notes = append(res.Notes, "cloud-init installed (datasources ConfigDrive, OpenStack; network configuration left to the server)")
	}
	lap("cloud-init")
	o.Step("initramfs")
	for _, c := range fx.Commands {
		if err := runGuest(ctx, nt, false, c...); err != nil {
			return res, err
		}
	}
	lap("initramfs")

	// GRUB for BIOS: the modules, our menu, core.img in the gap, boot.img in the MBR.
	o.Step("bootloader")
	mods, err := safeDir(nt, "/boot/grub/i386-pc")
	if err != nil {
		return res, err
	}
	if _, err := run(ctx, "sh", "-c", `cp /usr/lib/grub/i386-pc/*.mod /usr/lib/grub/i386-pc/*.lst "$1"`, "sh", mods); err != nil {
		return res, err
	}
	if a.Bootloader == "grub2" && a.GrubConfig != "/boot/grub/grub.cfg" && a.GrubConfig != "" { // RHEL's /boot/grub2: keep both paths working
		if err := writeIn(nt, a.GrubConfig, GrubConfig(a, res.RootUUID), 0o644); err != nil {
			return res, err
		}
	}
	if err := writeIn(nt, "/boot/grub/grub.cfg", GrubConfig(a, res.RootUUID), 0o644); err != nil {
		return res, err
	}
	if uefi {
		// The new EFI system partition: what the old one held (the vendor's boot
		// files, their grub.cfg stubs pointed at the new root) and GRUB at the
		// fallback path, written with mtools.
		stage := filepath.Join(o.Work, "esp")
		if err := os.MkdirAll(stage, 0o755); err != nil {
			return res, err
		}
		if _, err := safeDir(nt, "/boot/efi"); err != nil { // the mount point in the root, too
			return res, err
		}
		if srcESP != nil && srcESP.mnt != "" {
			if _, err := run(ctx, "cp", "-r", srcESP.mnt+"/.", stage); err != nil {
				return res, fmt.Errorf("copy the EFI system partition: %w", err)
			}
		}
		if err := installGrubEFI(ctx, nt, stage, res.RootUUID); err != nil {
			return res, err
		}
		if err := fillFAT(ctx, dst.Partitions[0].device, espVol, "EFI", stage); err != nil {
			return res, fmt.Errorf("the new EFI system partition: %w", err)
		}
		_ = os.RemoveAll(stage)
	}
	core := filepath.Join(o.Work, "core.img")
	if !uefi {
		if _, err := run(ctx, "grub-mkimage", "-O", "i386-pc", "-o", core, "-p", "(hd0,msdos1)/boot/grub",
			"biosdisk", "part_msdos", "ext2", "search_fs_uuid", "search", "normal", "linux", "serial", "terminal"); err != nil {
			return res, err
		}
	}
	// Detach the new disk (and everything on it) before writing its first sectors.
	if err := u.run(); err != nil {
		return res, err
	}
	if !uefi {
		if _, err := run(ctx, "dd", "if=/usr/lib/grub/i386-pc/boot.img", "of="+raw, "bs=440", "count=1", "conv=notrunc", "status=none"); err != nil {
			return res, err
		}
		if _, err := run(ctx, "dd", "if="+core, "of="+raw, "bs=512", "seek=1", "conv=notrunc", "status=none"); err != nil {
			return res, err
		}
	}
	lap("bootloader")
	o.Step("qcow2")
	if _, err := run(ctx, "qemu-img", "convert", "-O", "qcow2", raw, res.Image); err != nil {
		return res, err
	}
	lap("qcow2")
	return res, nil
}

// espBytes is the size of the EFI system partition of a UEFI image.
const espBytes = 256 << 20

func newVolumeID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%X", b)
}

// grubEFIModules are built into the UEFI GRUB image: enough to find the root by
// UUID on GPT, read ext4 and FAT, and boot Linux with a serial console.
var grubEFIModules = []string{"part_gpt", "part_msdos", "fat", "ext2", "search", "search_fs_uuid", "normal", "linux",
	"configfile", "echo", "serial", "terminal", "efi_gop", "all_video", "gzio"}

// installGrubEFI puts GRUB for x86_64 UEFI into esp (the new EFI system
// partition's tree): at the removable-media path EFI/BOOT/BOOTX64.EFI, which
// firmware boots without an NVRAM entry (a cloud's instance has none for it), with
// an embedded configuration that finds the root by UUID and reads its
// /boot/grub/grub.cfg; GRUB's modules go to the root tree nt. The vendor's grub.cfg
// stubs (EFI/debian, EFI/centos, …) are pointed at the new root too.
func installGrubEFI(ctx context.Context, nt, esp, rootUUID string) error {
	if _, err := os.Stat("/usr/lib/grub/x86_64-efi"); err != nil {
		return fmt.Errorf("%w: GRUB's x86_64-efi modules are not on the worker (apt-get install grub-efi-amd64-bin)", ErrUnsupported)
	}
	stub := fmt.Sprintf("search --no-floppy --fs-uuid --set=root %s\nset prefix=($root)/boot/grub\nconfigfile $prefix/grub.cfg\n", rootUUID)
	emb := filepath.Join(filepath.Dir(esp), "grub-efi-embedded.cfg")
	if err := os.WriteFile(emb, []byte(stub), 0o644); err != nil {
		return err
	}
	defer os.Remove(emb)
	if err := os.MkdirAll(filepath.Join(esp, "EFI/BOOT"), 0o755); err != nil {
		return err
	}
	if _, err := run(ctx, "grub-mkimage", append([]string{"-O", "x86_64-efi", "-o", filepath.Join(esp, "EFI/BOOT/BOOTX64.EFI"),
		"-c", emb, "-p", "/boot/grub"}, grubEFIModules...)...); err != nil {
		return err
	}
	// GRUB loads its other modules from /boot/grub/x86_64-efi.
	mods := filepath.Join(nt, "boot/grub/x86_64-efi")
	if err := os.MkdirAll(mods, 0o755); err != nil {
		return err
	}
	if _, err := run(ctx, "sh", "-c", `cp /usr/lib/grub/x86_64-efi/*.mod /usr/lib/grub/x86_64-efi/*.lst "$1"`, "sh", mods); err != nil {
		return err
	}
	stubs, _ := filepath.Glob(filepath.Join(esp, "EFI", "*", "grub.cfg"))
	for _, s := range stubs {
		if err := os.WriteFile(s, []byte("# Written by Hikkoshi's P2V converter: the new root.\n"+stub), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// copyTree copies the tree at from into to with tar (owners by number, modes,
// xattrs, ACLs, hard links, device nodes, sparse files), staying on one file
// system. A separate file system's own lost+found stays behind.
func copyTree(ctx context.Context, from, to string, dropLostFound bool) error {
	args := []string{"-C", from, "-cpf", "-", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls", "--one-file-system", "--sparse"}
	if dropLostFound {
		args = append(args, "--exclude=./lost+found")
	}
	pack := exec.CommandContext(ctx, "tar", append(args, ".")...)
	unpack := exec.CommandContext(ctx, "tar", "-C", to, "-xpf", "-", "--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls")
	pipe, err := pack.StdoutPipe()
	if err != nil {
		return err
	}
	unpack.Stdin = pipe
	var e1, e2 strings.Builder
	pack.Stderr, unpack.Stderr = &e1, &e2
	if err := unpack.Start(); err != nil {
		return err
	}
	if err := pack.Run(); err != nil {
		_ = unpack.Wait()
		return fmt.Errorf("tar (read): %w: %s", err, e1.String())
	}
	if err := unpack.Wait(); err != nil {
		return fmt.Errorf("tar (write): %w: %s", err, e2.String())
	}
	return nil
}

func runIn(ctx context.Context, stdin, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, out)
	}
	return nil
}

// chrootPrep gives the new tree the worker's resolv.conf and a policy-rc.d that
// keeps packages from starting services, both undone by u. (Its /dev, /proc and
// /sys are the sandbox's own, made for each guest command: see sandbox.go.)
func chrootPrep(u *undo, nt string) error {
	sbin, err := safeDir(nt, "/usr/sbin")
	if err != nil {
		return err
	}
	etc, err := safeDir(nt, "/etc")
	if err != nil {
		return err
	}
	rc := filepath.Join(sbin, "policy-rc.d")
	if !exists(rc) {
		if err := os.WriteFile(rc, []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
			return err
		}
		u.push(func() error { return os.Remove(rc) })
	}
	resolv := filepath.Join(etc, "resolv.conf")
	if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		orig, had := os.Readlink(resolv)
		saved, herr := os.ReadFile(resolv)
		_ = os.Remove(resolv)
		if err := os.WriteFile(resolv, b, 0o644); err != nil {
			return err
		}
		u.push(func() error {
			_ = os.Remove(resolv)
			switch {
			case had == nil:
				return os.Symlink(orig, resolv)
			case herr == nil:
				return os.WriteFile(resolv, saved, 0o644)
			}
			return nil
		})
	}
	return nil
}

// installCloudInit installs cloud-init in the new tree with the server's own
// package manager.
func installCloudInit(ctx context.Context, nt string, a *Analysis, debs string) error {
	// From the server's own package sources: the network; from debs: none.
	chroot := func(args ...string) error { return runGuest(ctx, nt, debs == "", args...) }
	switch a.OS.Family {
	case "debian":
		if debs != "" {
			tmp, err := safeDir(nt, "/tmp")
			if err != nil {
				return err
			}
			to := filepath.Join(tmp, "hikkoshi-debs")
			if _, err := run(ctx, "cp", "-r", debs, to); err != nil {
				return err
			}
			defer os.RemoveAll(to)
			matches, _ := filepath.Glob(filepath.Join(to, "*.deb"))
			args := []string{"apt-get", "install", "-y", "-q", "--no-install-recommends"}
			for _, m := range matches {
				args = append(args, "/tmp/hikkoshi-debs/"+filepath.Base(m))
			}
			return chroot(args...)
		}
		if err := chroot("apt-get", "update", "-q"); err != nil {
			return err
		}
		// cloud-guest-utils has growpart: the root grows to the flavor's disk.
		err := chroot("apt-get", "install", "-y", "-q", "--no-install-recommends", "cloud-init", "cloud-guest-utils")
		_ = chroot("apt-get", "clean")
		return err
	case "rhel":
		if existsIn(nt, "/usr/bin/dnf") {
			return chroot("dnf", "install", "-y", "cloud-init", "cloud-utils-growpart")
		}
		return chroot("yum", "install", "-y", "cloud-init", "cloud-utils-growpart")
	}
	return fmt.Errorf("%w: cannot install cloud-init on %q (family %q)", ErrUnsupported, a.OS.ID, a.OS.Family)
}

// ReadFiles reads files of the server on the disk at path, by the paths the server
// sees (its fstab decides which partition holds each), attaching the disk read-only.
func ReadFiles(ctx context.Context, path, work string, files ...string) (map[string][]byte, error) {
	return ReadFilesOf(ctx, []string{path}, work, files...)
}

// ReadFilesOf is ReadFiles for a server of several disks (disks[0] is its sda).
func ReadFilesOf(ctx context.Context, disks []string, work string, files ...string) (map[string][]byte, error) {
	path := disks[0]
	u := &undo{}
	defer u.run()
	d, err := attachSource(ctx, u, path, work, disks[1:]...)
	if err != nil {
		return nil, err
	}
	if err := mountRO(ctx, u, d, work); err != nil {
		return nil, err
	}
	rs, _, err := roots(d)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, f := range files {
		root, rel := guest(rs).locate(f)
		b, err := readInMax(root, rel, 1<<30)
		if err != nil {
			return nil, err
		}
		out[f] = b
	}
	return out, nil
}
