package cloudinit_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hikkoshi/hikkoshi/platform/p2vtest"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/cloudinit"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/p2v"
)

// stockFirstBoot is the user data of the old cloud's first boot of a stock Debian
// cloud guest: Debian 12's own module lists and defaults (the fixture's conversion
// has Hikkoshi's cloud.cfg.d file, which this boot removes, so the guest is a stock
// cloud guest from then on).
const stockFirstBoot = `#cloud-config
preserve_hostname: false
users: [default]
disable_root: true
ssh_deletekeys: true
ssh_genkeytypes: [rsa, ecdsa, ed25519]
cloud_init_modules: [migrator, seed_random, bootcmd, write-files, growpart, resizefs, disk_setup, mounts, set_hostname, update_hostname, update_etc_hosts, ca-certs, rsyslog, users-groups, ssh]
cloud_config_modules: [snap, ssh-import-id, keyboard, locale, set-passwords, grub-dpkg, apt-pipelining, apt-configure, ntp, timezone, disable-ec2-metadata, runcmd, byobu]
cloud_final_modules: [package-update-upgrade-install, fan, landscape, lxd, write-files-deferred, puppet, chef, mcollective, salt-minion, reset_rmc, refresh_rmc_and_interface, rightscale_userdata, scripts-vendor, scripts-per-once, scripts-per-boot, scripts-per-instance, scripts-user, ssh-authkey-fingerprints, keys-to-console, install-hotplug, phone-home, final-message, power-state-change]
runcmd: [[rm, -f, /etc/cloud/cloud.cfg.d/90-hikkoshi.cfg]]
`

const powerOff = "power_state: {mode: poweroff, delay: now, message: hikkoshi test boot done}\n"

// TestV2VUserDataKeepsAStockGuest is a V2V move's first boot, as far as the guest can
// tell: a stock Debian cloud guest (cloud-init 22.4 with Debian's configuration) had
// its first boot in the old cloud (new host keys, the default user, the old key pair
// in root's authorized_keys behind a forced command); booted again as a new instance
// (another instance ID and key pair, as the new cloud gives it) with the
// user data a V2V job boots with, it keeps all of that as it was: the same host keys
// (printed on the console, where an operator checks them), users, root's keys, host
// name; the new key pair goes to the user the job named, and nowhere else.
func TestV2VUserDataKeepsAStockGuest(t *testing.T) {
	disk := p2vtest.Fixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), 25*time.Minute)
	defer cancel()
	work := t.TempDir()
	const mac = "52:54:00:12:34:5a"
	res, err := p2v.Convert(ctx, disk, p2v.Options{Work: filepath.Join(work, "build"), NICs: []p2v.NIC{{Name: "eno1", MAC: mac}}})
	if err != nil {
		t.Fatal(err)
	}
	disk1 := filepath.Join(work, "guest.qcow2")
	runT(ctx, t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", res.Image, "-F", "qcow2", disk1)

	const oldKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHikkoshiTheOldCloudKeyPair000000000000000000 old@nova"
	const newKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHikkoshiTheNewCloudKeyPair000000000000000000 new@nova"
	files := []string{"/etc/ssh/ssh_host_ed25519_key.pub", "/etc/ssh/ssh_host_rsa_key.pub", "/etc/ssh/ssh_host_ecdsa_key.pub",
		"/etc/passwd", "/etc/shadow", "/etc/group", "/root/.ssh/authorized_keys", "/home/ops/.ssh/authorized_keys",
		"/etc/hostname", "/etc/hosts", "/etc/apt/sources.list", "/var/lib/cloud/data/instance-id"}

	// The old cloud's first boot.
	boot(ctx, t, work, disk1, mac, "old-instance-0001", "web-1", oldKey, stockFirstBoot+powerOff)
	old := read(ctx, t, work, disk1, "read-1", files)
	fixture, err := p2v.ReadFiles(ctx, disk, filepath.Join(work, "read-0"), "/etc/ssh/ssh_host_ed25519_key.pub")
	if err != nil {
		t.Fatal(err)
	}
	// The premise: a stock guest's first boot changes what a move must keep.
	if string(old["/etc/ssh/ssh_host_ed25519_key.pub"]) == string(fixture["/etc/ssh/ssh_host_ed25519_key.pub"]) ||
		!strings.Contains(string(old["/etc/passwd"]), "\ndebian:") || !strings.Contains(string(old["/root/.ssh/authorized_keys"]), "old@nova") {
		t.Fatalf("the stock first boot did not act as Debian's cloud-init does (new host keys, user debian, root's keys):\n%s\n%s",
			old["/etc/passwd"], old["/root/.ssh/authorized_keys"])
	}

	// The first boot in the new cloud, with a V2V job's user data.
	ud := cloudinit.UserData(cloudinit.Options{KeyPairUser: "ops"}) + powerOff
	// The job keeps the server's name, so the new cloud's metadata names the same
	// host (cloud-init sets the host name from the metadata before it reads the user
	// data, on a stock guest).
	console := boot(ctx, t, work, disk1, mac, "new-instance-0002", "web-1", newKey, ud)
	now := read(ctx, t, work, disk1, "read-2", files)
	if got := strings.TrimSpace(string(now["/var/lib/cloud/data/instance-id"])); got != "new-instance-0002" {
		t.Fatalf("instance ID %q after the second boot: cloud-init did not see a new instance", got)
	}
	for _, f := range files[:len(files)-1] {
		want := string(old[f])
		if f == "/home/ops/.ssh/authorized_keys" {
			want += newKey + "\n"
		}
		if string(now[f]) != want {
			t.Errorf("%s after the first boot in the new cloud:\n%s\nwant:\n%s", f, now[f], want)
		}
	}
	pub := strings.Fields(string(old["/etc/ssh/ssh_host_ed25519_key.pub"]))
	if !strings.Contains(console, pub[0]+" "+pub[1]) {
		t.Error("the console's host keys lack the guest's ED25519 key")
	}
}

// boot boots disk (writable) with a config drive of instance id, host name, one key
// and user data, until the guest powers off; it returns the console.
func boot(ctx context.Context, t *testing.T, work, disk, mac, id, host, key, userData string) string {
	t.Helper()
	meta, _ := json.Marshal(map[string]any{"uuid": id, "name": host, "hostname": host,
		"public_keys": map[string]string{"k": key}, "launch_index": 0, "availability_zone": "nova"})
	drive := filepath.Join(work, id+".img")
	p2vtest.ConfigDrive(t, drive, string(meta), userData)
	start := time.Now()
	console, ok, err := p2v.Boot(ctx, p2v.BootOptions{Disk: disk, Format: "qcow2", Bus: "virtio", MAC: mac, Writable: true, Drives: []string{drive},
		Want: `reboot: Power down`, Fail: []string{`Kernel panic`, `emergency mode`}, Timeout: 10 * time.Minute})
	lines := strings.Split(console, "\n")
	if err != nil || !ok {
		t.Fatalf("boot of %s did not end in a power-off (%v) after %v:\n%s", id, err, time.Since(start).Round(time.Second), strings.Join(lines[max(0, len(lines)-40):], "\n"))
	}
	if !regexp.MustCompile(`Cloud-init v\. \S+ finished`).MatchString(console) {
		t.Fatalf("boot of %s: cloud-init did not finish", id)
	}
	t.Logf("boot of %s: powered off after %v", id, time.Since(start).Round(time.Second))
	return console
}

func read(ctx context.Context, t *testing.T, work, disk, name string, files []string) map[string][]byte {
	t.Helper()
	raw := filepath.Join(work, name+".raw")
	runT(ctx, t, "qemu-img", "convert", "-O", "raw", disk, raw)
	defer runT(ctx, t, "rm", "-f", raw)
	got, err := p2v.ReadFiles(ctx, raw, filepath.Join(work, name), files...)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func runT(ctx context.Context, t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
}
