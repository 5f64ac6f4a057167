package contract

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/keys"
)

// BenchmarkRegistry measures Get and List over gRPC against the inventory binary, and
// beside them, as baselines, the bare etcd reads the same calls make, against the same
// etcd in the same run. scripts/bench.sh prints the ratios.
func BenchmarkRegistry(b *testing.B) {
	e := newEnv(b)
	args := []string{"--log-level", "error"}
	// HIKKOSHI_BENCH_PROFILE=DIR: the inventory's CPU profile during each gRPC
	// sub-benchmark, saved as DIR/inventory-NAME.pprof (go tool pprof).
	profDir := os.Getenv("HIKKOSHI_BENCH_PROFILE")
	var metrics string
	if profDir != "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		metrics = l.Addr().String()
		_ = l.Close()
		args = append(args, "--metrics-listen", metrics, "--enable-pprof")
	}
	p := e.start(b, args...)
	profile := func(b *testing.B, name string) func() {
		if profDir == "" {
			return func() {}
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			resp, err := e.HTTPClient(b, "admin").Get("https://" + metrics + "/debug/pprof/profile?seconds=3")
			if err != nil {
				b.Log(err)
				return
			}
			defer resp.Body.Close()
			f, err := os.Create(filepath.Join(profDir, "inventory-"+name+".pprof"))
			if err == nil {
				_, _ = io.Copy(f, resp.Body)
				_ = f.Close()
			}
		})
		return wg.Wait
	}
	ctx := b.Context()
	const n = 1000
	for i := range n {
		role := "web"
		if i%10 == 0 {
			role = "db"
		}
		w := instanceWorkload(role, int32(i%4+1), map[string]string{"env": "prod"})
		if _, err := p.client.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{WorkloadId: fmt.Sprintf("w-%04d", i), Workload: w}); err != nil {
			b.Fatal(err)
		}
	}
	key := keys.Workload("w-0500")

	b.Run("etcd-get", func(b *testing.B) {
		for b.Loop() {
			if _, err := e.Cli.Get(ctx, key); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("grpc-get", func(b *testing.B) {
		defer profile(b, "get")()
		for b.Loop() {
			if _, err := p.client.GetWorkload(ctx, &inventoryv1.GetWorkloadRequest{Name: "workloads/w-0500"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("grpc-health", func(b *testing.B) {
		// The hop alone: the same connection, a call that reads nothing from etcd.
		h := healthpb.NewHealthClient(p.Conn)
		for b.Loop() {
			if _, err := h.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("etcd-range-50", func(b *testing.B) {
		end := clientv3.GetPrefixRangeEnd(keys.WorkloadsPrefix)
		for b.Loop() {
			if _, err := e.Cli.Get(ctx, keys.WorkloadsPrefix, clientv3.WithRange(end), clientv3.WithLimit(51)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("grpc-list-50", func(b *testing.B) {
		for b.Loop() {
			if _, err := p.client.ListWorkloads(ctx, &inventoryv1.ListWorkloadsRequest{PageSize: 50}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("grpc-list-50-filtered", func(b *testing.B) {
		defer profile(b, "list-filtered")()
		// One workload in ten matches: a page of 50 reads ~500 keys.
		for b.Loop() {
			if _, err := p.client.ListWorkloads(ctx, &inventoryv1.ListWorkloadsRequest{PageSize: 50, Role: "db"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
