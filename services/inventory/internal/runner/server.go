package runner

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/platform/pagetoken"
	"github.com/hikkoshi/hikkoshi/platform/service"
	"github.com/hikkoshi/hikkoshi/platform/store"
)

// Server implements hikkoshi.inventory.v1.WaveRunService.
type Server struct {
	inventoryv1.UnimplementedWaveRunServiceServer
	e        *Engine
	stopping <-chan struct{}
}

// Register registers the service and its validators on rt.
func Register(rt *service.Runtime, e *Engine) {
	inventoryv1.RegisterWaveRunServiceServer(rt.GRPC, &Server{e: e, stopping: rt.Stopping()})
	service.AddValidator(rt, ValidateCreateRun)
	service.AddValidator(rt, func(r *inventoryv1.GetRunRequest) error { return checkName(r.GetName()) })
	service.AddValidator(rt, func(r *inventoryv1.WatchRunRequest) error { return checkName(r.GetName()) })
	service.AddValidator(rt, func(r *inventoryv1.PauseRunRequest) error { return checkName(r.GetName()) })
	service.AddValidator(rt, func(r *inventoryv1.ResumeRunRequest) error { return checkName(r.GetName()) })
	service.AddValidator(rt, func(r *inventoryv1.AbortRunRequest) error { return checkName(r.GetName()) })
	service.AddValidator(rt, func(r *inventoryv1.ApproveStepRequest) error {
		var v apierr.Violations
		if _, ok := RunID(r.GetName()); !ok {
			v.Add("name", "%q is not a run name: use runs/{run_id} (the name CreateRun returned)", r.GetName())
		}
		if !strings.HasPrefix(r.GetWorkload(), "workloads/") {
			v.Add("workload", "%q is not a workload name: use workloads/{workload_id}", r.GetWorkload())
		}
		return v.Err()
	})
	service.AddValidator(rt, func(r *inventoryv1.DecommissionRunRequest) error {
		var v apierr.Violations
		if _, ok := RunID(r.GetName()); !ok {
			v.Add("name", "%q is not a run name: use runs/{run_id} (the name CreateRun returned)", r.GetName())
		}
		if len(r.GetWorkloads()) == 0 {
			v.Add("workloads", "required: name each workload whose old server is to be deleted")
		}
		return v.Err()
	})
}

func checkName(name string) error {
	if _, ok := RunID(name); !ok {
		return apierr.InvalidArgument("name", "%q is not a run name: use runs/{run_id} (the name CreateRun returned)", name)
	}
	return nil
}

var roleRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// userName is a login name as the converter takes it for key_pair_user.
var userName = regexp.MustCompile(`^[a-z_][a-z0-9_.-]{0,31}$`)

// ValidateCreateRun checks a CreateRunRequest's shape.
func ValidateCreateRun(req *inventoryv1.CreateRunRequest) error {
	var v apierr.Violations
	v.RequestID("request_id", req.GetRequestId())
	r := req.GetRun()
	if r.GetWave() < 1 {
		v.Add("run.wave", "%d: give the wave to move, 1 or more", r.GetWave())
	}
	if r.GetDestination() == "" {
		v.Add("run.destination", "required: the destination cloud's clouds.yaml entry")
	}
	switch {
	case r.GetWarmRounds() != 0 && !r.GetWarmStateful():
		v.Add("run.warm_rounds", "only with warm_stateful")
	case r.GetWarmRounds() < 0 || r.GetWarmRounds() > 10:
		v.Add("run.warm_rounds", "%d: give 0 to 10 pre-copy rounds (0 means 1)", r.GetWarmRounds())
	}
	for role, s := range r.GetRoles() {
		f := "run.roles[" + role + "]"
		if !roleRE.MatchString(role) {
			v.Add(f, "%q is not a role name (lower-case letters, digits and hyphens)", role)
		}
		if s.GetMaxSurge() < 0 || s.GetMaxSurge() > 100 {
			v.Add(f+".max_surge", "%d: give 1 to 100 (0 for 1)", s.GetMaxSurge())
		}
		if s.GetMinHealthy() < 0 {
			v.Add(f+".min_healthy", "%d: give 0 or more", s.GetMinHealthy())
		}
		if s.GetDrainSeconds() < 0 || s.GetDrainSeconds() > 3600 {
			v.Add(f+".drain_seconds", "%d: give 0 to 3600", s.GetDrainSeconds())
		}
	}
	for src, dst := range r.GetNetworks() {
		if !apierr.IsUUID(src) || !apierr.IsUUID(dst) {
			v.Add("run.networks["+src+"]", "map a source network ID to a destination network ID (both UUIDs)")
		}
	}
	v.VolumeTypes("run.volume_types", r.GetVolumeTypes())
	if z := r.GetAvailabilityZone(); len(z) > 255 {
		v.Add("run.availability_zone", "give the name of one of the destination's availability zones (at most 255 characters), or leave it empty for its default")
	}
	if u := r.GetKeyPairUser(); u != "" && !userName.MatchString(u) {
		v.Add("run.key_pair_user", "%q is not a user name: give an existing user's login name (lower case letters, digits, _ . -; at most 32), or leave it empty for none", u)
	}
	if hc := r.GetHealthCheck(); hc != "" && !strings.HasPrefix(hc, "tcp:") && !strings.HasPrefix(hc, "http:") {
		v.Add("run.health_check", "%q: give tcp:PORT or http:PORT/PATH", hc)
	}
	if len(r.GetPreflightOverrideReason()) > 500 {
		v.Add("run.preflight_override_reason", "at most 500 characters")
	}
	return v.Err()
}

// CreateRun implements WaveRunService.
func (s *Server) CreateRun(ctx context.Context, req *inventoryv1.CreateRunRequest) (*inventoryv1.CreateRunResponse, error) {
	e := s.e
	in := req.GetRun()
	if !slices.Contains(e.Deps.Destinations, in.GetDestination()) {
		return nil, apierr.InvalidArgument("run.destination", "%q is not a destination cloud of this inventory: use one of %v (--destination-clouds)", in.GetDestination(), e.Deps.Destinations)
	}
	if req.GetRequestId() != "" {
		if r, ok, err := s.byRequest(ctx, in.GetWave(), req.GetRequestId()); err != nil || ok {
			return &inventoryv1.CreateRunResponse{Run: r}, err
		}
	}
	r := &inventoryv1.Run{
		Wave: in.GetWave(), Destination: in.GetDestination(), DryRun: in.GetDryRun(), PreflightOverrideReason: in.GetPreflightOverrideReason(),
		ApproveStateful: in.GetApproveStateful(), Roles: in.GetRoles(), Networks: in.GetNetworks(), HealthCheck: in.GetHealthCheck(),
		WarmStateful: in.GetWarmStateful(), WarmRounds: in.GetWarmRounds(), VolumeTypes: in.GetVolumeTypes(),
		AvailabilityZone: in.GetAvailabilityZone(), KeyPairUser: in.GetKeyPairUser(),
		RequestId: req.GetRequestId(),
	}
	if err := e.plan(ctx, r); err != nil {
		return nil, err
	}
	if r.GetDryRun() {
		r.State = inventoryv1.RunState_RUN_STATE_PLANNED
		return &inventoryv1.CreateRunResponse{Run: r}, nil
	}
	if e.Deps.Converter == nil || e.Deps.LB == nil || e.Deps.Netbridge == nil || e.Deps.Compute == nil {
		return nil, apierr.New(codes.FailedPrecondition, "RUNNER_NOT_CONFIGURED", "this inventory cannot move waves: start it with --clouds-yaml and --destination-clouds")
	}
	movable := 0
	for _, w := range r.GetWorkloads() {
		if w.GetStrategy() != inventoryv1.Strategy_STRATEGY_UNSUPPORTED {
			movable++
		}
	}
	if movable == 0 {
		return nil, apierr.New(codes.FailedPrecondition, "NOTHING_TO_MOVE", "no workload of wave %d can be moved by the runner: a dry run (run.dry_run) says why for each", r.GetWave())
	}
	if e.Deps.Preflight != nil {
		pf, err := e.Deps.Preflight(ctx, r.GetWave(), r.GetDestination(), r.GetVolumeTypes())
		if err != nil {
			return nil, apierr.Prefix(err, "pre-flight: ")
		}
		r.PreflightOk = pf.GetOk()
		if !pf.GetOk() && r.GetPreflightOverrideReason() == "" {
			return nil, apierr.New(codes.FailedPrecondition, "PREFLIGHT_NOT_READY",
				"wave %d's pre-flight against %s is not ready (%s): fix it (GetPreflight shows it), or set run.preflight_override_reason to start anyway", r.GetWave(), r.GetDestination(), preflightSummary(pf))
		}
	}
	r.State = inventoryv1.RunState_RUN_STATE_RUNNING
	created, exists, err := e.Store.Create(ctx, r)
	if err != nil {
		return nil, err
	}
	if exists {
		if req.GetRequestId() != "" && created.GetRequestId() == req.GetRequestId() {
			return &inventoryv1.CreateRunResponse{Run: created}, nil
		}
		return nil, apierr.New(codes.FailedPrecondition, "RUN_EXISTS", "wave %d already has a live run, %s (%s): wait for it, or abort it (AbortRun)", r.GetWave(), created.GetName(), runStateWord(created.GetState()))
	}
	e.Log.Info("run created", "run", created.GetName(), "wave", r.GetWave(), "destination", r.GetDestination(), "workloads", len(r.GetWorkloads()),
		"preflight_ok", r.GetPreflightOk(), "override", r.GetPreflightOverrideReason())
	return &inventoryv1.CreateRunResponse{Run: created}, nil
}

func preflightSummary(pf *inventoryv1.PreflightReport) string {
	var parts []string
	if n := len(pf.GetMissingFlavors()); n > 0 {
		parts = append(parts, fmt.Sprintf("flavors missing: %s", strings.Join(pf.GetMissingFlavors(), ", ")))
	}
	if n := len(pf.GetMissingImages()); n > 0 {
		parts = append(parts, fmt.Sprintf("images missing: %s", strings.Join(pf.GetMissingImages(), ", ")))
	}
	if n := len(pf.GetMissingNetworks()); n > 0 {
		parts = append(parts, fmt.Sprintf("networks missing: %s", strings.Join(pf.GetMissingNetworks(), ", ")))
	}
	if n := len(pf.GetIpConflicts()); n > 0 {
		parts = append(parts, fmt.Sprintf("%d IP conflicts", n))
	}
	return strings.Join(parts, "; ")
}

func runStateWord(s inventoryv1.RunState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "RUN_STATE_"))
}

// byRequest finds the run a request_id started, live or not.
func (s *Server) byRequest(ctx context.Context, wave int32, rid string) (*inventoryv1.Run, bool, error) {
	var found *inventoryv1.Run
	_, err := s.e.Store.Walk(ctx, "", store.Descending, store.DefaultBatch, func(r *inventoryv1.Run, _ int64) (bool, error) {
		if r.GetRequestId() == rid && r.GetWave() == wave {
			found = r
			return true, nil
		}
		return false, nil
	})
	return found, found != nil, err
}

// GetRun implements WaveRunService.
func (s *Server) GetRun(ctx context.Context, req *inventoryv1.GetRunRequest) (*inventoryv1.GetRunResponse, error) {
	id, _ := RunID(req.GetName())
	r, _, err := s.e.Store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return &inventoryv1.GetRunResponse{Run: r}, nil
}

// ListRuns implements WaveRunService.
func (s *Server) ListRuns(ctx context.Context, req *inventoryv1.ListRunsRequest) (*inventoryv1.ListRunsResponse, error) {
	size := pagetoken.Size(req.GetPageSize(), 100, 500)
	fp := pagetoken.MessageFingerprint(req, func(r *inventoryv1.ListRunsRequest) { r.PageSize, r.PageToken = 0, "" })
	after, err := pagetoken.Decode(req.GetPageToken(), fp)
	if err != nil {
		return nil, apierr.InvalidArgument("page_token", "not a next_page_token of an earlier ListRuns with the same wave: start again without page_token")
	}
	var keep func(*inventoryv1.Run) bool
	if w := req.GetWave(); w != 0 {
		keep = func(r *inventoryv1.Run) bool { return r.GetWave() == w }
	}
	runs, next, err := s.e.Store.Page(ctx, after, store.Descending, size, keep)
	if err != nil {
		return nil, err
	}
	resp := &inventoryv1.ListRunsResponse{Runs: runs}
	if next != "" {
		resp.NextPageToken = pagetoken.Encode(next, fp)
	}
	return resp, nil
}

// WatchRun implements WaveRunService.
func (s *Server) WatchRun(req *inventoryv1.WatchRunRequest, stream grpc.ServerStreamingServer[inventoryv1.WatchRunResponse]) error {
	ctx := stream.Context()
	id, _ := RunID(req.GetName())
	r, rev, err := s.e.Store.Get(ctx, id)
	if err != nil {
		return err
	}
	if err := stream.Send(&inventoryv1.WatchRunResponse{Run: r}); err != nil || !Live(r.GetState()) {
		return err
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	ch := s.e.Etcd.Watch(wctx, keys.Run(id), clientv3.WithRev(rev+1))
	for {
		select {
		case <-s.stopping:
			return apierr.New(codes.Unavailable, "SHUTTING_DOWN", "this inventory is shutting down: watch %s again", req.GetName())
		case wr, ok := <-ch:
			if !ok {
				return ctx.Err()
			}
			if err := wr.Err(); err != nil {
				return apierr.New(codes.Unavailable, "ETCD_UNAVAILABLE", "watch run: %v", err)
			}
			for _, ev := range wr.Events {
				if ev.Type != clientv3.EventTypePut {
					return apierr.New(codes.NotFound, "RUN_NOT_FOUND", "run %s was deleted", req.GetName())
				}
				cur, err := s.e.Store.Decode(ev.Kv)
				if err != nil {
					return err
				}
				if err := stream.Send(&inventoryv1.WatchRunResponse{Run: cur}); err != nil || !Live(cur.GetState()) {
					return err
				}
			}
		}
	}
}

// change writes an operator's request to a live run.
func (s *Server) change(ctx context.Context, name, verb string, f func(r *inventoryv1.Run) error) (*inventoryv1.Run, error) {
	id, _ := RunID(name)
	return s.e.Store.Update(ctx, id, nil, func(r *inventoryv1.Run) (bool, error) {
		if !Live(r.GetState()) {
			return false, apierr.New(codes.FailedPrecondition, "RUN_ENDED", "run %s has ended (%s): there is nothing to %s", name, runStateWord(r.GetState()), verb)
		}
		return true, f(r)
	})
}

// PauseRun implements WaveRunService.
func (s *Server) PauseRun(ctx context.Context, req *inventoryv1.PauseRunRequest) (*inventoryv1.PauseRunResponse, error) {
	r, err := s.change(ctx, req.GetName(), "pause", func(r *inventoryv1.Run) error {
		if r.GetState() == inventoryv1.RunState_RUN_STATE_ABORTING {
			return apierr.New(codes.FailedPrecondition, "RUN_ABORTING", "run %s is aborting: an abort is not paused", r.GetName())
		}
		r.PauseRequested, r.StateReason = true, "paused by the operator"
		return nil
	})
	return &inventoryv1.PauseRunResponse{Run: r}, err
}

// ResumeRun implements WaveRunService.
func (s *Server) ResumeRun(ctx context.Context, req *inventoryv1.ResumeRunRequest) (*inventoryv1.ResumeRunResponse, error) {
	r, err := s.change(ctx, req.GetName(), "resume", func(r *inventoryv1.Run) error {
		if r.GetState() == inventoryv1.RunState_RUN_STATE_ABORTING {
			return apierr.New(codes.FailedPrecondition, "RUN_ABORTING", "run %s is aborting: it cannot be resumed", r.GetName())
		}
		if !r.GetPauseRequested() && r.GetState() != inventoryv1.RunState_RUN_STATE_PAUSED {
			return apierr.New(codes.FailedPrecondition, "RUN_NOT_PAUSED", "run %s is running, not paused", r.GetName())
		}
		r.PauseRequested, r.StateReason, r.State = false, "", inventoryv1.RunState_RUN_STATE_RUNNING
		return nil
	})
	return &inventoryv1.ResumeRunResponse{Run: r}, err
}

// AbortRun implements WaveRunService.
func (s *Server) AbortRun(ctx context.Context, req *inventoryv1.AbortRunRequest) (*inventoryv1.AbortRunResponse, error) {
	r, err := s.change(ctx, req.GetName(), "abort", func(r *inventoryv1.Run) error {
		if !r.GetAbortRequested() {
			r.AbortRequested, r.State = true, inventoryv1.RunState_RUN_STATE_ABORTING
			r.StateReason = "aborted by the operator"
			if req.GetReason() != "" {
				r.StateReason += ": " + req.GetReason()
			}
		}
		return nil
	})
	return &inventoryv1.AbortRunResponse{Run: r}, err
}

// ApproveStep implements WaveRunService.
func (s *Server) ApproveStep(ctx context.Context, req *inventoryv1.ApproveStepRequest) (*inventoryv1.ApproveStepResponse, error) {
	r, err := s.change(ctx, req.GetName(), "approve", func(r *inventoryv1.Run) error {
		for _, w := range r.GetWorkloads() {
			if w.GetWorkload() != req.GetWorkload() {
				continue
			}
			if w.GetStep() != inventoryv1.RunStep_RUN_STEP_APPROVE || w.GetStepState() != inventoryv1.StepState_STEP_STATE_WAITING {
				st := "not started"
				if w.GetStep() != inventoryv1.RunStep_RUN_STEP_UNSPECIFIED {
					st = stepWord(w.GetStep()) + ", " + strings.ToLower(strings.TrimPrefix(w.GetStepState().String(), "STEP_STATE_"))
				}
				return apierr.New(codes.FailedPrecondition, "STEP_NOT_WAITING", "%s (%s) is not waiting for approval: it is at %s", w.GetWorkload(), w.GetDisplayName(), st)
			}
			w.Approved = true
			event(w, "approved by the operator")
			return nil
		}
		return apierr.InvalidArgument("workload", "%s is not in run %s", req.GetWorkload(), r.GetName())
	})
	return &inventoryv1.ApproveStepResponse{Run: r}, err
}

// DecommissionRun implements WaveRunService.
func (s *Server) DecommissionRun(ctx context.Context, req *inventoryv1.DecommissionRunRequest) (*inventoryv1.DecommissionRunResponse, error) {
	id, _ := RunID(req.GetName())
	r, _, err := s.e.Store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.GetState() != inventoryv1.RunState_RUN_STATE_DONE {
		return nil, apierr.New(codes.FailedPrecondition, "RUN_NOT_DONE", "run %s is %s: only a done run's old servers are decommissioned", r.GetName(), runStateWord(r.GetState()))
	}
	if s.e.Deps.Converter == nil {
		return nil, apierr.New(codes.FailedPrecondition, "RUNNER_NOT_CONFIGURED", "this inventory has no converter to decommission through")
	}
	idx := map[string]int{}
	for i, w := range r.GetWorkloads() {
		idx[w.GetWorkload()] = i
	}
	var v apierr.Violations
	for k, name := range req.GetWorkloads() {
		i, ok := idx[name]
		if !ok {
			v.Add(fmt.Sprintf("workloads[%d]", k), "%s is not in run %s", name, r.GetName())
			continue
		}
		if w := r.GetWorkloads()[i]; w.GetStep() != inventoryv1.RunStep_RUN_STEP_DONE || w.GetJob() == "" {
			v.Add(fmt.Sprintf("workloads[%d]", k), "%s (%s) was not moved by this run: nothing to decommission", name, w.GetDisplayName())
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	resp := &inventoryv1.DecommissionRunResponse{}
	for _, name := range req.GetWorkloads() {
		i := idx[name]
		w := r.GetWorkloads()[i]
		d, err := s.e.Deps.Converter.DecommissionSource(ctx, &converterv1.DecommissionSourceRequest{Name: w.GetJob(), ConfirmServerId: w.GetSourceServerId()})
		if err != nil {
			return resp, apierr.Prefix(err, fmt.Sprintf("%d of %d decommissioned, then %s: ", len(resp.Decommissioned), len(req.GetWorkloads()), name))
		}
		line := fmt.Sprintf("%s (%s): old server %s deleted", name, w.GetDisplayName(), d.GetJob().GetDecommission().GetSourceServerId())
		resp.Decommissioned = append(resp.Decommissioned, line)
		s.e.setWorkloadState(ctx, name, inventoryv1.WorkloadState_WORKLOAD_STATE_DONE, "")
		if _, err := s.e.Store.Update(ctx, id, nil, func(r *inventoryv1.Run) (bool, error) {
			event(r.GetWorkloads()[i], "decommissioned: old server %s deleted", w.GetSourceServerId())
			return true, nil
		}); err != nil {
			return resp, err
		}
	}
	resp.Run, _, err = s.e.Store.Get(ctx, id)
	return resp, err
}
