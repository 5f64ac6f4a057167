package octavia

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/l7policies"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/listeners"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/loadbalancers"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/monitors"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/pools"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/hikkoshi/hikkoshi/platform/poll"
)

// LoadBalancer is Octavia's load balancer object.
type LoadBalancer = loadbalancers.LoadBalancer

// CreateMode says how Create built a load balancer.
type CreateMode string

const (
	// SingleCall is Octavia's fully populated create: one POST with the whole tree.
	SingleCall CreateMode = "single-call"
	// Serial is one POST per object, each after the load balancer is ACTIVE again.
	Serial CreateMode = "serial"
	// SerialAfterStuck is a serial create after a single-call create left children
	// stuck PENDING_* (see StuckError) and was deleted.
	SerialAfterStuck CreateMode = "serial-after-stuck-single-call"
)

// Created is what Create made.
type Created struct {
	LoadBalancer *LoadBalancer
	Mode         CreateMode
}

// Create checks spec (see Check), then creates the load balancer: in one call when
// the provider supports it (a 501 from the provider falls back), serially otherwise.
// A serial create waits for ACTIVE after each object; if it fails part way, the load
// balancer is deleted with cascade so nothing is left behind. Create returns once
// Octavia has accepted the whole tree; the load balancer may still be PENDING_CREATE
// (use WaitActive).
func (c *Client) Create(ctx context.Context, spec Spec) (*Created, error) {
	if err := c.Check(ctx, spec); err != nil {
		return nil, err
	}
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	c.mu.Lock()
	serial := c.serial
	c.mu.Unlock()
	if !serial {
		var lb *LoadBalancer
		err := c.retry(ctx, "", func() (err error) {
			lb, err = loadbalancers.Create(ctx, c.sc, c.fullyPopulated(spec)).Extract()
			return err
		})
		if err == nil {
			return &Created{LoadBalancer: lb, Mode: SingleCall}, nil
		}
		if !IsNotImplemented(err) {
			return nil, fmt.Errorf("octavia: create load balancer %q: %w", spec.Name, err)
		}
	}
	lb, err := c.createSerially(ctx, spec)
	if err != nil {
		return nil, err
	}
	return &Created{LoadBalancer: lb, Mode: Serial}, nil
}

func (c *Client) tags(extra []string) []string {
	t := slices.Clone(extra)
	if c.owner != "" && !slices.Contains(t, c.owner) {
		t = append(t, c.owner)
	}
	return t
}

func (c *Client) lbOpts(spec Spec) loadbalancers.CreateOpts {
	return loadbalancers.CreateOpts{
		Name: spec.Name, Description: spec.Description, VipSubnetID: spec.VIPSubnetID,
		VipNetworkID: spec.VIPNetworkID, VipAddress: spec.VIPAddress, Provider: spec.Provider,
		Tags: c.tags(spec.Tags),
	}
}

func (c *Client) listenerOpts(l ListenerSpec) listeners.CreateOpts {
	return listeners.CreateOpts{
		Name: l.Name, Protocol: listeners.Protocol(l.Protocol), ProtocolPort: l.Port,
		DefaultTlsContainerRef: l.DefaultTLSContainerRef, ConnLimit: l.ConnectionLimit,
		AllowedCIDRs: l.AllowedCIDRs, Tags: c.tags(nil),
		TimeoutClientData: l.TimeoutClientData, TimeoutMemberConnect: l.TimeoutMemberConnect,
		TimeoutMemberData: l.TimeoutMemberData, TimeoutTCPInspect: l.TimeoutTCPInspect,
		InsertHeaders: l.InsertHeaders, ALPNProtocols: l.ALPNProtocols,
	}
}

func (c *Client) poolOpts(p PoolSpec) pools.CreateOpts {
	method := p.LBMethod
	if method == "" {
		method = "ROUND_ROBIN"
	}
	o := pools.CreateOpts{Name: p.Name, Protocol: pools.Protocol(p.Protocol), LBMethod: pools.LBMethod(method), Tags: c.tags(nil)}
	if sp := p.Persistence; sp != nil {
		o.Persistence = &pools.SessionPersistence{Type: sp.Type, CookieName: sp.CookieName}
	}
	return o
}

// fullPoolOpts is a pool with its members and monitor, for a single-call create.
func (c *Client) fullPoolOpts(p PoolSpec) pools.CreateOpts {
	po := c.poolOpts(p)
	for _, m := range p.Members {
		po.Members = append(po.Members, c.memberOpts(m))
	}
	if p.Monitor != nil {
		mo := c.monitorOpts(*p.Monitor)
		po.Monitor = &mo
	}
	return po
}

func (c *Client) memberOpts(m MemberSpec) pools.CreateMemberOpts {
	o := pools.CreateMemberOpts{
		Name: m.Name, Address: m.Address, ProtocolPort: m.Port, Weight: m.Weight,
		SubnetID: m.SubnetID, Backup: &m.Backup, Tags: c.tags(nil),
		MonitorAddress: m.MonitorAddress, MonitorPort: m.MonitorPort,
	}
	if m.Disabled {
		o.AdminStateUp = new(bool)
	}
	return o
}

func (c *Client) monitorOpts(m MonitorSpec) monitors.CreateOpts {
	return monitors.CreateOpts{
		Type: m.Type, Delay: m.Delay, Timeout: m.Timeout, MaxRetries: m.MaxRetries,
		MaxRetriesDown: m.MaxRetriesDown, HTTPMethod: m.HTTPMethod, URLPath: m.URLPath,
		ExpectedCodes: m.ExpectedCodes, HTTPVersion: m.HTTPVersion, DomainName: m.DomainName, Tags: c.tags(nil),
	}
}

// policyOpts is an L7 policy with its rules, at its position (from 1); a pool it
// redirects to is set by the caller (by ID, or by name in a single-call create).
func (c *Client) policyOpts(p L7PolicySpec, position int) l7policies.CreateOpts {
	o := l7policies.CreateOpts{
		Name: p.Name, Action: l7policies.Action(p.Action), Position: int32(position),
		RedirectURL: p.RedirectURL, RedirectPrefix: p.RedirectPrefix, RedirectHttpCode: int32(p.RedirectHTTPCode),
		Tags: c.tags(nil),
	}
	for _, r := range p.Rules {
		o.Rules = append(o.Rules, l7policies.CreateRuleOpts{
			RuleType: l7policies.RuleType(r.Type), CompareType: l7policies.CompareType(r.CompareType),
			Key: r.Key, Value: r.Value, Invert: r.Invert, Tags: c.tags(nil),
		})
	}
	return o
}

// fullyPopulated is the single-call body: the whole tree under the load balancer.
// Pools of Spec.Pools go at the top, and listeners and policies name them
// (Octavia's graph create resolves a pool given by name alone).
func (c *Client) fullyPopulated(spec Spec) loadbalancers.CreateOptsBuilder {
	g := graphCreate{CreateOpts: c.lbOpts(spec)}
	for _, p := range spec.Pools {
		g.Pools = append(g.Pools, c.fullPoolOpts(p))
	}
	for _, l := range spec.Listeners {
		lo := c.listenerOpts(l)
		if p := l.Pool; p != nil {
			po := c.fullPoolOpts(*p)
			lo.DefaultPool = &po
		}
		var redirect []string
		for j, pol := range l.L7Policies {
			lo.L7Policies = append(lo.L7Policies, c.policyOpts(pol, j+1))
			redirect = append(redirect, pol.RedirectPool)
		}
		g.Listeners = append(g.Listeners, lo)
		g.defaultPools = append(g.defaultPools, l.DefaultPool)
		g.redirectPools = append(g.redirectPools, redirect)
	}
	return g
}

// graphCreate is a single-call create whose listeners and policies name their
// pools ({"name": …}), which gophercloud's types cannot say.
type graphCreate struct {
	loadbalancers.CreateOpts
	defaultPools  []string   // by listener
	redirectPools [][]string // by listener, by policy
}

func (g graphCreate) ToLoadBalancerCreateMap() (map[string]any, error) {
	m, err := g.CreateOpts.ToLoadBalancerCreateMap()
	if err != nil {
		return nil, err
	}
	lb, _ := m["loadbalancer"].(map[string]any)
	ls := objects(lb["listeners"])
	if len(ls) != len(g.defaultPools) {
		return nil, fmt.Errorf("octavia: %d listeners in the body, %d in the spec", len(ls), len(g.defaultPools))
	}
	for i, l := range ls {
		if name := g.defaultPools[i]; name != "" {
			l["default_pool"] = map[string]any{"name": name}
		}
		pols := objects(l["l7policies"])
		for j, name := range g.redirectPools[i] {
			if name != "" && j < len(pols) {
				pols[j]["redirect_pool"] = map[string]any{"name": name}
			}
		}
	}
	return m, nil
}

// objects is a JSON array of objects as gophercloud's request bodies hold them.
func objects(v any) []map[string]any {
	switch l := v.(type) {
	case []map[string]any:
		return l
	case []any:
		out := make([]map[string]any, 0, len(l))
		for _, e := range l {
			if o, ok := e.(map[string]any); ok {
				out = append(out, o)
			}
		}
		return out
	}
	return nil
}

// createSerially creates the load balancer and then each object under it, waiting
// for ACTIVE in between; on failure it deletes the load balancer (cascade).
func (c *Client) createSerially(ctx context.Context, spec Spec) (lb *LoadBalancer, err error) {
	err = c.retry(ctx, "", func() (err error) {
		lb, err = loadbalancers.Create(ctx, c.sc, c.lbOpts(spec)).Extract()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("octavia: create load balancer %q: %w", spec.Name, err)
	}
	defer func() {
		if err != nil {
			// Leave nothing behind; the caller's context may be the reason we stop.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
			defer cancel()
			if derr := c.Delete(cctx, lb.ID); derr != nil && !IsNotFound(derr) {
				err = errors.Join(err, fmt.Errorf("octavia: clean up load balancer %s: %w", lb.ID, derr))
			}
		}
	}()
	unlock := c.lock(lb.ID)
	defer unlock()
	step := func(what string, call func() error) error {
		// The whole tree, not only the load balancer: a parent the provider left
		// PENDING_CREATE under an ACTIVE load balancer refuses children with 409
		// "immutable" forever (see StuckError).
		if _, err := c.WaitReady(ctx, lb.ID, nil); err != nil {
			return err
		}
		if err := c.retry(ctx, lb.ID, call); err != nil {
			return fmt.Errorf("octavia: load balancer %s: create %s: %w", lb.ID, what, err)
		}
		return nil
	}
	poolIDs := map[string]string{}
	for i, p := range spec.Pools {
		id, err := c.createPool(ctx, step, fmt.Sprintf("pools[%d]", i), p, pools.CreateOpts{LoadbalancerID: lb.ID})
		if err != nil {
			return lb, err
		}
		poolIDs[p.Name] = id
	}
	for i, l := range spec.Listeners {
		lo := c.listenerOpts(l)
		lo.LoadbalancerID = lb.ID
		lo.DefaultPoolID = poolIDs[l.DefaultPool]
		var listener *listeners.Listener
		if err := step(fmt.Sprintf("listeners[%d]", i), func() (err error) {
			listener, err = listeners.Create(ctx, c.sc, lo).Extract()
			return err
		}); err != nil {
			return lb, err
		}
		if p := l.Pool; p != nil {
			if _, err := c.createPool(ctx, step, fmt.Sprintf("listeners[%d].pool", i), *p, pools.CreateOpts{ListenerID: listener.ID}); err != nil {
				return lb, err
			}
		}
		for j, pol := range l.L7Policies {
			// The rules one by one: Zed's policy POST fails (500) with rules in it.
			po := c.policyOpts(pol, j+1)
			rules := po.Rules
			po.Rules = nil
			po.ListenerID, po.RedirectPoolID = listener.ID, poolIDs[pol.RedirectPool]
			var policy *l7policies.L7Policy
			field := fmt.Sprintf("listeners[%d].l7_policies[%d]", i, j)
			if err := step(field, func() (err error) {
				policy, err = l7policies.Create(ctx, c.sc, po).Extract()
				return err
			}); err != nil {
				return lb, err
			}
			for k, r := range rules {
				if err := step(fmt.Sprintf("%s.rules[%d]", field, k), func() error {
					return l7policies.CreateRule(ctx, c.sc, policy.ID, r).Err
				}); err != nil {
					return lb, err
				}
			}
		}
	}
	return loadbalancers.Get(ctx, c.sc, lb.ID).Extract()
}

// createPool creates a pool under a listener or a load balancer (where's ID set),
// then its members and monitor, each once the tree is ready; it returns the pool's
// ID.
func (c *Client) createPool(ctx context.Context, step func(string, func() error) error, field string, p PoolSpec, where pools.CreateOpts) (string, error) {
	po := c.poolOpts(p)
	po.ListenerID, po.LoadbalancerID = where.ListenerID, where.LoadbalancerID
	var pool *pools.Pool
	if err := step(field, func() (err error) {
		pool, err = pools.Create(ctx, c.sc, po).Extract()
		return err
	}); err != nil {
		return "", err
	}
	for j, m := range p.Members {
		if err := step(fmt.Sprintf("%s.members[%d]", field, j), func() error {
			return pools.CreateMember(ctx, c.sc, pool.ID, c.memberOpts(m)).Err
		}); err != nil {
			return pool.ID, err
		}
	}
	if p.Monitor != nil {
		mo := c.monitorOpts(*p.Monitor)
		mo.PoolID = pool.ID
		if err := step(field+".monitor", func() error {
			return monitors.Create(ctx, c.sc, mo).Err
		}); err != nil {
			return pool.ID, err
		}
	}
	return pool.ID, nil
}

// Get returns one load balancer.
func (c *Client) Get(ctx context.Context, id string) (*LoadBalancer, error) {
	var lb *LoadBalancer
	err := c.retry(ctx, "", func() (err error) {
		lb, err = loadbalancers.Get(ctx, c.sc, id).Extract()
		return err
	})
	return lb, err
}

func (c *Client) provisioningStatus(ctx context.Context, id string) (string, error) {
	lb, err := loadbalancers.Get(ctx, c.sc, id).Extract()
	if err != nil {
		if IsNotFound(err) {
			return "DELETED", nil
		}
		return "", err
	}
	return lb.ProvisioningStatus, nil
}

// Find returns the load balancer whose ID or name is ref; a name must be unique
// among the load balancers the caller can see.
func (c *Client) Find(ctx context.Context, ref string) (*LoadBalancer, error) {
	lb, err := c.Get(ctx, ref)
	if err == nil || !IsNotFound(err) {
		return lb, err
	}
	list, err := c.List(ctx, loadbalancers.ListOpts{Name: ref})
	if err != nil {
		return nil, err
	}
	switch len(list) {
	case 0:
		return nil, fmt.Errorf("octavia: no load balancer with ID or name %q: %w", ref, ErrNotFound)
	case 1:
		return &list[0], nil
	}
	return nil, fmt.Errorf("octavia: %d load balancers are named %q: use the ID", len(list), ref)
}

// List returns the load balancers opts selects (all pages).
func (c *Client) List(ctx context.Context, opts loadbalancers.ListOpts) ([]LoadBalancer, error) {
	var out []LoadBalancer
	err := c.retry(ctx, "", func() error {
		pages, err := loadbalancers.List(c.sc, opts).AllPages(ctx)
		if err != nil {
			return err
		}
		out, err = loadbalancers.ExtractLoadBalancers(pages)
		return err
	})
	return out, err
}

// ListOwned returns the load balancers carrying the owner tag and every tag in tags.
func (c *Client) ListOwned(ctx context.Context, tags ...string) ([]LoadBalancer, error) {
	return c.List(ctx, loadbalancers.ListOpts{Tags: c.tags(tags)})
}

// Delete deletes a load balancer with everything under it (cascade) and waits until
// it is gone. A load balancer already gone is not an error.
func (c *Client) Delete(ctx context.Context, id string) error {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	if err := c.DeleteAsync(ctx, id); err != nil {
		return err
	}
	return c.WaitDeleted(ctx, id)
}

// DeleteAsync asks for a cascade delete and returns once Octavia accepted it.
func (c *Client) DeleteAsync(ctx context.Context, id string) error {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	unlock := c.lock(id)
	defer unlock()
	err := c.retry(ctx, id, func() error {
		return loadbalancers.Delete(ctx, c.sc, id, loadbalancers.DeleteOpts{Cascade: true}).ExtractErr()
	})
	if IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("octavia: delete load balancer %s: %w", id, err)
	}
	return nil
}

// WaitActive polls until the load balancer is ACTIVE; ERROR (or its disappearance)
// ends the wait with a *StatusError. Each status seen is passed to observe (which may
// be nil). The context's deadline (else the client's timeout) bounds the wait.
func (c *Client) WaitActive(ctx context.Context, id string, observe func(*LoadBalancer)) (*LoadBalancer, error) {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	return c.waitActive(ctx, id, observe)
}

func (c *Client) waitActive(ctx context.Context, id string, observe func(*LoadBalancer)) (*LoadBalancer, error) {
	var lb *LoadBalancer
	err := c.poll(ctx, id, func(got *LoadBalancer) (bool, error) {
		lb = got
		if observe != nil {
			observe(got)
		}
		switch got.ProvisioningStatus {
		case "ACTIVE":
			return true, nil
		case "ERROR", "DELETED":
			return true, &StatusError{id, got.ProvisioningStatus}
		}
		return false, nil
	})
	return lb, err
}

// WaitDeleted polls until the load balancer is gone (404 or DELETED).
func (c *Client) WaitDeleted(ctx context.Context, id string) error {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	return c.poll(ctx, id, func(got *LoadBalancer) (bool, error) {
		if got.ProvisioningStatus == "ERROR" {
			return true, &StatusError{id, got.ProvisioningStatus}
		}
		return got.ProvisioningStatus == "DELETED", nil
	})
}

// Watch calls fn with the load balancer each time its provisioning or operating
// status changes, until it settles (ACTIVE, ERROR or gone) or ctx ends. A load balancer
// that is gone is reported once with status DELETED.
func (c *Client) Watch(ctx context.Context, id string, fn func(*LoadBalancer) error) error {
	var last string
	return c.poll(ctx, id, func(got *LoadBalancer) (bool, error) {
		key := got.ProvisioningStatus + "/" + got.OperatingStatus
		if key != last {
			last = key
			if err := fn(got); err != nil {
				return true, err
			}
		}
		switch got.ProvisioningStatus {
		case "ACTIVE", "ERROR", "DELETED":
			return true, nil
		}
		return false, nil
	})
}

// poll gets the load balancer with backoff until done says stop. A 404 is passed on
// as provisioning status DELETED.
func (c *Client) poll(ctx context.Context, id string, done func(*LoadBalancer) (bool, error)) error {
	last := "unread (no answer yet)"
	for attempt := 0; ; attempt++ {
		lb, err := loadbalancers.Get(ctx, c.sc, id).Extract()
		switch {
		case IsNotFound(err):
			lb, err = &LoadBalancer{ID: id, ProvisioningStatus: "DELETED"}, nil
		case err != nil && isRetryable(err):
			lb = nil
		case err != nil && ctx.Err() != nil:
			return fmt.Errorf("octavia: load balancer %s still %s: %w", id, last, ctx.Err())
		case err != nil:
			return fmt.Errorf("octavia: load balancer %s: %w", id, err)
		}
		if lb != nil {
			last = lb.ProvisioningStatus
			if stop, err := done(lb); stop || err != nil {
				return err
			}
		}
		if poll.Sleep(ctx, c.backoff.Pause(attempt)) != nil {
			return fmt.Errorf("octavia: load balancer %s still %s: %w", id, last, ctx.Err())
		}
	}
}

// isRetryable reports a transient answer: 503, or 409 (an object locked while PENDING_*).
func isRetryable(err error) bool {
	return gophercloud.ResponseCodeIs(err, http.StatusServiceUnavailable) || gophercloud.ResponseCodeIs(err, http.StatusConflict)
}

// ListPage returns one page of the load balancers opts selects: at most opts.Limit,
// after opts.Marker (an ID), in Octavia's order.
func (c *Client) ListPage(ctx context.Context, opts loadbalancers.ListOpts) ([]LoadBalancer, error) {
	var out []LoadBalancer
	err := c.retry(ctx, "", func() error {
		out = nil
		return loadbalancers.List(c.sc, opts).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
			list, err := loadbalancers.ExtractLoadBalancers(p)
			out = list
			return false, err
		})
	})
	return out, err
}

// OwnedListOpts returns list options selecting the load balancers that carry the
// owner tag and every tag in tags.
func (c *Client) OwnedListOpts(tags ...string) loadbalancers.ListOpts {
	return loadbalancers.ListOpts{Tags: c.tags(tags)}
}
