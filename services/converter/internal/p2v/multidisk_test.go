package p2v

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hikkoshi/hikkoshi/services/converter/internal/p2v/p2vtest"
)

// TestConvertTwoDisksBoots converts a server of two disks (/boot and / on sda, /var on
// sdb, which its fstab names /dev/sdb1) into one root file system and boots it to a
// login prompt; /var's files are in the one root. Given only the first disk, the
// conversion is refused, naming /var: the image would lack it.
func TestConvertTwoDisksBoots(t *testing.T) {
	a, b := p2vtest.FixtureTwoDisks(t)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	work := t.TempDir()
	_, _, err := Inspect(ctx, a, filepath.Join(work, "one"))
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "/var (/dev/sdb1)") {
		t.Fatalf("the first disk alone: %v, want a refusal naming /var (/dev/sdb1)", err)
	}
	d, _, err := Inspect(ctx, a, filepath.Join(work, "two"), b)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range d.Partitions {
		got = append(got, fmt.Sprintf("%d:%d:%s", p.Disk, p.Number, p.MountPoint))
	}
	if strings.Join(got, ",") != "0:1:/boot,0:2:/,1:1:/var" {
		t.Fatalf("partitions %v", got)
	}
	const probe = "/var/lib/dpkg/info/base-files.list"
	was, err := ReadFilesOf(ctx, []string{a, b}, filepath.Join(work, "read-old"), probe)
	if err != nil {
		t.Fatal(err)
	}
	before := sum(t, b)
	res, files := convertedOf(ctx, t, []string{a, b}, "52:54:00:12:34:59", probe, "/etc/fstab")
	if after := sum(t, b); after != before {
		t.Fatal("the second disk changed")
	}
	if string(files[probe]) != string(was[probe]) || len(was[probe]) == 0 {
		t.Fatalf("%s from the second disk: %d bytes in the image, %d on the server", probe, len(files[probe]), len(was[probe]))
	}
	if f := string(files["/etc/fstab"]); strings.Contains(f, "/dev/sdb1") {
		t.Fatalf("new fstab still mounts the second disk:\n%s", f)
	}
	bootsToLogin(ctx, t, res.Image, "52:54:00:12:34:59", false)
}
