package p2v

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/hikkoshi/hikkoshi/services/converter/internal/cloudinit"
)

// VirtioModules are what the initramfs needs to find its root on a cloud's disk and
// the network on its NIC.
var VirtioModules = []string{"virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net"}

// ConfigDriveModules are what the initramfs needs for the cloud's config drive (an
// IDE or SATA CD-ROM with the instance's metadata, label config-2) to be a device
// before the real root's systemd runs its generators: cloud-init's ds-identify
// looks for the drive's label then, once. An old server's initramfs with only its
// own disk controllers leaves sr_mod to the root's udev, seconds later: measured
// on the dev cloud's TCG compute, /dev/sr0 at 23 s, the generators at 8–11 s, and
// cloud-init then found no config drive and fell back to no data source at all.
var ConfigDriveModules = []string{"cdrom", "sr_mod"}

// initramfsModules are the modules the converter adds to the initramfs.
func initramfsModules() []string {
	return append(append([]string{}, VirtioModules...), ConfigDriveModules...)
}

// SerialConsole is added to the kernel command line: the console log of a cloud.
const SerialConsole = "console=tty0 console=ttyS0,115200n8"

// NIC pins an interface name to a MAC address, so the server's own configuration
// (which names the interface) still applies on the cloud's NIC.
type NIC struct{ Name, MAC string }

// Fixup is what the converter changes in the new root tree: file edits made from
// Go, then commands run in a chroot of it.
type Fixup struct {
	Files    map[string]string      // path in the tree → new content
	Modes    map[string]os.FileMode // path in the tree → mode, where not 0644 or the file's own
	Commands [][]string             // each run as: chroot TREE cmd args…
	Notes    []string
}

var macRE = regexp.MustCompile(`^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$`)

// ParseNICs parses "NAME=MAC" pins (eno1=52:54:00:12:34:56).
func ParseNICs(pins []string) ([]NIC, error) {
	var out []NIC
	for _, s := range pins {
		name, mac, ok := strings.Cut(s, "=")
		if !ok || name == "" || !macRE.MatchString(mac) {
			return nil, fmt.Errorf("%q: write NAME=MAC (eno1=52:54:00:12:34:56)", s)
		}
		out = append(out, NIC{Name: name, MAC: mac})
	}
	return out, nil
}

// PlanFixup decides the changes for a server analyzed as a, whose new root file
// system has UUID rootUUID, read from the tree at dir (the new root, after the copy).
// keyPairUser is the existing user who gets the cloud's key pair at the first boot
// (empty: nobody).
func PlanFixup(dir string, a *Analysis, rootUUID, kernel string, nics []NIC, keyPairUser string) (*Fixup, error) {
	f := &Fixup{Files: map[string]string{}, Modes: map[string]os.FileMode{}}
	read := func(p string) string { b, _ := readIn(dir, p); return string(b) }
	// fstab: one root by UUID; entries of the old disk's partitions go (they are all
	// in the one root now); the rest (proc, tmpfs, NFS, …) stays.
	old := read("/etc/fstab")
	var lines []string
	lines = append(lines, "# Written by Hikkoshi's P2V converter: one root file system (was: /etc/fstab.pre-hikkoshi).",
		fmt.Sprintf("UUID=%s  /  ext4  errors=remount-ro  0  1", rootUUID))
	for _, line := range strings.Split(old, "\n") {
		fs := strings.Fields(line)
		if len(fs) < 3 || strings.HasPrefix(fs[0], "#") {
			continue
		}
		// A block device (by UUID, label or path: /dev/sda2, /dev/mapper/vg-lv,
		// /dev/VolGroup00/lv_var, /dev/md0) was on the old disks; proc, tmpfs, NFS
		// and bind mounts name no device.
		onDisk := strings.HasPrefix(fs[0], "UUID=") || strings.HasPrefix(fs[0], "LABEL=") || strings.HasPrefix(fs[0], "PARTUUID=") ||
			strings.HasPrefix(fs[0], "PARTLABEL=") || strings.HasPrefix(fs[0], "/dev/")
		if onDisk {
			if fs[2] == "swap" {
				f.Notes = append(f.Notes, fmt.Sprintf("swap %s dropped: give the instance swap as a volume or a file", fs[0]))
			}
			continue
		}
		lines = append(lines, line)
	}
	f.Files["/etc/fstab.pre-hikkoshi"] = old
	f.Files["/etc/fstab"] = strings.Join(lines, "\n") + "\n"
	// cloud-init, pointed at OpenStack, not touching the network, and keeping the
	// server itself on its first boot (see package cloudinit).
	f.Files[cloudinit.ConfigFile] = cloudinit.Config()
	if keyPairUser != "" {
		if err := cloudinit.CheckUser(keyPairUser); err != nil {
			return nil, fmt.Errorf("p2v: key_pair_user: %w", err)
		}
		if !hasUser(read("/etc/passwd"), keyPairUser) {
			return nil, fmt.Errorf("p2v: key_pair_user %q is not a user of this server (its /etc/passwd): name an existing user, or none", keyPairUser)
		}
		f.Files[cloudinit.KeyPairScriptFile] = cloudinit.KeyPairScript(keyPairUser)
		f.Modes[cloudinit.KeyPairScriptFile] = 0o755
		f.Notes = append(f.Notes, fmt.Sprintf("the cloud's key pair goes to %s's authorized_keys at the first boot", keyPairUser))
	}
	// NIC names pinned to MACs: systemd .link files (udev applies them at boot) and,
	// for a system without systemd's udev (CentOS 6), a persistent-net rule.
	sort.Slice(nics, func(i, j int) bool { return nics[i].Name < nics[j].Name })
	var rules []string
	for _, n := range nics {
		if !macRE.MatchString(n.MAC) || n.Name == "" {
			return nil, fmt.Errorf("p2v: NIC %q=%q: give NAME=MAC (52:54:00:12:34:56)", n.Name, n.MAC)
		}
		mac := strings.ToLower(n.MAC)
		f.Files["/etc/systemd/network/10-hikkoshi-"+n.Name+".link"] = fmt.Sprintf(
			"# Written by Hikkoshi's P2V converter: keep the server's interface name on the cloud's NIC.\n[Match]\nMACAddress=%s\n\n[Link]\nName=%s\n", mac, n.Name)
		rules = append(rules, fmt.Sprintf(`SUBSYSTEM=="net", ACTION=="add", ATTR{address}=="%s", NAME="%s"`, mac, n.Name))
	}
	if len(rules) > 0 && !existsIn(dir, "/lib/systemd/systemd-udevd") && !existsIn(dir, "/usr/lib/systemd/systemd-udevd") {
		f.Files["/etc/udev/rules.d/70-persistent-net.rules"] = strings.Join(rules, "\n") + "\n"
	}
	// The kernel command line, for later updates of the boot configuration too.
	if g := read("/etc/default/grub"); g != "" {
		f.Files["/etc/default/grub"] = withSerial(g)
	}
	// A resume device that is gone makes initramfs-tools wait for it at every boot.
	if r := read("/etc/initramfs-tools/conf.d/resume"); r != "" && !strings.Contains(r, "RESUME=none") {
		f.Files["/etc/initramfs-tools/conf.d/resume"] = "# Written by Hikkoshi's P2V converter: the old disk's swap is gone (was: " +
			strings.TrimSpace(r) + ")\nRESUME=none\n"
	}
	switch a.InitramfsTool {
	case "initramfs-tools":
		mods := read("/etc/initramfs-tools/modules")
		for _, m := range initramfsModules() {
			if !regexp.MustCompile(`(?m)^\s*` + m + `\b`).MatchString(mods) {
				mods += m + "\n"
			}
		}
		f.Files["/etc/initramfs-tools/modules"] = mods
		f.Commands = append(f.Commands, []string{"update-initramfs", "-u", "-k", "all"})
	case "dracut":
		f.Files["/etc/dracut.conf.d/90-hikkoshi-virtio.conf"] = "# Written by Hikkoshi's P2V converter.\nadd_drivers+=\" " + strings.Join(initramfsModules(), " ") + " \"\n"
		for _, k := range a.Kernels {
			f.Commands = append(f.Commands, []string{"dracut", "--force", "--add-drivers", strings.Join(initramfsModules(), " "), "/boot/initramfs-" + k + ".img", k})
		}
	default:
		return nil, fmt.Errorf("%w: no initramfs tool found (initramfs-tools or dracut): the converter cannot add virtio drivers", ErrUnsupported)
	}
	return f, nil
}

var cmdlineRE = regexp.MustCompile(`(?m)^(GRUB_CMDLINE_LINUX=)"(.*)"`)

// oldDiskArg reports whether a kernel argument names the old disk's devices: its
// root, its swap to resume from, the logical volumes dracut must activate
// (rd.lvm.lv=, CentOS 6's rd_LVM_LV=). dracut waits for those and then drops
// to its emergency shell on a disk that has none of them.
func oldDiskArg(a string) bool {
	for _, p := range []string{"root=", "resume=", "rd.lvm.lv=", "rd.lvm.vg=", "rd_LVM_LV=", "rd_LVM_VG=", "rd.md.uuid=", "rd_MD_UUID="} {
		if strings.HasPrefix(a, p) {
			return true
		}
	}
	return a == "rd.lvm=1"
}

// withSerial adds the serial console to /etc/default/grub's kernel command line
// (GRUB_CMDLINE_LINUX, where RHEL keeps rd.lvm.lv=; Debian's _DEFAULT is left as it
// is) and the serial terminal to GRUB, and drops the arguments that name the old
// disk's devices.
func withSerial(g string) string {
	if m := cmdlineRE.FindStringSubmatch(g); m != nil {
		var args []string
		for _, f := range strings.Fields(m[2]) {
			if f != "console=tty0" && !strings.HasPrefix(f, "console=ttyS0") && !oldDiskArg(f) {
				args = append(args, f)
			}
		}
		g = cmdlineRE.ReplaceAllLiteralString(g, m[1]+`"`+strings.Join(append(args, SerialConsole), " ")+`"`)
	} else {
		g += "\nGRUB_CMDLINE_LINUX=\"" + SerialConsole + "\"\n"
	}
	if !strings.Contains(g, "GRUB_TERMINAL") {
		g += "GRUB_TERMINAL=\"console serial\"\nGRUB_SERIAL_COMMAND=\"serial --unit=0 --speed=115200\"\n"
	}
	return g
}

// GrubConfig is the boot menu the converter writes for the new disk (its own, not
// grub-mkconfig's: that would see the conversion host's disks).
func GrubConfig(a *Analysis, rootUUID string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by Hikkoshi's P2V converter.\nserial --unit=0 --speed=115200\nterminal_input console serial\nterminal_output console serial\nset timeout=2\n")
	fmt.Fprintf(&b, "search --no-floppy --fs-uuid --set=root %s\n", rootUUID)
	for i := len(a.Kernels) - 1; i >= 0; i-- { // newest first
		k := a.Kernels[i]
		initrd := "/boot/initrd.img-" + k
		if a.InitramfsTool == "dracut" {
			initrd = "/boot/initramfs-" + k + ".img"
		}
		fmt.Fprintf(&b, "menuentry '%s (%s)' {\n  linux /boot/vmlinuz-%s root=UUID=%s ro %s\n  initrd %s\n}\n", a.OS.Pretty, k, k, rootUUID, SerialConsole, initrd)
	}
	return b.String()
}

// hasUser reports whether an /etc/passwd text has user name.
func hasUser(passwd, name string) bool {
	for _, line := range strings.Split(passwd, "\n") {
		if n, _, ok := strings.Cut(line, ":"); ok && n == name {
			return true
		}
	}
	return false
}
