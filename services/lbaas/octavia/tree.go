package octavia

import (
	"context"
	"fmt"

	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/listeners"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/monitors"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/pools"
)

// Tree is a load balancer with everything under it, each with its statuses.
type Tree struct {
	LoadBalancer LoadBalancer
	Listeners    []ListenerTree
}

// ListenerTree is a listener with its default pool.
type ListenerTree struct {
	Listener listeners.Listener
	Pool     *PoolTree
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
	for _, l := range ls {
		lt := ListenerTree{Listener: l}
		for _, p := range ps {
			if p.ID != l.DefaultPoolID {
				continue
			}
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
			lt.Pool = pt
		}
		t.Listeners = append(t.Listeners, lt)
	}
	return t, nil
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
// (type). An empty list means the tree is whole. A create interrupted part way (an
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
	return out
}
