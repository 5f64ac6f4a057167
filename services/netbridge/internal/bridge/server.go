package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	novaservices "github.com/gophercloud/gophercloud/v2/openstack/compute/v2/services"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/platform/locks"
	"github.com/hikkoshi/hikkoshi/platform/pagetoken"
	"github.com/hikkoshi/hikkoshi/platform/service"
	"github.com/hikkoshi/hikkoshi/platform/store"
	"github.com/hikkoshi/hikkoshi/services/netbridge/internal/addr"
	"github.com/hikkoshi/hikkoshi/services/netbridge/internal/console"
	"github.com/hikkoshi/hikkoshi/services/netbridge/internal/watchdog"
)

// OpTimeout bounds one apply, rollback or move. They run detached from the
// caller: a caller that goes away does not leave a half-made change behind.
const OpTimeout = 10 * time.Minute

// Server implements hikkoshi.netbridge.v1.NetbridgeService.
type Server struct {
	netbridgev1.UnimplementedNetbridgeServiceServer
	store  *Store
	etcd   *clientv3.Client
	engine *Engine
	locks  *locks.Locker
	log    *slog.Logger
}

// Register registers the service and its validators on rt.
func Register(rt *service.Runtime, engine *Engine) {
	s := &Server{store: NewStore(rt.Etcd), etcd: rt.Etcd, engine: engine, locks: locks.New(rt.Session), log: rt.Logger}
	netbridgev1.RegisterNetbridgeServiceServer(rt.GRPC, s)
	service.AddValidator(rt, ValidateCreate)
	name := func(n string) error {
		if _, ok := ID(n); !ok {
			return apierr.InvalidArgument("name", "%q is not a bridge name: use bridges/{bridge_id} (the name CreateBridge returned)", n)
		}
		return nil
	}
	service.AddValidator(rt, func(r *netbridgev1.GetBridgeRequest) error { return name(r.GetName()) })
	service.AddValidator(rt, func(r *netbridgev1.DeleteBridgeRequest) error { return name(r.GetName()) })
	service.AddValidator(rt, func(r *netbridgev1.PlanBridgeRequest) error { return name(r.GetName()) })
	service.AddValidator(rt, func(r *netbridgev1.ApplyBridgeRequest) error { return name(r.GetName()) })
	service.AddValidator(rt, func(r *netbridgev1.RollbackBridgeRequest) error { return name(r.GetName()) })
	service.AddValidator(rt, func(r *netbridgev1.MoveAddressBackRequest) error {
		var v apierr.Violations
		if _, ok := ID(r.GetBridge()); !ok {
			v.Add("bridge", "%q is not a bridge name: use bridges/{bridge_id}", r.GetBridge())
		}
		if a, err := netip.ParseAddr(r.GetIpAddress()); err != nil || !a.Is4() {
			v.Add("ip_address", "%q: give the IPv4 address to move back", r.GetIpAddress())
		}
		return v.Err()
	})
	service.AddValidator(rt, func(r *netbridgev1.MoveAddressRequest) error {
		var v apierr.Violations
		if _, ok := ID(r.GetBridge()); !ok {
			v.Add("bridge", "%q is not a bridge name: use bridges/{bridge_id}", r.GetBridge())
		}
		if a, err := netip.ParseAddr(r.GetIpAddress()); err != nil || !a.Is4() {
			v.Add("ip_address", "%q: give the IPv4 address to move", r.GetIpAddress())
		}
		return v.Err()
	})
}

var (
	idRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	// keystoneRE is a Keystone project ID (32 hex digits, no dashes).
	keystoneRE = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

// ValidateCreate checks a CreateBridgeRequest.
func ValidateCreate(r *netbridgev1.CreateBridgeRequest) error {
	var v apierr.Violations
	v.RequestID("request_id", r.GetRequestId())
	if id := r.GetBridgeId(); id != "" && !idRE.MatchString(id) {
		v.Add("bridge_id", "%q: lower-case letters, digits and hyphens, at most 63", id)
	}
	b := r.GetBridge()
	if b.GetOld().GetCloud() == "" {
		v.Add("bridge.old.cloud", "required: the old cloud's clouds.yaml entry (admin-scoped)")
	}
	if !apierr.IsUUID(b.GetOld().GetNetworkId()) {
		v.Add("bridge.old.network_id", "%q: give the old network's ID (a UUID)", b.GetOld().GetNetworkId())
	}
	for path, id := range map[string]string{"bridge.old.subnet_id": b.GetOld().GetSubnetId(), "bridge.old.router_id": b.GetOld().GetRouterId(), "bridge.new.project_id": b.GetNew().GetProjectId()} {
		if id != "" && !apierr.IsUUID(id) && !(path == "bridge.new.project_id" && keystoneRE.MatchString(id)) {
			v.Add(path, "%q is not an ID", id)
		}
	}
	if b.GetNew().GetCloud() == "" {
		v.Add("bridge.new.cloud", "required: the new cloud's clouds.yaml entry (admin-scoped)")
	}
	switch b.GetMode() {
	case netbridgev1.BridgeMode_BRIDGE_MODE_SHARED_L2:
		if b.GetRouted() != nil {
			v.Add("bridge.routed", "only for BRIDGE_MODE_ROUTED")
		}
		if k := b.GetSharedL2().GetOldKeepFree(); k < 0 {
			v.Add("bridge.shared_l2.old_keep_free", "%d: give 0 or more free addresses", k)
		}
		if np := b.GetSharedL2().GetNewPool(); np != "" {
			if _, err := addr.ParseRange(np); err != nil {
				v.Add("bridge.shared_l2.new_pool", "%v", err)
			}
		}
	case netbridgev1.BridgeMode_BRIDGE_MODE_ROUTED:
		if b.GetSharedL2() != nil {
			v.Add("bridge.shared_l2", "only for BRIDGE_MODE_SHARED_L2")
		}
		if p, err := netip.ParsePrefix(b.GetRouted().GetCidr()); err != nil || !p.Addr().Is4() || p.Bits() > 30 {
			v.Add("bridge.routed.cidr", "%q: give the new subnet's IPv4 CIDR (at most /30), e.g. 10.201.0.0/24", b.GetRouted().GetCidr())
		}
		if a, err := netip.ParseAddr(b.GetRouted().GetGatewayIp()); err != nil || !a.Is4() {
			v.Add("bridge.routed.gateway_ip", "%q: give the router's IPv4 address on the old VLAN (outside the old pools)", b.GetRouted().GetGatewayIp())
		}
	default:
		v.Add("bridge.mode", "required: BRIDGE_MODE_SHARED_L2 (same VLAN and subnet) or BRIDGE_MODE_ROUTED (own subnet, a router)")
	}
	return v.Err()
}

// cloudErr maps an error from the clouds to a gRPC status.
func cloudErr(op string, err error) error {
	var ue gophercloud.ErrUnexpectedResponseCode
	switch {
	case errors.Is(err, ErrMoveRefused), errors.Is(err, ErrMoved):
		return apierr.New(codes.FailedPrecondition, "REFUSED", "%s: %v", op, err)
	case errors.As(err, &ue) && ue.Actual == 404:
		return apierr.New(codes.NotFound, "CLOUD_NOT_FOUND", "%s: %v", op, err)
	case errors.As(err, &ue) && (ue.Actual == 401 || ue.Actual == 403):
		return apierr.New(codes.PermissionDenied, "CLOUD_FORBIDDEN", "%s: the clouds.yaml entry may not do this (netbridge needs admin-scoped entries): %v", op, err)
	case errors.As(err, &ue) && ue.Actual == 409:
		return apierr.New(codes.Aborted, "CLOUD_CONFLICT", "%s: %v", op, err)
	case errors.As(err, &ue) && ue.Actual == 400:
		return apierr.New(codes.FailedPrecondition, "CLOUD_REFUSED", "%s: %v", op, err)
	}
	return apierr.New(codes.Unavailable, "CLOUD_UNAVAILABLE", "%s: %v", op, err)
}

// lock holds the bridge's etcd lock for the rest of an apply, rollback or move.
func (s *Server) lock(ctx context.Context, id string) (func(), error) {
	unlock, err := s.locks.Lock(ctx, keys.BridgeLock(id))
	if errors.Is(err, locks.ErrNoSession) {
		return nil, apierr.New(codes.Unavailable, "UNREGISTERED", "this netbridge lost its etcd lease: retry")
	}
	if err != nil {
		return nil, apierr.New(codes.Unavailable, "LOCK_FAILED", "lock bridge %s: %v", id, err)
	}
	return unlock, nil
}

// begin starts an apply, rollback or move of bridge id: detached from the caller
// (OpTimeout at most), under the bridge's lock, with the bridge as stored. done
// releases the lock.
func (s *Server) begin(ctx context.Context, id string) (context.Context, *netbridgev1.Bridge, func(), error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), OpTimeout)
	unlock, err := s.lock(ctx, id)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	b, _, err := s.store.Get(ctx, id)
	if err != nil {
		unlock()
		cancel()
		return nil, nil, nil, err
	}
	return ctx, b, func() { unlock(); cancel() }, nil
}

// CreateBridge implements NetbridgeService.
func (s *Server) CreateBridge(ctx context.Context, req *netbridgev1.CreateBridgeRequest) (*netbridgev1.CreateBridgeResponse, error) {
	fp := ""
	if req.GetRequestId() != "" {
		fp = pagetoken.MessageFingerprint(req, func(r *netbridgev1.CreateBridgeRequest) { r.RequestId = "" })
	}
	b, err := s.store.Create(ctx, req.GetBridge(), req.GetBridgeId(), req.GetRequestId(), fp)
	if err != nil {
		return nil, err
	}
	return &netbridgev1.CreateBridgeResponse{Bridge: b}, nil
}

// GetBridge implements NetbridgeService.
func (s *Server) GetBridge(ctx context.Context, req *netbridgev1.GetBridgeRequest) (*netbridgev1.GetBridgeResponse, error) {
	id, _ := ID(req.GetName())
	b, _, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return &netbridgev1.GetBridgeResponse{Bridge: b}, nil
}

// ListBridges implements NetbridgeService.
func (s *Server) ListBridges(ctx context.Context, req *netbridgev1.ListBridgesRequest) (*netbridgev1.ListBridgesResponse, error) {
	size := pagetoken.Size(req.GetPageSize(), 100, 500)
	fp := pagetoken.MessageFingerprint(req, func(r *netbridgev1.ListBridgesRequest) { r.PageSize, r.PageToken = 0, "" })
	after, err := pagetoken.Decode(req.GetPageToken(), fp)
	if err != nil {
		return nil, apierr.InvalidArgument("page_token", "not a next_page_token of an earlier ListBridges: start again without page_token")
	}
	bs, next, err := s.store.Page(ctx, after, store.Ascending, size, nil)
	if err != nil {
		return nil, err
	}
	resp := &netbridgev1.ListBridgesResponse{Bridges: bs}
	if next != "" {
		resp.NextPageToken = pagetoken.Encode(next, fp)
	}
	return resp, nil
}

// DeleteBridge implements NetbridgeService.
func (s *Server) DeleteBridge(ctx context.Context, req *netbridgev1.DeleteBridgeRequest) (*netbridgev1.DeleteBridgeResponse, error) {
	id, _ := ID(req.GetName())
	b, rev, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if st := b.GetState(); st != netbridgev1.BridgeState_BRIDGE_STATE_NEW && st != netbridgev1.BridgeState_BRIDGE_STATE_ROLLED_BACK {
		return nil, apierr.New(codes.FailedPrecondition, "BRIDGE_APPLIED", "bridge %s is %s: roll it back first (RollbackBridge), so that nothing is left in either cloud", b.GetName(), st)
	}
	return &netbridgev1.DeleteBridgeResponse{}, s.store.Delete(ctx, id, rev)
}

// PlanBridge implements NetbridgeService.
func (s *Server) PlanBridge(ctx context.Context, req *netbridgev1.PlanBridgeRequest) (*netbridgev1.PlanBridgeResponse, error) {
	id, _ := ID(req.GetName())
	b, _, err := s.store.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	p, err := s.engine.Plan(ctx, b)
	if err != nil {
		return nil, cloudErr("plan "+b.GetName(), err)
	}
	return &netbridgev1.PlanBridgeResponse{Plan: p.Plan}, nil
}

func mergeResources(have, add []*netbridgev1.Resource) []*netbridgev1.Resource {
	seen := map[string]bool{}
	for _, r := range have {
		seen[r.GetKey()+"|"+r.GetId()] = true
	}
	for _, r := range add {
		if !seen[r.GetKey()+"|"+r.GetId()] {
			have = append(have, r)
			seen[r.GetKey()+"|"+r.GetId()] = true
		}
	}
	return have
}

// ApplyBridge implements NetbridgeService.
func (s *Server) ApplyBridge(ctx context.Context, req *netbridgev1.ApplyBridgeRequest) (*netbridgev1.ApplyBridgeResponse, error) {
	id, _ := ID(req.GetName())
	ctx, b, done, err := s.begin(ctx, id)
	if err != nil {
		return nil, err
	}
	defer done()
	if req.GetPlanEtag() != "" && req.GetPlanEtag() != b.GetEtag() {
		return nil, apierr.New(codes.Aborted, "PLAN_STALE", "bridge %s changed since the plan you reviewed (etag %s, now %s): plan again", b.GetName(), req.GetPlanEtag(), b.GetEtag())
	}
	if b.GetState() == netbridgev1.BridgeState_BRIDGE_STATE_ROLLED_BACK {
		return nil, apierr.New(codes.FailedPrecondition, "BRIDGE_ROLLED_BACK", "bridge %s was rolled back: create a new bridge", b.GetName())
	}
	p, err := s.engine.Plan(ctx, b)
	if err != nil {
		return nil, cloudErr("plan "+b.GetName(), err)
	}
	if cs := p.Plan.GetConflicts(); len(cs) > 0 {
		var why []string
		for _, c := range cs {
			why = append(why, c.GetReason())
		}
		return nil, apierr.New(codes.FailedPrecondition, "PLAN_CONFLICTS", "bridge %s: the plan has %d conflict(s), nothing applied: %s", b.GetName(), len(cs), strings.Join(why, "; "))
	}
	if len(p.Plan.GetChanges()) == 0 {
		if b.GetState() != netbridgev1.BridgeState_BRIDGE_STATE_APPLIED {
			b, err = s.store.Update(ctx, id, func(cur *netbridgev1.Bridge) { cur.State, cur.Error = netbridgev1.BridgeState_BRIDGE_STATE_APPLIED, "" })
		}
		return &netbridgev1.ApplyBridgeResponse{Bridge: b}, err
	}
	split := p.Plan.GetSplit()
	if _, err := s.store.Update(ctx, id, func(cur *netbridgev1.Bridge) {
		cur.State, cur.Error = netbridgev1.BridgeState_BRIDGE_STATE_APPLYING, ""
		if cur.Split == nil {
			cur.Split = split // fixed from now on: a later plan computes the same split
		}
	}); err != nil {
		return nil, err
	}
	start := time.Now()
	applied, aerr := p.Apply(ctx, func(ctx context.Context, rs []*netbridgev1.Resource) error {
		if len(rs) == 0 {
			return nil
		}
		_, err := s.store.Update(ctx, id, func(cur *netbridgev1.Bridge) { cur.Resources = mergeResources(cur.Resources, rs) })
		return err
	})
	b, err = s.store.Update(ctx, id, func(cur *netbridgev1.Bridge) {
		cur.State, cur.Error = netbridgev1.BridgeState_BRIDGE_STATE_APPLIED, ""
		if aerr != nil {
			cur.State, cur.Error = netbridgev1.BridgeState_BRIDGE_STATE_FAILED, aerr.Error()
		}
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("bridge applied", "bridge", b.GetName(), "changes", len(applied), "of", len(p.Plan.GetChanges()), "took", time.Since(start).Round(time.Millisecond), "err", aerr)
	if aerr != nil {
		return nil, cloudErr(fmt.Sprintf("apply %s (%d of %d changes made; apply again to finish, or roll back)", b.GetName(), len(applied), len(p.Plan.GetChanges())), aerr)
	}
	return &netbridgev1.ApplyBridgeResponse{Bridge: b, Applied: applied}, nil
}

// RollbackBridge implements NetbridgeService.
func (s *Server) RollbackBridge(ctx context.Context, req *netbridgev1.RollbackBridgeRequest) (*netbridgev1.RollbackBridgeResponse, error) {
	id, _ := ID(req.GetName())
	ctx, b, done, err := s.begin(ctx, id)
	if err != nil {
		return nil, err
	}
	defer done()
	undone, rerr := s.engine.Rollback(ctx, b)
	if errors.Is(rerr, ErrMoved) {
		return nil, cloudErr("roll back "+b.GetName(), rerr)
	}
	b, err = s.store.Update(ctx, id, func(cur *netbridgev1.Bridge) {
		cur.State, cur.Error, cur.Resources, cur.Split = netbridgev1.BridgeState_BRIDGE_STATE_ROLLED_BACK, "", nil, nil
		if rerr != nil {
			cur.State, cur.Error, cur.Resources, cur.Split = netbridgev1.BridgeState_BRIDGE_STATE_FAILED, "rollback: "+rerr.Error(), b.GetResources(), b.GetSplit()
		}
	})
	if err != nil {
		return nil, err
	}
	if rerr != nil {
		return nil, cloudErr("roll back "+b.GetName()+" (roll back again to finish)", rerr)
	}
	return &netbridgev1.RollbackBridgeResponse{Bridge: b, Undone: undone}, nil
}

// MoveAddress implements NetbridgeService.
func (s *Server) MoveAddress(ctx context.Context, req *netbridgev1.MoveAddressRequest) (*netbridgev1.MoveAddressResponse, error) {
	id, _ := ID(req.GetBridge())
	ctx, b, done, err := s.begin(ctx, id)
	if err != nil {
		return nil, err
	}
	defer done()
	if b.GetMode() != netbridgev1.BridgeMode_BRIDGE_MODE_SHARED_L2 || b.GetState() != netbridgev1.BridgeState_BRIDGE_STATE_APPLIED {
		return nil, apierr.New(codes.FailedPrecondition, "BRIDGE_NOT_APPLIED", "bridge %s is %s %s: addresses move across an applied BRIDGE_MODE_SHARED_L2 bridge", b.GetName(), b.GetMode(), b.GetState())
	}
	resp, err := s.engine.Move(ctx, b, req, func(m *netbridgev1.MovedAddress) error {
		_, err := s.store.Update(ctx, id, func(cur *netbridgev1.Bridge) { cur.Moved = append(cur.Moved, m) })
		return err
	})
	if err != nil {
		return nil, cloudErr("move "+req.GetIpAddress(), err)
	}
	s.log.Info("address moved", "bridge", b.GetName(), "ip", req.GetIpAddress(), "new_port", resp.GetNewPortId(), "old_port", resp.GetOldPortId())
	return resp, nil
}

// MoveAddressBack implements NetbridgeService.
func (s *Server) MoveAddressBack(ctx context.Context, req *netbridgev1.MoveAddressBackRequest) (*netbridgev1.MoveAddressBackResponse, error) {
	id, _ := ID(req.GetBridge())
	ctx, b, done, err := s.begin(ctx, id)
	if err != nil {
		return nil, err
	}
	defer done()
	if b.GetMode() != netbridgev1.BridgeMode_BRIDGE_MODE_SHARED_L2 {
		return nil, apierr.New(codes.FailedPrecondition, "BRIDGE_NOT_SHARED_L2", "bridge %s is %s: addresses move across a BRIDGE_MODE_SHARED_L2 bridge", b.GetName(), b.GetMode())
	}
	resp, err := s.engine.MoveBack(ctx, b, req.GetIpAddress())
	if err != nil {
		return nil, cloudErr("move "+req.GetIpAddress()+" back", err)
	}
	a, _ := netip.ParseAddr(req.GetIpAddress())
	if _, err := s.store.Update(ctx, id, func(cur *netbridgev1.Bridge) {
		cur.Moved = slices.DeleteFunc(cur.Moved, func(m *netbridgev1.MovedAddress) bool { return m.GetIpAddress() == a.String() })
	}); err != nil {
		return nil, err
	}
	s.log.Info("address moved back", "bridge", b.GetName(), "ip", req.GetIpAddress(), "old_port", resp.GetOldPortId())
	return resp, nil
}

// PlanConsolePorts implements NetbridgeService. The nodes of req.clouds are read
// from each cloud's Nova (its nova-compute services) and planned after the nodes
// given.
func (s *Server) PlanConsolePorts(ctx context.Context, req *netbridgev1.PlanConsolePortsRequest) (*netbridgev1.PlanConsolePortsResponse, error) {
	var v apierr.Violations
	for i, c := range req.GetClouds() {
		if c == "" {
			v.Add(fmt.Sprintf("clouds[%d]", i), "empty: give a clouds.yaml entry (admin-scoped, to list Nova's services)")
		}
	}
	if r := req.GetAssumedCurrentRange(); r != "" {
		if err := console.CheckRange(r); err != nil {
			v.Add("assumed_current_range", "%v", err)
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	if len(req.GetClouds()) == 0 {
		return console.Plan(req)
	}
	full := proto.CloneOf(req)
	given := map[string]bool{}
	for _, n := range req.GetNodes() {
		given[n.GetCloud()+"/"+n.GetHost()] = true
	}
	for i, c := range req.GetClouds() {
		hosts, err := s.computeHosts(ctx, c)
		if err != nil {
			return nil, cloudErr(fmt.Sprintf("clouds[%d] %q: list nova-compute services", i, c), err)
		}
		for _, h := range hosts {
			if !given[c+"/"+h] {
				given[c+"/"+h] = true
				full.Nodes = append(full.Nodes, &netbridgev1.ComputeNode{Cloud: c, Host: h, CurrentRange: req.GetAssumedCurrentRange()})
			}
		}
	}
	return console.Plan(full)
}

// computeHosts lists the hosts of a cloud's nova-compute services, sorted.
func (s *Server) computeHosts(ctx context.Context, cloudName string) ([]string, error) {
	side, err := s.engine.Open(ctx, cloudName, "console")
	if err != nil {
		return nil, err
	}
	pages, err := novaservices.List(side.Compute, novaservices.ListOpts{Binary: "nova-compute"}).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	list, err := novaservices.ExtractServices(pages)
	if err != nil {
		return nil, err
	}
	var hosts []string
	for _, svc := range list {
		hosts = append(hosts, svc.Host)
	}
	slices.Sort(hosts)
	return slices.Compact(hosts), nil
}

// GetWatchdogStatus implements NetbridgeService.
func (s *Server) GetWatchdogStatus(ctx context.Context, _ *netbridgev1.GetWatchdogStatusRequest) (*netbridgev1.GetWatchdogStatusResponse, error) {
	st, err := watchdog.Read(ctx, s.etcd)
	if err != nil {
		return nil, err
	}
	return &netbridgev1.GetWatchdogStatusResponse{Status: st}, nil
}
