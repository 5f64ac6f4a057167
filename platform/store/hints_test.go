package store_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/etcdtest"
	"github.com/hikkoshi/hikkoshi/platform/idem"
	"github.com/hikkoshi/hikkoshi/platform/store"
)

// countingClient is a client of e that counts its unary calls to etcd.
func countingClient(t *testing.T, e *etcdtest.Server, calls *atomic.Int64) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: e.Endpoints(), DialTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(
			func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				calls.Add(1)
				return invoker(ctx, method, req, reply, cc, opts...)
			})}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func indexedStore(c *clientv3.Client) *store.Store[*netbridgev1.Bridge] {
	s := store.New[*netbridgev1.Bridge](c, prefix, "bridges", "bridge")
	s.Index("state", func(b *netbridgev1.Bridge) []string { return []string{b.GetState().String()} })
	return s
}

// pageAll pages the applied bridges in pages of size, keeping those keep keeps.
func pageAll(t *testing.T, s *store.Store[*netbridgev1.Bridge], size int, keep func(*netbridgev1.Bridge) bool) []string {
	t.Helper()
	var all []string
	after := ""
	for {
		page, next, err := s.PageBy(t.Context(), "state", "BRIDGE_STATE_APPLIED", after, size, keep)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, ids(page)...)
		if next == "" {
			return all
		}
		after = next
	}
}

// TestPageByHints: with FollowIndexes running, a filtered page is one call to etcd
// (the index's keys and the records in one transaction); hints that are wrong in
// every way (a record they miss, one they list that the index no longer has, none at
// all for a value) change how many calls a page takes, never the page.
func TestPageByHints(t *testing.T) {
	e := etcdtest.Start(t)
	var calls atomic.Int64
	reader := indexedStore(countingClient(t, e, &calls))
	writer := indexedStore(e.Client(t))
	ctx := t.Context()
	if err := writer.Reindex(ctx); err != nil {
		t.Fatal(err)
	}
	if err := reader.Reindex(ctx); err != nil {
		t.Fatal(err)
	}
	fctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); reader.FollowIndexes(fctx) }()

	var want []string
	for i := range 40 {
		id := fmt.Sprintf("b-%02d", i)
		st := netbridgev1.BridgeState_BRIDGE_STATE_NEW
		if i%3 != 0 {
			st = netbridgev1.BridgeState_BRIDGE_STATE_APPLIED
			want = append(want, "bridges/"+id)
		}
		if _, err := writer.Create(ctx, id, &netbridgev1.Bridge{Name: "bridges/" + id, State: st}, idem.Request{}, ""); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, ok := reader.Hints("state", "BRIDGE_STATE_APPLIED")
		if ok && len(got) == len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hints did not follow the writes: %d of %d (kept: %v)", len(got), len(want), ok)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Hints right: one call per page.
	for _, size := range []int{5, 26, 100} {
		calls.Store(0)
		got := pageAll(t, reader, size, nil)
		pages := int64((len(want) + size - 1) / size)
		if !slices.Equal(got, want) || calls.Load() != pages {
			t.Fatalf("size %d: %d calls for %d pages, paged %q", size, calls.Load(), pages, got)
		}
	}
	// keep drops some: the page reads on, still one transaction per batch.
	odd := func(b *netbridgev1.Bridge) bool { return b.GetName()[len(b.GetName())-1]%2 == 1 }
	var wantOdd []string
	for _, n := range want {
		if n[len(n)-1]%2 == 1 {
			wantOdd = append(wantOdd, n)
		}
	}
	if got := pageAll(t, reader, 4, odd); !slices.Equal(got, wantOdd) {
		t.Fatalf("kept odd: %q, want %q", got, wantOdd)
	}

	// Hints wrong in every way at once: b-01 missing, b-03 (not applied) and a
	// ghost listed, and the rest right.
	stop()
	<-done
	if _, ok := reader.Hints("state", "BRIDGE_STATE_APPLIED"); ok {
		t.Fatal("hints still kept after FollowIndexes returned")
	}
	var wrong []string
	for _, n := range want {
		if id := n[len("bridges/"):]; id != "b-01" {
			wrong = append(wrong, id)
		}
	}
	wrong = append(wrong, "b-03", "ghost")
	slices.Sort(wrong)
	reader.SetHints(map[[2]string][]string{{"state", "BRIDGE_STATE_APPLIED"}: wrong})
	calls.Store(0)
	if got := pageAll(t, reader, 100, nil); !slices.Equal(got, want) || calls.Load() != 2 {
		t.Fatalf("wrong hints: %d calls, paged %q", calls.Load(), got)
	}
	// No hints for the value: as without hints, two calls.
	reader.SetHints(map[[2]string][]string{})
	calls.Store(0)
	if got := pageAll(t, reader, 100, nil); !slices.Equal(got, want) || calls.Load() != 2 {
		t.Fatalf("no hints: %d calls, paged %q", calls.Load(), got)
	}
}
