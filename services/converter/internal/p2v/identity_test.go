package p2v

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hikkoshi/hikkoshi/platform/p2vtest"
)

// identityFiles are what a moved server is: they must be the same after its first
// boot in the cloud as on the physical server.
var identityFiles = []string{
	"/etc/ssh/ssh_host_ed25519_key.pub", "/etc/ssh/ssh_host_ecdsa_key.pub", "/etc/ssh/ssh_host_rsa_key.pub",
	"/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/sshd_config",
	"/etc/passwd", "/etc/shadow", "/etc/group", "/etc/sudoers",
	"/root/.ssh/authorized_keys",
	"/etc/hostname", "/etc/hosts", "/etc/apt/sources.list", "/etc/network/interfaces",
}

// TestFirstCloudBootKeepsTheServer converts the fixture's server of two disks (/var
// on the second) with the cloud's key pair going to its user ops, then boots the
// image as a cloud would the first time: on a bigger disk (a flavor's), with an
// OpenStack config drive (another host name, a key pair, user data). cloud-init runs
// (it records the config drive's instance ID and prints the host keys on the
// console) and then the server is still itself: host keys, users, passwords, root's
// authorized_keys, host name, /etc/hosts and package sources as they were; ops has
// its own key and the cloud's; no default user; the root file system grown to the
// bigger disk. Given only the first disk, the conversion is refused, naming /var;
// the source disks are unchanged (SHA-256).
func TestFirstCloudBootKeepsTheServer(t *testing.T) {
	a, b := p2vtest.FixtureTwoDisks(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	work := t.TempDir()
	if _, _, err := Inspect(ctx, a, filepath.Join(work, "one")); err == nil || !strings.Contains(err.Error(), "/var (/dev/sdb1)") {
		t.Fatalf("the first disk alone: %v, want a refusal naming /var (/dev/sdb1)", err)
	}
	const opsKeys = "/home/ops/.ssh/authorized_keys"
	const probe = "/var/lib/dpkg/info/base-files.list" // on the second disk
	was, err := ReadFilesOf(ctx, []string{a, b}, filepath.Join(work, "read-old"), append(identityFiles, opsKeys, probe)...)
	if err != nil {
		t.Fatal(err)
	}
	beforeA, before := sum(t, a), sum(t, b)
	const mac = "52:54:00:12:34:59"
	var steps []string
	res, err := Convert(ctx, a, Options{Work: filepath.Join(work, "build"), MoreDisks: []string{b}, NICs: []NIC{{Name: "eno1", MAC: mac}}, KeyPairUser: "ops",
		Step: func(s string) { steps = append(steps, s) }})
	if err != nil {
		t.Fatalf("convert (steps %v): %v", steps, err)
	}
	if got := strings.Join(steps, ","); got != "inspect,build,copy,fixup,cloud-init,initramfs,bootloader,qcow2" {
		t.Errorf("steps %s", got)
	}
	if left := leftovers(t, work); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
	t.Logf("converted: timings %v ms, size %d, notes %v", res.Timings, res.Size, res.Notes)
	if sum(t, a) != beforeA || sum(t, b) != before {
		t.Fatal("a source disk changed")
	}

	// The cloud's disk is 1 GiB bigger than the image; its config drive names
	// another host and brings a key pair.
	overlay := filepath.Join(work, "instance.qcow2")
	virtual := imageVirtualSize(ctx, t, res.Image)
	runT(ctx, t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", res.Image, "-F", "qcow2", overlay, strconv.FormatInt(virtual+1<<30, 10))
	const instanceID = "5d1f3c2a-7b9e-4f60-8a1d-2c3b4a5f6e70"
	const cloudKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHikkoshiTheCloudKeyPairOfTheFirstBootTest00 cloud@nova"
	meta, _ := json.Marshal(map[string]any{
		"uuid": instanceID, "name": "web-from-the-cloud", "hostname": "web-from-the-cloud.novalocal",
		"public_keys": map[string]string{"mykey": cloudKey}, "launch_index": 0, "availability_zone": "nova",
	})
	drive := filepath.Join(work, "config-2.img")
	p2vtest.ConfigDrive(t, drive, string(meta), "#cloud-config\npower_state: {mode: poweroff, delay: now, message: first boot done}\n")
	start := time.Now()
	console, ok, err := Boot(ctx, BootOptions{Disk: overlay, Format: "qcow2", Bus: "virtio", MAC: mac, Writable: true, Drives: []string{drive},
		Want: `reboot: Power down`, Fail: []string{`ALERT!`, `Kernel panic`, `Gave up waiting`, `emergency mode`}, Timeout: 10 * time.Minute})
	if err != nil || !ok {
		t.Fatalf("the first boot did not end in a power-off (%v) after %v:\n%s", err, time.Since(start).Round(time.Second), lastLines(console, 40))
	}
	t.Logf("first boot: cloud-init done and powered off after %v", time.Since(start).Round(time.Second))
	if !regexp.MustCompile(`Cloud-init v\. \S+ finished`).MatchString(console) {
		t.Errorf("cloud-init did not finish:\n%s", lastLines(console, 40))
	}
	if pub := strings.TrimSpace(string(was["/etc/ssh/ssh_host_ed25519_key.pub"])); !strings.Contains(console, strings.Join(strings.Fields(pub)[:2], " ")) {
		t.Errorf("the console's host keys lack the server's own ED25519 key %q", pub)
	}
	// The fingerprints the inspection reported are the ones the console shows.
	if len(res.Analysis.SSHHostKeys) != 3 {
		t.Errorf("inspection's host keys %v: want the fixture's three", res.Analysis.SSHHostKeys)
	}
	for _, fp := range res.Analysis.SSHHostKeys {
		if !strings.Contains(console, strings.Fields(fp)[1]) {
			t.Errorf("the console's fingerprints lack the inspection's %s", fp)
		}
	}

	raw := filepath.Join(work, "instance.raw")
	runT(ctx, t, "qemu-img", "convert", "-O", "raw", overlay, raw)
	now, err := ReadFiles(ctx, raw, filepath.Join(work, "read-new"), append(identityFiles, opsKeys, probe, "/etc/fstab", "/var/lib/cloud/data/instance-id")...)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(now["/var/lib/cloud/data/instance-id"])); got != instanceID {
		t.Fatalf("cloud-init's instance ID %q: want the config drive's %s (did cloud-init run?)", got, instanceID)
	}
	for _, f := range append(identityFiles, probe) {
		if string(now[f]) != string(was[f]) {
			t.Errorf("%s changed:\n--- was\n%s\n--- now\n%s", f, was[f], now[f])
		}
	}
	if got, want := string(now[opsKeys]), string(was[opsKeys])+cloudKey+"\n"; got != want {
		t.Errorf("ops's authorized_keys:\n%s\nwant its own key and the cloud's:\n%s", got, want)
	}
	if f := string(now["/etc/fstab"]); strings.Contains(f, "/dev/sdb1") || strings.Contains(f, "/mnt") {
		t.Errorf("the new fstab mounts the second disk or the cloud's ephemeral disk:\n%s", f)
	}
	if strings.Contains(string(now["/etc/passwd"]), "\ndebian:") {
		t.Error("a default user was created")
	}

	// The root file system fills the bigger disk.
	u := &undo{}
	d, err := attach(ctx, u, raw, true)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = u.run() }()
	var fsBytes int64
	for _, p := range d.Partitions {
		if p.FSType == "ext4" {
			out, err := exec.CommandContext(ctx, "dumpe2fs", "-h", p.device).Output()
			if err != nil {
				t.Fatal(err)
			}
			fsBytes = field(out, "Block count") * field(out, "Block size")
		}
	}
	if fsBytes < virtual+900<<20 {
		t.Errorf("root file system %d bytes on a %d-byte disk: want it grown by ~1 GiB from the image's %d", fsBytes, virtual+1<<30, virtual)
	}
	t.Logf("root file system grown to %d MiB on a %d MiB disk (image %d MiB)", fsBytes>>20, (virtual+1<<30)>>20, virtual>>20)
}

func imageVirtualSize(ctx context.Context, t *testing.T, path string) int64 {
	t.Helper()
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "--output=json", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		VirtualSize int64 `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	return info.VirtualSize
}

func runT(ctx context.Context, t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
}

// field reads "Name:   N" from dumpe2fs -h's output.
func field(out []byte, name string) int64 {
	m := regexp.MustCompile(`(?m)^` + name + `:\s+(\d+)`).FindSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
