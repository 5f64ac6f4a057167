package p2v

import (
	"os"
	"path/filepath"
	"testing"
)

// TestPartitionNames: an fstab may name a partition by PARTUUID (MBR: the disk's id
// and the number; GPT: the entry's GUID) and, on MBR, a logical partition by its
// kernel number (sda5 is the first logical one, whatever the primaries are). Each
// names the right partition; nothing is left attached.
func TestPartitionNames(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("PARTITION TESTS NEED ROOT (loop devices)")
	}
	dir := t.TempDir()
	for _, c := range []struct {
		table string
		specs map[string]int // fstab spec → partition number
	}{
		{"label: dos\nlabel-id: 0x0badcafe\nstart=2048, size=4096, type=83\nstart=6144, size=16384, type=5\nstart=8192, size=4096, type=83\nstart=14336, size=4096, type=83\n",
			map[string]int{"PARTUUID=0badcafe-01": 1, "PARTUUID=0BADCAFE-06": 6, "/dev/disk/by-partuuid/0badcafe-05": 5, "/dev/sda5": 5, "/dev/sda6": 6, "/dev/sda1": 1, "/dev/sda3": 0, "/dev/sdb5": 0}},
		{"label: gpt\nstart=2048, size=4096, uuid=6F1A1B5C-3E52-4C1B-9E1D-3C5B2A1D0E01\nstart=6144, size=4096, uuid=6F1A1B5C-3E52-4C1B-9E1D-3C5B2A1D0E02\n",
			map[string]int{"PARTUUID=6f1a1b5c-3e52-4c1b-9e1d-3c5b2a1d0e02": 2, "PARTUUID=6F1A1B5C-3E52-4C1B-9E1D-3C5B2A1D0E01": 1, "/dev/sda2": 2, "PARTUUID=6f1a1b5c-3e52-4c1b-9e1d-3c5b2a1d0e03": 0}},
	} {
		disk := filepath.Join(dir, "disk.raw")
		if err := os.WriteFile(disk, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(disk, 16<<20); err != nil {
			t.Fatal(err)
		}
		if err := runIn(t.Context(), c.table, "sfdisk", "-q", disk); err != nil {
			t.Fatal(err)
		}
		func() {
			u := &undo{}
			defer u.run()
			d, err := attach(t.Context(), u, disk, true)
			if err != nil {
				t.Fatal(err)
			}
			var nums []int
			for _, p := range d.Partitions {
				nums = append(nums, p.Number)
			}
			t.Logf("%s: partitions %v", d.Label, nums)
			for spec, want := range c.specs {
				got := 0
				if p := d.byFstabSpec(spec); p != nil {
					got = p.Number
				}
				if got != want {
					t.Errorf("%s: %s names partition %d, want %d", d.Label, spec, got, want)
				}
			}
		}()
		if left := leftovers(t, dir); len(left) != 0 {
			t.Fatalf("left behind: %v", left)
		}
	}
}
