package p2v

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hikkoshi/hikkoshi/platform/p2vtest"
)

// TestSweepAfterAKill attaches and mounts a small disk the way a conversion does,
// then "dies" (its undo stack never runs), and Sweep takes everything down.
func TestSweepAfterAKill(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("P2V TESTS NEED ROOT (loop devices, mounts)")
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(filepath.Join(tree, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "etc/fstab"), []byte("UUID=11111111-2222-4333-8444-555555555555 / ext4 defaults 0 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "small.raw")
	for _, c := range [][]string{
		{"truncate", "-s", "64M", disk},
		{"sh", "-c", "echo 'label: dos\nstart=2048, type=83' | sfdisk -q " + disk},
		{"mkfs.ext4", "-q", "-F", "-U", "11111111-2222-4333-8444-555555555555", "-E", "offset=1048576", "-d", tree, disk, "63488k"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", c, err, out)
		}
	}
	root := filepath.Join(dir, "work", "instance-1")
	work := filepath.Join(root, "job-1")
	if err := os.MkdirAll(work, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _, _ = Sweep(context.Background(), root) }) // whatever fails below
	u := &undo{record: recorder(work)}                                // never run: the process "died"
	d, err := attach(t.Context(), u, disk, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := mountRO(t.Context(), u, d, filepath.Join(work, "src")); err != nil {
		t.Fatal(err)
	}
	loops := func() string { out, _ := exec.Command("losetup", "-j", disk).Output(); return string(out) }
	if left := p2vtest.Leftovers(root); len(left) != 1 || loops() == "" {
		t.Fatalf("before the sweep: mounts %v, loops %q (want one of each)", left, loops())
	}
	um, det, err := Sweep(t.Context(), root)
	if err != nil || um != 1 || det != 1 {
		t.Fatalf("sweep: %d unmounted, %d detached, %v", um, det, err)
	}
	if left := p2vtest.Leftovers(root); len(left) != 0 || loops() != "" {
		t.Fatalf("after the sweep: mounts %v, loops %q", left, loops())
	}
	if _, err := os.Stat(work); !os.IsNotExist(err) {
		t.Fatalf("work directory still there: %v", err)
	}
}
