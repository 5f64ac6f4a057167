package contract

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
)

// BenchmarkRegistry measures Get and List over gRPC against the inventory binary, and
// beside them, as baselines, the bare etcd reads the same calls make, against the same
// etcd in the same run. scripts/bench.sh prints the ratios.
//
// Every party is its own process, as in production: this benchmark (the client), an
// inventory that runs the etcd server (--etcd-embed, the one-process deployment of
// the demo and Tilt), and a second inventory that uses that etcd from outside (the
// deployment with an etcd cluster of its own). The baselines are the bare reads this
// process makes of that etcd, across the same process boundary a client of the
// inventory crosses. Calls whose names end in -embedded go to the first inventory,
// the others to the second; each sub-benchmark makes its calls in turn (paired), and
// its profile (HIKKOSHI_BENCH_PROFILE) is the second inventory's.
func BenchmarkRegistry(b *testing.B) {
	e := newEnv(b)
	profDir := os.Getenv("HIKKOSHI_BENCH_PROFILE")

	// start runs an inventory with flags and waits until it registers in the
	// bench's etcd; pprof: its metrics address (with --enable-pprof), or "".
	var cli *clientv3.Client
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", freePort(b))
	start := func(instance string, flags ...string) (*proc, string) {
		args := append([]string{
			"--listen", "127.0.0.1:0",
			"--etcd-endpoints", etcdURL,
			"--instance", instance,
			"--lease-ttl", "2s",
			"--log-level", "error",
		}, flags...)
		metrics := ""
		if profDir != "" {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			metrics = l.Addr().String()
			_ = l.Close()
			args = append(args, "--metrics-listen", metrics, "--enable-pprof")
		} else {
			args = append(args, "--metrics-listen", "")
		}
		p := launch(b, append(args, e.TLSArgs("inventory")...), nil)
		if cli == nil {
			c, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdURL}, DialTimeout: 5 * time.Second})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = c.Close() })
			cli = c
		}
		reg := (&servicetest.Env{Cli: cli, PKI: e.PKI}).WaitRegistered(b, "inventory", instance, 60*time.Second)
		p.dial(reg.Address, e.Creds(b, "admin"))
		return p, metrics
	}
	embedded, _ := start("bench-embedded", "--etcd-embed", filepath.Join(b.TempDir(), "etcd"),
		"--etcd-embed-client-url", etcdURL, "--etcd-embed-peer-url", fmt.Sprintf("http://127.0.0.1:%d", freePort(b)))
	external, externalMetrics := start("bench-external")

	profile := func(b *testing.B, metrics, name string) func() {
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
		if _, err := external.client.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{WorkloadId: fmt.Sprintf("w-%04d", i), Workload: w}); err != nil {
			b.Fatal(err)
		}
	}
	key := keys.Workload("w-0500")
	end := clientv3.GetPrefixRangeEnd(keys.WorkloadsPrefix)
	etcdGet := func() error { _, err := cli.Get(ctx, key); return err }
	etcdRange := func() error {
		_, err := cli.Get(ctx, keys.WorkloadsPrefix, clientv3.WithRange(end), clientv3.WithLimit(51))
		return err
	}
	get := func(p *proc) func() error {
		return func() error {
			_, err := p.client.GetWorkload(ctx, &inventoryv1.GetWorkloadRequest{Name: "workloads/w-0500"})
			return err
		}
	}
	health := func(p *proc) func() error {
		// The hop alone: the same connection, a call that reads nothing from etcd.
		h := healthpb.NewHealthClient(p.Conn)
		return func() error { _, err := h.Check(ctx, &healthpb.HealthCheckRequest{}); return err }
	}
	list := func(p *proc, role string) func() error {
		return func() error {
			_, err := p.client.ListWorkloads(ctx, &inventoryv1.ListWorkloadsRequest{PageSize: 50, Role: role})
			return err
		}
	}

	b.Run("get", func(b *testing.B) {
		defer profile(b, externalMetrics, "get")()
		paired(b, []call{
			{"etcd-get", etcdGet},
			{"grpc-get", get(external)},
			{"grpc-get-embedded", get(embedded)},
			{"grpc-health", health(external)},
			{"grpc-health-embedded", health(embedded)},
		})
	})
	b.Run("list-50", func(b *testing.B) {
		paired(b, []call{
			{"etcd-range-50", etcdRange},
			{"grpc-list-50", list(external, "")},
			{"grpc-list-50-embedded", list(embedded, "")},
		})
	})
	b.Run("list-50-filtered", func(b *testing.B) {
		defer profile(b, externalMetrics, "list-filtered")()
		// One workload in ten matches: a page of 50 reads its 50 index keys and those
		// 50 workloads.
		paired(b, []call{
			{"etcd-range-50-f", etcdRange}, // the same baseline, measured beside these
			{"grpc-list-50-filtered", list(external, "db")},
			{"grpc-list-50-filtered-embedded", list(embedded, "db")},
		})
		// The inventories' memory at the end of their calls.
		b.ReportMetric(float64(external.PeakRSS())/(1<<20), "external-peak-RSS-MiB")
		b.ReportMetric(float64(embedded.PeakRSS())/(1<<20), "embedded-peak-RSS-MiB")
	})
}

// A call is one of the calls paired compares.
type call struct {
	name string
	do   func() error
}

// paired makes each call once per iteration, one after the other, and reports
// each one's mean time as a metric "NAME-µs": the calls share the machine's every
// moment, so that their ratios do not drift with what else the machine does
// between one sub-benchmark and the next (on a 2-core VM shared by three processes,
// run-to-run drift is larger than the differences measured).
func paired(b *testing.B, calls []call) {
	spent := make([]time.Duration, len(calls))
	for b.Loop() {
		for i, c := range calls {
			t0 := time.Now()
			if err := c.do(); err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			spent[i] += time.Since(t0)
		}
	}
	for i, c := range calls {
		b.ReportMetric(float64(spent[i].Nanoseconds())/1e3/float64(b.N), c.name+"-µs")
	}
}
