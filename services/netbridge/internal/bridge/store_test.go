package bridge

import (
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/etcdtest"
	"github.com/hikkoshi/hikkoshi/platform/store"
)

// TestCreateIdempotent: a CreateBridge repeated with its request_id returns the first
// bridge; another request with that request_id, or a bridge_id taken, is refused.
func TestCreateIdempotent(t *testing.T) {
	s := NewStore(etcdtest.Start(t).Client(t))
	ctx := t.Context()
	b := &netbridgev1.Bridge{Mode: netbridgev1.BridgeMode_BRIDGE_MODE_SHARED_L2}
	first, err := s.Create(ctx, b, "", "req-1", "fp-1")
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Create(ctx, b, "", "req-1", "fp-1")
	if err != nil || again.GetName() != first.GetName() {
		t.Fatalf("repeat: %v, %v (first %s)", again.GetName(), err, first.GetName())
	}
	if list, _, err := s.Page(ctx, "", store.Ascending, 10, nil); err != nil || len(list) != 1 {
		t.Fatalf("%d bridges after a repeat (%v)", len(list), err)
	}
	if _, err := s.Create(ctx, b, "", "req-1", "fp-2"); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("another request with req-1: %v", err)
	}
	if _, err := s.Create(ctx, b, "br-a", "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, b, "br-a", "req-2", "fp-3"); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("bridge_id taken: %v", err)
	}
}

// TestListBridgesPages: ListBridges pages by name; every bridge comes once; a page
// token of another request shape is refused at page_token.
func TestListBridgesPages(t *testing.T) {
	s := NewStore(etcdtest.Start(t).Client(t))
	srv := &Server{store: s}
	ctx := t.Context()
	for i := range 12 {
		if _, err := s.Create(ctx, &netbridgev1.Bridge{Mode: netbridgev1.BridgeMode_BRIDGE_MODE_SHARED_L2}, fmt.Sprintf("b%02d", i), "", ""); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	token := ""
	for pages := 0; ; pages++ {
		resp, err := srv.ListBridges(ctx, &netbridgev1.ListBridgesRequest{PageSize: 5, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range resp.GetBridges() {
			got = append(got, b.GetName())
		}
		if token = resp.GetNextPageToken(); token == "" || pages > 5 {
			break
		}
	}
	if len(got) != 12 || got[0] != "bridges/b00" || got[11] != "bridges/b11" {
		t.Fatalf("pages gave %v", got)
	}
	if _, err := srv.ListBridges(ctx, &netbridgev1.ListBridgesRequest{PageToken: "bogus"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a bogus page token: %v", err)
	}
}
