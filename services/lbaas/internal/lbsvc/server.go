// Package lbsvc implements hikkoshi.lbaas.v1.LoadBalancerService on the thin Octavia
// client (package octavia): declarative creates with request_id idempotency, member
// changes serialised per load balancer across replicas by etcd locks, and status
// watches.
package lbsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"

	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/platform/locks"
	"github.com/hikkoshi/hikkoshi/platform/pagetoken"
	"github.com/hikkoshi/hikkoshi/platform/service"
	"github.com/hikkoshi/hikkoshi/services/lbaas/octavia"
)

// RequestTagPrefix starts the Octavia tag that names the request_id of a create, so
// that a create whose process died before it wrote its record is found again.
const RequestTagPrefix = "hikkoshi-request:"

// Server implements hikkoshi.lbaas.v1.LoadBalancerService.
type Server struct {
	lbaasv1.UnimplementedLoadBalancerServiceServer
	oc         *octavia.Client
	etcd       *clientv3.Client
	locks      *locks.Locker
	scope      string
	log        *slog.Logger
	stopping   <-chan struct{}
	requestTTL time.Duration
	timeout    time.Duration
	metrics    *Metrics
	others     Others
}

// Options configure a Server.
type Options struct {
	// Octavia is the thin client of the cloud the service manages.
	Octavia *octavia.Client
	// Timeout bounds one operation's waits on Octavia (the client's timeout).
	Timeout time.Duration
	// Scope keeps request records of different clouds apart (keys.LBScope).
	Scope string
	// RequestTTL is how long a request_id is remembered; 0 means DefaultRequestTTL.
	RequestTTL time.Duration
	// Others are the services an import asks where servers went.
	Others Others
}

// Register builds the service on rt and registers its handlers and validators.
// m are the service's metrics (NewMetrics on rt.Metrics); the caller passes
// m.ObserveOctavia to cloud.Observe so that Octavia API calls are counted.
func Register(rt *service.Runtime, o Options, m *Metrics) error {
	if o.Octavia == nil {
		return errors.New("lbsvc.Register: no Octavia client")
	}
	if o.RequestTTL == 0 {
		o.RequestTTL = DefaultRequestTTL
	}
	if o.Timeout == 0 {
		o.Timeout = octavia.DefaultTimeout
	}
	s := &Server{
		oc: o.Octavia, etcd: rt.Etcd, locks: locks.New(rt.Session), scope: o.Scope, log: rt.Logger,
		stopping: rt.Stopping(), requestTTL: o.RequestTTL, timeout: o.Timeout, metrics: m,
		others: o.Others,
	}
	lbaasv1.RegisterLoadBalancerServiceServer(rt.GRPC, s)
	service.AddValidator(rt, ValidateCreateLoadBalancer)
	service.AddValidator(rt, ValidateGetLoadBalancer)
	service.AddValidator(rt, ValidateListLoadBalancers)
	service.AddValidator(rt, ValidateUpdateLoadBalancer)
	service.AddValidator(rt, ValidateDeleteLoadBalancer)
	service.AddValidator(rt, ValidateWatchLoadBalancer)
	service.AddValidator(rt, ValidatePlanImport)
	service.AddValidator(rt, ValidateApplyImport)
	return nil
}

// CreateLoadBalancer implements LoadBalancerService.
func (s *Server) CreateLoadBalancer(ctx context.Context, req *lbaasv1.CreateLoadBalancerRequest) (*lbaasv1.CreateLoadBalancerResponse, error) {
	spec := specOf(req.GetLoadBalancer())
	what := fmt.Sprintf("create load balancer %q", spec.Name)
	if err := s.oc.Check(ctx, spec); err != nil { // API version, before any change
		return nil, toStatus(what, err)
	}
	rid := req.GetRequestId()
	if rid == "" {
		t, mode, err := s.build(ctx, spec)
		if err != nil {
			return nil, err
		}
		return &lbaasv1.CreateLoadBalancerResponse{LoadBalancer: withMode(treeOf(t), mode)}, nil
	}
	spec.Tags = append(spec.Tags, RequestTagPrefix+rid)
	fp := pagetoken.MessageFingerprint(req, func(r *lbaasv1.CreateLoadBalancerRequest) { r.RequestId = "" })
	lb, err := underRequest(ctx, s, rid, s.timeout, what, func(ctx context.Context) (*lbaasv1.LoadBalancer, error) {
		return s.createOnce(ctx, rid, fp, spec)
	})
	if err != nil {
		return nil, err
	}
	return &lbaasv1.CreateLoadBalancerResponse{LoadBalancer: lb}, nil
}

// createOnce creates the load balancer of request rid unless it was created already,
// holding the request's lock.
func (s *Server) createOnce(ctx context.Context, rid, fp string, spec octavia.Spec) (*lbaasv1.LoadBalancer, error) {
	key := keys.LBRequest(s.scope, rid)
	rec, err := readRecord[requestRecord](ctx, s, key)
	if err != nil {
		return nil, err
	}
	if rec != nil {
		if rec.Fingerprint != fp {
			return nil, apierr.New(codes.InvalidArgument, ReasonRequestReused,
				"request_id %q was already used for a different request: use a new request_id for a new request", rid)
		}
		t, err := s.oc.WaitReady(ctx, rec.LoadBalancerID, nil)
		if octavia.IsNotFound(err) || isDeleted(err) {
			return nil, apierr.New(codes.NotFound, ReasonRequestGone,
				"request_id %q created load balancer %s%s, which has since been deleted: use a new request_id to create it again",
				rid, namePrefix, rec.LoadBalancerID)
		}
		if err != nil {
			return nil, toStatus("load balancer "+rec.LoadBalancerID+" of request_id "+rid, err)
		}
		return withMode(treeOf(t), octavia.CreateMode(rec.CreateMode)), nil
	}
	// A create of this request whose process died before writing the record left its
	// load balancer tagged with the request: take it over if it is whole, else delete it.
	found, err := s.oc.List(ctx, s.oc.OwnedListOpts(RequestTagPrefix+rid))
	if err != nil {
		return nil, toStatus("look for an earlier create of request_id "+rid, err)
	}
	for _, lb := range found {
		if lb.ProvisioningStatus == "PENDING_DELETE" || lb.ProvisioningStatus == "DELETED" {
			continue
		}
		t, err := s.oc.WaitReady(ctx, lb.ID, nil)
		if err == nil {
			if missing := octavia.Missing(t, spec); len(missing) > 0 {
				err = fmt.Errorf("it lacks %s", strings.Join(missing, ", "))
			}
		}
		if err == nil {
			if err := s.writeRecord(ctx, key, requestRecord{lb.ID, fp, "taken-over", time.Now().UTC()}); err != nil {
				return nil, err
			}
			s.log.Info("took over the load balancer of an interrupted create", "request_id", rid, "load_balancer", lb.ID)
			return withMode(treeOf(t), "taken-over"), nil
		}
		// Not whole, or not ACTIVE: it is deleted and the tree built again to the
		// request's spec, never handed out as the load balancer asked for.
		s.log.Warn("deleting the unusable load balancer of an interrupted create", "request_id", rid, "load_balancer", lb.ID, "err", err)
		if derr := s.oc.Delete(ctx, lb.ID); derr != nil {
			return nil, toStatus("delete the unusable load balancer "+lb.ID+" of an interrupted create", derr)
		}
	}
	t, mode, err := s.build(ctx, spec)
	if err != nil {
		return nil, err
	}
	if err := s.writeRecord(ctx, key, requestRecord{t.LoadBalancer.ID, fp, string(mode), time.Now().UTC()}); err != nil {
		return nil, err
	}
	return withMode(treeOf(t), mode), nil
}

// build creates the tree and waits until it is ACTIVE throughout. On failure it
// deletes what it built (cascade), even when ctx has ended.
func (s *Server) build(ctx context.Context, spec octavia.Spec) (*octavia.Tree, octavia.CreateMode, error) {
	what := fmt.Sprintf("create load balancer %q", spec.Name)
	start := time.Now()
	created, t, err := s.oc.CreateReady(ctx, spec, nil)
	if err == nil {
		s.metrics.createSeconds.WithLabelValues(string(created.Mode)).Observe(time.Since(start).Seconds())
		return t, created.Mode, nil
	}
	if created == nil || created.LoadBalancer == nil {
		return nil, "", toStatus(what, err) // nothing left behind (a serial create cleans up itself)
	}
	id := created.LoadBalancer.ID
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	if derr := s.oc.Delete(dctx, id); derr != nil {
		s.log.Error("a failed create left a load balancer that could not be deleted", "load_balancer", id, "err", derr)
		return nil, "", toStatus(what, fmt.Errorf("%w; deleting load balancer %s failed too (delete it by hand): %v", err, id, derr))
	}
	var final *octavia.StatusError
	if errors.As(err, &final) && final.Status == "ERROR" {
		return nil, "", apierr.New(codes.Unavailable, ReasonError,
			"%s: Octavia put load balancer %s in ERROR; it was deleted (cascade): try again, and if it fails again look at Octavia's worker logs", what, id)
	}
	return nil, "", toStatus(what+" (what was built is deleted)", err)
}

func isDeleted(err error) bool {
	var final *octavia.StatusError
	return errors.As(err, &final) && final.Status == "DELETED"
}

func withMode(lb *lbaasv1.LoadBalancer, mode octavia.CreateMode) *lbaasv1.LoadBalancer {
	lb.CreateMode = string(mode)
	return lb
}

// GetLoadBalancer implements LoadBalancerService.
func (s *Server) GetLoadBalancer(ctx context.Context, req *lbaasv1.GetLoadBalancerRequest) (*lbaasv1.GetLoadBalancerResponse, error) {
	id, _ := parseName(req.GetName())
	t, err := s.oc.Show(ctx, id)
	if err != nil {
		return nil, toStatus("get "+req.GetName(), err)
	}
	return &lbaasv1.GetLoadBalancerResponse{LoadBalancer: treeOf(t)}, nil
}

// ListLoadBalancers implements LoadBalancerService.
func (s *Server) ListLoadBalancers(ctx context.Context, req *lbaasv1.ListLoadBalancersRequest) (*lbaasv1.ListLoadBalancersResponse, error) {
	size := pagetoken.Size(req.GetPageSize(), DefaultPageSize, MaxPageSize)
	fp := pagetoken.MessageFingerprint(req, func(r *lbaasv1.ListLoadBalancersRequest) { r.PageSize, r.PageToken = 0, "" })
	after, err := pagetoken.Decode(req.GetPageToken(), fp)
	if err != nil {
		return nil, apierr.InvalidArgument("page_token",
			"not a next_page_token of an earlier ListLoadBalancers with the same tags: start again without page_token")
	}
	opts := s.oc.OwnedListOpts(req.GetTags()...)
	opts.Limit, opts.Marker = size, after
	list, err := s.oc.ListPage(ctx, opts)
	if err != nil {
		return nil, toStatus("list load balancers", err)
	}
	resp := &lbaasv1.ListLoadBalancersResponse{}
	for i := range list {
		resp.LoadBalancers = append(resp.LoadBalancers, summaryOf(&list[i]))
	}
	if len(list) == size {
		resp.NextPageToken = pagetoken.Encode(list[len(list)-1].ID, fp)
	}
	return resp, nil
}

// DeleteLoadBalancer implements LoadBalancerService.
func (s *Server) DeleteLoadBalancer(ctx context.Context, req *lbaasv1.DeleteLoadBalancerRequest) (*lbaasv1.DeleteLoadBalancerResponse, error) {
	id, _ := parseName(req.GetName())
	unlock, err := s.lock(ctx, keys.LBLock(id))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := s.oc.Get(ctx, id); err != nil {
		if octavia.IsNotFound(err) && req.GetAllowMissing() {
			return &lbaasv1.DeleteLoadBalancerResponse{}, nil
		}
		return nil, toStatus("delete "+req.GetName(), err)
	}
	if err := s.oc.Delete(ctx, id); err != nil {
		return nil, toStatus("delete "+req.GetName(), err)
	}
	return &lbaasv1.DeleteLoadBalancerResponse{}, nil
}
