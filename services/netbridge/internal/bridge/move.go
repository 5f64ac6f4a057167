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
	"google.golang.org/protobuf/types/known/timestamppb"

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
// harmless: it returns the ports as they are. Before the first port changes,
// record is given what the old port is (its name, owner, device, state), for
// MoveBack; a move run again after a crash keeps the first record.
func (e *Engine) Move(ctx context.Context, b *netbridgev1.Bridge, req *netbridgev1.MoveAddressRequest, record func(*netbridgev1.MovedAddress) error) (*netbridgev1.MoveAddressResponse, error) {
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
	nn, err := newNetwork(ctx, n, b)
	if err != nil {
		return nil, err
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
	if movedRecord(b, a) == nil {
		if err := record(&netbridgev1.MovedAddress{IpAddress: a.String(), OldPortId: oldPort.ID, OldPortName: oldPort.Name,
			OldPortDescription: oldPort.Description, OldDeviceOwner: oldPort.DeviceOwner, OldDeviceId: oldPort.DeviceID,
			OldAdminStateUp: oldPort.AdminStateUp, NewPortId: portID(newPort), NewPortCreated: newPort == nil, MoveTime: timestamppb.Now()}); err != nil {
			return nil, err
		}
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

func portID(p *ports.Port) string {
	if p == nil {
		return ""
	}
	return p.ID
}

// movedRecord returns the bridge's record of a's move, or nil.
func movedRecord(b *netbridgev1.Bridge, a netip.Addr) *netbridgev1.MovedAddress {
	for _, m := range b.GetMoved() {
		if m.GetIpAddress() == a.String() {
			return m
		}
	}
	return nil
}

// newNetwork finds the bridge's network in the new cloud.
func newNetwork(ctx context.Context, n *Side, b *netbridgev1.Bridge) (*network, error) {
	nets, err := ourNetworks(ctx, n, bridgeID(b))
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
	return nn, nil
}

// MoveBack undoes Move for ip, from the bridge's record of the move: first the old
// port becomes the workload's port again (its name, description, owner, device and
// admin state as recorded), then the new port becomes a reservation again — or is
// deleted, where the move made it. Each is an update of a port that keeps the
// address, so neither cloud can hand it out in between. A server still attached to
// the new port refuses it. Moving back an address that is on its old port already
// is harmless: it says so.
func (e *Engine) MoveBack(ctx context.Context, b *netbridgev1.Bridge, ip string) (*netbridgev1.MoveAddressBackResponse, error) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, fmt.Errorf("%w: ip_address %q: %v", ErrMoveRefused, ip, err)
	}
	o, n, err := e.sides(ctx, b)
	if err != nil {
		return nil, err
	}
	id := bridgeID(b)
	resp := &netbridgev1.MoveAddressBackResponse{}
	rec := movedRecord(b, a)
	if rec == nil {
		osub, err := oldSubnet(ctx, o, b)
		if err != nil {
			return nil, err
		}
		ops, err := listPorts(ctx, o, ports.ListOpts{NetworkID: osub.NetworkID, FixedIPs: []ports.FixedIPOpts{{IPAddress: a.String()}}})
		if err != nil {
			return nil, err
		}
		for _, p := range ops {
			if !reserved(p, id) {
				resp.OldPortId = p.ID
				resp.Steps = append(resp.Steps, fmt.Sprintf("%s is on its old port %s (%q): nothing to move back", a, p.ID, p.Name))
				return resp, nil
			}
		}
		return nil, fmt.Errorf("%w: bridge %s has no record of a move of %s", ErrMoveRefused, b.GetName(), a)
	}
	nn, err := newNetwork(ctx, n, b)
	if err != nil {
		return nil, err
	}
	newPorts, err := listPorts(ctx, n, ports.ListOpts{NetworkID: nn.ID, FixedIPs: []ports.FixedIPOpts{{IPAddress: a.String()}}})
	if err != nil {
		return nil, err
	}
	var newPort *ports.Port
	for i := range newPorts {
		if p := &newPorts[i]; p.Description == MovedMarker(id) {
			newPort = p
		}
	}
	if newPort != nil && newPort.DeviceID != "" {
		return nil, fmt.Errorf("%w: port %s holding %s in the new cloud is attached to %s %s: delete the moved server (or detach the port) first",
			ErrMoveRefused, newPort.ID, a, newPort.DeviceOwner, newPort.DeviceID)
	}
	// 1. The old cloud: the reservation becomes the workload's port again.
	old, err := ports.Get(ctx, o.Network, rec.GetOldPortId()).Extract()
	if err != nil {
		return nil, fmt.Errorf("old port %s (the reservation holding %s): %w", rec.GetOldPortId(), a, err)
	}
	if reserved(*old, id) {
		name, desc, owner, dev, up := rec.GetOldPortName(), rec.GetOldPortDescription(), rec.GetOldDeviceOwner(), rec.GetOldDeviceId(), rec.GetOldAdminStateUp()
		if _, err := ports.Update(ctx, o.Network, old.ID, ports.UpdateOpts{Name: &name, Description: &desc, DeviceOwner: &owner, DeviceID: &dev, AdminStateUp: &up}).Extract(); err != nil {
			return nil, fmt.Errorf("turn the old cloud's reservation %s back into the workload's port: %w", old.ID, err)
		}
		resp.Steps = append(resp.Steps, fmt.Sprintf("old cloud: port %s is the workload's port %q again (owner %q, device %q; address held throughout)", old.ID, name, owner, dev))
	} else {
		resp.Steps = append(resp.Steps, fmt.Sprintf("old cloud: port %s is the workload's port already", old.ID))
	}
	resp.OldPortId = old.ID
	// 2. The new cloud: the workload's port becomes a reservation again, or goes.
	switch {
	case newPort == nil:
		resp.Steps = append(resp.Steps, "new cloud: no moved port holds "+a.String())
	case rec.GetNewPortCreated():
		if err := ports.Delete(ctx, n.Network, newPort.ID).ExtractErr(); err != nil && !notFound(err) {
			return nil, fmt.Errorf("delete the new cloud's port %s (the move made it): %w", newPort.ID, err)
		}
		resp.Steps = append(resp.Steps, fmt.Sprintf("new cloud: port %s deleted (the move had made it)", newPort.ID))
	default:
		rname, marker, owner, dev, down := "hikkoshi-reserve-"+a.String(), Marker(id), ReservedOwner, "", false
		if _, err := ports.Update(ctx, n.Network, newPort.ID, ports.UpdateOpts{
			Name: &rname, Description: &marker, DeviceOwner: &owner, DeviceID: &dev, AdminStateUp: &down,
		}).Extract(); err != nil {
			return nil, fmt.Errorf("turn the new cloud's port %s back into a reservation (the old port %s holds %s again): %w", newPort.ID, old.ID, a, err)
		}
		resp.Steps = append(resp.Steps, fmt.Sprintf("new cloud: port %s is a reservation of %s again", newPort.ID, a))
	}
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
