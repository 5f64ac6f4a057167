package registry

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/etcdtest"
)

func newTestStore(t testing.TB, opts ...StoreOption) *Store {
	t.Helper()
	s, err := NewStore(etcdtest.Start(t).Client(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testWorkload(role string, wave int32) *inventoryv1.Workload {
	return &inventoryv1.Workload{Role: role, Wave: wave, Source: &inventoryv1.Workload_Instance{
		Instance: &inventoryv1.InstanceSource{Cloud: "old", ServerId: "s"},
	}}
}

// TestListAcrossBatches lists a sparse filter over more workloads than one etcd
// read returns, so that pages straddle read batches.
func TestListAcrossBatches(t *testing.T) {
	s := newTestStore(t)
	ctx := t.Context()
	const n = scanBatch + 150
	var want []string
	for i := range n {
		role := "web"
		if i%37 == 0 {
			role = "db"
			want = append(want, fmt.Sprintf("w-%04d", i))
		}
		if _, err := s.Create(ctx, fmt.Sprintf("w-%04d", i), testWorkload(role, 1), "", ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, size := range []int{1, 3, 5, 100} {
		var got []string
		after := ""
		for {
			page, next, err := s.List(ctx, Filter{Role: "db"}, after, size)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > size {
				t.Fatalf("page of %d > %d", len(page), size)
			}
			for _, w := range page {
				got = append(got, w.GetName()[len(namePrefix):])
			}
			if next == "" {
				break
			}
			after = next
		}
		if !slices.Equal(got, want) {
			t.Fatalf("size %d: got %d IDs %v, want %d", size, len(got), got, len(want))
		}
	}
	count := 0
	if _, err := s.Scan(ctx, func(*inventoryv1.Workload, int64) error { count++; return nil }); err != nil || count != n {
		t.Fatalf("Scan saw %d, %v; want %d", count, err, n)
	}
}

// TestIdleWatchReportsProgress checks that a watch with no workload changes still
// tells its client how far it has come when other keys move the store's revision on,
// so that a client resuming after a long idle stretch starts past them. (While the
// revision does not move at all there is no progress to report, and etcd sends none.)
func TestIdleWatchReportsProgress(t *testing.T) {
	etcd := etcdtest.Start(t)
	cli := etcd.Client(t)
	s, err := NewStore(cli, WithProgressInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	created, err := s.Create(ctx, "p-1", testWorkload("web", 1), "", "")
	if err != nil {
		t.Fatal(err)
	}
	rev, _ := strconv.ParseInt(created.GetEtag(), 10, 64)
	other := make(chan int64, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		r, err := cli.Put(ctx, "/hikkoshi/not-a-workload", "x")
		if err != nil {
			t.Error(err)
			return
		}
		other <- r.Header.Revision
	}()
	var got int64
	err = s.Watch(ctx, rev+1, func(ev *inventoryv1.WatchWorkloadsResponse) error {
		if ev.GetType() != inventoryv1.WatchEventType_WATCH_EVENT_TYPE_PROGRESS {
			t.Errorf("unexpected event %v: no workload changed", ev)
		}
		got = ev.GetRevision()
		select {
		case r := <-other:
			other <- r
			if got >= r {
				cancel()
			}
		default:
		}
		return nil
	})
	r := <-other
	if got < r {
		t.Fatalf("last PROGRESS revision %d, want at least %d (the unrelated write); watch ended %v", got, r, err)
	}
}

// TestListPageEndsBeforeItsByteLimit: a page of large workloads (1 MiB of facts
// each) ends before MaxPageBytes whatever its page_size — a ListWorkloads page of
// 1,000 sent 26.7 MB before — and the next page goes on from there, nothing lost.
func TestListPageEndsBeforeItsByteLimit(t *testing.T) {
	s := newTestStore(t)
	srv, err := NewServer(s, slog.New(slog.DiscardHandler), make(chan struct{}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const n = 9
	for i := range n {
		w := &inventoryv1.Workload{Role: "db", Source: &inventoryv1.Workload_Physical{Physical: &inventoryv1.PhysicalSource{Hostname: "pg"}},
			Facts: &inventoryv1.Facts{Kind: &inventoryv1.Facts_Physical{Physical: &inventoryv1.PhysicalFacts{OsRelease: strings.Repeat("x", 1<<20)}}}}
		if _, err := s.Create(ctx, fmt.Sprintf("big-%d", i), w, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	token := ""
	pages := 0
	for {
		resp, err := srv.ListWorkloads(ctx, &inventoryv1.ListWorkloadsRequest{PageSize: 1000, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if sz := proto.Size(resp); sz > MaxPageBytes+(1<<20) {
			t.Fatalf("page %d is %d bytes", pages, sz)
		}
		for _, w := range resp.GetWorkloads() {
			got = append(got, w.GetName())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if len(got) != n || pages < 3 {
		t.Fatalf("%d workloads in %d pages, want %d in at least 3", len(got), pages, n)
	}
}

// TestWorkloadSizeIsCapped: a workload of more than MaxWorkloadBytes is refused by
// CreateWorkload and UpdateWorkload, naming the limit (1 MB workloads were accepted).
func TestWorkloadSizeIsCapped(t *testing.T) {
	big := &inventoryv1.Workload{Name: "workloads/pg", Source: &inventoryv1.Workload_Physical{Physical: &inventoryv1.PhysicalSource{Hostname: "pg"}},
		Facts: &inventoryv1.Facts{Kind: &inventoryv1.Facts_Physical{Physical: &inventoryv1.PhysicalFacts{OsRelease: strings.Repeat("x", 300<<10)}}}}
	for name, err := range map[string]error{
		"create": ValidateCreateWorkload(&inventoryv1.CreateWorkloadRequest{Workload: big}),
		"update": ValidateUpdateWorkload(&inventoryv1.UpdateWorkloadRequest{Workload: big, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"facts"}}}),
	} {
		if !strings.Contains(apierr.FieldViolations(err)["workload"], fmt.Sprintf("at most %d", MaxWorkloadBytes)) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
