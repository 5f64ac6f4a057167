// Package p2v turns a physical server's disks into one cloud image. This file
// inspects what is there, read-only: partition table, file systems, fstab, distro
// family and release, kernels, initramfs tool, bootloader, network configuration
// and used bytes. AnalyzeTree works on mounted trees (unit-tested on file trees);
// Inspect attaches a disk image read-only, mounts its partitions read-only, analyzes
// them and detaches everything again, error or not.
package p2v

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v2"
)

// FstabEntry is one line of /etc/fstab.
type FstabEntry struct {
	Spec       string `json:"spec"` // UUID=…, LABEL=…, /dev/sda1, …
	MountPoint string `json:"mount_point"`
	FSType     string `json:"fs_type"`
	Options    string `json:"options"`
	// Partition is the source partition the spec names ("" when it names none:
	// proc, tmpfs, swap files, a device not on this disk).
	Partition string `json:"partition,omitempty"`
}

// OS is the installed system.
type OS struct {
	ID      string `json:"id"`      // debian, ubuntu, centos, rhel, rocky, …
	Family  string `json:"family"`  // debian or rhel (or "" when unknown)
	Version string `json:"version"` // VERSION_ID, or the release from /etc/redhat-release
	Pretty  string `json:"pretty"`
}

// NetConfig is how the server configures its network.
type NetConfig struct {
	Kind  string   `json:"kind"` // ifupdown, netplan, networkmanager, ifcfg
	Files []string `json:"files"`
	// Interfaces are the configured interfaces with "static" or "dhcp".
	Interfaces map[string]string `json:"interfaces"`
}

// Analysis is what a server's trees hold.
type Analysis struct {
	OS            OS           `json:"os"`
	Fstab         []FstabEntry `json:"fstab"`
	Kernels       []string     `json:"kernels"`        // versions with a vmlinuz in /boot
	InitramfsTool string       `json:"initramfs_tool"` // initramfs-tools or dracut
	Bootloader    string       `json:"bootloader"`     // grub2, grub-legacy, or ""
	GrubConfig    string       `json:"grub_config"`    // the configuration file found
	Network       []NetConfig  `json:"network"`
	CloudInit     bool         `json:"cloud_init"`
	// PowerButton says whether something answers the ACPI power button
	// (systemd-logind with D-Bus, or acpid), which is how Nova's stop asks a
	// server to shut down.
	PowerButton bool `json:"power_button"`
	// SSHHostKeys are the server's SSH host key fingerprints as ssh-keygen -l shows
	// them ("ED25519 SHA256:…"), to compare with what the moved server prints on its
	// console at its first boot.
	SSHHostKeys []string `json:"ssh_host_keys,omitempty"`
	// Firmware is "bios", or "uefi" when the disk has an EFI system partition.
	Firmware string   `json:"firmware"`
	Problems []string `json:"problems,omitempty"`
}

// AnalyzeTree analyzes the server mounted at roots: mount point ("/", "/boot",
// "/var", …) → directory. Only "/" is required.
func AnalyzeTree(roots map[string]string) (*Analysis, error) {
	if _, ok := roots["/"]; !ok {
		return nil, fmt.Errorf("p2v: no root file system")
	}
	g := guest(roots)
	a := &Analysis{}
	a.OS = readOS(g)
	var err error
	if a.Fstab, err = readFstab(g); err != nil {
		a.Problems = append(a.Problems, err.Error())
	}
	for _, n := range g.readDir("/boot") {
		if v, ok := strings.CutPrefix(n, "vmlinuz-"); ok {
			a.Kernels = append(a.Kernels, v)
		}
	}
	sort.Strings(a.Kernels)
	if len(a.Kernels) == 0 {
		a.Problems = append(a.Problems, "no kernel (vmlinuz-*) in /boot")
	}
	for _, t := range []struct{ file, tool string }{
		{"/usr/sbin/update-initramfs", "initramfs-tools"}, {"/usr/bin/dracut", "dracut"}, {"/sbin/dracut", "dracut"}, {"/usr/sbin/dracut", "dracut"},
	} {
		if g.exists(t.file) {
			a.InitramfsTool = t.tool
			break
		}
	}
	for _, b := range []struct{ file, kind string }{
		{"/boot/grub2/grub.cfg", "grub2"}, {"/boot/grub/grub.cfg", "grub2"}, {"/boot/grub/menu.lst", "grub-legacy"}, {"/boot/grub/grub.conf", "grub-legacy"},
	} {
		if g.exists(b.file) {
			a.Bootloader, a.GrubConfig = b.kind, b.file
			break
		}
	}
	a.Network = readNetwork(g)
	a.CloudInit = g.exists("/usr/bin/cloud-init")
	a.PowerButton = powerButton(g)
	a.SSHHostKeys = hostKeys(g)
	return a, nil
}

// powerButton reports whether the guest answers the ACPI power button: acpid, or
// systemd-logind, which needs D-Bus to start (a server without D-Bus has a logind
// binary that never runs).
func powerButton(g guest) bool {
	has := func(paths ...string) bool {
		for _, p := range paths {
			if g.exists(p) {
				return true
			}
		}
		return false
	}
	return has("/usr/sbin/acpid", "/sbin/acpid") ||
		has("/lib/systemd/systemd-logind", "/usr/lib/systemd/systemd-logind") && has("/usr/bin/dbus-daemon", "/usr/bin/dbus-broker")
}

// hostKeys reads the fingerprints of the guest's host keys
// (/etc/ssh/ssh_host_*_key.pub), sorted.
func hostKeys(g guest) []string {
	var out []string
	for _, p := range g.glob("/etc/ssh/ssh_host_*_key.pub") {
		b, err := g.read(p)
		if err != nil || len(b) > 64<<10 {
			continue
		}
		if fp := Fingerprint(string(b)); fp != "" {
			out = append(out, fp)
		}
	}
	sort.Strings(out)
	return out
}

// Fingerprint is an OpenSSH public key line's fingerprint as ssh-keygen -l shows
// it, type first ("ED25519 SHA256:…"); "" if the line is not a public key.
func Fingerprint(line string) string {
	f := strings.Fields(line)
	if len(f) < 2 {
		return ""
	}
	blob, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil {
		return ""
	}
	kind := map[string]string{"ssh-ed25519": "ED25519", "ssh-rsa": "RSA", "ssh-dss": "DSA",
		"ecdsa-sha2-nistp256": "ECDSA", "ecdsa-sha2-nistp384": "ECDSA", "ecdsa-sha2-nistp521": "ECDSA"}[f[0]]
	if kind == "" {
		return ""
	}
	sum := sha256.Sum256(blob)
	return kind + " SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// readKV reads a KEY=value file of the guest (os-release, ifcfg, keyfiles).
func readKV(g guest, file string) map[string]string {
	out := map[string]string{}
	b, err := g.read(file)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && !strings.HasPrefix(k, "#") {
			out[k] = strings.Trim(v, `"'`)
		}
	}
	return out
}

var redhatRelease = regexp.MustCompile(`^(.*?) release ([0-9.]+)`)

func readOS(g guest) OS {
	kv := readKV(g, "/etc/os-release")
	o := OS{ID: kv["ID"], Version: kv["VERSION_ID"], Pretty: kv["PRETTY_NAME"]}
	like := " " + kv["ID"] + " " + kv["ID_LIKE"] + " "
	switch {
	case strings.Contains(like, " debian ") || strings.Contains(like, " ubuntu "):
		o.Family = "debian"
	case strings.Contains(like, " rhel ") || strings.Contains(like, " fedora ") || strings.Contains(like, " centos "):
		o.Family = "rhel"
	}
	if o.ID == "" { // CentOS 6, RHEL 6: no os-release
		if b, err := g.read("/etc/redhat-release"); err == nil {
			line := strings.TrimSpace(string(b))
			o.Pretty, o.Family = line, "rhel"
			if m := redhatRelease.FindStringSubmatch(line); m != nil {
				o.Version = m[2]
				o.ID = strings.ToLower(strings.Fields(m[1])[0])
			}
		} else if b, err := g.read("/etc/debian_version"); err == nil {
			o.ID, o.Family, o.Version = "debian", "debian", strings.TrimSpace(string(b))
		}
	}
	return o
}

func readFstab(g guest) ([]FstabEntry, error) {
	b, err := g.read("/etc/fstab")
	if err != nil {
		return nil, fmt.Errorf("p2v: /etc/fstab: %w", err)
	}
	var out []FstabEntry
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fs := strings.Fields(line)
		if len(fs) < 3 {
			continue
		}
		e := FstabEntry{Spec: fs[0], MountPoint: fs[1], FSType: fs[2]}
		if len(fs) > 3 {
			e.Options = fs[3]
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

var (
	ifaceRE = regexp.MustCompile(`(?m)^\s*iface\s+(\S+)\s+inet6?\s+(\S+)`)
)

func readNetwork(g guest) []NetConfig {
	var out []NetConfig
	// ifupdown (Debian family)
	files := append([]string{}, g.glob("/etc/network/interfaces")...)
	files = append(files, g.glob("/etc/network/interfaces.d/*")...)
	if len(files) > 0 {
		nc := NetConfig{Kind: "ifupdown", Interfaces: map[string]string{}}
		for _, f := range files {
			b, _ := g.read(f)
			nc.Files = append(nc.Files, f)
			for _, m := range ifaceRE.FindAllStringSubmatch(string(b), -1) {
				if m[1] != "lo" {
					nc.Interfaces[m[1]] = m[2]
				}
			}
		}
		if len(nc.Interfaces) > 0 {
			out = append(out, nc)
		}
	}
	// netplan (Ubuntu)
	if files := g.glob("/etc/netplan/*.yaml"); len(files) > 0 {
		nc := NetConfig{Kind: "netplan", Files: files, Interfaces: map[string]string{}}
		for _, f := range files {
			b, _ := g.read(f)
			var doc struct {
				Network map[string]any `yaml:"network"`
			}
			if yaml.Unmarshal(b, &doc) != nil {
				continue
			}
			for _, kind := range []string{"ethernets", "bonds", "vlans", "bridges"} {
				ifs, _ := doc.Network[kind].(map[any]any)
				for name, v := range ifs {
					conf, _ := v.(map[any]any)
					mode := "static"
					if d, _ := conf["dhcp4"].(bool); d {
						mode = "dhcp"
					}
					nc.Interfaces[fmt.Sprint(name)] = mode
				}
			}
		}
		out = append(out, nc)
	}
	// NetworkManager keyfiles
	if files := g.glob("/etc/NetworkManager/system-connections/*"); len(files) > 0 {
		nc := NetConfig{Kind: "networkmanager", Files: files, Interfaces: map[string]string{}}
		for _, f := range files {
			kv := readKV(g, f)
			name := kv["interface-name"]
			if name == "" {
				name = strings.TrimSuffix(filepath.Base(f), ".nmconnection")
			}
			nc.Interfaces[name] = map[string]string{"manual": "static", "auto": "dhcp"}[kv["method"]]
		}
		out = append(out, nc)
	}
	// RHEL family ifcfg
	if files := g.glob("/etc/sysconfig/network-scripts/ifcfg-*"); len(files) > 0 {
		nc := NetConfig{Kind: "ifcfg", Interfaces: map[string]string{}}
		for _, f := range files {
			kv := readKV(g, f)
			dev := kv["DEVICE"]
			if dev == "" {
				dev = strings.TrimPrefix(filepath.Base(f), "ifcfg-")
			}
			if dev == "lo" {
				continue
			}
			nc.Files = append(nc.Files, f)
			mode := "static"
			if strings.EqualFold(kv["BOOTPROTO"], "dhcp") {
				mode = "dhcp"
			}
			nc.Interfaces[dev] = mode
		}
		if len(nc.Interfaces) > 0 {
			out = append(out, nc)
		}
	}
	return out
}
