package octavia

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hikkoshi/hikkoshi/platform/poll"
)

// StuckError is a load balancer that is ACTIVE while objects under it stay PENDING_*.
// Octavia then refuses every change to them (409 "immutable"); only a cascade delete
// clears it. Seen with single-call creates when the provider's worker reads the load
// balancer before the API has committed its children (the API casts before it
// commits): the listeners are never built and stay PENDING_CREATE. The same symptom
// is reported for the OVN provider (cloud-provider-openstack issue 2165).
type StuckError struct {
	ID      string
	Objects []string // "listener <id> PENDING_CREATE", ...
}

func (e *StuckError) Error() string {
	return fmt.Sprintf("load balancer %s is ACTIVE but %s: delete it (cascade) and create it again", e.ID, strings.Join(e.Objects, ", "))
}

// settlePolls is how many times WaitReady looks at the tree after the load balancer
// is ACTIVE before it calls pending children stuck (Octavia marks them ACTIVE in the
// same flow, so a healthy tree is ACTIVE at the first look).
const settlePolls = 3

// WaitReady waits until the load balancer is ACTIVE (see WaitActive) and every object
// under it is ACTIVE too, and returns the tree. Children left PENDING_* under an
// ACTIVE load balancer give a *StuckError.
func (c *Client) WaitReady(ctx context.Context, id string, observe func(*LoadBalancer)) (*Tree, error) {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	for attempt := 0; ; attempt++ {
		if _, err := c.waitActive(ctx, id, observe); err != nil {
			return nil, err
		}
		t, err := c.Show(ctx, id)
		if err != nil {
			return nil, err
		}
		pending := t.Pending()
		if len(pending) == 0 {
			return t, nil
		}
		if attempt+1 >= settlePolls {
			return t, &StuckError{ID: id, Objects: pending}
		}
		if err := poll.Sleep(ctx, c.backoff.Pause(attempt)); err != nil {
			return t, err
		}
	}
}

// Pending lists the objects of the tree whose provisioning status is not ACTIVE.
func (t *Tree) Pending() []string {
	var out []string
	add := func(kind, id, status string) {
		if status != "ACTIVE" {
			out = append(out, kind+" "+id+" "+status)
		}
	}
	pool := func(p *PoolTree) {
		add("pool", p.Pool.ID, p.Pool.ProvisioningStatus)
		for _, m := range p.Members {
			add("member", m.ID, m.ProvisioningStatus)
		}
		if p.Monitor != nil {
			add("monitor", p.Monitor.ID, p.Monitor.ProvisioningStatus)
		}
	}
	for _, l := range t.Listeners {
		add("listener", l.Listener.ID, l.Listener.ProvisioningStatus)
		if p := l.Pool; p != nil && !slices.Contains(t.Pools, p) {
			pool(p) // a tree built by hand, without Pools
		}
		for _, pol := range l.Policies {
			add("l7policy", pol.ID, pol.ProvisioningStatus)
		}
	}
	for _, p := range t.Pools {
		pool(p)
	}
	return out
}

// stuckAttempts is how many serial creates CreateReady tries after a create left
// objects stuck (each one is deleted with cascade before the next).
const stuckAttempts = 3

// CreateReady creates the load balancer (see Create) and waits until it and every
// object under it is ACTIVE. If a create leaves objects stuck (see StuckError), it
// deletes the load balancer (cascade) and builds it again serially, up to
// stuckAttempts times; after a stuck single-call create this client creates serially
// from then on. observe sees each status (may be nil).
func (c *Client) CreateReady(ctx context.Context, spec Spec, observe func(*LoadBalancer)) (*Created, *Tree, error) {
	ctx, cancel := c.withDeadline(ctx)
	defer cancel()
	created, err := c.Create(ctx, spec)
	var t *Tree
	if err == nil {
		t, err = c.WaitReady(ctx, created.LoadBalancer.ID, observe)
	}
	var stuck *StuckError
	for attempt := 0; errors.As(err, &stuck) && attempt < stuckAttempts; attempt++ {
		if created != nil {
			// Created but stuck afterwards: ours to delete. (A serial create that
			// failed part way has deleted its load balancer already.)
			if created.Mode == SingleCall {
				c.mu.Lock()
				c.serial = true
				c.mu.Unlock()
			}
			if derr := c.Delete(ctx, created.LoadBalancer.ID); derr != nil && !IsNotFound(derr) {
				return created, t, fmt.Errorf("%w; deleting it failed too: %v", stuck, derr)
			}
		}
		var lb *LoadBalancer
		lb, err = c.createSerially(ctx, spec)
		if err != nil {
			created, t, err = nil, nil, fmt.Errorf("after a stuck create (%v): %w", stuck, err)
			continue
		}
		created = &Created{LoadBalancer: lb, Mode: SerialAfterStuck}
		t, err = c.WaitReady(ctx, lb.ID, observe)
	}
	return created, t, err
}
