package octavia

import (
	"context"
	"fmt"
	"slices"

	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/l7policies"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/listeners"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/monitors"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/pools"
)

// Tree is a load balancer with everything under it, each with its statuses.
type Tree struct {
	LoadBalancer LoadBalancer
	Listeners    []ListenerTree
	// Pools are every pool of the load balancer (a listener's default pool is
	// one of them too).
	Pools []*PoolTree
}

// ListenerTree is a listener with its default pool and L7 policies (in order,
// with their rules).
type ListenerTree struct {
	Listener listeners.Listener
	Pool     *PoolTree
	Policies []l7policies.L7Policy
}

// PoolTree is a pool with its members and health monitor.
type PoolTree struct {
	Pool    pools.Pool
	Members []Member
	Monitor *monitors.Monitor
}

// Show returns the load balancer's whole tree. (Octavia's own status tree,
// GET /loadbalancers/{id}/status, lacks the monitor and the protocols; this reads
// the objects themselves: the load balancer, its listeners, its pools, and per pool
// its members and monitor.)
func (c *Client) Show(ctx context.Context, id string) (*Tree, error) {
	lb, err := c.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	var ls []listeners.Listener
	err = c.retry(ctx, "", func() error {
		pages, err := listeners.List(c.sc, listeners.ListOpts{LoadbalancerID: id}).AllPages(ctx)
		if err != nil {
			return err
		}
		if ls, err = listeners.ExtractListeners(pages); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ps, err := c.Pools(ctx, id)
	if err != nil {
		return nil, err
	}
	t := &Tree{LoadBalancer: *lb}
	for _, p := range ps {
		members, err := c.Members(ctx, p.ID)
		if err != nil {
			return nil, err
		}
		pt := &PoolTree{Pool: p, Members: members}
		if p.MonitorID != "" {
			err := c.retry(ctx, "", func() (err error) {
				pt.Monitor, err = monitors.Get(ctx, c.sc, p.MonitorID).Extract()
				return err
			})
			if err != nil {
				return nil, err
			}
		}
		t.Pools = append(t.Pools, pt)
	}
	for _, l := range ls {
		lt := ListenerTree{Listener: l}
		for _, pt := range t.Pools {
			if pt.Pool.ID == l.DefaultPoolID {
				lt.Pool = pt
			}
		}
		if len(l.L7Policies) > 0 {
			err := c.retry(ctx, "", func() error {
				pages, err := l7policies.List(c.sc, l7policies.ListOpts{ListenerID: l.ID}).AllPages(ctx)
				if err != nil {
					return err
				}
				lt.Policies, err = l7policies.ExtractL7Policies(pages)
				return err
			})
			if err != nil {
				return nil, err
			}
			slices.SortFunc(lt.Policies, func(a, b l7policies.L7Policy) int { return int(a.Position) - int(b.Position) })
			// A policy lists its rules by ID only: each policy's rules are read whole.
			for i := range lt.Policies {
				err := c.retry(ctx, "", func() error {
					pages, err := l7policies.ListRules(c.sc, lt.Policies[i].ID, l7policies.ListRulesOpts{}).AllPages(ctx)
					if err != nil {
						return err
					}
					lt.Policies[i].Rules, err = l7policies.ExtractRules(pages)
					return err
				})
				if err != nil {
					return nil, err
				}
			}
		}
		t.Listeners = append(t.Listeners, lt)
	}
	return t, nil
}

// Pool returns the tree's pool of that name, or nil.
func (t *Tree) Pool(name string) *PoolTree {
	for _, p := range t.Pools {
		if p.Pool.Name == name {
			return p
		}
	}
	return nil
}

// Pools lists a load balancer's pools.
func (c *Client) Pools(ctx context.Context, lbID string) ([]pools.Pool, error) {
	var out []pools.Pool
	err := c.retry(ctx, "", func() error {
		pages, err := pools.List(c.sc, pools.ListOpts{LoadbalancerID: lbID}).AllPages(ctx)
		if err != nil {
			return err
		}
		out, err = pools.ExtractPools(pages)
		return err
	})
	return out, err
}

// Missing lists what of spec the tree lacks: a listener (protocol and port), its
// default pool (protocol), a member (address and port), a pool's health monitor
// (type), a pool of Spec.Pools (name and protocol), an L7 policy (action, and the
// pool it sends to). An empty list means the tree is whole. A create interrupted part way (an
// Octavia API restart, a process killed) leaves a load balancer that is ACTIVE but
// not whole; it must not be taken for the one asked for.
func Missing(t *Tree, spec Spec) []string {
	var out []string
	for i, ls := range spec.Listeners {
		var lt *ListenerTree
		for j := range t.Listeners {
			l := &t.Listeners[j]
			if l.Listener.Protocol == ls.Protocol && l.Listener.ProtocolPort == ls.Port {
				lt = l
			}
		}
		field := fmt.Sprintf("listeners[%d]", i)
		if lt == nil {
			out = append(out, fmt.Sprintf("%s (%s:%d)", field, ls.Protocol, ls.Port))
			continue
		}
		for j, pol := range ls.L7Policies {
			pf := fmt.Sprintf("%s.l7_policies[%d]", field, j)
			if j >= len(lt.Policies) || string(lt.Policies[j].Action) != pol.Action {
				out = append(out, fmt.Sprintf("%s (%s)", pf, pol.Action))
				continue
			}
			if pol.RedirectPool != "" {
				if p := t.Pool(pol.RedirectPool); p == nil || p.Pool.ID != lt.Policies[j].RedirectPoolID {
					out = append(out, fmt.Sprintf("%s.redirect_pool (%s)", pf, pol.RedirectPool))
				}
			}
			if len(lt.Policies[j].Rules) < len(pol.Rules) {
				out = append(out, fmt.Sprintf("%s.rules (%d of %d)", pf, len(lt.Policies[j].Rules), len(pol.Rules)))
			}
		}
		if ls.DefaultPool != "" && (lt.Pool == nil || lt.Pool.Pool.Name != ls.DefaultPool) {
			out = append(out, fmt.Sprintf("%s.default_pool (%s)", field, ls.DefaultPool))
		}
		if ls.Pool == nil {
			continue
		}
		if lt.Pool == nil || lt.Pool.Pool.Protocol != ls.Pool.Protocol {
			out = append(out, fmt.Sprintf("%s.pool (%s)", field, ls.Pool.Protocol))
			continue
		}
		for k, ms := range ls.Pool.Members {
			found := false
			for _, m := range lt.Pool.Members {
				found = found || m.Address == ms.Address && m.ProtocolPort == ms.Port
			}
			if !found {
				out = append(out, fmt.Sprintf("%s.pool.members[%d] (%s:%d)", field, k, ms.Address, ms.Port))
			}
		}
		if ls.Pool.Monitor != nil && (lt.Pool.Monitor == nil || lt.Pool.Monitor.Type != ls.Pool.Monitor.Type) {
			out = append(out, fmt.Sprintf("%s.pool.health_monitor (%s)", field, ls.Pool.Monitor.Type))
		}
	}
	for i, ps := range spec.Pools {
		field := fmt.Sprintf("pools[%d]", i)
		pt := t.Pool(ps.Name)
		if pt == nil || pt.Pool.Protocol != ps.Protocol {
			out = append(out, fmt.Sprintf("%s (%s %s)", field, ps.Name, ps.Protocol))
			continue
		}
		for k, ms := range ps.Members {
			if !slices.ContainsFunc(pt.Members, func(m Member) bool { return m.Address == ms.Address && m.ProtocolPort == ms.Port }) {
				out = append(out, fmt.Sprintf("%s.members[%d] (%s:%d)", field, k, ms.Address, ms.Port))
			}
		}
		if ps.Monitor != nil && (pt.Monitor == nil || pt.Monitor.Type != ps.Monitor.Type) {
			out = append(out, fmt.Sprintf("%s.health_monitor (%s)", field, ps.Monitor.Type))
		}
	}
	return out
}
