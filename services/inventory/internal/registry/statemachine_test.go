package registry

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
)

func TestTransitions(t *testing.T) {
	const (
		d  = inventoryv1.WorkloadState_WORKLOAD_STATE_DISCOVERED
		p  = inventoryv1.WorkloadState_WORKLOAD_STATE_PLANNED
		c  = inventoryv1.WorkloadState_WORKLOAD_STATE_CONVERTING
		co = inventoryv1.WorkloadState_WORKLOAD_STATE_CUT_OVER
		dn = inventoryv1.WorkloadState_WORKLOAD_STATE_DONE
		f  = inventoryv1.WorkloadState_WORKLOAD_STATE_FAILED
	)
	all := []inventoryv1.WorkloadState{d, p, c, co, dn, f}
	allowed := map[[2]inventoryv1.WorkloadState]bool{
		{d, p}: true, {d, f}: true,
		{p, d}: true, {p, c}: true, {p, f}: true,
		{c, p}: true, {c, co}: true, {c, f}: true,
		{co, p}: true, {co, dn}: true, {co, f}: true,
		{f, d}: true, {f, p}: true,
	}
	for _, from := range all {
		for _, to := range all {
			want := from == to || allowed[[2]inventoryv1.WorkloadState{from, to}]
			if got := CanTransition(from, to); got != want {
				t.Errorf("CanTransition(%s, %s) = %v, want %v", from, to, got, want)
			}
			err := checkTransition(from, to)
			if want != (err == nil) {
				t.Errorf("checkTransition(%s, %s) = %v", from, to, err)
			}
			if err != nil && status.Code(err) != codes.FailedPrecondition {
				t.Errorf("checkTransition(%s, %s) code %s, want FAILED_PRECONDITION", from, to, status.Code(err))
			}
		}
	}
	if stateName(co) != "cut_over" {
		t.Errorf("stateName(CUT_OVER) = %q", stateName(co))
	}
}
