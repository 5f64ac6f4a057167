package bridge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
)

// Parallel is how many reservations an apply makes at once.
const Parallel = 4

// ErrConflicts is a plan with conflicts: nothing is applied.
var ErrConflicts = errors.New("bridge: the plan has conflicts")

func bridgeID(b *netbridgev1.Bridge) string { return strings.TrimPrefix(b.GetName(), "bridges/") }

// Apply makes p's changes in order (a group of reservations Parallel at a time) and
// calls record after each step or group with the resource(s) made, so that the
// bridge's record follows. It stops at the first failure; applying a new plan
// then goes on from what exists.
func (p *Planned) Apply(ctx context.Context, record func(context.Context, []*netbridgev1.Resource) error) ([]*netbridgev1.Change, error) {
	if len(p.Plan.GetConflicts()) > 0 {
		return nil, ErrConflicts
	}
	var done []*netbridgev1.Change
	for i := 0; i < len(p.steps); {
		j := i + 1
		for p.steps[i].group != "" && j < len(p.steps) && p.steps[j].group == p.steps[i].group {
			j++
		}
		batch := p.steps[i:j]
		made := make([]*netbridgev1.Resource, len(batch))
		errs := make([]error, len(batch))
		var wg sync.WaitGroup
		sem := make(chan struct{}, Parallel)
		for k, s := range batch {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				made[k], errs[k] = s.do(ctx)
			}()
		}
		wg.Wait()
		var rec []*netbridgev1.Resource
		for k, r := range made {
			if r != nil {
				rec = append(rec, r)
			}
			if errs[k] == nil {
				done = append(done, batch[k].change)
			}
		}
		if err := record(context.WithoutCancel(ctx), rec); err != nil {
			return done, err
		}
		if err := errors.Join(errs...); err != nil {
			return done, err
		}
		i = j
	}
	return done, nil
}

// Rollback deletes what b's applies made, in both clouds, and restores the old
// subnet's pools and the old router's routes. It finds the resources by their
// marker as well as by b's record, so a resource whose creation was never recorded
// goes too. A bridge whose addresses were moved is refused (move them back first).
func (e *Engine) Rollback(ctx context.Context, b *netbridgev1.Bridge) ([]*netbridgev1.Change, error) {
	o, n, err := e.sides(ctx, b)
	if err != nil {
		return nil, err
	}
	id := bridgeID(b)
	var undone []*netbridgev1.Change
	var errs []error
	note := func(key, side, kind, format string, args ...any) {
		undone = append(undone, change(key, "delete", side, kind, format, args...))
	}
	nets, err := ourNetworks(ctx, n, id)
	if err != nil {
		return nil, err
	}
	// New side: moved addresses stop the rollback; then routers, ports, subnets, networks.
	var newPorts []ports.Port
	for _, nw := range nets {
		ps, err := listPorts(ctx, n, ports.ListOpts{NetworkID: nw.ID})
		if err != nil {
			return nil, err
		}
		for _, pt := range ps {
			if pt.Description == MovedMarker(id) {
				return nil, fmt.Errorf("%w: address %v was moved to port %s in the new cloud; move it back (MoveAddressBack) before rolling back", ErrMoved, pt.FixedIPs, pt.ID)
			}
		}
		newPorts = append(newPorts, ps...)
	}
	rs, err := ourRouters(ctx, n, id)
	if err != nil {
		return nil, err
	}
	for _, r := range rs {
		if r.GatewayInfo.NetworkID != "" {
			if _, err := routers.Update(ctx, n.Network, r.ID, routers.UpdateOpts{GatewayInfo: &routers.GatewayInfo{}}).Extract(); err != nil {
				errs = append(errs, fmt.Errorf("clear the router's gateway: %w", err))
			} else {
				note("new/router_gateway", "new", "router_gateway", "router %s: gateway cleared", r.Name)
			}
		}
		ifs, _ := listPorts(ctx, n, ports.ListOpts{DeviceID: r.ID, DeviceOwner: "network:router_interface"})
		for _, pt := range ifs {
			if _, err := routers.RemoveInterface(ctx, n.Network, r.ID, routers.RemoveInterfaceOpts{PortID: pt.ID}).Extract(); err != nil && !notFound(err) {
				errs = append(errs, fmt.Errorf("remove the router's interface: %w", err))
			} else {
				note("new/router_interface", "new", "router_interface", "router %s: interface %v removed", r.Name, pt.FixedIPs)
			}
		}
		if err := routers.Delete(ctx, n.Network, r.ID).ExtractErr(); err != nil && !notFound(err) {
			errs = append(errs, fmt.Errorf("delete the router: %w", err))
		} else {
			note("new/router", "new", "router", "router %s deleted", r.Name)
		}
	}
	errs = append(errs, deleteReservations(ctx, n, id, newPorts, &undone))
	for _, nw := range nets {
		if err := networks.Delete(ctx, n.Network, nw.ID).ExtractErr(); err != nil && !notFound(err) {
			errs = append(errs, fmt.Errorf("delete network %s: %w", nw.Name, err))
		} else {
			note("new/network", "new", "network", "network %s and its subnets deleted", nw.Name)
		}
	}
	// Old side: reservations, the route, the pools.
	ops, err := listPorts(ctx, o, ports.ListOpts{NetworkID: b.GetOld().GetNetworkId(), Description: Marker(id)})
	if err != nil {
		return undone, errors.Join(append(errs, err)...)
	}
	errs = append(errs, deleteReservations(ctx, o, id, ops, &undone))
	if orid := b.GetOld().GetRouterId(); orid != "" && b.GetRouted() != nil {
		if or, err := routers.Get(ctx, o.Network, orid).Extract(); err == nil {
			keep := slices.DeleteFunc(slices.Clone(or.Routes), func(r routers.Route) bool {
				return r.DestinationCIDR == b.GetRouted().GetCidr() && r.NextHop == b.GetRouted().GetGatewayIp()
			})
			if len(keep) != len(or.Routes) {
				if _, err := routers.Update(ctx, o.Network, orid, routers.UpdateOpts{Routes: &keep}).Extract(); err != nil {
					errs = append(errs, fmt.Errorf("remove the old router's route: %w", err))
				} else {
					note("old/router_route", "old", "router_route", "old router %s: route to %s removed", or.Name, b.GetRouted().GetCidr())
				}
			}
		} else if !notFound(err) {
			errs = append(errs, err)
		}
	}
	if sp := b.GetSplit(); sp != nil && len(sp.GetOriginalPools()) > 0 {
		osub, err := oldSubnet(ctx, o, b)
		if err == nil && !slices.Equal(poolStrings(osub.AllocationPools), sp.GetOriginalPools()) {
			_, err = subnets.Update(ctx, o.Network, osub.ID, subnets.UpdateOpts{AllocationPools: poolsOf(sp.GetOriginalPools())}).Extract()
			if err == nil {
				note("old/subnet_pools", "old", "subnet_pools", "old subnet pools restored to %v", sp.GetOriginalPools())
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("restore the old pools: %w", err))
		}
	}
	return undone, errors.Join(errs...)
}

// ErrMoved refuses a rollback while an address is moved.
var ErrMoved = errors.New("bridge: addresses are moved")

func deleteReservations(ctx context.Context, s *Side, id string, ps []ports.Port, undone *[]*netbridgev1.Change) error {
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	sem := make(chan struct{}, Parallel)
	n := 0
	for _, pt := range ps {
		if !reserved(pt, id) {
			continue
		}
		n++
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := deletePort(ctx, s, pt.ID); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if n > 0 {
		*undone = append(*undone, change(s.Name+"/reserve", "delete", s.Name, "port", "%d reservation port(s) deleted", n-len(errs)))
	}
	return errors.Join(errs...)
}
