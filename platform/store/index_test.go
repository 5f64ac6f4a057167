package store_test

import (
	"fmt"
	"slices"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/etcdtest"
	"github.com/hikkoshi/hikkoshi/platform/idem"
	"github.com/hikkoshi/hikkoshi/platform/store"
)

// indexKeys lists the index's keys in etcd.
func indexKeys(t *testing.T, c *clientv3.Client) []string {
	t.Helper()
	resp, err := c.Get(t.Context(), "/test/bridges-index/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		out = append(out, string(kv.Key))
	}
	return out
}

func ids(page []*netbridgev1.Bridge) []string {
	var out []string
	for _, b := range page {
		out = append(out, b.GetName())
	}
	return out
}

// TestIndex: an index over the bridges' state (and their error, a value with a
// slash) follows every create, update and delete in the same transaction; PageBy
// reads the records of one value, pages them with next IDs, applies keep; Reindex
// rebuilds an index from scratch (records written before it existed, and a key
// left by hand pointing at nothing).
func TestIndex(t *testing.T) {
	c := etcdtest.Start(t).Client(t)
	s := store.New[*netbridgev1.Bridge](c, prefix, "bridges", "bridge")
	ctx := t.Context()
	// Before the index: three records it does not know about.
	for i := range 3 {
		if _, err := s.Create(ctx, fmt.Sprintf("old-%d", i), &netbridgev1.Bridge{State: netbridgev1.BridgeState_BRIDGE_STATE_APPLIED}, idem.Request{}, ""); err != nil {
			t.Fatal(err)
		}
	}
	s.Index("state", func(b *netbridgev1.Bridge) []string { return []string{b.GetState().String()} })
	s.Index("error", func(b *netbridgev1.Bridge) []string {
		if b.GetError() == "" {
			return nil
		}
		return []string{b.GetError()}
	})
	if _, err := c.Put(ctx, "/test/bridges-index/state/BRIDGE_STATE_APPLIED/ghost", ""); err != nil {
		t.Fatal(err)
	}
	// Before Reindex, PageBy reads every record and keep decides.
	isApplied := func(b *netbridgev1.Bridge) bool { return b.GetState() == netbridgev1.BridgeState_BRIDGE_STATE_APPLIED }
	if page, _, err := s.PageBy(ctx, "state", "BRIDGE_STATE_APPLIED", "", 10, isApplied); err != nil || len(page) != 3 {
		t.Fatalf("before Reindex: %d records, %v", len(page), err)
	}
	if err := s.Reindex(ctx); err != nil {
		t.Fatal(err)
	}
	ready := "/test/bridges-index/state/BRIDGE_STATE_APPLIED/"
	if got := indexKeys(t, c); !slices.Equal(got, []string{ready + "old-0", ready + "old-1", ready + "old-2"}) {
		t.Fatalf("after Reindex: %v", got)
	}
	for i := range 7 {
		st := netbridgev1.BridgeState_BRIDGE_STATE_NEW
		if i%2 == 0 {
			st = netbridgev1.BridgeState_BRIDGE_STATE_APPLIED
		}
		if _, err := s.Create(ctx, fmt.Sprintf("b-%d", i), &netbridgev1.Bridge{Name: s.Name(fmt.Sprintf("b-%d", i)), State: st}, idem.Request{}, ""); err != nil {
			t.Fatal(err)
		}
	}
	// b-0, b-2, b-4, b-6 and old-0..2 are ready; pages of 3.
	var all []string
	after := ""
	for {
		page, next, err := s.PageBy(ctx, "state", "BRIDGE_STATE_APPLIED", after, 3, nil)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, ids(page)...)
		if next == "" {
			break
		}
		after = next
	}
	if want := []string{"bridges/b-0", "bridges/b-2", "bridges/b-4", "bridges/b-6", "", "", ""}; !slices.Equal(all, want) {
		t.Fatalf("ready bridges paged: %q, want %q", all, want)
	}
	// An update moves b-2 out of ready and gives it an error with a slash.
	if _, err := s.Update(ctx, "b-2", func(b *netbridgev1.Bridge) (bool, error) {
		b.State, b.Error = netbridgev1.BridgeState_BRIDGE_STATE_FAILED, "port 10.0.0.1/24 taken"
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "b-4", 0); err != nil {
		t.Fatal(err)
	}
	page, next, err := s.PageBy(ctx, "state", "BRIDGE_STATE_APPLIED", "", 10, func(b *netbridgev1.Bridge) bool { return b.GetName() != "" })
	if err != nil || next != "" || !slices.Equal(ids(page), []string{"bridges/b-0", "bridges/b-6"}) {
		t.Fatalf("ready after the update and the delete, kept with a name: %q next %q %v", ids(page), next, err)
	}
	page, _, err = s.PageBy(ctx, "error", "port 10.0.0.1/24 taken", "", 10, nil)
	if err != nil || !slices.Equal(ids(page), []string{"bridges/b-2"}) || page[0].GetEtag() == "" {
		t.Fatalf("by error: %v %v", page, err)
	}
	for _, k := range indexKeys(t, c) {
		if slices.Contains([]string{ready + "b-2", ready + "b-4"}, k) {
			t.Fatalf("index key %s left behind", k)
		}
	}
	// What the index holds is exactly what a rebuild would write.
	before := indexKeys(t, c)
	if _, err := c.Delete(ctx, "/test/bridges-indexed"); err != nil {
		t.Fatal(err)
	}
	if err := s.Reindex(ctx); err != nil {
		t.Fatal(err)
	}
	if after := indexKeys(t, c); !slices.Equal(before, after) {
		t.Fatalf("the index kept by the writes %q differs from a rebuild %q", before, after)
	}
}
