package p2v

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// lvmDisk makes a disk image at path with one LVM physical-volume partition per
// size (MiB), runs setup (lvm2 commands with activation off, on the partitions as
// loop devices), and detaches everything.
func lvmDisk(t *testing.T, path string, sizes []int, setup func(lvm func(args ...string), pvs []string)) {
	t.Helper()
	total := 2
	table := "label: dos\n"
	start := 2048
	for _, s := range sizes {
		table += "start=" + strconv.Itoa(start) + ", size=" + strconv.Itoa(s*2048) + ", type=8e\n"
		start += s * 2048
		total += s
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, int64(total)<<20); err != nil {
		t.Fatal(err)
	}
	if err := runIn(t.Context(), table, "sfdisk", "-q", path); err != nil {
		t.Fatal(err)
	}
	var loops []string
	off := 2048
	for _, s := range sizes {
		out, err := run(t.Context(), "losetup", "-f", "--show", "-o", strconv.Itoa(off*512), "--sizelimit", strconv.Itoa(s<<20), path)
		if err != nil {
			t.Fatal(err)
		}
		loops = append(loops, strings.TrimSpace(out))
		off += s * 2048
	}
	defer func() {
		for _, l := range loops {
			_, _ = run(context.Background(), "losetup", "-d", l)
		}
	}()
	setup(func(args ...string) {
		t.Helper()
		if _, err := runEnv(t.Context(), []string{"LVM_SUPPRESS_FD_WARNINGS=1"}, args[0], append(args[1:], "--config", lvmConfig(loops))...); err != nil {
			t.Fatal(err)
		}
	}, loops)
}

// TestLVMRefusals: what the converter does not convert is refused by name, before
// anything is mounted: a striped volume, and a volume group with a physical volume on
// a disk it was not given. Given both disks, the volume group is read whole: a
// 24 MiB volume over two 16 MiB physical volumes.
func TestLVMRefusals(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("LVM TESTS NEED ROOT (loop devices)")
	}
	if _, err := exec.LookPath("pvcreate"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("lvm2 is not installed (tilt/p2v/fixture.sh installs it)")
		}
		t.Skip("LVM2 NOT INSTALLED")
	}
	dir := t.TempDir()
	striped := filepath.Join(dir, "striped.raw")
	lvmDisk(t, striped, []int{16, 16}, func(lvm func(...string), pvs []string) {
		lvm(append([]string{"pvcreate", "-q"}, pvs...)...)
		lvm(append([]string{"vgcreate", "-q", "vgstripe"}, pvs...)...)
		lvm("lvcreate", "-q", "-an", "-Zn", "-y", "-i", "2", "-I", "64k", "-n", "data", "-L", "8M", "vgstripe")
	})
	spanA, spanB := filepath.Join(dir, "a.raw"), filepath.Join(dir, "b.raw")
	lvmDisk(t, spanB, []int{16}, func(func(...string), []string) {})
	// One VG over a partition of disk a and one of disk b: both attached while it is made.
	lvmDisk(t, spanA, []int{16}, func(lvmA func(...string), pvsA []string) {
		out, err := run(t.Context(), "losetup", "-f", "--show", "-o", strconv.Itoa(2048*512), "--sizelimit", strconv.Itoa(16<<20), spanB)
		if err != nil {
			t.Fatal(err)
		}
		b := strings.TrimSpace(out)
		defer run(context.Background(), "losetup", "-d", b)
		both := []string{pvsA[0], b}
		lvm := func(args ...string) {
			if _, err := runEnv(t.Context(), []string{"LVM_SUPPRESS_FD_WARNINGS=1"}, args[0], append(args[1:], "--config", lvmConfig(both))...); err != nil {
				t.Fatal(err)
			}
		}
		lvm(append([]string{"pvcreate", "-q"}, both...)...)
		lvm(append([]string{"vgcreate", "-q", "vgspan"}, both...)...)
		lvm("lvcreate", "-q", "-an", "-Zn", "-y", "-n", "big", "-L", "24M", "vgspan")
	})
	for _, c := range []struct {
		disks []string
		want  string
	}{
		{[]string{striped}, "logical volume vgstripe/data is striped with 2 stripe(s): only linear logical volumes are converted"},
		{[]string{spanA}, "volume group vgspan has 1 physical volume(s) that are not on the disks given: add the server's other disks"},
		// Both disks: the volume group is whole (its one volume holds no system, so
		// no root is found — past the LVM reading).
		{[]string{spanA, spanB}, "no partition holds /etc/fstab"},
	} {
		d, _, err := Inspect(t.Context(), c.disks[0], filepath.Join(dir, "work"), c.disks[1:]...)
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.disks, err, c.want)
		}
		if len(c.disks) == 2 {
			var lv *Partition
			for i := range d.Partitions {
				if d.Partitions[i].Volume == "vgspan/big" {
					lv = &d.Partitions[i]
				}
			}
			if lv == nil || lv.Size != 24<<20 {
				t.Errorf("vgspan/big over two disks: %+v", lv)
			}
		}
		if left := leftovers(t, dir); len(left) != 0 {
			t.Fatalf("left behind: %v", left)
		}
	}
}
