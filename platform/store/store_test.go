package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/etcdtest"
	"github.com/hikkoshi/hikkoshi/platform/idem"
	"github.com/hikkoshi/hikkoshi/platform/store"
)

const prefix = "/test/bridges/"

func bridges(t *testing.T) (*store.Store[*netbridgev1.Bridge], *clientv3.Client) {
	c := etcdtest.Start(t).Client(t)
	return store.New[*netbridgev1.Bridge](c, prefix, "bridges", "bridge"), c
}

func want(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	if status.Code(err) != code || apierr.Reason(err) != reason {
		t.Fatalf("got %v (reason %q), want %s %s", err, apierr.Reason(err), code, reason)
	}
}

// TestCRUD: create, get with its etag, the etag never stored, updates under
// compare-and-swap and etags, delete; every refusal with its code and reason.
func TestCRUD(t *testing.T) {
	s, c := bridges(t)
	ctx := t.Context()
	b, err := s.Create(ctx, "a", &netbridgev1.Bridge{Name: s.Name("a"), Etag: "ignored"}, idem.Request{}, "")
	if err != nil {
		t.Fatal(err)
	}
	got, rev, err := s.Get(ctx, "a")
	if err != nil || got.GetEtag() != b.GetEtag() || fmt.Sprint(rev) != got.GetEtag() {
		t.Fatalf("get: %v %v rev %d, created etag %s", got, err, rev, b.GetEtag())
	}
	raw, _ := c.Get(ctx, prefix+"a")
	if d, _ := s.Decode(raw.Kvs[0]); d.GetEtag() != got.GetEtag() {
		t.Fatal("decode does not set the etag")
	}
	_, err = s.Create(ctx, "a", &netbridgev1.Bridge{Name: s.Name("a")}, idem.Request{}, "")
	want(t, err, codes.AlreadyExists, "BRIDGE_EXISTS")
	_, _, err = s.Get(ctx, "nope")
	want(t, err, codes.NotFound, "BRIDGE_NOT_FOUND")

	up, err := s.Update(ctx, "a", func(b *netbridgev1.Bridge) (bool, error) { b.Error = "x"; return true, nil }, store.IfEtag(rev))
	if err != nil || up.GetError() != "x" || up.GetEtag() == got.GetEtag() {
		t.Fatalf("update: %v %v", up, err)
	}
	_, err = s.Update(ctx, "a", func(b *netbridgev1.Bridge) (bool, error) { return true, nil }, store.IfEtag(rev))
	want(t, err, codes.Aborted, store.ReasonEtagMismatch)
	same, err := s.Update(ctx, "a", func(*netbridgev1.Bridge) (bool, error) { return false, nil })
	if err != nil || same.GetEtag() != up.GetEtag() {
		t.Fatalf("an update writing nothing moved the etag: %v %v", same, err)
	}
	err = s.Delete(ctx, "a", rev)
	want(t, err, codes.Aborted, store.ReasonEtagMismatch)
	if err := s.Delete(ctx, "a", 0); err != nil {
		t.Fatal(err)
	}
	want(t, s.Delete(ctx, "a", 0), codes.NotFound, "BRIDGE_NOT_FOUND")
	_, err = s.Update(ctx, "a", func(*netbridgev1.Bridge) (bool, error) { return true, nil })
	want(t, err, codes.NotFound, "BRIDGE_NOT_FOUND")
}

// TestCorruptAndCancel: a record that is not one is DATA_LOSS everywhere it is
// read; a client's cancel is CANCELLED, not UNAVAILABLE.
func TestCorruptAndCancel(t *testing.T) {
	s, c := bridges(t)
	ctx := t.Context()
	if _, err := c.Put(ctx, prefix+"bad", "\xff\xff\xff"); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.Get(ctx, "bad")
	want(t, err, codes.DataLoss, store.ReasonCorrupt)
	_, _, err = s.Page(ctx, "", store.Ascending, 10, nil)
	want(t, err, codes.DataLoss, store.ReasonCorrupt)
	_, err = s.Update(ctx, "bad", func(*netbridgev1.Bridge) (bool, error) { return true, nil })
	want(t, err, codes.DataLoss, store.ReasonCorrupt)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err = s.Get(cctx, "bad")
	want(t, err, codes.Canceled, "CANCELED")
}

// TestIdempotentCreate: the same request_id and fingerprint give the first record
// back; another fingerprint is INVALID_ARGUMENT at request_id.
func TestIdempotentCreate(t *testing.T) {
	s, _ := bridges(t)
	ctx := t.Context()
	req := idem.Request{Key: "/test/requests/r1", Fingerprint: "f1", TTL: time.Hour}
	first, err := s.Create(ctx, "x1", &netbridgev1.Bridge{Name: s.Name("x1")}, req, "r1")
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Create(ctx, "x2", &netbridgev1.Bridge{Name: s.Name("x2")}, req, "r1")
	if err != nil || again.GetName() != first.GetName() {
		t.Fatalf("repeat: %v %v", again, err)
	}
	req.Fingerprint = "f2"
	_, err = s.Create(ctx, "x3", &netbridgev1.Bridge{Name: s.Name("x3")}, req, "r1")
	if status.Code(err) != codes.InvalidArgument || apierr.FieldViolations(err)["request_id"] == "" {
		t.Fatalf("other request: %v", err)
	}
}

// TestPages: pages in both orders, with a filter, continue where the last ended
// and end with no next; a page of a filtered store reads in batches, not all.
func TestPages(t *testing.T) {
	c := etcdtest.Start(t).Client(t)
	s := store.New[*converterv1.Job](c, "/test/jobs/", "jobs", "job")
	ctx := t.Context()
	for i := range 25 {
		id := fmt.Sprintf("j%02d", i)
		if _, err := s.Create(ctx, id, &converterv1.Job{Name: s.Name(id), Attempts: int32(i)}, idem.Request{}, ""); err != nil {
			t.Fatal(err)
		}
	}
	collect := func(order store.Order, size int, keep func(*converterv1.Job) bool) []int32 {
		var out []int32
		after := ""
		for pages := 0; ; pages++ {
			page, next, err := s.Page(ctx, after, order, size, keep)
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range page {
				out = append(out, j.GetAttempts())
			}
			if next == "" {
				return out
			}
			if pages > 30 {
				t.Fatal("pages do not end")
			}
			after = next
		}
	}
	if got := collect(store.Ascending, 7, nil); fmt.Sprint(got) != fmt.Sprint(seq(0, 25, 1)) {
		t.Errorf("ascending: %v", got)
	}
	if got := collect(store.Descending, 4, nil); fmt.Sprint(got) != fmt.Sprint(seq(24, -1, -1)) {
		t.Errorf("descending: %v", got)
	}
	odd := func(j *converterv1.Job) bool { return j.GetAttempts()%2 == 1 }
	if got := collect(store.Descending, 5, odd); fmt.Sprint(got) != fmt.Sprint(seq(23, -1, -2)) {
		t.Errorf("descending odd: %v", got)
	}
	if got := collect(store.Ascending, 25, nil); len(got) != 25 {
		t.Errorf("one exact page: %v", got)
	}
	if page, next, err := s.Page(ctx, "", store.Ascending, 3, func(*converterv1.Job) bool { return false }); err != nil || len(page) != 0 || next != "" {
		t.Errorf("nothing kept: %v %q %v", page, next, err)
	}
}

func seq(from, to, step int) []int32 {
	var out []int32
	for i := from; i != to; i += step {
		out = append(out, int32(i))
	}
	return out
}

// TestGuardAndOps: a guarded update whose guard fails returns the guard's error; the
// extra ops ride in the same transaction.
func TestGuardAndOps(t *testing.T) {
	s, c := bridges(t)
	ctx := t.Context()
	if _, err := s.Create(ctx, "g", &netbridgev1.Bridge{Name: s.Name("g")}, idem.Request{}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "/test/leader", "me"); err != nil {
		t.Fatal(err)
	}
	errNotLeader := fmt.Errorf("not the leader")
	guard := store.Guard(errNotLeader, clientv3.Compare(clientv3.Value("/test/leader"), "=", "me"))
	ops := store.AlsoOps(func(b *netbridgev1.Bridge) []clientv3.Op {
		return []clientv3.Op{clientv3.OpPut("/test/side", b.GetError())}
	})
	if _, err := s.Update(ctx, "g", func(b *netbridgev1.Bridge) (bool, error) { b.Error = "side"; return true, nil }, guard, ops); err != nil {
		t.Fatal(err)
	}
	if r, _ := c.Get(ctx, "/test/side"); len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "side" {
		t.Fatalf("the extra op did not ride along: %v", r.Kvs)
	}
	if _, err := c.Put(ctx, "/test/leader", "other"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, "g", func(b *netbridgev1.Bridge) (bool, error) { return true, nil }, guard); err != errNotLeader {
		t.Fatalf("guard failed: %v, want %v", err, errNotLeader)
	}
}

func TestNewIDSortsByTime(t *testing.T) {
	a := store.NewID("job", time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	b := store.NewID("job", time.Date(2026, 12, 7, 10, 0, 1, 0, time.UTC))
	if !(a < b) || len(a) != len("job-20261207t100000z-abcdef") {
		t.Fatalf("%s, %s", a, b)
	}
}
