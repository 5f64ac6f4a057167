package bridge

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/etcdtest"
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
	if list, err := s.List(ctx); err != nil || len(list) != 1 {
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
