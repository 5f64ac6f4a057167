package p2v

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hikkoshi/hikkoshi/platform/p2vtest"
)

func TestMapperName(t *testing.T) {
	for _, c := range [][3]string{{"vg-legacy", "root", "vg--legacy-root"}, {"VolGroup00", "LogVol00", "VolGroup00-LogVol00"}, {"a-b", "c-d", "a--b-c--d"}} {
		if got := mapperName(c[0], c[1]); got != c[2] {
			t.Errorf("mapperName(%q, %q) = %q, want %q", c[0], c[1], got, c[2])
		}
	}
}

// TestLVMSourceReadBack reads the fixture's LVM disk the converter's way (lvm2's
// reports with activation off; a loop device at each volume's offset, a sparse copy
// for /var, whose extents lie in two runs) and checks it against what the fixture
// put there: the mount points from an fstab of /dev/mapper and /dev/VG/LV paths,
// every file of /var by its SHA-256 as summed from the tree it was built from, and
// e2fsck's verdict on the assembled /var. The source is not changed.
func TestLVMSourceReadBack(t *testing.T) {
	disk := p2vtest.FixtureLVM(t)
	before := sum(t, disk)
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	d, a, err := Inspect(ctx, disk, filepath.Join(work, "inspect"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range d.Partitions {
		got[p.name()] = p.FSType + " " + p.MountPoint
	}
	want := map[string]string{
		"partition 1": "ext4 /boot", "partition 2": "LVM2_member ",
		"logical volume vg-legacy/root": "ext4 /", "logical volume vg-legacy/var": "ext4 /var", "logical volume vg-legacy/swap": "swap ",
	}
	if len(got) != len(want) {
		t.Fatalf("volumes %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("volumes %v, want %v", got, want)
		}
	}
	if a.OS.ID != "debian" || len(a.Kernels) == 0 {
		t.Fatalf("analysis %+v", a)
	}

	// Every file of /var, by its sum from the tree.
	manifest, err := os.ReadFile(disk + ".var.sha256")
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	var files []string
	for _, line := range strings.Split(strings.TrimSpace(string(manifest)), "\n") {
		s, p, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("manifest line %q", line)
		}
		f := "/var/" + strings.TrimPrefix(p, "./")
		sums[f] = s
		files = append(files, f)
	}
	read, err := ReadFiles(ctx, disk, filepath.Join(work, "read"), files...)
	if err != nil {
		t.Fatal(err)
	}
	var bytes int
	for f, b := range read {
		h := sha256.Sum256(b)
		if hex.EncodeToString(h[:]) != sums[f] {
			t.Fatalf("%s read back differs from the fixture's tree", f)
		}
		bytes += len(b)
	}
	t.Logf("/var: %d files, %d bytes, all as built", len(read), bytes)

	// The assembled /var passes e2fsck (read-only check).
	u := &undo{}
	src, err := attachSource(ctx, u, disk, filepath.Join(work, "fsck"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range src.Partitions {
		if p.Volume == "vg-legacy/var" {
			if out, err := exec.CommandContext(ctx, "e2fsck", "-fn", p.device).CombinedOutput(); err != nil {
				t.Errorf("e2fsck -fn of the assembled /var: %v\n%s", err, out)
			}
		}
	}
	if err := u.run(); err != nil {
		t.Fatal(err)
	}
	if left := leftovers(t, work); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
	if after := sum(t, disk); after != before {
		t.Fatal("the source disk changed")
	}
}

// TestConvertLVMFixtureBoots converts the LVM disk to one root file system and boots
// the result under qemu from a virtio disk to a login prompt; the new fstab names
// no logical volume and the resume device is gone.
func TestConvertLVMFixtureBoots(t *testing.T) {
	disk := p2vtest.FixtureLVM(t)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	res, files := converted(ctx, t, disk, "52:54:00:12:34:57", "/etc/fstab", "/etc/initramfs-tools/conf.d/resume")
	if f := string(files["/etc/fstab"]); strings.Contains(f, "/dev/mapper") || strings.Contains(f, "/dev/vg-legacy") || !strings.Contains(f, "UUID="+res.RootUUID) {
		t.Fatalf("new fstab:\n%s", f)
	}
	if r := string(files["/etc/initramfs-tools/conf.d/resume"]); !strings.Contains(r, "\nRESUME=none\n") {
		t.Fatalf("resume config %q", r)
	}
	if console := bootsToLogin(ctx, t, res.Image, "52:54:00:12:34:57", false); !strings.Contains(console, "root=UUID="+res.RootUUID) {
		t.Errorf("serial console lacks root=UUID=%s", res.RootUUID)
	}
}
