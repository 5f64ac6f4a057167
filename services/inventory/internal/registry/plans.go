package registry

import (
	"context"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/platform/store"
	"github.com/hikkoshi/hikkoshi/services/inventory/internal/planner"
)

func planID(name string) (string, bool) {
	id, ok := strings.CutPrefix(name, "plans/")
	return id, ok && id != "" && !strings.Contains(id, "/")
}

func (s *Server) readPlan(ctx context.Context, name string) (*inventoryv1.Plan, int64, error) {
	id, ok := planID(name)
	if !ok {
		return nil, 0, apierr.InvalidArgument("name", "%q is not a plan name: use plans/{plan_id} (the name CreatePlan returned)", name)
	}
	resp, err := s.store.c.Get(ctx, keys.Plan(id))
	if err != nil {
		return nil, 0, apierr.Etcd("GetPlan", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, apierr.New(codes.NotFound, "PLAN_NOT_FOUND", "no plan %q (a plan not accepted expires %s after it was made: make a new one)", name, ProposedPlanTTL)
	}
	p := &inventoryv1.Plan{}
	if err := proto.Unmarshal(resp.Kvs[0].Value, p); err != nil {
		return nil, 0, apierr.Corrupt("plan %s: %v", name, err)
	}
	return p, resp.Kvs[0].ModRevision, nil
}

// ProposedPlanTTL is how long a plan that is not accepted is kept.
var ProposedPlanTTL = 7 * 24 * time.Hour

// CreatePlan implements InventoryService.
func (s *Server) CreatePlan(ctx context.Context, req *inventoryv1.CreatePlanRequest) (*inventoryv1.CreatePlanResponse, error) {
	var ws []*inventoryv1.Workload
	if _, err := s.store.Scan(ctx, func(w *inventoryv1.Workload, _ int64) error {
		ws = append(ws, w)
		return nil
	}); err != nil {
		return nil, err
	}
	p, err := planner.Propose(ws, req.GetPlan())
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	id := store.NewID("plan", now)
	p.Name, p.CreateTime = "plans/"+id, timestamppb.New(now)
	val, err := proto.Marshal(p)
	if err != nil {
		return nil, apierr.New(codes.Internal, "ENCODE", "%v", err)
	}
	// A proposed plan lives under a lease of its own: not accepted within
	// ProposedPlanTTL, it goes (AcceptPlan writes it again without the lease).
	lease, err := s.store.c.Grant(ctx, int64(ProposedPlanTTL/time.Second))
	if err != nil {
		return nil, apierr.Etcd("CreatePlan", err)
	}
	if _, err := s.store.c.Put(ctx, keys.Plan(id), string(val), clientv3.WithLease(lease.ID)); err != nil {
		return nil, apierr.Etcd("CreatePlan", err)
	}
	return &inventoryv1.CreatePlanResponse{Plan: p}, nil
}

// GetPlan implements InventoryService.
func (s *Server) GetPlan(ctx context.Context, req *inventoryv1.GetPlanRequest) (*inventoryv1.GetPlanResponse, error) {
	p, _, err := s.readPlan(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return &inventoryv1.GetPlanResponse{Plan: p}, nil
}

// AcceptPlan implements InventoryService. Every workload is checked against the etag
// the plan saw before anything is written; then each is written with that etag as
// its condition, so a workload changed in between is not overwritten.
func (s *Server) AcceptPlan(ctx context.Context, req *inventoryv1.AcceptPlanRequest) (*inventoryv1.AcceptPlanResponse, error) {
	p, rev, err := s.readPlan(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	if p.GetState() != inventoryv1.PlanState_PLAN_STATE_PROPOSED {
		return nil, apierr.New(codes.FailedPrecondition, "PLAN_NOT_PROPOSED", "plan %s is %s: make a new plan", p.GetName(), p.GetState())
	}
	var todo []*inventoryv1.Assignment
	for _, a := range p.GetAssignments() {
		if strings.HasSuffix(a.GetReason(), "wave kept") {
			continue
		}
		cur, err := s.store.Get(ctx, a.GetWorkload()[len("workloads/"):])
		if err != nil {
			return nil, apierr.Prefix(err, "plan "+p.GetName()+" is stale: ")
		}
		if cur.GetEtag() != a.GetEtag() {
			return nil, apierr.New(codes.Aborted, "PLAN_STALE",
				"plan %s is stale: %s changed since it was made (etag %s, now %s): make a new plan", p.GetName(), a.GetWorkload(), a.GetEtag(), cur.GetEtag())
		}
		todo = append(todo, a)
	}
	updated := int32(0)
	for _, a := range todo {
		_, err := s.store.Update(ctx, a.GetWorkload()[len("workloads/"):], a.GetEtag(), func(cur, next *inventoryv1.Workload) error {
			next.Wave = a.GetWave()
			if cur.GetRole() == "" {
				next.Role, next.Stateful = a.GetRole(), a.GetStateful()
			}
			if cur.GetState() == inventoryv1.WorkloadState_WORKLOAD_STATE_DISCOVERED {
				next.State = inventoryv1.WorkloadState_WORKLOAD_STATE_PLANNED
			}
			return nil
		})
		if err != nil {
			return nil, apierr.Prefix(err, fmt.Sprintf("plan %s: %d of %d workloads written, then: ", p.GetName(), updated, len(todo)))
		}
		updated++
	}
	p.State, p.AcceptTime = inventoryv1.PlanState_PLAN_STATE_ACCEPTED, timestamppb.Now()
	val, _ := proto.Marshal(p)
	key := keys.Plan(p.GetName()[len("plans/"):])
	if _, err := s.store.c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).Then(clientv3.OpPut(key, string(val))).Commit(); err != nil {
		return nil, apierr.Etcd("AcceptPlan", err)
	}
	return &inventoryv1.AcceptPlanResponse{Plan: p, Updated: updated}, nil
}

// GetPreflight implements InventoryService.
func (s *Server) GetPreflight(ctx context.Context, req *inventoryv1.GetPreflightRequest) (*inventoryv1.GetPreflightResponse, error) {
	sy, err := s.syncs()
	if err != nil {
		return nil, err
	}
	r, err := sy.Preflight(ctx, req.GetWave(), req.GetDestination(), req.GetVolumeTypes())
	if err != nil {
		return nil, err
	}
	return &inventoryv1.GetPreflightResponse{Report: r}, nil
}

// ValidateCreatePlan checks a CreatePlanRequest's shape (the rules are checked when
// the plan is made).
func ValidateCreatePlan(r *inventoryv1.CreatePlanRequest) error {
	_, err := planner.Check(r.GetPlan())
	return err
}

// ValidateGetPlan checks a GetPlanRequest.
func ValidateGetPlan(r *inventoryv1.GetPlanRequest) error {
	if _, ok := planID(r.GetName()); !ok {
		return apierr.InvalidArgument("name", "%q is not a plan name: use plans/{plan_id}", r.GetName())
	}
	return nil
}

// ValidateAcceptPlan checks an AcceptPlanRequest.
func ValidateAcceptPlan(r *inventoryv1.AcceptPlanRequest) error {
	if _, ok := planID(r.GetName()); !ok {
		return apierr.InvalidArgument("name", "%q is not a plan name: use plans/{plan_id}", r.GetName())
	}
	return nil
}

// ValidateGetPreflight checks a GetPreflightRequest.
func ValidateGetPreflight(r *inventoryv1.GetPreflightRequest) error {
	var v apierr.Violations
	if r.GetWave() < 1 {
		v.Add("wave", "%d: give the wave to check, from 1", r.GetWave())
	}
	if r.GetDestination() == "" {
		v.Add("destination", "required: the destination cloud's clouds.yaml entry")
	}
	v.VolumeTypes("volume_types", r.GetVolumeTypes())
	return v.Err()
}
