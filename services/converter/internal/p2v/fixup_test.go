package p2v

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hikkoshi/hikkoshi/services/converter/internal/cloudinit"
)

func TestPlanFixupDebian(t *testing.T) {
	dir := tree(t, map[string]string{
		"etc/fstab":                         "UUID=a / ext4 errors=remount-ro 0 1\nUUID=b /boot ext4 defaults 0 2\nUUID=c /var ext4 defaults 0 2\nproc /proc proc defaults 0 0\n",
		"etc/initramfs-tools/modules":       "ata_piix\nahci\n",
		"lib/systemd/systemd-udevd":         "",
		"etc/default/grub":                  "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX=\"\"\n",
		"etc/initramfs-tools/conf.d/resume": "RESUME=/dev/mapper/vg--legacy-swap\n",
	})
	a := &Analysis{OS: OS{Family: "debian", Pretty: "Debian 12"}, InitramfsTool: "initramfs-tools", Kernels: []string{"6.1.0-27-amd64"}}
	f, err := PlanFixup(dir, a, "new-uuid", "6.1.0-27-amd64", []NIC{{Name: "eno1", MAC: "52:54:00:AA:BB:CC"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Files["/etc/fstab"]; !strings.Contains(got, "UUID=new-uuid  /  ext4") || strings.Contains(got, "UUID=b") || !strings.Contains(got, "proc /proc proc") {
		t.Fatalf("fstab:\n%s", got)
	}
	if got := f.Files["/etc/initramfs-tools/modules"]; got != "ata_piix\nahci\nvirtio_pci\nvirtio_blk\nvirtio_scsi\nvirtio_net\ncdrom\nsr_mod\n" {
		t.Fatalf("modules %q", got)
	}
	if !reflect.DeepEqual(f.Commands, [][]string{{"update-initramfs", "-u", "-k", "all"}}) {
		t.Fatalf("commands %v", f.Commands)
	}
	if got := f.Files["/etc/systemd/network/10-hikkoshi-eno1.link"]; !strings.Contains(got, "MACAddress=52:54:00:aa:bb:cc") || !strings.Contains(got, "Name=eno1") {
		t.Fatalf("link file %q", got)
	}
	if _, ok := f.Files["/etc/udev/rules.d/70-persistent-net.rules"]; ok {
		t.Fatal("a udev rule on a systemd system")
	}
	if got := f.Files["/etc/default/grub"]; !strings.Contains(got, `GRUB_CMDLINE_LINUX="`+SerialConsole+`"`) || !strings.Contains(got, "GRUB_TERMINAL") {
		t.Fatalf("default/grub:\n%s", got)
	}
	if got := f.Files["/etc/initramfs-tools/conf.d/resume"]; !strings.HasSuffix(got, "\nRESUME=none\n") {
		t.Fatalf("resume conf %q", got)
	}
	if f.Files[cloudinit.ConfigFile] != cloudinit.Config() || !strings.Contains(cloudinit.Config(), "network: {config: disabled}") {
		t.Fatal("cloud-init config")
	}
}

// TestPlanFixupRHEL covers the RHEL family on file trees: dracut with the virtio
// drivers for every kernel, grub2's defaults, ifcfg left alone (the MAC pin is a
// link file), and CentOS 6 (no systemd's udev: a persistent-net rule; LVM root and
// swap entries of the old disk dropped with a note).
func TestPlanFixupRHEL(t *testing.T) {
	rhel8 := tree(t, map[string]string{
		"etc/fstab":                                  "UUID=d / xfs defaults 0 0\nUUID=e /boot xfs defaults 0 0\n",
		"etc/default/grub":                           "GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX=\"crashkernel=auto resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap rhgb quiet console=tty0\"\n",
		"usr/lib/systemd/systemd-udevd":              "",
		"etc/sysconfig/network-scripts/ifcfg-ens192": "DEVICE=ens192\nBOOTPROTO=none\nIPADDR=10.0.0.8\n",
	})
	a := &Analysis{OS: OS{Family: "rhel", Pretty: "RHEL 8.9"}, InitramfsTool: "dracut", Kernels: []string{"4.18.0-477.el8.x86_64", "4.18.0-513.el8.x86_64"}}
	f, err := PlanFixup(rhel8, a, "u8", "4.18.0-513.el8.x86_64", []NIC{{Name: "ens192", MAC: "00:50:56:01:02:03"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Files["/etc/default/grub"]; !strings.Contains(got, `GRUB_CMDLINE_LINUX="crashkernel=auto rhgb quiet `+SerialConsole+`"`) {
		t.Fatalf("default/grub (the old disk's LVs and resume device gone, the serial console in):\n%s", got)
	}
	if again := withSerial(f.Files["/etc/default/grub"]); again != f.Files["/etc/default/grub"] {
		t.Fatalf("withSerial twice:\n%s", again)
	}
	if got := f.Files["/etc/dracut.conf.d/90-hikkoshi-virtio.conf"]; !strings.Contains(got, `add_drivers+=" virtio_pci virtio_blk virtio_scsi virtio_net cdrom sr_mod "`) {
		t.Fatalf("dracut conf %q", got)
	}
	if len(f.Commands) != 2 || f.Commands[1][0] != "dracut" || f.Commands[1][4] != "/boot/initramfs-4.18.0-513.el8.x86_64.img" || f.Commands[1][5] != "4.18.0-513.el8.x86_64" {
		t.Fatalf("commands %v", f.Commands)
	}
	if _, ok := f.Files["/etc/sysconfig/network-scripts/ifcfg-ens192"]; ok {
		t.Fatal("the server's ifcfg was rewritten")
	}
	if g := GrubConfig(a, "u8"); !strings.Contains(g, "initrd /boot/initramfs-4.18.0-513.el8.x86_64.img") || strings.Index(g, "513") > strings.Index(g, "477") {
		t.Fatalf("grub.cfg (newest kernel first, dracut's initramfs names):\n%s", g)
	}

	centos6 := tree(t, map[string]string{
		"etc/fstab": "/dev/mapper/vg_root-lv_root / ext4 defaults 1 1\nUUID=f /boot ext4 defaults 1 2\n/dev/vg_root/lv_var /var ext4 defaults 1 2\n" +
			"/dev/mapper/vg_root-lv_swap swap swap defaults 0 0\ntmpfs /dev/shm tmpfs defaults 0 0\nnas:/export /srv nfs defaults 0 0\n",
	})
	a6 := &Analysis{OS: OS{Family: "rhel"}, InitramfsTool: "dracut", Kernels: []string{"2.6.32-754.el6.x86_64"}}
	f6, err := PlanFixup(centos6, a6, "u6", "2.6.32-754.el6.x86_64", []NIC{{Name: "eth0", MAC: "52:54:00:00:00:01"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := f6.Files["/etc/udev/rules.d/70-persistent-net.rules"]; got != `SUBSYSTEM=="net", ACTION=="add", ATTR{address}=="52:54:00:00:00:01", NAME="eth0"`+"\n" {
		t.Fatalf("udev rule %q", got)
	}
	fst := f6.Files["/etc/fstab"]
	if strings.Contains(fst, "/dev/mapper") || strings.Contains(fst, "/dev/vg_root") || !strings.Contains(fst, "tmpfs /dev/shm") || !strings.Contains(fst, "nas:/export") || len(f6.Notes) != 1 || !strings.Contains(f6.Notes[0], "swap") {
		t.Fatalf("fstab:\n%s\nnotes %v", fst, f6.Notes)
	}
	if _, err := PlanFixup(centos6, a6, "u6", "", []NIC{{Name: "eth0", MAC: "not-a-mac"}}, ""); err == nil {
		t.Fatal("a bad MAC accepted")
	}
	if _, err := PlanFixup(centos6, &Analysis{OS: OS{Family: "rhel"}}, "u6", "", nil, ""); err == nil {
		t.Fatal("no initramfs tool accepted")
	}
}

func TestPlanFixupKeyPairUser(t *testing.T) {
	dir := tree(t, map[string]string{
		"etc/fstab":                   "UUID=a / ext4 errors=remount-ro 0 1\n",
		"etc/initramfs-tools/modules": "",
		"etc/passwd":                  "root:x:0:0:root:/root:/bin/bash\nops:x:1000:1000::/home/ops:/bin/bash\n",
	})
	a := &Analysis{OS: OS{Family: "debian"}, InitramfsTool: "initramfs-tools"}
	f, err := PlanFixup(dir, a, "u", "k", nil, "ops")
	if err != nil {
		t.Fatal(err)
	}
	if f.Files[cloudinit.KeyPairScriptFile] != cloudinit.KeyPairScript("ops") || f.Modes[cloudinit.KeyPairScriptFile] != 0o755 {
		t.Fatalf("key pair script %q mode %v", f.Files[cloudinit.KeyPairScriptFile], f.Modes[cloudinit.KeyPairScriptFile])
	}
	if f, err := PlanFixup(dir, a, "u", "k", nil, ""); err != nil || f.Files[cloudinit.KeyPairScriptFile] != "" {
		t.Fatalf("no key pair user: %v, script %q", err, f.Files[cloudinit.KeyPairScriptFile])
	}
	for _, bad := range []string{"alice", "op", "ops;id"} {
		if _, err := PlanFixup(dir, a, "u", "k", nil, bad); err == nil || !strings.Contains(err.Error(), "key_pair_user") {
			t.Errorf("key_pair_user %q: %v", bad, err)
		}
	}
}
