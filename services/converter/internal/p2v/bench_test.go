package p2v

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hikkoshi/hikkoshi/platform/p2vtest"
)

// BenchmarkP2V converts the fixture disk and, in the same run, gives it to
// `qemu-img convert -O qcow2` — the copy limit: the same disk read and a qcow2
// written, nothing else done — and, with HIKKOSHI_BENCH_VIRT_V2V=1 where virt-v2v is
// installed, to virt-v2v (the peer: it keeps the partition layout and adds no
// cloud-init). Metrics are seconds per run and the ratios; the conversion's own
// steps are reported too (cloud-init's install from the mirror is most of it).
func BenchmarkP2V(b *testing.B) {
	disk := p2vtest.Fixture(b)
	ctx := context.Background()
	var base, conv, peer time.Duration
	var last *Result
	for b.Loop() {
		work := b.TempDir()
		t0 := time.Now()
		if out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-O", "qcow2", disk, filepath.Join(work, "copy.qcow2")).CombinedOutput(); err != nil {
			b.Fatalf("qemu-img: %v: %s", err, out)
		}
		base += time.Since(t0)
		_ = os.Remove(filepath.Join(work, "copy.qcow2"))
		t0 = time.Now()
		res, err := Convert(ctx, disk, Options{Work: filepath.Join(work, "p2v"), NICs: []NIC{{Name: "eno1", MAC: "52:54:00:12:34:56"}}})
		if err != nil {
			b.Fatal(err)
		}
		conv += time.Since(t0)
		last = res
		_ = os.Remove(res.Image)
		if os.Getenv("HIKKOSHI_BENCH_VIRT_V2V") == "1" {
			if _, err := exec.LookPath("virt-v2v"); err == nil {
				out := filepath.Join(work, "v2v")
				_ = os.MkdirAll(out, 0o755)
				cmd := exec.CommandContext(ctx, "virt-v2v", "-i", "disk", disk, "-o", "local", "-os", out, "-of", "qcow2")
				cmd.Env = append(os.Environ(), "LIBGUESTFS_BACKEND=direct", "LIBGUESTFS_BACKEND_SETTINGS=force_tcg")
				t0 = time.Now()
				if o, err := cmd.CombinedOutput(); err != nil {
					b.Logf("virt-v2v failed (not counted): %v: %s", err, tailOf(string(o), 1500))
				} else {
					peer += time.Since(t0)
				}
				_ = os.RemoveAll(out)
			}
		}
	}
	n := float64(b.N)
	b.ReportMetric(conv.Seconds()/n, "convert-s")
	b.ReportMetric(base.Seconds()/n, "qemu-img-s")
	b.ReportMetric(conv.Seconds()/base.Seconds(), "x-qemu-img")
	if peer > 0 {
		b.ReportMetric(peer.Seconds()/n, "virt-v2v-s")
		b.ReportMetric(conv.Seconds()/peer.Seconds(), "x-virt-v2v")
	}
	for _, step := range []string{"copy", "cloud-init", "initramfs", "qcow2"} {
		b.ReportMetric(float64(last.Timings[step])/1000, step+"-s")
	}
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
