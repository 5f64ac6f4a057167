package contract

import (
	"fmt"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/keys"
)

// BenchmarkRegistry measures Get and List over gRPC against the inventory binary, and
// beside them, as baselines, the bare etcd reads the same calls make, against the same
// etcd in the same run. scripts/bench.sh prints the ratios.
func BenchmarkRegistry(b *testing.B) {
	e := newEnv(b)
	p := e.start(b, "--log-level", "error")
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
		for b.Loop() {
			if _, err := p.client.GetWorkload(ctx, &inventoryv1.GetWorkloadRequest{Name: "workloads/w-0500"}); err != nil {
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
		// One workload in ten matches: a page of 50 reads ~500 keys.
		for b.Loop() {
			if _, err := p.client.ListWorkloads(ctx, &inventoryv1.ListWorkloadsRequest{PageSize: 50, Role: "db"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
