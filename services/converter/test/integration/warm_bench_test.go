package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/imagecopy"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

// warmSnapshots makes the two snapshots of a server's 1 GiB disk that the warm
// benchmark copies, as qcow2 (what Nova's libvirt driver uploads) by qemu-img:
// 600 MiB of data in 1 MiB extents spread over the disk; then ~2% of the disk
// changed — a 14 MiB log appended where the disk was empty, 200 scattered 32 KiB
// page writes — and snapshotted again. It uploads them to g (kept under names that
// say what they are, and reused) and returns their IDs.
func warmSnapshots(b *testing.B, ctx context.Context, g imagecopy.Glance) (string, string) {
	names := [2]string{"bench-warm-1GiB-before", "bench-warm-1GiB-after"}
	var ids [2]string
	for i, n := range names {
		if list, err := imagecopy.Named(ctx, g, n); err == nil {
			for _, img := range list {
				if img.Status == images.ImageStatusActive {
					ids[i] = img.ID
				} else {
					_ = g.Delete(ctx, img.ID)
				}
			}
		}
	}
	if ids[0] != "" && ids[1] != "" {
		return ids[0], ids[1]
	}
	if _, err := exec.LookPath("qemu-img"); err != nil {
		b.Skip("qemu-img not installed")
	}
	dir := b.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	f, err := os.Create(raw)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	const gib, mib = 1 << 30, 1 << 20
	if err := f.Truncate(gib); err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 8))
	buf := make([]byte, mib)
	write := func(off int64, n int) {
		for i := range buf[:n] {
			buf[i] = byte(r.Uint32())
		}
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			b.Fatal(err)
		}
	}
	used := map[int64]bool{}
	var extents []int64
	for len(extents) < 600 {
		if e := r.Int64N(gib / mib); !used[e] {
			used[e] = true
			extents = append(extents, e)
			write(e*mib, mib)
		}
	}
	snap := func(i int) {
		out := filepath.Join(dir, fmt.Sprintf("s%d.qcow2", i))
		if err := exec.Command("qemu-img", "convert", "-O", "qcow2", raw, out).Run(); err != nil {
			b.Fatal(err)
		}
		for _, id := range ids[i:i] {
			_ = g.Delete(ctx, id)
		}
		img, err := g.Create(ctx, images.CreateOpts{Name: names[i], DiskFormat: "qcow2", ContainerFormat: "bare"})
		if err != nil {
			b.Fatal(err)
		}
		in, err := os.Open(out)
		if err != nil {
			b.Fatal(err)
		}
		defer in.Close()
		if err := g.Upload(ctx, img.ID, in); err != nil {
			b.Fatal(err)
		}
		ids[i] = img.ID
	}
	snap(0)
	var log int64
	for e := int64(gib / mib / 2); e < gib/mib-14; e++ {
		free := true
		for k := range int64(14) {
			free = free && !used[e+k]
		}
		if free {
			log = e
			break
		}
	}
	for k := range int64(14) {
		write((log+k)*mib, mib)
	}
	for range 200 {
		write(extents[r.IntN(len(extents))]*mib+r.Int64N(32)*32<<10, 32<<10)
	}
	snap(1)
	return ids[0], ids[1]
}

// BenchmarkWarmCutover measures a stateful server's cut-over copy over a link of
// 100 Mbit/s between the dev cloud's two Glance services, cold against warm, in the
// same run (the disk: warmSnapshots). Cold: the final snapshot copied whole across
// the link (imagecopy.Stream, one pass, the fastest cold way). Warm: the first
// snapshot pre-copied while the server runs (not in the downtime), then the
// cut-over's round on the final snapshot (read whole near the source, only the
// pieces not in the store sent across the link) and the assembly in the
// destination, at once (CutOver). It reports the cut-over's copy seconds and the bytes across the
// link for both; what the job adds to the downtime on either side (stop, final
// snapshot, boot, health) is the same for both.
func BenchmarkWarmCutover(b *testing.B) {
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
	const link = 100e6 / 8
	before, after := warmSnapshots(b, ctx, src)
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		name := fmt.Sprintf("bench-warm-out-%d", i)
		// Cold: the worker near the destination reads the final snapshot across the link.
		start := time.Now()
		cold := &imagecopy.Copier{Src: imagecopy.Link(src, link), Dst: dst, Mode: imagecopy.Stream, Retries: 3}
		cp := &converterv1.CopyProgress{}
		id, err := cold.Copy(ctx, after, name+"-cold", cp)
		if err != nil {
			b.Fatal(err)
		}
		coldSecs := time.Since(start).Seconds()
		_ = dst.Delete(ctx, id)
		// Warm: the rounds near the source send across the link; the assembly runs
		// near the destination. CutOver (what a job runs): the last round and the
		// assembly at once.
		w := &imagecopy.Warm{Src: src, Dst: imagecopy.Link(dst, link), Assembler: dst, Retries: 3}
		wp := &converterv1.WarmProgress{ImageName: name + "-warm"}
		start = time.Now()
		pre, err := w.Round(ctx, before, wp)
		if err != nil {
			b.Fatal(err)
		}
		preSecs := time.Since(start).Seconds()
		b.StartTimer()
		start = time.Now()
		id, err = w.CutOver(ctx, after, name+"-warm", wp)
		if err != nil {
			b.Fatal(err)
		}
		warmSecs := time.Since(start).Seconds()
		b.StopTimer()
		final := wp.GetRounds()[len(wp.GetRounds())-1]
		_ = dst.Delete(ctx, id)
		b.ReportMetric(coldSecs, "cold-s")
		b.ReportMetric(warmSecs, "warm-s")
		b.ReportMetric(100*warmSecs/coldSecs, "warm-%-of-cold")
		b.ReportMetric(float64(cp.GetTransferredBytes())/(1<<20), "cold-MiB-sent")
		b.ReportMetric(float64(final.GetBytesSent())/(1<<20), "warm-MiB-sent")
		b.Logf("image %d MiB; cold: %.1f s, %d MiB across; pre-copy (server running): %.1f s, %d MiB across; "+
			"cut-over: %.1f s = %.1f%% of cold (read %d MiB, sent %d MiB, found %.1f%% in %d of %d pieces)",
			cp.GetTotalBytes()>>20, coldSecs, cp.GetTransferredBytes()>>20, preSecs, pre.GetBytesSent()>>20,
			warmSecs, 100*warmSecs/coldSecs, final.GetBytesRead()>>20, final.GetBytesSent()>>20,
			100*float64(final.GetBytesFound())/float64(final.GetBytesRead()), final.GetPiecesFound(), final.GetPieces())
		b.StartTimer()
	}
}
