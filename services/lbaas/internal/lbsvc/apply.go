package lbsvc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/loadbalancers"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/platform/pagetoken"
	"github.com/hikkoshi/hikkoshi/services/lbaas/haproxyimport"
	"github.com/hikkoshi/hikkoshi/services/lbaas/octavia"
)

// maxResponse is the largest plan an apply returns (a gRPC client takes 4 MiB by
// default): a larger one is refused before anything is made.
const maxResponse = 3 << 20

// maxStoredChanges is how many change lines of one load balancer a request
// record keeps.
const maxStoredChanges = 200

// ApplyImport implements LoadBalancerService.
func (s *Server) ApplyImport(ctx context.Context, req *lbaasv1.ApplyImportRequest) (*lbaasv1.ApplyImportResponse, error) {
	p, err := s.planImport(ctx, req.GetSource())
	if err != nil {
		return nil, err
	}
	if !p.plan.Complete && !req.GetAcceptLeftovers() {
		// Where only: a directive may hold what the ledger redacts.
		left := p.plan.Unaccepted()
		return nil, apierr.New(codes.FailedPrecondition, ReasonPlanIncomplete,
			"the plan has %d leftover(s) not accepted (the first at %s): review them in PlanImport's ledger, then accept them (source.accept) or set accept_leftovers",
			len(left), left[0].Where)
	}
	specs, err := p.plan.Specs(haproxyimport.Where{VIPSubnetID: req.GetVipSubnetId(), Certificates: req.GetCertificates()})
	if err != nil {
		field := "source.files"
		if errors.Is(err, haproxyimport.ErrNoCertificate) {
			field = "certificates"
		}
		return nil, apierr.InvalidArgument(field, "%s", strings.TrimPrefix(err.Error(), "haproxyimport: "))
	}
	if len(s.oc.OwnedListOpts().Tags) == 0 {
		return nil, apierr.New(codes.FailedPrecondition, ReasonNotOwned,
			"this lbaas instance runs without an owner tag: it cannot tell its load balancers from others, and an import converges by name: run it with --owner-tag")
	}
	for _, spec := range specs {
		if err := s.oc.Check(ctx, spec); err != nil { // API version, before any change
			return nil, toStatus("import load balancer "+spec.Name, err)
		}
	}
	resp := &lbaasv1.ApplyImportResponse{Plan: p.proto()}
	if n := proto.Size(resp); n > maxResponse {
		return nil, apierr.InvalidArgument("source.files", "the plan is %d bytes, more than a response carries (%d): split the configuration", n, maxResponse)
	}
	if req.GetDryRun() {
		steps, err := s.importSteps(ctx, specs, "")
		if err != nil {
			return nil, err
		}
		resp.LoadBalancers = results(steps)
		return resp, nil
	}
	rid := req.GetRequestId()
	if rid == "" {
		lbs, err := s.applySpecs(ctx, specs, "")
		if err != nil {
			return nil, err
		}
		resp.LoadBalancers = lbs
		return resp, nil
	}
	fp := pagetoken.MessageFingerprint(req, func(r *lbaasv1.ApplyImportRequest) { r.RequestId = "" })
	return underRequest(ctx, s, rid, s.timeout*time.Duration(1+len(specs)), "apply the import", func(ctx context.Context) (*lbaasv1.ApplyImportResponse, error) {
		return s.applyOnce(ctx, rid, fp, specs, resp)
	})
}

// importRecord is what etcd keeps of an import's apply with a request_id: a digest
// of the request and what became of each load balancer (its changes capped), not
// the plan, which can be megabytes. No secrets: names, IDs and change lines.
type importRecord struct {
	Fingerprint   string          `json:"fingerprint"`
	LoadBalancers []appliedRecord `json:"load_balancers"`
}

type appliedRecord struct {
	DisplayName string   `json:"display_name"`
	Name        string   `json:"name"`
	Action      string   `json:"action"`
	Changes     []string `json:"changes,omitempty"`
	Seconds     float64  `json:"seconds"`
}

// applyOnce applies the specs of request rid unless it was applied already,
// holding the request's lock.
func (s *Server) applyOnce(ctx context.Context, rid, fp string, specs []octavia.Spec, resp *lbaasv1.ApplyImportResponse) (*lbaasv1.ApplyImportResponse, error) {
	key := keys.LBImportRequest(s.scope, rid)
	rec, err := readRecord[importRecord](ctx, s, key)
	if err != nil {
		return nil, err
	}
	if rec != nil {
		if rec.Fingerprint != fp {
			return nil, apierr.New(codes.InvalidArgument, ReasonRequestReused,
				"request_id %q was already used for a different request: use a new request_id for a new request", rid)
		}
		for _, lb := range rec.LoadBalancers {
			id, _ := parseName(lb.Name)
			if _, err := s.oc.Get(ctx, id); octavia.IsNotFound(err) {
				return nil, apierr.New(codes.NotFound, ReasonRequestGone,
					"request_id %q made or changed load balancer %s (%s), which has since been deleted: use a new request_id to apply again",
					rid, lb.DisplayName, lb.Name)
			} else if err != nil {
				return nil, toStatus("load balancer "+lb.Name+" of request_id "+rid, err)
			}
			// The first apply's result, with the plan as the request plans now.
			resp.LoadBalancers = append(resp.LoadBalancers, &lbaasv1.AppliedLoadBalancer{DisplayName: lb.DisplayName, Name: lb.Name,
				Action: lbaasv1.ApplyAction(lbaasv1.ApplyAction_value[lb.Action]), Changes: lb.Changes, Seconds: lb.Seconds})
		}
		return resp, nil
	}
	// Not applied (or applied by a process that died before its record): a
	// converge finds what is there and changes only what differs.
	lbs, err := s.applySpecs(ctx, specs, rid)
	if err != nil {
		return nil, err
	}
	resp.LoadBalancers = lbs
	rec = &importRecord{Fingerprint: fp}
	for _, lb := range lbs {
		changes := lb.GetChanges()
		if len(changes) > maxStoredChanges {
			changes = append(slices.Clone(changes[:maxStoredChanges]), fmt.Sprintf("… and %d more", len(changes)-maxStoredChanges))
		}
		rec.LoadBalancers = append(rec.LoadBalancers, appliedRecord{DisplayName: lb.GetDisplayName(), Name: lb.GetName(),
			Action: lb.GetAction().String(), Changes: changes, Seconds: lb.GetSeconds()})
	}
	if err := s.writeRecord(ctx, key, rec); err != nil {
		return nil, apierr.Prefix(err, fmt.Sprintf("the import is applied (%s), but: ", names(lbs)))
	}
	return resp, nil
}

func names(lbs []*lbaasv1.AppliedLoadBalancer) string {
	var out []string
	for _, lb := range lbs {
		out = append(out, lb.GetName())
	}
	return strings.Join(out, ", ")
}

// importStep is what an apply does to one load balancer.
type importStep struct {
	spec    octavia.Spec
	id      string // "" to create
	create  bool
	resumed bool // made by this request before its process died
	changes []octavia.Change
	seconds float64
}

// importSteps plans each load balancer: created when none of its name exists,
// converged when the service made one (its owner tag), refused when one of that
// name is someone else's. One this request (rid) created before its process died
// is its create, finished by a converge — or, in ERROR, deleted and built anew.
func (s *Server) importSteps(ctx context.Context, specs []octavia.Spec, rid string) ([]*importStep, error) {
	var steps []*importStep
	for _, spec := range specs {
		what := "import load balancer " + spec.Name
		all, err := s.oc.List(ctx, loadbalancers.ListOpts{Name: spec.Name})
		if err != nil {
			return nil, toStatus(what, err)
		}
		all = slices.DeleteFunc(all, func(lb octavia.LoadBalancer) bool {
			return lb.ProvisioningStatus == "PENDING_DELETE" || lb.ProvisioningStatus == "DELETED"
		})
		opts := s.oc.OwnedListOpts()
		owned := slices.DeleteFunc(slices.Clone(all), func(lb octavia.LoadBalancer) bool { return !hasTags(lb.Tags, opts.Tags) })
		switch {
		case len(all) == 0:
			steps = append(steps, &importStep{spec: spec, create: true})
			continue
		case len(owned) == 0:
			return nil, apierr.New(codes.FailedPrecondition, ReasonNotOwned,
				"load balancer %s exists (%s) and this service did not make it (no tag %s): import under another display_name, or delete it",
				spec.Name, all[0].ID, strings.Join(opts.Tags, ","))
		case len(all) > 1:
			return nil, apierr.New(codes.FailedPrecondition, ReasonConflict,
				"%d load balancers are named %s: delete the ones that are not this import's", len(all), spec.Name)
		}
		mine := rid != "" && slices.Contains(owned[0].Tags, RequestTagPrefix+rid)
		if st := owned[0].ProvisioningStatus; st == "ERROR" && mine {
			s.log.Warn("deleting the load balancer in ERROR that an interrupted apply of this request created", "request_id", rid, "load_balancer", owned[0].ID)
			if err := s.oc.Delete(ctx, owned[0].ID); err != nil {
				return nil, toStatus("delete load balancer "+owned[0].ID+" in ERROR of an interrupted apply", err)
			}
			steps = append(steps, &importStep{spec: spec, create: true})
			continue
		} else if st == "ERROR" {
			return nil, apierr.New(codes.FailedPrecondition, ReasonError,
				"load balancer %s (%s) is in ERROR: delete it (DeleteLoadBalancer) and apply again, which builds it anew", spec.Name, owned[0].ID)
		}
		ch, err := s.oc.Converge(ctx, owned[0].ID, spec, false)
		if err != nil {
			return nil, toStatus(what+" ("+owned[0].ID+")", err)
		}
		steps = append(steps, &importStep{spec: spec, id: owned[0].ID, changes: ch, resumed: mine})
	}
	return steps, nil
}

func hasTags(have, want []string) bool {
	for _, t := range want {
		if !slices.Contains(have, t) {
			return false
		}
	}
	return true
}

// applySpecs plans every load balancer, then creates or converges each, holding
// the locks of their names (in name order) and of each one it converges. A create
// that fails deletes what it built, and the load balancers this apply created
// before it; a converge that fails stops where it is (the next apply takes it up).
func (s *Server) applySpecs(ctx context.Context, specs []octavia.Spec, rid string) ([]*lbaasv1.AppliedLoadBalancer, error) {
	names := make([]string, 0, len(specs))
	for _, sp := range specs {
		names = append(names, sp.Name)
	}
	slices.Sort(names)
	for _, n := range slices.Compact(names) {
		unlock, err := s.lock(ctx, keys.LBNameLock(s.scope, n))
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	steps, err := s.importSteps(ctx, specs, rid)
	if err != nil {
		return nil, err
	}
	var created []string
	undo := func(err error) error {
		if len(created) == 0 {
			return err
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
		defer cancel()
		// All asked at once, then waited for: one slow delete does not use up the
		// others' time.
		var left []string
		for _, id := range created {
			if derr := s.oc.DeleteAsync(dctx, id); derr != nil {
				s.log.Error("an import that failed left a load balancer it created", "load_balancer", id, "err", derr)
				left = append(left, id)
			}
		}
		for _, id := range created {
			if slices.Contains(left, id) {
				continue
			}
			if derr := s.oc.WaitDeleted(dctx, id); derr != nil {
				s.log.Error("an import that failed left a load balancer it created", "load_balancer", id, "err", derr)
				left = append(left, id)
			}
		}
		if len(left) > 0 {
			return withSuffix(err, fmt.Sprintf(" (the load balancers this apply created are deleted, but %s could not be: delete them by hand)", strings.Join(left, ", ")))
		}
		return withSuffix(err, fmt.Sprintf(" (the %d load balancer(s) this apply created before are deleted)", len(created)))
	}
	for _, st := range steps {
		start := time.Now()
		switch {
		case st.create:
			spec := st.spec
			if rid != "" { // found again by a retry if this process dies before its record
				spec.Tags = append(slices.Clone(spec.Tags), RequestTagPrefix+rid)
			}
			t, _, err := s.build(ctx, spec)
			if err != nil {
				return nil, undo(err)
			}
			st.id = t.LoadBalancer.ID
			created = append(created, st.id)
		case len(st.changes) > 0:
			if err := s.converge(ctx, st); err != nil {
				return nil, undo(err)
			}
		}
		st.seconds = time.Since(start).Seconds()
		s.log.Info("import applied", "load_balancer", st.id, "display_name", st.spec.Name, "changes", len(st.changes), "seconds", st.seconds)
	}
	return results(steps), nil
}

// converge changes one load balancer to its spec under its lock, planned again
// under the lock (an UpdateLoadBalancer may have changed it since).
func (s *Server) converge(ctx context.Context, st *importStep) error {
	unlock, err := s.lock(ctx, keys.LBLock(st.id))
	if err != nil {
		return err
	}
	defer unlock()
	what := fmt.Sprintf("converge load balancer %s (%s)", st.spec.Name, st.id)
	if _, err := s.oc.WaitReady(ctx, st.id, nil); err != nil {
		return toStatus(what, err)
	}
	ch, err := s.oc.Converge(ctx, st.id, st.spec, true)
	st.changes = ch
	if err != nil {
		return toStatus(fmt.Sprintf("%s after %d change(s)", what, len(ch)), err)
	}
	if _, err := s.oc.WaitReady(ctx, st.id, nil); err != nil {
		return toStatus(what, err)
	}
	return nil
}

// withSuffix adds s to a status error's message.
func withSuffix(err error, s string) error {
	st, _ := status.FromError(err)
	p := st.Proto()
	p.Message += s
	return status.FromProto(p).Err()
}

func results(steps []*importStep) []*lbaasv1.AppliedLoadBalancer {
	var out []*lbaasv1.AppliedLoadBalancer
	for _, st := range steps {
		a := &lbaasv1.AppliedLoadBalancer{DisplayName: st.spec.Name, Seconds: st.seconds}
		if st.id != "" {
			a.Name = namePrefix + st.id
		}
		switch {
		case st.create || st.resumed:
			a.Action = lbaasv1.ApplyAction_APPLY_ACTION_CREATE
		case len(st.changes) > 0:
			a.Action = lbaasv1.ApplyAction_APPLY_ACTION_CONVERGE
		default:
			a.Action = lbaasv1.ApplyAction_APPLY_ACTION_UNCHANGED
		}
		for _, c := range st.changes {
			a.Changes = append(a.Changes, c.String())
		}
		out = append(out, a)
	}
	return out
}
