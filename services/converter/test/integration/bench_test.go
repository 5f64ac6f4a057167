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

// BenchmarkImageCopy copies an image of 256 MiB, 1 GiB and 4 GiB from the old
// cloud's Glance to the new one's, every way side by side in the same run:
//
//	pipe            one GET streamed into one PUT: the limit of any copy
//	two-step        GET into a file, then PUT from the file: what peers do
//	assemble-after  imagecopy.AssembleAfter: 64 MiB chunk images, then assembled
//	tee             imagecopy.Tee (what a job uses): chunk images and the final
//	                image written in the same pass
//	stream          imagecopy.Stream: one upload, no chunk images
//
// over loopback, and (1 GiB) over a link of 100 MB/s: the copy's own bandwidth
// limit on the source's reads (imagecopy.Throttle, what --copy-bandwidth sets), the
// same for every way, so that what crosses the link shows in time as it would
// between two data centres while the destination's own work does not.
//
// MB/s is over the image size; peak-heap-MiB is the Go heap in use at its highest
// while copying, peak-rss-MiB the whole process's resident set at its highest (the
// test binary's own baseline included): flat as the size grows means nothing is held
// whole in memory. HIKKOSHI_BENCH_COPY_SIZES (MiB, comma-separated) picks other sizes.
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
	src0, dst := imagecopy.NewGlance(oi), imagecopy.NewGlance(ni)
	sizes := []int64{256 << 20, 1 << 30, 4 << 30}
	if v := os.Getenv("HIKKOSHI_BENCH_COPY_SIZES"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			var mb int64
			if _, err := fmt.Sscan(f, &mb); err != nil || mb <= 0 {
				b.Fatalf("HIKKOSHI_BENCH_COPY_SIZES: %q is not a size in MiB", f)
			}
			sizes = append(sizes, mb<<20)
		}
	}
	type link struct {
		name string
		bps  int64
	}
	for _, size := range sizes {
		id := benchImage(b, ctx, src0, size)
		b.Cleanup(func() { _ = src0.Delete(context.Background(), id) })
		links := []link{{"loopback", 0}}
		if size == 1<<30 {
			links = append(links, link{"100MBps", 100e6})
		}
		for _, l := range links {
			src := imagecopy.Throttle(src0, l.bps)
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
			prefix := fmt.Sprintf("%dMiB/%s", size>>20, l.name)
			b.Run(prefix+"/pipe", func(b *testing.B) {
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
			if l.bps == 0 {
				b.Run(prefix+"/two-step", func(b *testing.B) {
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
			}
			for _, m := range []struct {
				name string
				mode imagecopy.Mode
			}{{"assemble-after", imagecopy.AssembleAfter}, {"tee", imagecopy.Tee}, {"stream", imagecopy.Stream}} {
				b.Run(prefix+"/"+m.name, func(b *testing.B) {
					runOne(b, func(name string) (string, error) {
						c := &imagecopy.Copier{Src: src, Dst: dst, Mode: m.mode, Retries: 3}
						return c.Copy(ctx, id, name, &converterv1.CopyProgress{})
					})
				})
			}
		}
	}
}
