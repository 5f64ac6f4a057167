package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"

	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
)

// ErrMoveRefused is a move that cannot run as asked (the error says why).
var ErrMoveRefused = errors.New("bridge: move refused")

// Move moves ip from the workload's port in the old network to a port in the new
// network. At no moment is the address free in either cloud, so neither can hand it
// to anyone else: in the new cloud the reservation port holding it is turned into
// the workload's port (one update: name, owner, state, MAC); in the old cloud the
// workload's port is turned into a reservation (one update). Both are updates of a
// port that keeps the address, never a delete followed by a create. Moving again is
// harmless: it returns the ports as they are.
func (e *Engine) Move(ctx context.Context, b *netbridgev1.Bridge, req *netbridgev1.MoveAddressRequest) (*netbridgev1.MoveAddressResponse, error) {
	a, err := netip.ParseAddr(req.GetIpAddress())
	if err != nil {
		return nil, fmt.Errorf("%w: ip_address %q: %v", ErrMoveRefused, req.GetIpAddress(), err)
	}
	o, n, err := e.sides(ctx, b)
	if err != nil {
		return nil, err
	}
	id := bridgeID(b)
	osub, err := oldSubnet(ctx, o, b)
	if err != nil {
		return nil, err
	}
	nets, err := ourNetworks(ctx, n, id)
	if err != nil {
		return nil, err
	}
	nn := findNet(nets, b.GetNew().GetNetworkName())
	if nn == nil && len(nets) == 1 {
		nn = &nets[0]
	}
	if nn == nil {
		return nil, fmt.Errorf("%w: the bridge's new network is not there: apply the bridge first", ErrMoveRefused)
	}
	ops, err := listPorts(ctx, o, ports.ListOpts{NetworkID: osub.NetworkID, FixedIPs: []ports.FixedIPOpts{{IPAddress: a.String()}}})
	if err != nil {
		return nil, err
	}
	oldHolders := holders(ops, osub.ID)[a]
	newPorts, err := listPorts(ctx, n, ports.ListOpts{NetworkID: nn.ID, FixedIPs: []ports.FixedIPOpts{{IPAddress: a.String()}}})
	if err != nil {
		return nil, err
	}
	resp := &netbridgev1.MoveAddressResponse{}
	var oldPort *ports.Port
	for i := range oldHolders {
		if !reserved(oldHolders[i], id) {
			oldPort = &oldHolders[i]
		}
	}
	var newPort *ports.Port
	for i := range newPorts {
		newPort = &newPorts[i]
	}
	if oldPort == nil {
		if newPort != nil && newPort.Description == MovedMarker(id) && len(oldHolders) > 0 {
			resp.NewPortId, resp.OldPortId = newPort.ID, oldHolders[0].ID
			resp.Steps = append(resp.Steps, fmt.Sprintf("%s was moved before: new port %s, old reservation %s", a, newPort.ID, oldHolders[0].ID))
			return resp, nil
		}
		return nil, fmt.Errorf("%w: no port holds %s in the old network %s", ErrMoveRefused, a, osub.NetworkID)
	}
	if err := e.stopped(ctx, o, oldPort); err != nil {
		return nil, err
	}
	if newPort != nil && !reserved(*newPort, id) && newPort.Description != MovedMarker(id) {
		return nil, fmt.Errorf("%w: port %s (%s) already holds %s in the new cloud", ErrMoveRefused, newPort.ID, newPort.Name, a)
	}
	name := req.GetPortName()
	if name == "" {
		name = oldPort.Name
	}
	// 1. The new cloud: the reservation becomes the workload's port (or, where no
	// reservation holds the address, a port is made with it).
	up, moved := true, MovedMarker(id)
	if newPort == nil {
		opts := ports.CreateOpts{Name: name, Description: moved, NetworkID: nn.ID, ProjectID: n.Project, AdminStateUp: &up,
			FixedIPs: []ports.IP{{IPAddress: a.String()}}}
		if req.GetKeepMac() {
			opts.MACAddress = oldPort.MACAddress
		}
		p, err := ports.Create(ctx, n.Network, opts).Extract()
		if err != nil {
			return nil, fmt.Errorf("create the new cloud's port with %s: %w", a, err)
		}
		newPort = p
		resp.Steps = append(resp.Steps, fmt.Sprintf("new cloud: port %s created with %s (no reservation held it)", p.ID, a))
	} else if newPort.Description != moved {
		owner := ""
		opts := ports.UpdateOpts{Name: &name, Description: &moved, DeviceOwner: &owner, AdminStateUp: &up}
		if req.GetKeepMac() {
			opts.MACAddress = &oldPort.MACAddress
		}
		p, err := ports.Update(ctx, n.Network, newPort.ID, opts).Extract()
		if err != nil {
			return nil, fmt.Errorf("turn the new cloud's reservation %s into the workload's port: %w", newPort.ID, err)
		}
		newPort = p
		resp.Steps = append(resp.Steps, fmt.Sprintf("new cloud: reservation %s is now the workload's port %q (address held throughout)", p.ID, name))
	}
	// 2. The old cloud: the workload's port becomes a reservation.
	rname, marker, owner, dev, down := "hikkoshi-reserve-"+a.String(), Marker(id), ReservedOwner, "", false
	if _, err := ports.Update(ctx, o.Network, oldPort.ID, ports.UpdateOpts{
		Name: &rname, Description: &marker, DeviceOwner: &owner, DeviceID: &dev, AdminStateUp: &down,
	}).Extract(); err != nil {
		return nil, fmt.Errorf("turn the old port %s into a reservation (the new port %s holds %s already): %w", oldPort.ID, newPort.ID, a, err)
	}
	resp.Steps = append(resp.Steps, fmt.Sprintf("old cloud: port %s (was %q) is now a reservation of %s (address held throughout)", oldPort.ID, oldPort.Name, a))
	resp.NewPortId, resp.OldPortId = newPort.ID, oldPort.ID
	return resp, nil
}

// stopped refuses to move the address of a port whose server still runs.
func (e *Engine) stopped(ctx context.Context, o *Side, p *ports.Port) error {
	if !strings.HasPrefix(p.DeviceOwner, "compute:") || p.DeviceID == "" {
		return nil
	}
	s, err := servers.Get(ctx, o.Compute, p.DeviceID).Extract()
	if notFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("old server %s of port %s: %w", p.DeviceID, p.ID, err)
	}
	if !slices.Contains([]string{"SHUTOFF", "SUSPENDED", "SHELVED", "SHELVED_OFFLOADED"}, s.Status) {
		return fmt.Errorf("%w: server %s (%s) on port %s is %s: stop it first (the converter does)", ErrMoveRefused, s.Name, s.ID, p.ID, s.Status)
	}
	return nil
}
