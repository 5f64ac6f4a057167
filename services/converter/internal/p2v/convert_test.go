package p2v

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"testing"
	"time"

	"github.com/hikkoshi/hikkoshi/services/converter/internal/p2v/p2vtest"
)

func fixture(t *testing.T) string { return p2vtest.Fixture(t) }

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

func TestConvertFixture(t *testing.T) {
	disk := fixture(t)
	before := sum(t, disk)
	work := t.TempDir()
	var steps []string
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	res, err := Convert(ctx, disk, Options{Work: work, NICs: []NIC{{Name: "eno1", MAC: "52:54:00:12:34:56"}}, Step: func(s string) { steps = append(steps, s) }})
	if err != nil {
		t.Fatalf("convert (steps %v): %v", steps, err)
	}
	t.Logf("converted in steps %v, timings %v ms, size %d, notes %v", steps, res.Timings, res.Size, res.Notes)
	if left := leftovers(t, work); len(left) != 0 {
		t.Fatalf("left behind: %v", left)
	}
	if after := sum(t, disk); after != before {
		t.Fatal("the source disk changed")
	}
	// The boot of the result is proved through the whole job path, from Glance, by
	// the converter's contract test (TestP2VFixtureBootsOnVirtio).
	if fi, err := os.Stat(res.Image); err != nil || fi.Size() == 0 {
		t.Fatalf("no image: %v", err)
	}
}
