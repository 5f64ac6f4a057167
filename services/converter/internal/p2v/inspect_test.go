package p2v

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// tree writes files (path → content) under a temporary directory.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestAnalyzeTree(t *testing.T) {
	for _, tc := range []struct {
		name   string
		root   map[string]string
		boot   map[string]string // a separate /boot file system, if any
		os     OS
		tool   string
		loader string
		cfg    string
		net    []NetConfig
		fstab  int
	}{
		{
			name: "debian with /boot apart, ifupdown",
			root: map[string]string{
				"etc/os-release":            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
				"etc/fstab":                 "# x\nUUID=a / ext4 errors=remount-ro 0 1\nUUID=b /boot ext4 defaults 0 2\nproc /proc proc defaults 0 0\n",
				"usr/sbin/update-initramfs": "",
				"etc/network/interfaces":    "auto lo\niface lo inet loopback\nauto eno1\niface eno1 inet static\n  address 10.0.0.5/24\n",
			},
			boot: map[string]string{"vmlinuz-6.1.0-27-amd64": "", "grub/grub.cfg": ""},
			os:   OS{ID: "debian", Family: "debian", Version: "12", Pretty: "Debian GNU/Linux 12 (bookworm)"},
			tool: "initramfs-tools", loader: "grub2", cfg: "/boot/grub/grub.cfg", fstab: 3,
			net: []NetConfig{{Kind: "ifupdown", Interfaces: map[string]string{"eno1": "static"}}},
		},
		{
			name: "centos 6: no os-release, legacy grub, ifcfg",
			root: map[string]string{
				"etc/redhat-release":                 "CentOS release 6.10 (Final)\n",
				"etc/fstab":                          "/dev/mapper/x / ext4 defaults 1 1\nUUID=c /boot ext4 defaults 1 2\n",
				"sbin/dracut":                        "",
				"boot/vmlinuz-2.6.32-754.el6.x86_64": "", "boot/grub/menu.lst": "",
				"etc/sysconfig/network-scripts/ifcfg-lo":   "DEVICE=lo\n",
				"etc/sysconfig/network-scripts/ifcfg-eth0": "DEVICE=eth0\nBOOTPROTO=none\nIPADDR=10.0.0.6\nHWADDR=52:54:00:00:00:01\n",
			},
			os:   OS{ID: "centos", Family: "rhel", Version: "6.10", Pretty: "CentOS release 6.10 (Final)"},
			tool: "dracut", loader: "grub-legacy", cfg: "/boot/grub/menu.lst", fstab: 2,
			net: []NetConfig{{Kind: "ifcfg", Interfaces: map[string]string{"eth0": "static"}}},
		},
		{
			name: "rhel 8: grub2 in /boot/grub2, dracut, ifcfg and a NetworkManager keyfile",
			root: map[string]string{
				"etc/os-release":                     "ID=\"rhel\"\nID_LIKE=\"fedora\"\nVERSION_ID=\"8.9\"\nPRETTY_NAME=\"Red Hat Enterprise Linux 8.9\"\n",
				"etc/fstab":                          "UUID=d / xfs defaults 0 0\n",
				"usr/bin/dracut":                     "",
				"boot/vmlinuz-4.18.0-513.el8.x86_64": "", "boot/grub2/grub.cfg": "",
				"etc/sysconfig/network-scripts/ifcfg-ens192":               "DEVICE=ens192\nBOOTPROTO=dhcp\n",
				"etc/NetworkManager/system-connections/bond0.nmconnection": "[connection]\ninterface-name=bond0\n[ipv4]\nmethod=manual\n",
			},
			os:   OS{ID: "rhel", Family: "rhel", Version: "8.9", Pretty: "Red Hat Enterprise Linux 8.9"},
			tool: "dracut", loader: "grub2", cfg: "/boot/grub2/grub.cfg", fstab: 1,
			net: []NetConfig{
				{Kind: "networkmanager", Interfaces: map[string]string{"bond0": "static"}},
				{Kind: "ifcfg", Interfaces: map[string]string{"ens192": "dhcp"}},
			},
		},
		{
			name: "ubuntu: netplan",
			root: map[string]string{
				"etc/os-release":            "ID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"22.04\"\n",
				"etc/fstab":                 "UUID=e / ext4 defaults 0 1\n",
				"usr/sbin/update-initramfs": "", "boot/vmlinuz-5.15.0-91-generic": "", "boot/grub/grub.cfg": "",
				"etc/netplan/50-cloud.yaml": "network:\n  version: 2\n  ethernets:\n    enp3s0:\n      addresses: [10.0.0.7/24]\n      nameservers:\n        addresses: [10.0.0.2]\n" +
					"    enp4s0:\n      dhcp4: true\n  bonds:\n    bond0:\n      interfaces: [enp3s0]\n      addresses: [10.0.1.7/24]\n",
			},
			os:   OS{ID: "ubuntu", Family: "debian", Version: "22.04"},
			tool: "initramfs-tools", loader: "grub2", cfg: "/boot/grub/grub.cfg", fstab: 1,
			net: []NetConfig{{Kind: "netplan", Interfaces: map[string]string{"enp3s0": "static", "enp4s0": "dhcp", "bond0": "static"}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			roots := map[string]string{"/": tree(t, tc.root)}
			if tc.boot != nil {
				roots["/boot"] = tree(t, tc.boot)
			}
			a, err := AnalyzeTree(roots)
			if err != nil {
				t.Fatal(err)
			}
			if a.OS != tc.os || a.InitramfsTool != tc.tool || a.Bootloader != tc.loader || a.GrubConfig != tc.cfg || len(a.Fstab) != tc.fstab {
				t.Fatalf("got os %+v tool %q loader %q (%s) fstab %d; want %+v %q %q (%s) %d", a.OS, a.InitramfsTool, a.Bootloader, a.GrubConfig, len(a.Fstab),
					tc.os, tc.tool, tc.loader, tc.cfg, tc.fstab)
			}
			if len(a.Kernels) != 1 || len(a.Problems) != 0 {
				t.Fatalf("kernels %v, problems %v", a.Kernels, a.Problems)
			}
			if len(a.Network) != len(tc.net) {
				t.Fatalf("network %+v, want %+v", a.Network, tc.net)
			}
			for i, n := range tc.net {
				if a.Network[i].Kind != n.Kind || !reflect.DeepEqual(a.Network[i].Interfaces, n.Interfaces) {
					t.Fatalf("network[%d] %+v, want %+v", i, a.Network[i], n)
				}
			}
		})
	}
}

func TestAnalyzeTreeProblems(t *testing.T) {
	a, err := AnalyzeTree(map[string]string{"/": tree(t, map[string]string{"etc/os-release": "ID=debian\n"})})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Problems) != 2 { // no fstab, no kernel
		t.Fatalf("problems %v", a.Problems)
	}
	if _, err := AnalyzeTree(map[string]string{"/boot": t.TempDir()}); err == nil {
		t.Fatal("no root accepted")
	}
}

// TestHostKeyFingerprints: the inspection's fingerprints are ssh-keygen -l's; a host
// key that is a link (a crafted disk's, pointing at the worker's files) is not read.
func TestHostKeyFingerprints(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("no ssh-keygen here")
	}
	root := t.TempDir()
	dir := filepath.Join(root, "etc/ssh")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, kind := range []string{"ed25519", "ecdsa", "rsa"} {
		key := filepath.Join(dir, "ssh_host_"+kind+"_key")
		if out, err := exec.Command("ssh-keygen", "-q", "-t", kind, "-N", "", "-f", key).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
		out, err := exec.Command("ssh-keygen", "-l", "-f", key+".pub").Output()
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(out)) // 256 SHA256:… comment (ED25519)
		want = append(want, strings.Trim(f[len(f)-1], "()")+" "+f[1])
	}
	if err := os.Symlink("/etc/hostname", filepath.Join(dir, "ssh_host_dsa_key.pub")); err != nil {
		t.Fatal(err)
	}
	sort.Strings(want)
	if got := hostKeys(guest{"/": root}); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("fingerprints\n%s\nwant (ssh-keygen -l)\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if Fingerprint("not a key") != "" || Fingerprint("ssh-ed25519 !!!") != "" {
		t.Fatal("a line that is no key has a fingerprint")
	}
}
