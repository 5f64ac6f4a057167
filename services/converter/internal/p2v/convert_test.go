package p2v

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hikkoshi/hikkoshi/platform/p2vtest"
)

func sum(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func leftovers(_ *testing.T, dir string) []string { return p2vtest.Leftovers(dir) }

// converted converts disk with eno1 pinned to mac, checks that nothing is left
// attached and the source is unchanged, and returns the result with the files
// asked for, read back from the new image.
func converted(ctx context.Context, t *testing.T, disk, mac string, files ...string) (*Result, map[string][]byte) {
	t.Helper()
	return convertedOf(ctx, t, []string{disk}, mac, files...)
}

// convertedOf is converted for a server of several disks (disks[0] is its sda).
func convertedOf(ctx context.Context, t *testing.T, disks []string, mac string, files ...string) (*Result, map[string][]byte) {
	t.Helper()
	disk := disks[0]
	before := sum(t, disk)
	work := t.TempDir()
	res, err := Convert(ctx, disk, Options{Work: work, MoreDisks: disks[1:], NICs: []NIC{{Name: "eno1", MAC: mac}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("converted: firmware %s, timings %v ms, size %d, notes %v", res.Firmware, res.Timings, res.Size, res.Notes)
	if left := leftovers(t, work); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
	if after := sum(t, disk); after != before {
		t.Fatal("the source disk changed")
	}
	raw := filepath.Join(work, "new.raw")
	if out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-O", "raw", res.Image, raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	got, err := ReadFiles(ctx, raw, filepath.Join(work, "read"), files...)
	if err != nil {
		t.Fatal(err)
	}
	return res, got
}

// bootsToLogin boots the qcow2 image img from a virtio disk with a NIC of mac, and
// fails t unless it reaches a login prompt on the serial console; it returns the
// console's text.
func bootsToLogin(ctx context.Context, t *testing.T, img, mac string, uefi bool) string {
	t.Helper()
	start := time.Now()
	console, ok, err := Boot(ctx, BootOptions{Disk: img, Format: "qcow2", Bus: "virtio", MAC: mac, UEFI: uefi,
		Want: `login:`, Fail: []string{`ALERT!`, `Kernel panic`, `Gave up waiting`, `emergency mode`}, Timeout: 10 * time.Minute})
	if err != nil || !ok {
		lines := strings.Split(console, "\n")
		t.Fatalf("the converted server did not reach a login prompt (%v) in %v:\n%s", err, time.Since(start).Round(time.Second), strings.Join(lines[max(0, len(lines)-40):], "\n"))
	}
	t.Logf("login: on the serial console after %v", time.Since(start).Round(time.Second))
	return console
}
