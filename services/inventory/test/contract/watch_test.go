package contract

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
)

// change is what a client should see for one write.
type change struct {
	typ inventoryv1.WatchEventType
	id  string
	rev int64
}

func (c change) String() string { return fmt.Sprintf("%s %s @%d", c.typ, c.id, c.rev) }

const (
	evCreated  = inventoryv1.WatchEventType_WATCH_EVENT_TYPE_CREATED
	evUpdated  = inventoryv1.WatchEventType_WATCH_EVENT_TYPE_UPDATED
	evDeleted  = inventoryv1.WatchEventType_WATCH_EVENT_TYPE_DELETED
	evProgress = inventoryv1.WatchEventType_WATCH_EVENT_TYPE_PROGRESS
	evExisting = inventoryv1.WatchEventType_WATCH_EVENT_TYPE_EXISTING
	evSynced   = inventoryv1.WatchEventType_WATCH_EVENT_TYPE_SYNCED
)

// writer makes numbered changes and records what a watcher must see.
type writer struct {
	t    *testing.T
	c    inventoryv1.InventoryServiceClient
	want []change
	n    int
}

func (w *writer) step(ctx context.Context) {
	w.t.Helper()
	w.n++
	id := fmt.Sprintf("w-%03d", w.n)
	r, err := w.c.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{WorkloadId: id, Workload: instanceWorkload("web", 1, nil)})
	if err != nil {
		w.t.Fatal(err)
	}
	w.want = append(w.want, change{evCreated, id, etagInt(w.t, r.GetWorkload().GetEtag())})
	u, err := updateRole(ctx, w.c, "workloads/"+id, "api")
	if err != nil {
		w.t.Fatal(err)
	}
	w.want = append(w.want, change{evUpdated, id, etagInt(w.t, u.GetEtag())})
	if w.n%3 == 0 {
		if _, err := w.c.DeleteWorkload(ctx, &inventoryv1.DeleteWorkloadRequest{Name: "workloads/" + id}); err != nil {
			w.t.Fatal(err)
		}
		// The delete's revision is one past the update's: nothing else writes.
		w.want = append(w.want, change{evDeleted, id, etagInt(w.t, u.GetEtag()) + 1})
	}
}

// recvChanges reads events until n changes have arrived, skipping PROGRESS.
func recvChanges(t *testing.T, s inventoryv1.InventoryService_WatchWorkloadsClient, n int) []change {
	t.Helper()
	var got []change
	for len(got) < n {
		ev, err := s.Recv()
		if err != nil {
			t.Fatalf("Recv after %d of %d changes: %v", len(got), n, err)
		}
		if ev.GetType() == evProgress {
			continue
		}
		got = append(got, change{ev.GetType(), ev.GetWorkload().GetName()[len("workloads/"):], ev.GetRevision()})
	}
	return got
}

func TestWatchResumesWithoutLossOrDuplicates(t *testing.T) {
	p := newEnv(t).start(t)
	c := p.client
	w := &writer{t: t, c: c}

	// From now: the first event tells where the stream stands.
	ctx1, cancel1 := context.WithCancel(t.Context())
	s1, err := c.WatchWorkloads(ctx1, &inventoryv1.WatchWorkloadsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := s1.Recv()
	if err != nil || first.GetType() != evProgress || first.GetRevision() <= 0 {
		t.Fatalf("first event %v, %v; want PROGRESS with a revision", first, err)
	}
	for range 4 {
		w.step(t.Context())
	}
	half := len(w.want) / 2
	got := recvChanges(t, s1, half)
	// Disconnect mid-stream, keep writing while disconnected.
	cancel1()
	for range 4 {
		w.step(t.Context())
	}
	last := got[len(got)-1].rev
	s2, err := c.WatchWorkloads(t.Context(), &inventoryv1.WatchWorkloadsRequest{StartRevision: last + 1})
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, recvChanges(t, s2, len(w.want)-half)...)
	if len(got) != len(w.want) {
		t.Fatalf("got %d changes, want %d", len(got), len(w.want))
	}
	for i := range got {
		if got[i] != w.want[i] {
			t.Fatalf("change %d: got %v, want %v\n got: %v\nwant: %v", i, got[i], w.want[i], got, w.want)
		}
	}

	// Nothing more arrives but PROGRESS: no duplicates behind the last change.
	ctx3, cancel3 := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel3()
	s3, err := c.WatchWorkloads(ctx3, &inventoryv1.WatchWorkloadsRequest{StartRevision: got[len(got)-1].rev + 1})
	if err != nil {
		t.Fatal(err)
	}
	for {
		ev, err := s3.Recv()
		if err != nil {
			if status.Code(err) != codes.DeadlineExceeded {
				t.Fatalf("idle watch ended with %v", err)
			}
			break
		}
		if ev.GetType() != evProgress {
			t.Fatalf("unexpected event after the last change: %v", ev)
		}
	}
}

func TestWatchIncludeExisting(t *testing.T) {
	p := newEnv(t).start(t)
	c, ctx := p.client, t.Context()
	for i := range 3 {
		if _, err := c.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{WorkloadId: fmt.Sprintf("e-%d", i), Workload: instanceWorkload("web", 1, nil)}); err != nil {
			t.Fatal(err)
		}
	}
	s, err := c.WatchWorkloads(ctx, &inventoryv1.WatchWorkloadsRequest{IncludeExisting: true})
	if err != nil {
		t.Fatal(err)
	}
	var synced int64
	for n := 0; synced == 0; n++ {
		ev, err := s.Recv()
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case n < 3 && ev.GetType() == evExisting && ev.GetWorkload().GetName() == fmt.Sprintf("workloads/e-%d", n):
		case n == 3 && ev.GetType() == evSynced:
			synced = ev.GetRevision()
		default:
			t.Fatalf("event %d: %v", n, ev)
		}
	}
	u, err := updateRole(ctx, c, "workloads/e-1", "db")
	if err != nil {
		t.Fatal(err)
	}
	got := recvChanges(t, s, 1)
	if got[0] != (change{evUpdated, "e-1", etagInt(t, u.GetEtag())}) || got[0].rev <= synced {
		t.Fatalf("after SYNCED@%d got %v", synced, got)
	}
}

func TestWatchCompactedRevisionIsOutOfRange(t *testing.T) {
	e := newEnv(t)
	p := e.start(t)
	c, ctx := p.client, t.Context()
	var rev int64
	for i := range 3 {
		r, err := c.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{WorkloadId: fmt.Sprintf("c-%d", i), Workload: instanceWorkload("web", 1, nil)})
		if err != nil {
			t.Fatal(err)
		}
		rev = etagInt(t, r.GetWorkload().GetEtag())
	}
	if _, err := e.Cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	s, err := c.WatchWorkloads(ctx, &inventoryv1.WatchWorkloadsRequest{StartRevision: 2})
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err := s.Recv()
		if err == nil {
			continue
		}
		if err == io.EOF || status.Code(err) != codes.OutOfRange {
			t.Fatalf("watch from a compacted revision ended with %v, want OUT_OF_RANGE", err)
		}
		return
	}
}

// TestWatchesPerClientAreCapped: one client may hold --max-streams-per-client
// watches open (5,000 were accepted before, 15,000 goroutines); the next one is
// RESOURCE_EXHAUSTED naming the flag, and a watch that ends frees its place.
func TestWatchesPerClientAreCapped(t *testing.T) {
	p := newEnv(t).start(t, "--max-streams-per-client", "8")
	open := func() (context.CancelFunc, error) {
		ctx, cancel := context.WithCancel(t.Context())
		s, err := p.client.WatchWorkloads(ctx, &inventoryv1.WatchWorkloadsRequest{})
		if err == nil {
			_, err = s.Recv() // the stream is open once its first event came
		}
		if err != nil {
			cancel()
		}
		return cancel, err
	}
	var cancels []context.CancelFunc
	for i := range 8 {
		cancel, err := open()
		if err != nil {
			t.Fatalf("watch %d: %v", i, err)
		}
		cancels = append(cancels, cancel)
	}
	_, err := open()
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--max-streams-per-client") {
		t.Fatalf("the 9th watch: %v, want RESOURCE_EXHAUSTED naming the limit", err)
	}
	cancels[0]()
	deadline := time.Now().Add(5 * time.Second)
	for {
		cancel, err := open()
		if err == nil {
			cancel()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a watch ended, yet another is refused: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, c := range cancels[1:] {
		c()
	}
}
