package idem_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hikkoshi/hikkoshi/platform/etcdtest"
	"github.com/hikkoshi/hikkoshi/platform/idem"
)

func TestCreate(t *testing.T) {
	c := etcdtest.Start(t).Client(t)
	ctx := t.Context()
	req := idem.Request{Key: "/t/requests/r1", Fingerprint: "fp1", TTL: time.Hour}

	r, err := idem.Create(ctx, c, "/t/things/a", "A", "a", req)
	if err != nil || !r.Created || r.Revision == 0 {
		t.Fatalf("first create: %+v, %v", r, err)
	}
	// The same request again: the first one's resource, nothing written.
	r, err = idem.Create(ctx, c, "/t/things/b", "B", "b", req)
	if err != nil || r.Created || r.Existing != "a" {
		t.Fatalf("repeat: %+v, %v", r, err)
	}
	if got, _ := c.Get(ctx, "/t/things/b"); len(got.Kvs) != 0 {
		t.Fatal("a repeat wrote a second resource")
	}
	// Another request with that request_id.
	if _, err := idem.Create(ctx, c, "/t/things/c", "C", "c", idem.Request{Key: req.Key, Fingerprint: "fp2", TTL: time.Hour}); !errors.Is(err, idem.ErrOtherRequest) {
		t.Fatalf("other request: %v", err)
	}
	// The resource key taken, by a request without a request_id or another one.
	if _, err := idem.Create(ctx, c, "/t/things/a", "A2", "a", idem.Request{}); !errors.Is(err, idem.ErrExists) {
		t.Fatalf("existing key, no request: %v", err)
	}
	if _, err := idem.Create(ctx, c, "/t/things/a", "A2", "a", idem.Request{Key: "/t/requests/r2", Fingerprint: "x", TTL: time.Hour}); !errors.Is(err, idem.ErrExists) {
		t.Fatalf("existing key, new request: %v", err)
	}
	if got, _ := c.Get(ctx, "/t/requests/r2"); len(got.Kvs) != 0 {
		t.Fatal("a refused create left its request record")
	}
	// The record is under a lease of the TTL.
	got, _ := c.Get(ctx, req.Key)
	ttl, err := c.TimeToLive(ctx, clientv3.LeaseID(got.Kvs[0].Lease))
	if err != nil || ttl.TTL <= 0 || ttl.TTL > 3600 {
		t.Fatalf("record lease TTL %d (%v)", ttl.TTL, err)
	}
	// A record of before this package (job_id) still reads; a broken one is an error.
	_, _ = c.Put(ctx, "/t/requests/old", `{"job_id":"j1","fingerprint":"f"}`)
	if r, err := idem.Create(ctx, c, "/t/things/j2", "J", "j2", idem.Request{Key: "/t/requests/old", Fingerprint: "f", TTL: time.Hour}); err != nil || r.Existing != "j1" {
		t.Fatalf("old record: %+v, %v", r, err)
	}
	_, _ = c.Put(ctx, "/t/requests/bad", `{`)
	if _, err := idem.Create(ctx, c, "/t/things/x", "X", "x", idem.Request{Key: "/t/requests/bad", Fingerprint: "f", TTL: time.Hour}); !errors.Is(err, idem.ErrCorruptRecord) {
		t.Fatalf("corrupt record: %v", err)
	}
}

// TestCreateRace: many creates of one request at once make one resource, and every
// caller gets its ID.
func TestCreateRace(t *testing.T) {
	c := etcdtest.Start(t).Client(t)
	req := idem.Request{Key: "/t/requests/race", Fingerprint: "fp", TTL: time.Hour}
	var wg sync.WaitGroup
	ids := make([]string, 16)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := string(rune('a' + i))
			r, err := idem.Create(t.Context(), c, "/t/things/"+id, id, id, req)
			switch {
			case err != nil:
				t.Error(err)
			case r.Created:
				ids[i] = id
			default:
				ids[i] = r.Existing
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("callers got %v", ids)
		}
	}
	if got, _ := c.Get(t.Context(), "/t/things/", clientv3.WithPrefix()); got.Count != 1 {
		t.Fatalf("%d resources made", got.Count)
	}
}
