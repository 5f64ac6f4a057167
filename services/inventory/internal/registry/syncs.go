package registry

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/pagetoken"
)

// Syncs runs syncs of source clouds (package discovery implements it).
type Syncs interface {
	Start(ctx context.Context, req *inventoryv1.Sync) (*inventoryv1.Sync, error)
	Get(ctx context.Context, name string) (*inventoryv1.Sync, int64, error)
	List(ctx context.Context, cloud string) ([]*inventoryv1.Sync, error)
	Watch(ctx context.Context, name string, send func(*inventoryv1.Sync) error) error
	Networks(ctx context.Context, cloud string) ([]*inventoryv1.Network, error)
	Preflight(ctx context.Context, wave int32, destination string, volumeTypes map[string]string) (*inventoryv1.PreflightReport, error)
}

func (s *Server) syncs() (Syncs, error) {
	if s.sync == nil {
		return nil, apierr.New(codes.FailedPrecondition, "NO_SOURCE_CLOUDS",
			"this inventory has no clouds configured: start it with --source-clouds and --destination-clouds (and --clouds-yaml)")
	}
	return s.sync, nil
}

// CreateSync implements InventoryService.
func (s *Server) CreateSync(ctx context.Context, req *inventoryv1.CreateSyncRequest) (*inventoryv1.CreateSyncResponse, error) {
	sy, err := s.syncs()
	if err != nil {
		return nil, err
	}
	got, err := sy.Start(ctx, req.GetSync())
	if err != nil {
		return nil, err
	}
	return &inventoryv1.CreateSyncResponse{Sync: got}, nil
}

// GetSync implements InventoryService.
func (s *Server) GetSync(ctx context.Context, req *inventoryv1.GetSyncRequest) (*inventoryv1.GetSyncResponse, error) {
	sy, err := s.syncs()
	if err != nil {
		return nil, err
	}
	got, _, err := sy.Get(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return &inventoryv1.GetSyncResponse{Sync: got}, nil
}

// ListSyncs implements InventoryService.
func (s *Server) ListSyncs(ctx context.Context, req *inventoryv1.ListSyncsRequest) (*inventoryv1.ListSyncsResponse, error) {
	sy, err := s.syncs()
	if err != nil {
		return nil, err
	}
	size := pagetoken.Size(req.GetPageSize(), DefaultPageSize, MaxPageSize)
	fp := pagetoken.MessageFingerprint(req, func(r *inventoryv1.ListSyncsRequest) { r.PageSize, r.PageToken = 0, "" })
	after, err := pagetoken.Decode(req.GetPageToken(), fp)
	if err != nil {
		return nil, apierr.InvalidArgument("page_token", "not a next_page_token of an earlier ListSyncs with the same cloud: start again without page_token")
	}
	list, err := sy.List(ctx, req.GetCloud())
	if err != nil {
		return nil, err
	}
	resp := &inventoryv1.ListSyncsResponse{}
	for _, x := range list {
		if after != "" && x.GetName() >= after {
			continue // newest first: the next page holds older (smaller) names
		}
		if len(resp.Syncs) == size {
			resp.NextPageToken = pagetoken.Encode(resp.Syncs[size-1].GetName(), fp)
			break
		}
		resp.Syncs = append(resp.Syncs, x)
	}
	return resp, nil
}

// WatchSync implements InventoryService.
func (s *Server) WatchSync(req *inventoryv1.WatchSyncRequest, stream grpc.ServerStreamingServer[inventoryv1.WatchSyncResponse]) error {
	sy, err := s.syncs()
	if err != nil {
		return err
	}
	return sy.Watch(stream.Context(), req.GetName(), func(x *inventoryv1.Sync) error {
		return stream.Send(&inventoryv1.WatchSyncResponse{Sync: x})
	})
}

// ListNetworks implements InventoryService.
func (s *Server) ListNetworks(ctx context.Context, req *inventoryv1.ListNetworksRequest) (*inventoryv1.ListNetworksResponse, error) {
	sy, err := s.syncs()
	if err != nil {
		return nil, err
	}
	nets, err := sy.Networks(ctx, req.GetCloud())
	if err != nil {
		return nil, err
	}
	return &inventoryv1.ListNetworksResponse{Networks: nets}, nil
}

// ValidateCreateSync checks a CreateSyncRequest.
func ValidateCreateSync(r *inventoryv1.CreateSyncRequest) error {
	var v apierr.Violations
	switch {
	case r.GetSync() == nil:
		v.Add("sync", "required: {\"cloud\": \"<clouds.yaml entry>\"}")
	case r.GetSync().GetCloud() == "":
		v.Add("sync.cloud", "required: the clouds.yaml entry of the source cloud to sync")
	}
	if _, ok := inventoryv1.SyncMode_name[int32(r.GetSync().GetMode())]; !ok {
		v.Add("sync.mode", "%d is not a sync mode: use SYNC_MODE_AUTO, SYNC_MODE_FULL or SYNC_MODE_INCREMENTAL", r.GetSync().GetMode())
	}
	return v.Err()
}

func checkSyncName(v *apierr.Violations, name string) {
	if len(name) <= len("syncs/") || name[:len("syncs/")] != "syncs/" {
		v.Add("name", "%q is not a sync name: use syncs/{sync_id} (the name CreateSync returned)", name)
	}
}

// ValidateGetSync checks a GetSyncRequest.
func ValidateGetSync(r *inventoryv1.GetSyncRequest) error {
	var v apierr.Violations
	checkSyncName(&v, r.GetName())
	return v.Err()
}

// ValidateWatchSync checks a WatchSyncRequest.
func ValidateWatchSync(r *inventoryv1.WatchSyncRequest) error {
	var v apierr.Violations
	checkSyncName(&v, r.GetName())
	return v.Err()
}

// ValidateListSyncs checks a ListSyncsRequest.
func ValidateListSyncs(r *inventoryv1.ListSyncsRequest) error {
	var v apierr.Violations
	if r.GetPageSize() < 0 {
		v.Add("page_size", "%d: must be 0 (default %d) or more", r.GetPageSize(), DefaultPageSize)
	}
	return v.Err()
}

// ValidateListNetworks checks a ListNetworksRequest.
func ValidateListNetworks(r *inventoryv1.ListNetworksRequest) error {
	if r.GetCloud() == "" {
		return apierr.InvalidArgument("cloud", "required: the clouds.yaml entry whose networks to list")
	}
	return nil
}
