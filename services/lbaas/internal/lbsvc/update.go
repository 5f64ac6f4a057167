package lbsvc

import (
	"context"
	"fmt"

	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/pools"
	"google.golang.org/grpc/codes"

	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/services/lbaas/octavia"
)

// UpdateLoadBalancer implements LoadBalancerService. It holds the load balancer's
// etcd lock for the whole list of changes, so another replica's changes to the same
// load balancer wait instead of meeting Octavia's 409.
func (s *Server) UpdateLoadBalancer(ctx context.Context, req *lbaasv1.UpdateLoadBalancerRequest) (*lbaasv1.UpdateLoadBalancerResponse, error) {
	id, _ := parseName(req.GetName())
	what := "update " + req.GetName()
	unlock, err := s.lock(ctx, keys.LBLock(id))
	if err != nil {
		return nil, err
	}
	defer unlock()
	lb, err := s.oc.Get(ctx, id)
	if err != nil {
		return nil, toStatus(what, err)
	}
	if lb.ProvisioningStatus == "ERROR" {
		return nil, apierr.New(codes.FailedPrecondition, ReasonError,
			"%s: the load balancer is in ERROR and cannot be changed: delete it (cascade) and create it again", what)
	}
	ps, err := s.oc.Pools(ctx, id)
	if err != nil {
		return nil, toStatus(what, err)
	}
	resp := &lbaasv1.UpdateLoadBalancerResponse{}
	for i, c := range req.GetMemberChanges() {
		f := fmt.Sprintf("member_changes[%d]", i)
		pool, err := pickPool(ps, c.GetPool(), f+".pool")
		if err == nil {
			var result string
			result, err = s.apply(ctx, id, pool, c, f)
			if err == nil {
				s.metrics.memberChanges.WithLabelValues(resultWord(result)).Inc()
				resp.Results = append(resp.Results, result)
				continue
			}
		}
		if i > 0 {
			return nil, apierr.Prefix(toStatus(what, err), fmt.Sprintf("member_changes[0..%d] were applied (%v); %s failed: ", i-1, resp.Results, f))
		}
		return nil, toStatus(what, err)
	}
	t, err := s.oc.Show(ctx, id)
	if err != nil {
		return nil, toStatus(what, err)
	}
	resp.LoadBalancer = treeOf(t)
	return resp, nil
}

// pickPool finds the pool a change names: by ID, by name, or the only pool.
func pickPool(ps []pools.Pool, ref, field string) (*pools.Pool, error) {
	if ref == "" {
		if len(ps) == 1 {
			return &ps[0], nil
		}
		return nil, apierr.InvalidArgument(field, "the load balancer has %d pools: name one (its ID or display name)", len(ps))
	}
	var match []*pools.Pool
	for i := range ps {
		if ps[i].ID == ref || ps[i].Name == ref {
			match = append(match, &ps[i])
		}
	}
	switch len(match) {
	case 0:
		return nil, apierr.New(codes.NotFound, "POOL_NOT_FOUND", "%s: the load balancer has no pool with ID or name %q", field, ref)
	case 1:
		return match[0], nil
	}
	return nil, apierr.InvalidArgument(field, "%d pools are named %q: use the pool's ID", len(match), ref)
}

// apply makes one change, or nothing when it is already true, and says what it did.
func (s *Server) apply(ctx context.Context, lbID string, pool *pools.Pool, c *lbaasv1.MemberChange, f string) (string, error) {
	switch ch := c.GetChange().(type) {
	case *lbaasv1.MemberChange_Add:
		want := memberSpecOf(ch.Add)
		w := 1
		if want.Weight != nil {
			w = *want.Weight
		}
		cur, err := s.oc.FindMember(ctx, pool.ID, want.Address, want.Port)
		switch {
		case err == nil && cur.Weight == w:
			return fmt.Sprintf("unchanged: %s:%d is in pool %s with weight %d", want.Address, want.Port, pool.Name, w), nil
		case err == nil:
			if _, err := s.oc.SetMemberWeight(ctx, lbID, pool.ID, cur.ID, w); err != nil {
				return "", err
			}
			return fmt.Sprintf("weight set: %s:%d in pool %s from %d to %d", want.Address, want.Port, pool.Name, cur.Weight, w), nil
		case !octavia.IsNotFound(err):
			return "", err
		}
		m, err := s.oc.AddMember(ctx, lbID, pool.ID, want)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("added: %s:%d to pool %s as member %s", m.Address, m.ProtocolPort, pool.Name, m.ID), nil
	case *lbaasv1.MemberChange_Remove:
		cur, err := s.findRef(ctx, pool, ch.Remove, f+".remove")
		if octavia.IsNotFound(err) {
			return fmt.Sprintf("unchanged: %s is not in pool %s", refString(ch.Remove), pool.Name), nil
		}
		if err != nil {
			return "", err
		}
		if err := s.oc.RemoveMember(ctx, lbID, pool.ID, cur.ID); err != nil {
			return "", err
		}
		return fmt.Sprintf("removed: %s:%d (member %s) from pool %s", cur.Address, cur.ProtocolPort, cur.ID, pool.Name), nil
	case *lbaasv1.MemberChange_Drain:
		res, err := s.setWeight(ctx, lbID, pool, ch.Drain, 0, f+".drain")
		if apierr.Reason(err) == ReasonMemberNotFound { // takes no connections either
			return fmt.Sprintf("unchanged: %s is not in pool %s (nothing to drain)", refString(ch.Drain), pool.Name), nil
		}
		return res, err
	case *lbaasv1.MemberChange_SetWeight:
		return s.setWeight(ctx, lbID, pool, ch.SetWeight.GetMember(), int(ch.SetWeight.GetWeight()), f+".set_weight.member")
	}
	return "", apierr.InvalidArgument(f, "empty: set one of add, remove, drain, set_weight")
}

func (s *Server) setWeight(ctx context.Context, lbID string, pool *pools.Pool, ref *lbaasv1.MemberRef, w int, f string) (string, error) {
	cur, err := s.findRef(ctx, pool, ref, f)
	if octavia.IsNotFound(err) {
		return "", apierr.New(codes.NotFound, ReasonMemberNotFound, "%s: pool %s has no member %s", f, pool.Name, refString(ref))
	}
	if err != nil {
		return "", err
	}
	word := "weight set"
	if w == 0 {
		word = "drained"
	}
	if cur.Weight == w {
		return fmt.Sprintf("unchanged: %s:%d in pool %s already has weight %d", cur.Address, cur.ProtocolPort, pool.Name, w), nil
	}
	if _, err := s.oc.SetMemberWeight(ctx, lbID, pool.ID, cur.ID, w); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: %s:%d in pool %s from weight %d to %d", word, cur.Address, cur.ProtocolPort, pool.Name, cur.Weight, w), nil
}

func (s *Server) findRef(ctx context.Context, pool *pools.Pool, ref *lbaasv1.MemberRef, f string) (*octavia.Member, error) {
	if ref.GetId() == "" {
		return s.oc.FindMember(ctx, pool.ID, ref.GetAddress(), int(ref.GetPort()))
	}
	list, err := s.oc.Members(ctx, pool.ID)
	if err != nil {
		return nil, err
	}
	for i := range list {
		if list[i].ID == ref.GetId() {
			return &list[i], nil
		}
	}
	return nil, fmt.Errorf("%s: pool %s has no member %s: %w", f, pool.ID, ref.GetId(), octavia.ErrNotFound)
}

func refString(r *lbaasv1.MemberRef) string {
	if r.GetId() != "" {
		return "member " + r.GetId()
	}
	return fmt.Sprintf("%s:%d", r.GetAddress(), r.GetPort())
}

// resultWord is the first word of a result, for the metric's label.
func resultWord(result string) string {
	for _, w := range []string{"added", "weight set", "removed", "drained", "unchanged"} {
		if len(result) >= len(w) && result[:len(w)] == w {
			return w
		}
	}
	return "other"
}
