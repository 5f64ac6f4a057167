package integration

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/imagecopy"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

// noise is an endless stream of pseudo-random bytes (fast; incompressible enough).
type noise struct{ r *rand.ChaCha8 }

func (n noise) Read(b []byte) (int, error) { return n.r.Read(b) }

// benchImage returns the ID of an active image of size bytes in g, uploaded from a
// stream (nothing on disk) under a name that says its size; the benchmark deletes it
// at the end.
func benchImage(b *testing.B, ctx context.Context, g imagecopy.Glance, size int64) string {
	name := fmt.Sprintf("bench-copy-%dMiB", size>>20)
	if ids, err := imagecopy.Named(ctx, g, name); err == nil {
		for _, img := range ids {
			if img.Status == images.ImageStatusActive && img.SizeBytes == size {
				return img.ID
			}
			_ = g.Delete(ctx, img.ID)
		}
	}
	img, err := g.Create(ctx, images.CreateOpts{Name: name, DiskFormat: "raw", ContainerFormat: "bare"})
	if err != nil {
		b.Fatal(err)
	}
	var seed [32]byte
	if err := g.Upload(ctx, img.ID, io.LimitReader(noise{rand.NewChaCha8(seed)}, size)); err != nil {
		b.Fatal(err)
	}
	return img.ID
}

// peakHeap samples the Go heap in use while f runs and returns its peak.
func peakHeap(f func()) uint64 {
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	f()
	close(stop)
	wg.Wait()
	return peak.Load()
}

// peakRSS runs f and returns the process's peak resident set while it ran: the
// kernel's high-water mark (VmHWM) is reset first by writing 5 to
// /proc/self/clear_refs. It returns 0 where the kernel does not allow that.
func peakRSS(f func()) uint64 {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		f()
		return 0
	}
	f()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb uint64
			_, _ = fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(v), " kB"), &kb)
			return kb << 10
		}
	}
	return 0
}

// BenchmarkImageCopy copies an image of 48 MiB, 256 MiB and 1 GiB from the old
// cloud's Glance to the new one's three ways, in the same run:
//
//	pipe      one GET streamed into one PUT: the loopback limit of a copy
//	two-step  GET into a file, then PUT from the file: what peers do
//	chunked   imagecopy (64 MiB chunks, verified, resumable, then assembled; the
//	          48 MiB image fits in one chunk and goes straight into the final image)
//
// MB/s is over the image size; peak-heap-MiB is the Go heap in use at its highest
// while copying, peak-rss-MiB the whole process's resident set at its highest (the
// test binary's own baseline included): flat as the size grows means nothing is held
// whole in memory.
func BenchmarkImageCopy(b *testing.B) {
	devcloud.Require(b)
	ctx := context.Background()
	oi, err := devcloud.Open(b, "old").Image()
	if err != nil {
		b.Fatal(err)
	}
	ni, err := devcloud.Open(b, "new").Image()
	if err != nil {
		b.Fatal(err)
	}
	src, dst := imagecopy.NewGlance(oi), imagecopy.NewGlance(ni)
	for _, size := range []int64{48 << 20, 256 << 20, 1 << 30} {
		id := benchImage(b, ctx, src, size)
		b.Cleanup(func() { _ = src.Delete(context.Background(), id) })
		runOne := func(b *testing.B, copy func(name string) (string, error)) {
			b.SetBytes(size)
			var peak, rss uint64
			for i := 0; b.Loop(); i++ {
				runtime.GC()
				var out string
				var p uint64
				r := peakRSS(func() { p = peakHeap(func() { out, err = copy(fmt.Sprintf("bench-out-%d", i)) }) })
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				_ = dst.Delete(ctx, out)
				b.StartTimer()
				peak, rss = max(peak, p), max(rss, r)
			}
			b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
			if rss > 0 {
				b.ReportMetric(float64(rss)/(1<<20), "peak-rss-MiB")
			}
		}
		create := func(name string) (string, error) {
			img, err := dst.Create(ctx, images.CreateOpts{Name: name, DiskFormat: "raw", ContainerFormat: "bare"})
			if err != nil {
				return "", err
			}
			return img.ID, nil
		}
		b.Run(fmt.Sprintf("%dMiB/pipe", size>>20), func(b *testing.B) {
			runOne(b, func(name string) (string, error) {
				out, err := create(name)
				if err != nil {
					return "", err
				}
				body, err := src.Download(ctx, id, 0, -1)
				if err != nil {
					return out, err
				}
				defer body.Close()
				return out, dst.Upload(ctx, out, body)
			})
		})
		b.Run(fmt.Sprintf("%dMiB/two-step", size>>20), func(b *testing.B) {
			runOne(b, func(name string) (string, error) {
				f, err := os.CreateTemp(b.TempDir(), "image-")
				if err != nil {
					return "", err
				}
				defer f.Close()
				body, err := src.Download(ctx, id, 0, -1)
				if err != nil {
					return "", err
				}
				_, err = io.Copy(f, body)
				_ = body.Close()
				if err != nil {
					return "", err
				}
				if _, err := f.Seek(0, io.SeekStart); err != nil {
					return "", err
				}
				out, err := create(name)
				if err != nil {
					return "", err
				}
				return out, dst.Upload(ctx, out, f)
			})
		})
		b.Run(fmt.Sprintf("%dMiB/chunked", size>>20), func(b *testing.B) {
			runOne(b, func(name string) (string, error) {
				c := &imagecopy.Copier{Src: src, Dst: dst}
				return c.Copy(ctx, id, name, &converterv1.CopyProgress{})
			})
		})
	}
}
