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
	c := &conversion{o: o, u: &undo{log: o.Log, record: recorder(o.Work)}, raw: filepath.Join(o.Work, "disk.raw"), // scratch: removed whatever happens
		res: &Result{Timings: map[string]int64{}}, t0: time.Now()}
	res = c.res
	defer func() {
		if uerr := c.u.run(); uerr != nil {
			err = errors.Join(err, fmt.Errorf("p2v clean-up: %w", uerr))
		}
		_ = os.Remove(c.raw)
		_ = os.Remove(filepath.Join(o.Work, "core.img"))
		if err != nil && res.Image != "" {
			_ = os.Remove(res.Image)
		}
	}()
	// Each stage is announced (Options.Step) and timed under its name; fixup
	// announces and times its own parts (fixup, cloud-init, initramfs).
	for _, st := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"inspect", func(ctx context.Context) error { return c.inspect(ctx, path) }},
		{"build", c.build},
		{"copy", c.copy},
		{"", c.fixup},
		{"bootloader", c.bootloader},
		{"qcow2", c.qcow2},
	} {
		if st.name != "" {
			o.Step(st.name)
		}
		if err := st.run(ctx); err != nil {
			return res, err
		}
		if st.name != "" {
			c.lap(st.name)
		}
	}
	return res, nil
}

// conversion is one Convert's state, passed from stage to stage.
type conversion struct {
	o   Options
	u   *undo
	raw string // the new disk, raw, in the work directory
	res *Result
	t0  time.Time

	src     *Disk
	a       *Analysis
	mounted []Partition // the source's mounted file systems, its ESP aside
	boot    bootloader
	dst     *Disk  // the new disk, attached
	nt      string // the new root, mounted
}

func (c *conversion) lap(name string) {
	c.res.Timings[name] = time.Since(c.t0).Milliseconds()
	c.t0 = time.Now()
}

// inspect attaches the source read-only and analyses it; the firmware it boots with
// chooses the bootloader.
func (c *conversion) inspect(ctx context.Context, path string) error {
	src, a, err := inspect(ctx, c.u, path, c.o.Work, c.o.MoreDisks...)
	c.src, c.a, c.res.Source, c.res.Analysis = src, a, src, a
	if err != nil {
		return err
	}
	c.res.Firmware = a.Firmware
	if a.Firmware == "uefi" {
		b := &uefiBoot{vol: newVolumeID(), srcESP: src.esp(), work: c.o.Work}
		c.res.ESPUUID = b.vol[:4] + "-" + b.vol[4:]
		c.boot = b
	} else {
		c.boot = &biosBoot{core: filepath.Join(c.o.Work, "core.img")}
	}
	return nil
}

// build makes the new disk: one root partition (after an EFI system partition for
// UEFI) sized from what the mounted file systems use plus headroom, ext4, mounted.
func (c *conversion) build(ctx context.Context) error {
	var used int64
	srcESP := c.src.esp()
	for _, p := range c.src.Partitions {
		if p.MountPoint != "" && p.mnt != "" && (srcESP == nil || p.device != srcESP.device) {
			used += p.UsedBytes
			c.mounted = append(c.mounted, p)
		}
	}
	size := int64(float64(used)*(1+c.o.Headroom)) + 512<<20
	size = max(size, 2<<30)
	size = (size + 1<<20 - 1) &^ (1<<20 - 1)
	table, extra, root := c.boot.layout()
	size += extra
	c.res.Size, c.res.RootUUID = size, newUUID()
	c.res.Image = filepath.Join(c.o.Work, "disk.qcow2")
	f, err := os.Create(c.raw)
	if err != nil {
		return err
	}
	_ = f.Close()
	if err := os.Truncate(c.raw, size); err != nil {
		return err
	}
	if err := runIn(ctx, table, "sfdisk", "-q", c.raw); err != nil {
		return err
	}
	if c.dst, err = attach(ctx, c.u, c.raw, false); err != nil {
		return err
	}
	part := c.dst.Partitions[root].device
	if _, err := run(ctx, "mkfs.ext4", "-q", "-F", "-U", c.res.RootUUID, "-L", "root", part); err != nil {
		return err
	}
	c.nt = filepath.Join(c.o.Work, "new")
	if err := os.MkdirAll(c.nt, 0o755); err != nil {
		return err
	}
	if _, err := run(ctx, "mount", "-t", "ext4", part, c.nt); err != nil {
		return err
	}
	c.u.push(func() error { return umount(c.nt) })
	return nil
}

// copy copies each file system into place, the root first.
func (c *conversion) copy(ctx context.Context) error {
	sort.Slice(c.mounted, func(i, j int) bool { return len(c.mounted[i].MountPoint) < len(c.mounted[j].MountPoint) })
	for _, p := range c.mounted {
		to, err := safeDir(c.nt, p.MountPoint)
		if err != nil {
			return err
		}
		if err := copyTree(ctx, p.mnt, to, p.MountPoint != "/"); err != nil {
			return fmt.Errorf("copy %s: %w", p.MountPoint, err)
		}
	}
	return nil
}

// fixup writes the planned files from Go, then runs the guest's own tools in its
// sandbox: cloud-init's install when the server has none, then the initramfs.
func (c *conversion) fixup(ctx context.Context) error {
	c.o.Step("fixup")
	kernel := ""
	if n := len(c.a.Kernels); n > 0 {
		kernel = c.a.Kernels[n-1]
	}
	fx, err := PlanFixup(c.nt, c.a, c.res.RootUUID, kernel, c.o.NICs, c.o.KeyPairUser)
	if err != nil {
		return err
	}
	c.res.Notes = append(c.res.Notes, fx.Notes...)
	fx.Files["/etc/fstab"] += c.boot.fstab()
	for p, content := range fx.Files {
		if err := writeIn(c.nt, p, content, 0o644); err != nil {
			return err
		}
		if m, ok := fx.Modes[p]; ok {
			if err := chmodIn(c.nt, p, m); err != nil {
				return err
			}
		}
	}
	if err := chrootPrep(c.u, c.nt); err != nil {
		return err
	}
	if pkgs := c.packages(); len(pkgs) > 0 {
		c.o.Step("cloud-init")
		if err := installPackages(ctx, c.nt, c.a, c.o.CloudInitDebs, pkgs); err != nil {
			return err
		}
	}
	c.lap("cloud-init")
	c.o.Step("initramfs")
	for _, cmd := range fx.Commands {
		if err := runGuest(ctx, c.nt, false, cmd...); err != nil {
			return err
		}
	}
	c.lap("initramfs")
	return nil
}

// bootloader writes GRUB's menu (for both firmwares: the BIOS modules and the
// menu at /boot/grub, and at RHEL's /boot/grub2 too), installs the firmware's
// GRUB into the mounted disk, detaches the disk and writes what goes outside
// partitions.
func (c *conversion) bootloader(ctx context.Context) error {
	mods, err := safeDir(c.nt, "/boot/grub/i386-pc")
	if err != nil {
		return err
	}
	if _, err := run(ctx, "sh", "-c", `cp /usr/lib/grub/i386-pc/*.mod /usr/lib/grub/i386-pc/*.lst "$1"`, "sh", mods); err != nil {
		return err
	}
	cfg := GrubConfig(c.a, c.res.RootUUID)
	if c.a.Bootloader == "grub2" && c.a.GrubConfig != "/boot/grub/grub.cfg" && c.a.GrubConfig != "" { // RHEL's /boot/grub2: keep both paths working
		if err := writeIn(c.nt, c.a.GrubConfig, cfg, 0o644); err != nil {
			return err
		}
	}
	if err := writeIn(c.nt, "/boot/grub/grub.cfg", cfg, 0o644); err != nil {
		return err
	}
	if err := c.boot.install(ctx, c.nt, c.dst, c.res.RootUUID); err != nil {
		return err
	}
	// Detach the new disk (and everything on it) before writing its first sectors.
	if err := c.u.run(); err != nil {
		return err
	}
	return c.boot.finish(ctx, c.raw)
}

func (c *conversion) qcow2(ctx context.Context) error {
	_, err := run(ctx, "qemu-img", "convert", "-O", "qcow2", c.raw, c.res.Image)
	return err
}

// bootloader is how the converted image boots: from the BIOS (GRUB's boot.img in
// the MBR, core.img in the gap before the first partition) or from UEFI (GRUB at
// the fallback path of a new EFI system partition).
type bootloader interface {
	// layout is the new disk's sfdisk script, the bytes it adds to the root's size,
	// and the root partition's index.
	layout() (table string, extra int64, root int)
	// fstab is what /etc/fstab needs besides the root's line.
	fstab() string
	// install runs with the new root mounted at nt and the new disk attached.
	install(ctx context.Context, nt string, dst *Disk, rootUUID string) error
	// finish runs on the raw disk once it is detached.
	finish(ctx context.Context, raw string) error
}

// biosBoot: an MBR disk, one bootable partition.
type biosBoot struct{ core string }

func (b *biosBoot) layout() (string, int64, int) {
	return "label: dos\nstart=2048, type=83, bootable\n", 0, 0
}

func (b *biosBoot) fstab() string { return "" }

func (b *biosBoot) install(ctx context.Context, _ string, _ *Disk, _ string) error {
	_, err := run(ctx, "grub-mkimage", "-O", "i386-pc", "-o", b.core, "-p", "(hd0,msdos1)/boot/grub",
		"biosdisk", "part_msdos", "ext2", "search_fs_uuid", "search", "normal", "linux", "serial", "terminal")
	return err
}

func (b *biosBoot) finish(ctx context.Context, raw string) error {
	if _, err := run(ctx, "dd", "if=/usr/lib/grub/i386-pc/boot.img", "of="+raw, "bs=440", "count=1", "conv=notrunc", "status=none"); err != nil {
		return err
	}
	_, err := run(ctx, "dd", "if="+b.core, "of="+raw, "bs=512", "seek=1", "conv=notrunc", "status=none")
	return err
}

// uefiBoot: a GPT disk, the EFI system partition then the root.
type uefiBoot struct {
	vol    string     // the new ESP's FAT volume ID
	srcESP *Partition // the source's ESP (its vendor files are kept), or nil
	work   string
}

func (b *uefiBoot) layout() (string, int64, int) {
	return "label: gpt\nstart=2048, size=" + fmt.Sprint(espBytes/512) + ", type=" + ESPType + ", name=EFI\ntype=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root\n", espBytes, 1
}

func (b *uefiBoot) fstab() string {
	return fmt.Sprintf("UUID=%s  /boot/efi  vfat  umask=0077  0  1\n", b.vol[:4]+"-"+b.vol[4:])
}

// install fills the new EFI system partition: what the old one held (the vendor's
// boot files, their grub.cfg stubs pointed at the new root) and GRUB at the
// fallback path, written with mtools.
func (b *uefiBoot) install(ctx context.Context, nt string, dst *Disk, rootUUID string) error {
	stage := filepath.Join(b.work, "esp")
	if err := os.MkdirAll(stage, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	if _, err := safeDir(nt, "/boot/efi"); err != nil { // the mount point in the root, too
		return err
	}
	if b.srcESP != nil && b.srcESP.mnt != "" {
		if _, err := run(ctx, "cp", "-r", b.srcESP.mnt+"/.", stage); err != nil {
			return fmt.Errorf("copy the EFI system partition: %w", err)
		}
	}
	if err := installGrubEFI(ctx, nt, stage, rootUUID); err != nil {
		return err
	}
	if err := fillFAT(ctx, dst.Partitions[0].device, b.vol, "EFI", stage); err != nil {
		return fmt.Errorf("the new EFI system partition: %w", err)
	}
	return nil
}

func (b *uefiBoot) finish(context.Context, string) error { return nil }

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

// packages are what the server lacks as a cloud server, by its family's package
// names: cloud-init (with growpart), and acpid where nothing answers the ACPI power
// button. Each is noted in the result.
func (c *conversion) packages() []string {
	var pkgs []string
	if !c.a.CloudInit {
		if c.a.OS.Family == "rhel" {
			pkgs = append(pkgs, "cloud-init", "cloud-utils-growpart")
		} else {
			pkgs = append(pkgs, "cloud-init", "cloud-guest-utils") // growpart: the root grows to the flavor's disk
		}
		c.res.Notes = append(c.res.Notes, "cloud-init installed (datasources ConfigDrive, OpenStack; network configuration left to the server)")
	}
	if !c.a.PowerButton {
		pkgs = append(pkgs, "acpid")
		if c.a.OS.Family != "rhel" {
			pkgs = append(pkgs, "acpi-support-base") // Debian's acpid has no power button rule of its own
		}
		c.res.Notes = append(c.res.Notes, "acpid installed: nothing on the server answered the ACPI power button (no systemd-logind with D-Bus, no acpid), so a cloud's stop would have waited out its timeout and cut the power")
	}
	return pkgs
}

// installPackages installs pkgs in the new tree with the server's own package
// manager, from its own package sources, or only from the .deb files in debs (an
// offline worker: debs must hold them and what they depend on).
func installPackages(ctx context.Context, nt string, a *Analysis, debs string, pkgs []string) error {
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
		err := chroot(append([]string{"apt-get", "install", "-y", "-q", "--no-install-recommends"}, pkgs...)...)
		_ = chroot("apt-get", "clean")
		return err
	case "rhel":
		if existsIn(nt, "/usr/bin/dnf") {
			return chroot(append([]string{"dnf", "install", "-y"}, pkgs...)...)
		}
		return chroot(append([]string{"yum", "install", "-y"}, pkgs...)...)
	}
	return fmt.Errorf("%w: cannot install %s on %q (family %q)", ErrUnsupported, strings.Join(pkgs, ", "), a.OS.ID, a.OS.Family)
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
