package discovery

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/etcdtest"
	"github.com/hikkoshi/hikkoshi/platform/locks"
	"github.com/hikkoshi/hikkoshi/services/inventory/internal/registry"
)

type harness struct {
	fc    *fakeCloud
	s     *Syncer
	store *registry.Store
}

func newHarness(tb testing.TB, servers, portsPerServer int) *harness {
	tb.Helper()
	fc := newFakeCloud(tb, servers, portsPerServer)
	e := etcdtest.Start(tb)
	cli := e.Client(tb)
	sess, err := concurrency.NewSession(cli)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = sess.Close() })
	store, err := registry.NewStore(cli)
	if err != nil {
		tb.Fatal(err)
	}
	s := New(Options{
		Store: store, Etcd: cli, Locks: locks.New(func() *concurrency.Session { return sess }),
		Open: fc.opener, Sources: []string{"big"}, Instance: "test", Logger: slog.New(slog.DiscardHandler),
	})
	return &harness{fc: fc, s: s, store: store}
}

// sync runs one sync to its end and returns it.
func (h *harness) sync(tb testing.TB, mode inventoryv1.SyncMode) *inventoryv1.Sync {
	tb.Helper()
	ctx := context.Background()
	sy, err := h.s.Start(ctx, &inventoryv1.Sync{Cloud: "big", Mode: mode})
	if err != nil {
		tb.Fatal(err)
	}
	h.s.Wait()
	got, _, err := h.s.Get(ctx, sy.GetName())
	if err != nil {
		tb.Fatal(err)
	}
	if got.GetState() != inventoryv1.SyncState_SYNC_STATE_SUCCEEDED {
		tb.Fatalf("sync %s: %s", got.GetState(), got.GetError())
	}
	return got
}

// TestSyncPagesAndChanges: 2,500 servers and 5,000 ports over pages of 1,000; a full
// sync creates them all, quiet syncs write nothing, a changed port and a deleted
// server are found by the syncs that should find them.
func TestSyncPagesAndChanges(t *testing.T) {
	h := newHarness(t, 2500, 2)
	vol := h.fc.attachVolume(7, 100, "/dev/vdb")
	first := h.sync(t, inventoryv1.SyncMode_SYNC_MODE_FULL)
	c := first.GetCounts()
	if c.GetServers() != 2500 || c.GetPorts() != 5000 || c.GetCreated() != 2500 {
		t.Fatalf("first sync counts %v", c)
	}
	w, err := h.store.Get(t.Context(), WorkloadID(h.fc.servers[7]["id"].(string)))
	if err != nil {
		t.Fatal(err)
	}
	if ps := w.GetFacts().GetInstance().GetPorts(); len(ps) != 2 || ps[0].GetFixedIps()[0].GetCidr() != "10.64.0.0/14" || ps[0].GetNetworkName() != "big-vlan" {
		t.Fatalf("facts %v", w.GetFacts())
	}
	if vs := w.GetFacts().GetInstance().GetVolumes(); len(vs) != 1 || vs[0].GetId() != vol || vs[0].GetSizeGb() != 100 ||
		vs[0].GetDevice() != "/dev/vdb" || vs[0].GetVolumeType() != "ceph" || c.GetVolumes() != 1 {
		t.Fatalf("volumes %v (listed %d)", vs, c.GetVolumes())
	}
	for _, mode := range []inventoryv1.SyncMode{inventoryv1.SyncMode_SYNC_MODE_FULL, inventoryv1.SyncMode_SYNC_MODE_AUTO} {
		if sy := h.sync(t, mode); sy.GetCounts().GetEtcdWrites() != 0 {
			t.Fatalf("%v sync with nothing changed: %v", sy.GetMode(), sy.GetCounts())
		}
	}
	// A port gets another address; a server is deleted.
	h.fc.ports[10]["fixed_ips"] = []map[string]string{{"subnet_id": h.fc.subnet["id"].(string), "ip_address": "10.66.6.6"}}
	h.fc.ports[10]["updated_at"] = time.Now().UTC().Format(time.RFC3339)
	gone := h.fc.servers[0]["id"].(string)
	h.fc.servers = h.fc.servers[1:]
	inc := h.sync(t, inventoryv1.SyncMode_SYNC_MODE_AUTO)
	if inc.GetMode() != inventoryv1.SyncMode_SYNC_MODE_INCREMENTAL || inc.GetCounts().GetUpdated() != 1 || inc.GetCounts().GetEtcdWrites() != 1 {
		t.Fatalf("incremental after a port change: %v %v", inc.GetMode(), inc.GetCounts())
	}
	full := h.sync(t, inventoryv1.SyncMode_SYNC_MODE_FULL)
	if full.GetCounts().GetVanished() != 1 || full.GetCounts().GetEtcdWrites() != 1 {
		t.Fatalf("full after a deletion: %v", full.GetCounts())
	}
	w, err = h.store.Get(t.Context(), WorkloadID(gone))
	if err != nil || !w.GetVanished() {
		t.Fatalf("deleted server's workload: %v %v", w, err)
	}
}

// BenchmarkSync10k syncs a cloud of 10,000 servers and 30,000 ports served as pages
// by a local HTTP server, against the bare paginated listing of the same pages in the
// same run (scripts/bench.sh sync prints the ratios):
//
//	bare-listing      gophercloud AllPages of servers, ports, networks, subnets,
//	                  floating IPs, flavors and images, one after the other
//	sync-full-first   a full sync into an empty registry (10,000 creates)
//	sync-full-quiet   a full sync with nothing changed (no writes)
//	sync-incr-quiet   an incremental sync with nothing changed
func BenchmarkSync10k(b *testing.B) {
	h := newHarness(b, 10000, 3)
	ctx := context.Background()
	b.Run("bare-listing", func(b *testing.B) {
		for b.Loop() {
			c := h.fc.clients()
			s, err := bareList(ctx, c)
			if err != nil || len(s.Servers) != 10000 || len(s.Ports) != 30000 {
				b.Fatalf("bare listing: %d servers %d ports %v", len(s.Servers), len(s.Ports), err)
			}
		}
	})
	report := func(b *testing.B, calls, writes int64) {
		b.ReportMetric(float64(calls)/float64(b.N), "calls/op")
		b.ReportMetric(float64(writes)/float64(b.N), "writes/op")
	}
	b.Run("sync-full-first", func(b *testing.B) {
		var calls, writes int64
		for b.Loop() {
			b.StopTimer()
			if _, err := h.s.etcd.Delete(ctx, "/hikkoshi/", clientv3WithPrefix()...); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			sy := h.sync(b, inventoryv1.SyncMode_SYNC_MODE_FULL)
			calls += int64(sy.GetCounts().GetApiCalls())
			writes += int64(sy.GetCounts().GetEtcdWrites())
		}
		report(b, calls, writes)
	})
	for _, c := range []struct {
		name string
		mode inventoryv1.SyncMode
	}{{"sync-full-quiet", inventoryv1.SyncMode_SYNC_MODE_FULL}, {"sync-incr-quiet", inventoryv1.SyncMode_SYNC_MODE_INCREMENTAL}} {
		b.Run(c.name, func(b *testing.B) {
			var calls, writes int64
			for b.Loop() {
				sy := h.sync(b, c.mode)
				calls += int64(sy.GetCounts().GetApiCalls())
				writes += int64(sy.GetCounts().GetEtcdWrites())
			}
			report(b, calls, writes)
		})
	}
}
