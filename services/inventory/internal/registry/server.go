package registry

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/pagetoken"
	"github.com/hikkoshi/hikkoshi/platform/poll"
	"github.com/hikkoshi/hikkoshi/platform/service"
	"github.com/hikkoshi/hikkoshi/platform/store"
)

// Server implements hikkoshi.inventory.v1.InventoryService on a Store.
type Server struct {
	inventoryv1.UnimplementedInventoryServiceServer
	store    *Store
	log      *slog.Logger
	stopping <-chan struct{}
	sync     Syncs
}

// NewServer returns the gRPC handlers on store. Watch streams end when stopping is
// closed (at shutdown), telling the client where to resume.
func NewServer(store *Store, log *slog.Logger, stopping <-chan struct{}) (*Server, error) {
	if store == nil {
		return nil, errors.New("registry.NewServer: store is nil")
	}
	if log == nil {
		log = slog.Default()
	}
	return &Server{store: store, log: log, stopping: stopping}, nil
}

// Register builds the registry on rt's etcd client and registers its handlers and
// request validators on rt's gRPC server.
func Register(rt *service.Runtime, opts ...StoreOption) error {
	store, err := NewStore(rt.Etcd, opts...)
	if err != nil {
		return err
	}
	return RegisterStore(rt, store, nil)
}

// RegisterStore registers the handlers on store, with syncs serving the sync
// methods (nil: they answer FAILED_PRECONDITION, no source clouds).
func RegisterStore(rt *service.Runtime, store *Store, syncs Syncs) error {
	srv, err := NewServer(store, rt.Logger, rt.Stopping())
	if err != nil {
		return err
	}
	srv.sync = syncs
	rt.Go(func(ctx context.Context) {
		// Filtered lists read every workload until the indexes are whole: correct,
		// only slower, so the service does not wait for this.
		for err := store.Reindex(ctx); err != nil && ctx.Err() == nil; err = store.Reindex(ctx) {
			rt.Logger.Warn("workload indexes not rebuilt yet; filtered lists read every workload", "error", err)
			if poll.Sleep(ctx, 5*time.Second) != nil {
				return
			}
		}
	})
	// The index keys in memory, so that a filtered page is one read of etcd (never
	// an answer by itself: store.FollowIndexes).
	rt.Go(store.FollowIndexes)
	inventoryv1.RegisterInventoryServiceServer(rt.GRPC, srv)
	service.AddValidator(rt, ValidateCreateWorkload)
	service.AddValidator(rt, ValidateGetWorkload)
	service.AddValidator(rt, ValidateListWorkloads)
	service.AddValidator(rt, ValidateUpdateWorkload)
	service.AddValidator(rt, ValidateDeleteWorkload)
	service.AddValidator(rt, ValidateWatchWorkloads)
	service.AddValidator(rt, ValidateCreateSync)
	service.AddValidator(rt, ValidateGetSync)
	service.AddValidator(rt, ValidateListSyncs)
	service.AddValidator(rt, ValidateWatchSync)
	service.AddValidator(rt, ValidateListNetworks)
	service.AddValidator(rt, ValidateCreatePlan)
	service.AddValidator(rt, ValidateGetPlan)
	service.AddValidator(rt, ValidateAcceptPlan)
	service.AddValidator(rt, ValidateGetPreflight)
	return nil
}

// CreateWorkload implements InventoryService.
func (s *Server) CreateWorkload(ctx context.Context, req *inventoryv1.CreateWorkloadRequest) (*inventoryv1.CreateWorkloadResponse, error) {
	fp := ""
	if req.GetRequestId() != "" {
		fp = pagetoken.MessageFingerprint(req, func(r *inventoryv1.CreateWorkloadRequest) { r.RequestId = "" })
	}
	in := proto.CloneOf(req.GetWorkload())
	// Output-only fields are ignored.
	in.Name, in.Etag, in.CreateTime, in.UpdateTime, in.StateTime = "", "", nil, nil, nil
	in.Vanished, in.VanishTime = false, nil
	if in.GetFacts() != nil {
		in.Facts.ChangeTime, in.Facts.Sync = timestamppb.Now(), ""
	}
	w, err := s.store.Create(ctx, req.GetWorkloadId(), in, req.GetRequestId(), fp)
	if err != nil {
		return nil, err
	}
	return &inventoryv1.CreateWorkloadResponse{Workload: w}, nil
}

// GetWorkload implements InventoryService.
func (s *Server) GetWorkload(ctx context.Context, req *inventoryv1.GetWorkloadRequest) (*inventoryv1.GetWorkloadResponse, error) {
	id, _ := parseName(req.GetName())
	w, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return &inventoryv1.GetWorkloadResponse{Workload: w}, nil
}

// ListWorkloads implements InventoryService.
func (s *Server) ListWorkloads(ctx context.Context, req *inventoryv1.ListWorkloadsRequest) (*inventoryv1.ListWorkloadsResponse, error) {
	size := pagetoken.Size(req.GetPageSize(), DefaultPageSize, MaxPageSize)
	fp := pagetoken.MessageFingerprint(req, func(r *inventoryv1.ListWorkloadsRequest) { r.PageSize, r.PageToken = 0, "" })
	after, err := pagetoken.Decode(req.GetPageToken(), fp)
	if err != nil {
		return nil, apierr.InvalidArgument("page_token",
			"not a next_page_token of an earlier ListWorkloads with the same filters: start again without page_token")
	}
	f := Filter{Wave: req.Wave, Role: req.GetRole(), State: req.GetState(), Kind: req.GetKind(), Labels: req.GetLabels(),
		Vanished: req.Vanished, Cloud: req.GetCloud()}
	ws, next, err := s.store.List(ctx, f, after, size)
	if err != nil {
		return nil, err
	}
	// A page also ends before MaxPageBytes (a page of large workloads would
	// otherwise exceed the response size limit).
	total := 0
	for i, w := range ws {
		if total += proto.Size(w); total > MaxPageBytes && i > 0 {
			ws, next = ws[:i], strings.TrimPrefix(ws[i-1].GetName(), namePrefix)
			break
		}
	}
	resp := &inventoryv1.ListWorkloadsResponse{Workloads: ws}
	if next != "" {
		resp.NextPageToken = pagetoken.Encode(next, fp)
	}
	return resp, nil
}

// UpdateWorkload implements InventoryService.
func (s *Server) UpdateWorkload(ctx context.Context, req *inventoryv1.UpdateWorkloadRequest) (*inventoryv1.UpdateWorkloadResponse, error) {
	in := req.GetWorkload()
	id, _ := parseName(in.GetName())
	paths := req.GetUpdateMask().GetPaths()
	w, err := s.store.Update(ctx, id, in.GetEtag(), func(cur, next *inventoryv1.Workload) error {
		for _, p := range paths {
			switch p {
			case "display_name":
				next.DisplayName = in.GetDisplayName()
			case "role":
				next.Role = in.GetRole()
			case "stateful":
				next.Stateful = in.GetStateful()
			case "wave":
				next.Wave = in.GetWave()
			case "state":
				next.State = in.GetState()
			case "state_reason":
				next.StateReason = in.GetStateReason()
			case "labels":
				next.Labels = in.GetLabels()
			case "physical":
				if cur.GetPhysical() == nil {
					return apierr.New(codes.FailedPrecondition, "NOT_PHYSICAL",
						"workload %q is an instance: only a physical workload's source is updated", in.GetName())
				}
				next.Source = &inventoryv1.Workload_Physical{Physical: in.GetPhysical()}
			case "facts":
				if cur.GetPhysical() == nil {
					return apierr.New(codes.FailedPrecondition, "FACTS_FROM_SYNC",
						"workload %q is an instance: its facts are written by syncs of its cloud", in.GetName())
				}
				if !proto.Equal(cur.GetFacts().GetPhysical(), in.GetFacts().GetPhysical()) {
					next.Facts = &inventoryv1.Facts{Kind: &inventoryv1.Facts_Physical{Physical: in.GetFacts().GetPhysical()}, ChangeTime: timestamppb.Now()}
				}
			}
		}
		if next.GetState() != cur.GetState() {
			if err := checkTransition(cur.GetState(), next.GetState()); err != nil {
				return err
			}
			if !slices.Contains(paths, "state_reason") {
				next.StateReason = ""
			}
		}
		if next.GetState() == inventoryv1.WorkloadState_WORKLOAD_STATE_FAILED && next.GetStateReason() == "" {
			return apierr.InvalidArgument("workload.state_reason",
				"required for a failed workload: say what failed (add state_reason to update_mask)")
		}
		return checkInvariants(cur, next)
	})
	if err != nil {
		return nil, err
	}
	return &inventoryv1.UpdateWorkloadResponse{Workload: w}, nil
}

// DeleteWorkload implements InventoryService. A workload that is converting or cut
// over is not deleted: its job still acts on it.
func (s *Server) DeleteWorkload(ctx context.Context, req *inventoryv1.DeleteWorkloadRequest) (*inventoryv1.DeleteWorkloadResponse, error) {
	id, _ := parseName(req.GetName())
	cur, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	switch cur.GetState() {
	case inventoryv1.WorkloadState_WORKLOAD_STATE_CONVERTING, inventoryv1.WorkloadState_WORKLOAD_STATE_CUT_OVER:
		return nil, apierr.New(codes.FailedPrecondition, "WORKLOAD_IN_FLIGHT",
			"workload %q is %s: move it to planned or failed before deleting it", req.GetName(), stateName(cur.GetState()))
	}
	etag := req.GetEtag()
	if etag == "" {
		// Delete what was checked, not whatever a racing update made of it.
		etag = cur.GetEtag()
	}
	if err := s.store.Delete(ctx, id, etag); err != nil {
		if req.GetEtag() == "" && apierr.Reason(err) == store.ReasonEtagMismatch {
			return nil, apierr.New(codes.Aborted, "CONTENTION", "workload %q changed while being deleted: retry", req.GetName())
		}
		return nil, err
	}
	return &inventoryv1.DeleteWorkloadResponse{}, nil
}

// WatchWorkloads implements InventoryService.
func (s *Server) WatchWorkloads(req *inventoryv1.WatchWorkloadsRequest, stream grpc.ServerStreamingServer[inventoryv1.WatchWorkloadsResponse]) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	shutdown := make(chan struct{})
	go func() {
		select {
		case <-s.stopping:
			close(shutdown)
			cancel()
		case <-ctx.Done():
		}
	}()
	var last int64
	send := func(ev *inventoryv1.WatchWorkloadsResponse) error {
		if err := stream.Send(ev); err != nil {
			return err
		}
		last = ev.GetRevision()
		return nil
	}
	err := s.watch(ctx, req, send)
	select {
	case <-shutdown:
		return apierr.New(codes.Unavailable, "SHUTTING_DOWN",
			"the server is shutting down: reconnect to any instance with start_revision %d", last+1)
	default:
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return err
}

func (s *Server) watch(ctx context.Context, req *inventoryv1.WatchWorkloadsRequest, send func(*inventoryv1.WatchWorkloadsResponse) error) error {
	from := req.GetStartRevision()
	switch {
	case req.GetIncludeExisting():
		rev, err := s.store.Scan(ctx, func(w *inventoryv1.Workload, rev int64) error {
			return send(&inventoryv1.WatchWorkloadsResponse{
				Type: inventoryv1.WatchEventType_WATCH_EVENT_TYPE_EXISTING, Workload: w, Revision: rev,
			})
		})
		if err != nil {
			return err
		}
		if err := send(&inventoryv1.WatchWorkloadsResponse{
			Type: inventoryv1.WatchEventType_WATCH_EVENT_TYPE_SYNCED, Revision: rev,
		}); err != nil {
			return err
		}
		from = rev + 1
	case from == 0:
		rev, err := s.store.Revision(ctx)
		if err != nil {
			return err
		}
		// Tell the client at once where it stands, so it can resume even if
		// nothing changes before it disconnects.
		if err := send(&inventoryv1.WatchWorkloadsResponse{
			Type: inventoryv1.WatchEventType_WATCH_EVENT_TYPE_PROGRESS, Revision: rev,
		}); err != nil {
			return err
		}
		from = rev + 1
	}
	return s.store.Watch(ctx, from, send)
}

// ListWaves implements InventoryService.
func (s *Server) ListWaves(ctx context.Context, _ *inventoryv1.ListWavesRequest) (*inventoryv1.ListWavesResponse, error) {
	type acc struct {
		sum    *inventoryv1.WaveSummary
		states map[inventoryv1.WorkloadState]int32
		roles  map[string]bool
	}
	waves := map[int32]*acc{}
	if _, err := s.store.Scan(ctx, func(w *inventoryv1.Workload, _ int64) error {
		a := waves[w.GetWave()]
		if a == nil {
			a = &acc{sum: &inventoryv1.WaveSummary{Wave: w.GetWave()}, states: map[inventoryv1.WorkloadState]int32{}, roles: map[string]bool{}}
			waves[w.GetWave()] = a
		}
		a.sum.WorkloadCount++
		if w.GetStateful() {
			a.sum.StatefulCount++
		}
		a.states[w.GetState()]++
		if w.GetRole() != "" {
			a.roles[w.GetRole()] = true
		}
		return nil
	}); err != nil {
		return nil, err
	}
	resp := &inventoryv1.ListWavesResponse{}
	for _, a := range waves {
		for st := inventoryv1.WorkloadState_WORKLOAD_STATE_DISCOVERED; st <= inventoryv1.WorkloadState_WORKLOAD_STATE_FAILED; st++ {
			if n := a.states[st]; n > 0 {
				a.sum.StateCounts = append(a.sum.StateCounts, &inventoryv1.StateCount{State: st, Count: n})
			}
		}
		for r := range a.roles {
			a.sum.Roles = append(a.sum.Roles, r)
		}
		sort.Strings(a.sum.Roles)
		resp.Waves = append(resp.Waves, a.sum)
	}
	sort.Slice(resp.Waves, func(i, j int) bool { return resp.Waves[i].GetWave() < resp.Waves[j].GetWave() })
	return resp, nil
}
