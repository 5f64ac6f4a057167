package contract

import (
	"testing"

	"google.golang.org/grpc/codes"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
)

// TestPlanProposeAndAccept: rules give roles to workloads without one, web moves
// first, the API after it, the databases last; nothing changes until the plan is
// accepted; accepting writes waves and roles and plans the discovered workloads; a
// plan whose workloads changed since is refused.
func TestPlanProposeAndAccept(t *testing.T) {
	p := newEnv(t).start(t)
	ctx := t.Context()
	for _, w := range []struct {
		id, role string
		stateful bool
	}{{"web-1", "", false}, {"web-2", "", false}, {"api-1", "api", false}, {"db-1", "", false}, {"lonely", "", false}} {
		must(p.client.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{WorkloadId: w.id, Workload: &inventoryv1.Workload{
			DisplayName: w.id, Role: w.role, Stateful: w.stateful,
			Source: &inventoryv1.Workload_Physical{Physical: &inventoryv1.PhysicalSource{Hostname: w.id + ".shop.example"}},
		}}))(t)
	}
	req := &inventoryv1.CreatePlanRequest{Plan: &inventoryv1.Plan{
		Rules:        []*inventoryv1.RoleRule{{NamePattern: `^web-\d+$`, Role: "web"}, {NamePattern: `^db-`, Role: "db", Stateful: true}},
		Dependencies: []*inventoryv1.RoleDependency{{Role: "api", DependsOn: []string{"web", "db"}}},
	}}
	plan := must(p.client.CreatePlan(ctx, req))(t).GetPlan()
	got := map[string]int32{}
	for _, a := range plan.GetAssignments() {
		got[a.GetWorkload()] = a.GetWave()
	}
	want := map[string]int32{"workloads/web-1": 1, "workloads/web-2": 1, "workloads/api-1": 2, "workloads/db-1": 3}
	if !equal(got, want) || len(plan.GetUnassigned()) != 1 || len(plan.GetWaves()) != 3 || !plan.GetWaves()[2].GetStateful() {
		t.Fatalf("plan %v", plan)
	}
	if w := must(p.client.GetWorkload(ctx, &inventoryv1.GetWorkloadRequest{Name: "workloads/web-1"}))(t).GetWorkload(); w.GetWave() != 0 || w.GetRole() != "" {
		t.Fatalf("a proposed plan changed a workload: %v", w)
	}
	acc := must(p.client.AcceptPlan(ctx, &inventoryv1.AcceptPlanRequest{Name: plan.GetName()}))(t)
	if acc.GetUpdated() != 4 || acc.GetPlan().GetState() != inventoryv1.PlanState_PLAN_STATE_ACCEPTED {
		t.Fatalf("accept: %v", acc)
	}
	db := must(p.client.GetWorkload(ctx, &inventoryv1.GetWorkloadRequest{Name: "workloads/db-1"}))(t).GetWorkload()
	if db.GetWave() != 3 || db.GetRole() != "db" || !db.GetStateful() || db.GetState() != inventoryv1.WorkloadState_WORKLOAD_STATE_PLANNED {
		t.Fatalf("db-1 after accept: %v", db)
	}
	_, err := p.client.AcceptPlan(ctx, &inventoryv1.AcceptPlanRequest{Name: plan.GetName()})
	wantCode(t, err, codes.FailedPrecondition)

	// A new plan pins api-1 to wave 1; the operator changes web-2 before accepting.
	req.Plan.Pins = map[string]int32{"workloads/api-1": 1}
	stale := must(p.client.CreatePlan(ctx, req))(t).GetPlan()
	must(p.client.UpdateWorkload(ctx, &inventoryv1.UpdateWorkloadRequest{
		Workload: &inventoryv1.Workload{Name: "workloads/web-2", Labels: map[string]string{"rack": "r7"}}, UpdateMask: mask("labels"),
	}))(t)
	_, err = p.client.AcceptPlan(ctx, &inventoryv1.AcceptPlanRequest{Name: stale.GetName()})
	wantCode(t, err, codes.Aborted)
	if apierr.Reason(err) != "PLAN_STALE" {
		t.Fatalf("stale plan: %v", err)
	}
	_, err = p.client.CreatePlan(ctx, &inventoryv1.CreatePlanRequest{Plan: &inventoryv1.Plan{Rules: []*inventoryv1.RoleRule{{NamePattern: "(", Role: "web"}}}})
	wantCode(t, err, codes.InvalidArgument)
	if apierr.FieldViolations(err)["plan.rules[0].name_pattern"] == "" {
		t.Fatalf("bad rule: %v", err)
	}
}

func equal(a, b map[string]int32) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
