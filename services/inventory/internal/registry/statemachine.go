package registry

import (
	"fmt"
	"slices"

	"google.golang.org/grpc/codes"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
)

// transitions lists, for each state, the states a workload may move to from it.
//
//	discovered → planned → converting → cut-over → done
//
// A planned workload can be unplanned; a conversion can be cancelled back to planned;
// a cut-over can be rolled back to planned (traffic returns to the old copy). Every
// state but done can fail; a failed workload can be planned again (or unplanned).
// Done is final.
var transitions = map[inventoryv1.WorkloadState][]inventoryv1.WorkloadState{
	inventoryv1.WorkloadState_WORKLOAD_STATE_DISCOVERED: {
		inventoryv1.WorkloadState_WORKLOAD_STATE_PLANNED,
		inventoryv1.WorkloadState_WORKLOAD_STATE_FAILED,
	},
	inventoryv1.WorkloadState_WORKLOAD_STATE_PLANNED: {
		inventoryv1.WorkloadState_WORKLOAD_STATE_DISCOVERED,
		inventoryv1.WorkloadState_WORKLOAD_STATE_CONVERTING,
		inventoryv1.WorkloadState_WORKLOAD_STATE_FAILED,
	},
	inventoryv1.WorkloadState_WORKLOAD_STATE_CONVERTING: {
		inventoryv1.WorkloadState_WORKLOAD_STATE_PLANNED,
		inventoryv1.WorkloadState_WORKLOAD_STATE_CUT_OVER,
		inventoryv1.WorkloadState_WORKLOAD_STATE_FAILED,
	},
	inventoryv1.WorkloadState_WORKLOAD_STATE_CUT_OVER: {
		inventoryv1.WorkloadState_WORKLOAD_STATE_PLANNED,
		inventoryv1.WorkloadState_WORKLOAD_STATE_DONE,
		inventoryv1.WorkloadState_WORKLOAD_STATE_FAILED,
	},
	inventoryv1.WorkloadState_WORKLOAD_STATE_FAILED: {
		inventoryv1.WorkloadState_WORKLOAD_STATE_DISCOVERED,
		inventoryv1.WorkloadState_WORKLOAD_STATE_PLANNED,
	},
	inventoryv1.WorkloadState_WORKLOAD_STATE_DONE: {},
}

// CanTransition reports whether the state machine allows moving from one state to
// another. Staying in the same state is always allowed.
func CanTransition(from, to inventoryv1.WorkloadState) bool {
	return from == to || slices.Contains(transitions[from], to)
}

// stateName is a state's short name for messages ("cut_over").
func stateName(s inventoryv1.WorkloadState) string {
	n := s.String()
	const p = "WORKLOAD_STATE_"
	if len(n) > len(p) {
		n = n[len(p):]
	}
	b := []byte(n)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// checkTransition returns FAILED_PRECONDITION when from → to is forbidden, naming
// the states that are allowed instead.
func checkTransition(from, to inventoryv1.WorkloadState) error {
	if CanTransition(from, to) {
		return nil
	}
	allowed := make([]string, 0, len(transitions[from]))
	for _, s := range transitions[from] {
		allowed = append(allowed, stateName(s))
	}
	hint := "it is final"
	if len(allowed) > 0 {
		hint = fmt.Sprintf("from %s it can move to: %v", stateName(from), allowed)
	}
	return apierr.New(codes.FailedPrecondition, "INVALID_TRANSITION",
		"workload cannot move from %s to %s: %s", stateName(from), stateName(to), hint)
}

// checkInvariants returns FAILED_PRECONDITION when an updated workload breaks a rule
// that ties its fields together.
func checkInvariants(old, w *inventoryv1.Workload) error {
	st := w.GetState()
	if st == inventoryv1.WorkloadState_WORKLOAD_STATE_PLANNED && w.GetWave() < 1 {
		return apierr.New(codes.FailedPrecondition, "WAVE_REQUIRED",
			"a planned workload needs a wave: set wave (1 or more) in the same update or before")
	}
	if w.GetWave() != old.GetWave() {
		switch old.GetState() {
		case inventoryv1.WorkloadState_WORKLOAD_STATE_CONVERTING,
			inventoryv1.WorkloadState_WORKLOAD_STATE_CUT_OVER,
			inventoryv1.WorkloadState_WORKLOAD_STATE_DONE:
			return apierr.New(codes.FailedPrecondition, "WAVE_LOCKED",
				"the wave of a workload that is %s cannot change; move it back to planned first", stateName(old.GetState()))
		}
	}
	if old.GetState() == inventoryv1.WorkloadState_WORKLOAD_STATE_DONE &&
		(w.GetRole() != old.GetRole() || w.GetStateful() != old.GetStateful()) {
		return apierr.New(codes.FailedPrecondition, "WORKLOAD_DONE",
			"the workload is done: only display_name and labels can still change")
	}
	return nil
}
