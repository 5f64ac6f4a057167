package registry

import (
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
)

// TestProposedPlansExpire: a plan nobody accepts goes after ProposedPlanTTL (plans
// piled up in etcd before); an accepted one stays.
func TestProposedPlansExpire(t *testing.T) {
	old := ProposedPlanTTL
	ProposedPlanTTL = 2 * time.Second
	t.Cleanup(func() { ProposedPlanTTL = old })
	s := newTestStore(t)
	srv, err := NewServer(s, slog.New(slog.DiscardHandler), make(chan struct{}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := s.Create(ctx, "web-1", testWorkload("web", 0), "", ""); err != nil {
		t.Fatal(err)
	}
	req := &inventoryv1.CreatePlanRequest{Plan: &inventoryv1.Plan{}}
	left, err := srv.CreatePlan(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	kept, err := srv.CreatePlan(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.AcceptPlan(ctx, &inventoryv1.AcceptPlanRequest{Name: kept.GetPlan().GetName()}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := srv.GetPlan(ctx, &inventoryv1.GetPlanRequest{Name: left.GetPlan().GetName()})
		if status.Code(err) == codes.NotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the plan not accepted is still there after %s: %v", ProposedPlanTTL, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := srv.GetPlan(ctx, &inventoryv1.GetPlanRequest{Name: kept.GetPlan().GetName()}); err != nil {
		t.Fatalf("the accepted plan: %v", err)
	}
}
