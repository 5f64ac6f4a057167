package imagecopy

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

func TestPolynomialIsIrreducible(t *testing.T) {
	if !Polynomial.Irreducible() {
		t.Fatal("the chunking polynomial is reducible")
	}
}

// TestCutIsWholeAndStable: the pieces put together are the input; the same bytes
// cut again give the same pieces; bytes inserted near the start leave the pieces
// after them as they were (content-defined), where fixed offsets lose them all.
func TestCutIsWholeAndStable(t *testing.T) {
	data := payload(24 << 20)
	shifted := append(append(append([]byte{}, data[:1<<20]...), bytes.Repeat([]byte{7}, 4096)...), data[1<<20:]...)
	for _, c := range []Chunking{DefaultChunking, {Fixed: 1 << 20}} {
		cut := func(b []byte) (map[[32]byte]int, []byte) {
			seen := map[[32]byte]int{}
			var all []byte
			if err := c.Cut(bytes.NewReader(b), func(p []byte) error {
				seen[sha256.Sum256(p)] = len(p)
				all = append(all, p...)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			return seen, all
		}
		a, whole := cut(data)
		if !bytes.Equal(whole, data) {
			t.Fatalf("%+v: the pieces are not the input", c)
		}
		b, _ := cut(shifted)
		var found int
		for d, n := range b {
			if _, ok := a[d]; ok {
				found += n
			}
		}
		share := float64(found) / float64(len(shifted))
		t.Logf("%+v: %d pieces, %.1f%% of the shifted bytes found again", c, len(a), 100*share)
		if c.Fixed == 0 && share < 0.9 {
			t.Fatalf("content-defined pieces found only %.1f%% again after a 4 KiB insert", 100*share)
		}
		if c.Fixed > 0 && share > 0.1 {
			t.Fatalf("fixed pieces found %.1f%% again after a shift: the test does not shift", 100*share)
		}
	}
}

// BenchmarkChunkReuse measures what a later round of a warm copy finds again: a
// 1 GiB disk with 600 MiB of data in 1 MiB extents spread over it (a file system's
// layout), snapshotted as qcow2 by qemu-img (as Nova's libvirt driver does); then
// ~2% changed — a log appended where the disk was empty (new qcow2 clusters, which
// shift what follows), scattered page writes into data that was there — and
// snapshotted again. For each way
// of cutting: the share of the second snapshot's bytes whose pieces are in the
// first's, and the pieces per GiB.
func BenchmarkChunkReuse(b *testing.B) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		b.Skip("qemu-img not installed")
	}
	dir := b.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	f, err := os.Create(raw)
	if err != nil {
		b.Fatal(err)
	}
	const gib, mib = 1 << 30, 1 << 20
	if err := f.Truncate(gib); err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 8))
	extent := make([]byte, mib)
	used := map[int64]bool{}
	write := func(off int64, n int) {
		for i := range extent[:n] {
			extent[i] = byte(r.Uint32())
		}
		if _, err := f.WriteAt(extent[:n], off); err != nil {
			b.Fatal(err)
		}
	}
	for len(used) < 600 {
		e := r.Int64N(gib / mib)
		if !used[e] {
			used[e] = true
			write(e*mib, mib)
		}
	}
	snap := func(name string) string {
		out := filepath.Join(dir, name)
		if err := exec.Command("qemu-img", "convert", "-O", "qcow2", raw, out).Run(); err != nil {
			b.Fatal(err)
		}
		return out
	}
	s1 := snap("s1.qcow2")
	// ~2% of the disk changed, as a running server changes it: 14 MiB appended to a
	// log where the disk was empty (new qcow2 clusters, which shift everything after
	// them in the next snapshot), and 200 scattered 32 KiB page writes into data
	// that was there (6 MiB: a database's pages).
	var empty int64
	for e := int64(gib/mib - 1); e > 0; e-- {
		if !used[e] && !used[e-1] && e > gib/mib/3 {
			empty = e - 1
		}
	}
	for i := range 14 {
		if !used[empty+int64(i)] {
			write((empty+int64(i))*mib, mib)
		}
	}
	var inPlace []int64
	for e := range used {
		inPlace = append(inPlace, e)
	}
	slices.Sort(inPlace)
	for range 200 {
		e := inPlace[r.IntN(len(inPlace))]
		write(e*mib+r.Int64N(32)*32<<10, 32<<10)
	}
	_ = f.Close()
	s2 := snap("s2.qcow2")
	for _, c := range []struct {
		name string
		c    Chunking
	}{
		{"fixed-64MiB", Chunking{Fixed: 64 << 20}},
		{"fixed-1MiB", Chunking{Fixed: 1 << 20}},
		{"fixed-64KiB", Chunking{Fixed: 64 << 10}},
		{"cdc-1MiB", DefaultChunking},
		{"cdc-256KiB", Chunking{AverageBits: 18, Min: 64 << 10, Max: 2 << 20}},
		{"cdc-64KiB", Chunking{AverageBits: 16, Min: 16 << 10, Max: 512 << 10}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var share, pieces float64
			for b.Loop() {
				digests := map[[32]byte]bool{}
				cut := func(path string, fn func(p []byte)) {
					in, err := os.Open(path)
					if err != nil {
						b.Fatal(err)
					}
					defer in.Close()
					if err := c.c.Cut(in, func(p []byte) error { fn(p); return nil }); err != nil {
						b.Fatal(err)
					}
				}
				n := 0
				cut(s1, func(p []byte) { digests[sha256.Sum256(p)] = true; n++ })
				var found, total int
				cut(s2, func(p []byte) {
					total += len(p)
					if digests[sha256.Sum256(p)] {
						found += len(p)
					}
				})
				share = float64(found) / float64(total)
				st, _ := os.Stat(s1)
				pieces = float64(n) / (float64(st.Size()) / gib)
			}
			b.ReportMetric(100*share, "%found-again")
			b.ReportMetric(pieces, "pieces/GiB")
			b.Log(fmt.Sprintf("%s: %.1f%% of the second snapshot found again", c.name, 100*share))
		})
	}
}
