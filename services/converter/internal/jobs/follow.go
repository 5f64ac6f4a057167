package jobs

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/protobuf/types/known/fieldmaskpb"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
)

// followWorkload moves the job's workload (if it names one and inv is set) to st.
// The inventory's state machine decides: a refused move is logged, not fatal to the
// job (the job's own record is the truth about the conversion).
func followWorkload(ctx context.Context, inv inventoryv1.InventoryServiceClient, log *slog.Logger, j *converterv1.Job, st inventoryv1.WorkloadState, reason string) {
	if inv == nil || j.GetWorkload() == "" {
		return
	}
	paths := []string{"state"}
	if reason != "" {
		paths = append(paths, "state_reason")
		if len(reason) > 1000 {
			reason = reason[:1000]
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := inv.UpdateWorkload(ctx, &inventoryv1.UpdateWorkloadRequest{
		Workload:   &inventoryv1.Workload{Name: j.GetWorkload(), State: st, StateReason: reason},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: paths},
	})
	if err != nil {
		log.Warn("the workload does not follow the job", "workload", j.GetWorkload(), "state", st.String(), "err", err)
	}
}
