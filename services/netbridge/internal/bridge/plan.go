package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"sync"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/external"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/provider"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/services/netbridge/internal/addr"
)

// DefaultKeepFree is the free addresses the old pools keep when old_keep_free is 0.
const DefaultKeepFree = 16

// MaxReservations bounds the reserved ports of one plan: a larger pool is an
// operator's mistake more often than a need (give new_pool explicitly).
const MaxReservations = 2048

// Engine plans, applies and rolls back bridges.
type Engine struct {
	Open Opener
	Log  *slog.Logger
}

// state carries the IDs that later steps of an apply need from earlier ones.
type state struct {
	mu                                     sync.Mutex
	newNet, newSub, extNet, extSub, router string
}

func (s *state) get(f *string) string    { s.mu.Lock(); defer s.mu.Unlock(); return *f }
func (s *state) set(f *string, v string) { s.mu.Lock(); defer s.mu.Unlock(); *f = v }

// step is one change and how to make it.
type step struct {
	change *netbridgev1.Change
	// group: consecutive steps of one non-empty group run concurrently.
	group string
	do    func(ctx context.Context) (*netbridgev1.Resource, error)
}

// Planned is a plan with the steps that apply it.
type Planned struct {
	Plan  *netbridgev1.Plan
	steps []step
	st    *state
	old   *Side
	new   *Side
}

// sides opens both clouds of b.
func (e *Engine) sides(ctx context.Context, b *netbridgev1.Bridge) (*Side, *Side, error) {
	o, err := e.Open(ctx, b.GetOld().GetCloud(), "old")
	if err != nil {
		return nil, nil, fmt.Errorf("old cloud %q: %w", b.GetOld().GetCloud(), err)
	}
	n, err := e.Open(ctx, b.GetNew().GetCloud(), "new")
	if err != nil {
		return nil, nil, fmt.Errorf("new cloud %q: %w", b.GetNew().GetCloud(), err)
	}
	if p := b.GetNew().GetProjectId(); p != "" {
		n.Project = p
	}
	return o, n, nil
}

// oldSubnet returns the old network's IPv4 subnet (the one named, or the only one).
func oldSubnet(ctx context.Context, s *Side, b *netbridgev1.Bridge) (*subnets.Subnet, error) {
	subs, err := listSubnets(ctx, s, b.GetOld().GetNetworkId())
	if err != nil {
		return nil, err
	}
	var v4 []subnets.Subnet
	for _, sn := range subs {
		if sn.ID == b.GetOld().GetSubnetId() {
			return &sn, nil
		}
		if sn.IPVersion == 4 {
			v4 = append(v4, sn)
		}
	}
	if b.GetOld().GetSubnetId() != "" {
		return nil, fmt.Errorf("old network %s has no subnet %s", b.GetOld().GetNetworkId(), b.GetOld().GetSubnetId())
	}
	if len(v4) != 1 {
		return nil, fmt.Errorf("old network %s has %d IPv4 subnets: name one in old.subnet_id", b.GetOld().GetNetworkId(), len(v4))
	}
	return &v4[0], nil
}

// The enums of the closed string sets, which stay beside them (buf breaking).
var (
	changeActions = map[string]netbridgev1.ChangeAction{"create": netbridgev1.ChangeAction_CHANGE_ACTION_CREATE,
		"update": netbridgev1.ChangeAction_CHANGE_ACTION_UPDATE, "delete": netbridgev1.ChangeAction_CHANGE_ACTION_DELETE}
	cloudSides = map[string]netbridgev1.CloudSide{"old": netbridgev1.CloudSide_CLOUD_SIDE_OLD, "new": netbridgev1.CloudSide_CLOUD_SIDE_NEW}
)

func change(key, action, side, kind, format string, args ...any) *netbridgev1.Change {
	return &netbridgev1.Change{Key: key, Action: action, Side: side, Kind: kind, Description: fmt.Sprintf(format, args...),
		ChangeAction: changeActions[action], CloudSide: cloudSides[side]}
}

func res(key, side, kind, id string) *netbridgev1.Resource {
	return &netbridgev1.Resource{Key: key, Side: side, Kind: kind, Id: id, CloudSide: cloudSides[side]}
}

// Plan computes b's plan from both clouds' live state.
func (e *Engine) Plan(ctx context.Context, b *netbridgev1.Bridge) (*Planned, error) {
	o, n, err := e.sides(ctx, b)
	if err != nil {
		return nil, err
	}
	id := bridgeID(b)
	on, err := getNetwork(ctx, o, b.GetOld().GetNetworkId())
	if err != nil {
		return nil, err
	}
	osub, err := oldSubnet(ctx, o, b)
	if err != nil {
		return nil, err
	}
	oports, err := listPorts(ctx, o, ports.ListOpts{NetworkID: on.ID})
	if err != nil {
		return nil, err
	}
	p := &Planned{Plan: &netbridgev1.Plan{Bridge: b.GetName(), PlanEtag: b.GetEtag()}, st: &state{}, old: o, new: n}
	nets, err := ourNetworks(ctx, n, id)
	if err != nil {
		return nil, err
	}
	physnet := b.GetNew().GetPhysicalNetwork()
	if physnet == "" {
		physnet = on.PhysicalNetwork
	}
	seg, _ := strconv.Atoi(on.SegmentationID)
	if on.NetworkType != "vlan" && on.NetworkType != "flat" {
		p.conflict("", "the old network is %q: only a VLAN or flat provider network can be shared with another cloud", on.NetworkType)
	}
	name := b.GetNew().GetNetworkName()
	if name == "" {
		name = on.Name
	}
	in := &planInput{b: b, id: id, on: on, osub: osub, oports: oports, nets: nets, physnet: physnet, seg: seg, name: name}
	switch b.GetMode() {
	case netbridgev1.BridgeMode_BRIDGE_MODE_SHARED_L2:
		err = e.planShared(ctx, p, in)
	case netbridgev1.BridgeMode_BRIDGE_MODE_ROUTED:
		err = e.planRouted(ctx, p, in)
	default:
		err = fmt.Errorf("bridge mode %s", b.GetMode())
	}
	if err != nil {
		return nil, err
	}
	for _, s := range p.steps {
		p.Plan.Changes = append(p.Plan.Changes, s.change)
	}
	return p, nil
}

func (p *Planned) conflict(ip, format string, args ...any) {
	p.Plan.Conflicts = append(p.Plan.Conflicts, &netbridgev1.Conflict{IpAddress: ip, Reason: fmt.Sprintf(format, args...)})
}

func (p *Planned) add(s step) { p.steps = append(p.steps, s) }

func findNet(nets []network, name string) *network {
	for i := range nets {
		if nets[i].Name == name {
			return &nets[i]
		}
	}
	return nil
}

// createNetwork adds the step that makes a provider network on the new side.
func (p *Planned) createNetwork(key, name, id, netType, physnet string, seg int, ext bool, into *string) {
	n := p.new
	desc := fmt.Sprintf("network %s: %s on %s", name, netType, physnet)
	if netType == "vlan" {
		desc += fmt.Sprintf(" VLAN %d", seg)
	}
	if ext {
		desc += ", router:external"
	}
	p.add(step{change: change(key, "create", "new", "network", "%s", desc), do: func(ctx context.Context) (*netbridgev1.Resource, error) {
		seg := provider.Segment{NetworkType: netType, PhysicalNetwork: physnet, SegmentationID: seg}
		var opts networks.CreateOptsBuilder = provider.CreateOptsExt{
			CreateOptsBuilder: networks.CreateOpts{Name: name, Description: Marker(id), ProjectID: n.Project},
			Segments:          []provider.Segment{seg},
		}
		if ext {
			opts = external.CreateOptsExt{CreateOptsBuilder: opts, External: &ext}
		}
		net, err := networks.Create(ctx, n.Network, opts).Extract()
		if err != nil {
			return nil, fmt.Errorf("create network %s in the new cloud: %w", name, err)
		}
		p.st.set(into, net.ID)
		return res(key, "new", "network", net.ID), nil
	}})
}

// createSubnet adds the step that makes a subnet on the new side.
func (p *Planned) createSubnet(key, name, id string, netID *string, cidr, gateway string, dhcp bool, pools []string, into *string) {
	n := p.new
	p.add(step{change: change(key, "create", "new", "subnet", "subnet %s: %s, gateway %s, DHCP %v, pools %v", name, cidr, gateway, dhcp, pools),
		do: func(ctx context.Context) (*netbridgev1.Resource, error) {
			gw := gateway
			sn, err := subnets.Create(ctx, n.Network, subnets.CreateOpts{
				NetworkID: p.st.get(netID), Name: name, Description: Marker(id), CIDR: cidr, IPVersion: gophercloud.IPv4,
				GatewayIP: &gw, EnableDHCP: &dhcp, AllocationPools: poolsOf(pools), ProjectID: n.Project,
			}).Extract()
			if err != nil {
				return nil, fmt.Errorf("create subnet %s in the new cloud: %w", cidr, err)
			}
			p.st.set(into, sn.ID)
			return res(key, "new", "subnet", sn.ID), nil
		}})
}

// reserve adds the steps that hold addresses on side s, concurrently.
func (p *Planned) reserve(s *Side, id string, netID, subID *string, as []netip.Addr) {
	for _, a := range as {
		key := s.Name + "/reserve/" + a.String()
		p.add(step{group: s.Name + "/reserve", change: change(key, "create", s.Name, "port", "reserve %s (a port holding it for the other cloud)", a),
			do: func(ctx context.Context) (*netbridgev1.Resource, error) {
				pid, err := reservePort(ctx, s, id, p.st.get(netID), p.st.get(subID), a)
				if err != nil {
					return nil, err
				}
				return res(key, s.Name, "port", pid), nil
			}})
	}
}

// planInput is what both modes plan from: the bridge, the old network, its IPv4
// subnet and ports, the bridge's networks already in the new cloud, and the new
// network's provider settings and name.
type planInput struct {
	b       *netbridgev1.Bridge
	id      string
	on      *network
	osub    *subnets.Subnet
	oports  []ports.Port
	nets    []network
	physnet string
	seg     int
	name    string
}

// sharedPlan carries a shared-L2 plan from stage to stage.
type sharedPlan struct {
	*planInput
	p          *Planned
	oldHold    map[netip.Addr][]ports.Port
	oldP, newP addr.Set
	nsub       *subnets.Subnet
	nports     []ports.Port
	holdOld    []netip.Addr
}

// planShared plans a shared-L2 bridge: the old subnet's pools split (fixed at the
// first apply), the old pools shrunk, the new cloud's addresses held in the old
// cloud, the new network and subnet on the same VLAN, and in the new cloud the
// addresses the old cloud uses or may hand out held.
func (e *Engine) planShared(ctx context.Context, p *Planned, in *planInput) error {
	sp := &sharedPlan{planInput: in, p: p, oldHold: holders(in.oports, in.osub.ID)}
	split, err := sp.split()
	if err != nil || split == nil {
		return err
	}
	p.Plan.Split = split
	if sp.oldP, err = addr.ParseSet(split.GetOldPools()); err != nil {
		return fmt.Errorf("the bridge's recorded pool split, old pools %v: %w", split.GetOldPools(), err)
	}
	if sp.newP, err = addr.ParseSet(split.GetNewPools()); err != nil {
		return fmt.Errorf("the bridge's recorded pool split, new pools %v: %w", split.GetNewPools(), err)
	}
	prefix, err := netip.ParsePrefix(in.osub.CIDR)
	if err != nil {
		return err
	}
	for _, r := range sp.newP.Ranges() {
		if !prefix.Contains(r.First) || !prefix.Contains(r.Last) {
			p.conflict(r.String(), "the new pool %s is not inside the old subnet %s", r, in.osub.CIDR)
		}
	}
	if err := sp.shrinkOldPools(); err != nil {
		return err
	}
	sp.holdInOld()
	if err := sp.newNetwork(ctx); err != nil {
		return err
	}
	return sp.holdInNew()
}

// split is the bridge's recorded split, or, before the first apply, one computed
// from what is in use: the new pool given, or the old pools' tail past what the old
// cloud uses plus old_keep_free. nil (and a conflict) when there is no room.
func (sp *sharedPlan) split() (*netbridgev1.PoolSplit, error) {
	b, osub := sp.b, sp.osub
	if split := b.GetSplit(); split != nil {
		return split, nil
	}
	pools, err := addr.ParseSet(poolStrings(osub.AllocationPools))
	if err != nil {
		return nil, err
	}
	var used []netip.Addr
	for a, ps := range sp.oldHold {
		if slices.ContainsFunc(ps, func(pt ports.Port) bool { return !reserved(pt, sp.id) }) {
			used = append(used, a)
		}
	}
	var oldP, newP addr.Set
	if np := b.GetSharedL2().GetNewPool(); np != "" {
		r, err := addr.ParseRange(np)
		if err != nil {
			return nil, err
		}
		newP = addr.NewSet(r)
		oldP = pools.Minus(newP)
	} else {
		keep := int(b.GetSharedL2().GetOldKeepFree())
		if keep == 0 {
			keep = DefaultKeepFree
		}
		if oldP, newP, err = addr.SplitTail(pools, addr.Of(used...), keep); err != nil {
			sp.p.conflict("", "%v: lower shared_l2.old_keep_free or give shared_l2.new_pool", err)
			return nil, nil
		}
	}
	return &netbridgev1.PoolSplit{Cidr: osub.CIDR, OriginalPools: poolStrings(osub.AllocationPools), OldPools: oldP.Strings(), NewPools: newP.Strings()}, nil
}

// shrinkOldPools: step 1, so that the old cloud no longer hands out the new cloud's
// addresses.
func (sp *sharedPlan) shrinkOldPools() error {
	o, osub, oldP := sp.p.old, sp.osub, sp.oldP
	cur, err := addr.ParseSet(poolStrings(osub.AllocationPools))
	if err != nil {
		return fmt.Errorf("the old subnet %s's pools: %w", osub.ID, err)
	}
	if cur.Equal(oldP) {
		sp.p.Plan.Unchanged++
		return nil
	}
	sp.p.add(step{change: change("old/subnet_pools", "update", "old", "subnet_pools", "old subnet %s pools %v → %v", osub.CIDR, cur.Strings(), oldP.Strings()),
		do: func(ctx context.Context) (*netbridgev1.Resource, error) {
			pools := poolsOf(oldP.Strings())
			if _, err := subnets.Update(ctx, o.Network, osub.ID, subnets.UpdateOpts{AllocationPools: pools}).Extract(); err != nil {
				return nil, fmt.Errorf("shrink the old pools: %w", err)
			}
			return res("old/subnet_pools", "old", "subnet_pools", osub.ID), nil
		}})
	return nil
}

// holdInOld: step 2, the new cloud's addresses held in the old cloud (reserved at
// the end of newNetwork, once the new subnet's step is planned).
func (sp *sharedPlan) holdInOld() {
	for _, a := range sp.newP.All() {
		hs := sp.oldHold[a]
		switch {
		case len(hs) == 0:
			sp.holdOld = append(sp.holdOld, a)
		case !slices.ContainsFunc(hs, func(pt ports.Port) bool { return reserved(pt, sp.id) }):
			sp.p.conflict(a.String(), "port %s (%s) holds %s in the old cloud, inside the new cloud's pool: move it, or give shared_l2.new_pool without it", hs[0].ID, hs[0].Name, a)
		default:
			sp.p.Plan.Unchanged++
		}
	}
}

// newNetwork: step 3, the new network and subnet on the old VLAN (the subnet's
// pools brought to the new pools if it exists), then the old cloud's reservations.
func (sp *sharedPlan) newNetwork(ctx context.Context) error {
	p, n, osub, newP := sp.p, sp.p.new, sp.osub, sp.newP
	nn := findNet(sp.nets, sp.name)
	if nn == nil {
		p.createNetwork("new/network", sp.name, sp.id, sp.on.NetworkType, sp.physnet, sp.seg, false, &p.st.newNet)
	} else {
		p.Plan.Unchanged++
		p.st.newNet = nn.ID
		subs, err := listSubnets(ctx, n, nn.ID)
		if err != nil {
			return err
		}
		for i := range subs {
			if subs[i].CIDR == osub.CIDR {
				sp.nsub = &subs[i]
			}
		}
		if sp.nports, err = listPorts(ctx, n, ports.ListOpts{NetworkID: nn.ID}); err != nil {
			return err
		}
	}
	if sp.nsub == nil {
		p.createSubnet("new/subnet", osub.Name, sp.id, &p.st.newNet, osub.CIDR, osub.GatewayIP, osub.EnableDHCP, newP.Strings(), &p.st.newSub)
	} else {
		p.st.newSub = sp.nsub.ID
		have, err := addr.ParseSet(poolStrings(sp.nsub.AllocationPools))
		if err != nil {
			return fmt.Errorf("the new subnet %s's pools: %w", sp.nsub.ID, err)
		}
		if !have.Equal(newP) {
			sid := sp.nsub.ID
			p.add(step{change: change("new/subnet_pools", "update", "new", "subnet_pools", "new subnet pools %v → %v", have.Strings(), newP.Strings()),
				do: func(ctx context.Context) (*netbridgev1.Resource, error) {
					_, err := subnets.Update(ctx, n.Network, sid, subnets.UpdateOpts{AllocationPools: poolsOf(newP.Strings())}).Extract()
					return nil, err
				}})
		} else {
			p.Plan.Unchanged++
		}
	}
	oldNet, oldSub := sp.on.ID, osub.ID
	p.reserve(p.old, sp.id, &oldNet, &oldSub, sp.holdOld)
	return nil
}

// holdInNew: step 4, in the new cloud, what the old cloud uses or may hand out
// held; an address in use on both sides is a conflict.
func (sp *sharedPlan) holdInNew() error {
	p, id, oldHold := sp.p, sp.id, sp.oldHold
	gw, _ := netip.ParseAddr(sp.osub.GatewayIP)
	newHold := map[netip.Addr][]ports.Port{}
	if sp.nsub != nil {
		newHold = holders(sp.nports, sp.nsub.ID)
	}
	want := sp.oldP
	for a, ps := range oldHold {
		if slices.ContainsFunc(ps, func(pt ports.Port) bool { return !reserved(pt, id) }) && !sp.newP.Contains(a) {
			want = want.Union(addr.Of(a))
		}
	}
	want = want.Minus(addr.Of(gw))
	var holdNew []netip.Addr
	for _, a := range want.All() {
		if len(newHold[a]) > 0 {
			p.Plan.Unchanged++
			continue
		}
		holdNew = append(holdNew, a)
	}
	p.reserve(p.new, id, &p.st.newNet, &p.st.newSub, holdNew)
	for a, ps := range newHold {
		realNew := slices.ContainsFunc(ps, func(pt ports.Port) bool { return !reserved(pt, id) })
		realOld := slices.ContainsFunc(oldHold[a], func(pt ports.Port) bool { return !reserved(pt, id) })
		if realNew && realOld {
			p.conflict(a.String(), "%s is in use in both clouds (old port %s, new port %s): one of them must give it up", a, oldHold[a][0].ID, ps[0].ID)
		}
	}
	if len(sp.holdOld)+len(holdNew) > MaxReservations {
		p.conflict("", "the plan reserves %d addresses (at most %d): give shared_l2.new_pool a smaller range", len(sp.holdOld)+len(holdNew), MaxReservations)
	}
	p.Plan.Notes = append(p.Plan.Notes,
		fmt.Sprintf("old pools %v, new pools %v: %d addresses reserved in the old cloud, %d in the new", sp.oldP.Strings(), sp.newP.Strings(), sp.newP.Len(), want.Len()))
	return nil
}

// routedPlan carries a routed plan from stage to stage.
type routedPlan struct {
	*planInput
	p       *Planned
	gw      netip.Addr // routed.gateway_ip: the router's address on the old VLAN
	extName string     // the old VLAN's name as an external network of the new cloud
}

// planRouted plans a routed bridge: the old VLAN known to the new cloud as an
// external network, a network of the new cloud's own, a router between them (its
// gateway at routed.gateway_ip, held in the old cloud, SNAT off), and the old side's
// route to the new subnet.
func (e *Engine) planRouted(ctx context.Context, p *Planned, in *planInput) error {
	rp := &routedPlan{planInput: in, p: p, extName: in.on.Name + "-ext"}
	var err error
	if rp.gw, err = netip.ParseAddr(in.b.GetRouted().GetGatewayIp()); err != nil {
		return fmt.Errorf("routed.gateway_ip %q: %w", in.b.GetRouted().GetGatewayIp(), err)
	}
	for _, stage := range []func(context.Context) error{rp.holdGateway, rp.externalNetwork, rp.ownNetwork, rp.router, rp.oldRoute} {
		if err := stage(ctx); err != nil {
			return err
		}
	}
	p.Plan.Notes = append(p.Plan.Notes, "the old VLAN is defined in the new cloud as an external network (router:external): under DVR a tenant network on it would have every compute node's router answer for the same MAC, and packets arrive twice")
	return nil
}

// holdGateway: routed.gateway_ip outside the old pools, held in the old cloud.
func (rp *routedPlan) holdGateway(context.Context) error {
	p, id, on, osub, gw, o := rp.p, rp.id, rp.on, rp.osub, rp.gw, rp.p.old
	pools, err := addr.ParseSet(poolStrings(osub.AllocationPools))
	if err != nil {
		return fmt.Errorf("the old subnet %s's pools: %w", osub.ID, err)
	}
	if pools.Contains(gw) {
		p.conflict(gw.String(), "routed.gateway_ip %s is inside the old subnet's pools %v: the old cloud could hand it out; choose one outside", gw, pools.Strings())
	}
	oldHold := holders(rp.oports, osub.ID)
	hs := oldHold[gw]
	oldNet, oldSub := on.ID, osub.ID
	switch {
	case len(hs) == 0:
		p.reserve(o, id, &oldNet, &oldSub, []netip.Addr{gw})
	case !reserved(hs[0], id):
		p.conflict(gw.String(), "port %s (%s) already holds routed.gateway_ip %s in the old cloud", hs[0].ID, hs[0].Name, gw)
	default:
		p.Plan.Unchanged++
	}
	return nil
}

// externalNetwork: the old VLAN, known to the new cloud as an external network.
func (rp *routedPlan) externalNetwork(ctx context.Context) error {
	p, id, on, osub, gw, n, extName := rp.p, rp.id, rp.on, rp.osub, rp.gw, rp.p.new, rp.extName
	if en := findNet(rp.nets, extName); en == nil {
		p.createNetwork("new/external_network", extName, id, on.NetworkType, rp.physnet, rp.seg, true, &p.st.extNet)
		p.createSubnet("new/external_subnet", extName+"-v4", id, &p.st.extNet, osub.CIDR, osub.GatewayIP, false, []string{gw.String() + "-" + gw.String()}, &p.st.extSub)
	} else {
		p.Plan.Unchanged += 2
		p.st.extNet = en.ID
		subs, err := listSubnets(ctx, n, en.ID)
		if err != nil {
			return err
		}
		if len(subs) > 0 {
			p.st.extSub = subs[0].ID
		}
	}
	return nil
}

// ownNetwork: the new cloud's own network and subnet (routed.cidr).
func (rp *routedPlan) ownNetwork(ctx context.Context) error {
	p, id, n, name, rt := rp.p, rp.id, rp.p.new, rp.name, rp.b.GetRouted()
	if nn := findNet(rp.nets, name); nn == nil {
		p.add(step{change: change("new/network", "create", "new", "network", "network %s (the new cloud's own)", name), do: func(ctx context.Context) (*netbridgev1.Resource, error) {
			net, err := networks.Create(ctx, n.Network, networks.CreateOpts{Name: name, Description: Marker(id), ProjectID: n.Project}).Extract()
			if err != nil {
				return nil, fmt.Errorf("create network %s in the new cloud: %w", name, err)
			}
			p.st.set(&p.st.newNet, net.ID)
			return res("new/network", "new", "network", net.ID), nil
		}})
		prefix, err := netip.ParsePrefix(rt.GetCidr())
		if err != nil {
			return fmt.Errorf("routed.cidr %q: %w", rt.GetCidr(), err)
		}
		p.createSubnet("new/subnet", name+"-v4", id, &p.st.newNet, prefix.String(), prefix.Addr().Next().String(), true, nil, &p.st.newSub)
	} else {
		p.Plan.Unchanged += 2
		p.st.newNet = nn.ID
		subs, err := listSubnets(ctx, n, nn.ID)
		if err != nil {
			return err
		}
		if len(subs) > 0 {
			p.st.newSub = subs[0].ID
		}
	}
	return nil
}

// router: created without a gateway, then its interface, then the gateway.
func (rp *routedPlan) router(ctx context.Context) error {
	p, id, n, name, rt, gw, extName := rp.p, rp.id, rp.p.new, rp.name, rp.b.GetRouted(), rp.gw, rp.extName
	rs, err := ourRouters(ctx, n, id)
	if err != nil {
		return err
	}
	var r *routers.Router
	if len(rs) > 0 {
		r = &rs[0]
		p.st.router = r.ID
		p.Plan.Unchanged++
	} else {
		p.add(step{change: change("new/router", "create", "new", "router", "router %s-router, created WITHOUT external_gateway_info (the gateway is set in a second call: setting it at creation broke routers under SNAT HA)", name),
			do: func(ctx context.Context) (*netbridgev1.Resource, error) {
				rr, err := routers.Create(ctx, n.Network, routers.CreateOpts{Name: name + "-router", Description: Marker(id), ProjectID: n.Project}).Extract()
				if err != nil {
					return nil, fmt.Errorf("create the router: %w", err)
				}
				p.st.set(&p.st.router, rr.ID)
				return res("new/router", "new", "router", rr.ID), nil
			}})
	}
	hasIface := false
	if r != nil && p.st.newSub != "" {
		ifs, err := listPorts(ctx, n, ports.ListOpts{DeviceID: r.ID, DeviceOwner: "network:router_interface"})
		if err != nil {
			return err
		}
		for _, pt := range ifs {
			for _, ip := range pt.FixedIPs {
				hasIface = hasIface || ip.SubnetID == p.st.newSub
			}
		}
	}
	if hasIface {
		p.Plan.Unchanged++
	} else {
		p.add(step{change: change("new/router_interface", "create", "new", "router_interface", "router interface on the new subnet %s", rt.GetCidr()),
			do: func(ctx context.Context) (*netbridgev1.Resource, error) {
				rid := p.st.get(&p.st.router)
				if _, err := routers.AddInterface(ctx, n.Network, rid, routers.AddInterfaceOpts{SubnetID: p.st.get(&p.st.newSub)}).Extract(); err != nil {
					return nil, fmt.Errorf("add the router's interface: %w", err)
				}
				return res("new/router_interface", "new", "router_interface", rid), nil
			}})
	}
	if r != nil && r.GatewayInfo.NetworkID != "" {
		p.Plan.Unchanged++
	} else {
		p.add(step{change: change("new/router_gateway", "create", "new", "router_gateway", "router gateway on %s at %s, SNAT off (addresses stay routable both ways) — a second call after the create", extName, gw),
			do: func(ctx context.Context) (*netbridgev1.Resource, error) {
				rid, off := p.st.get(&p.st.router), false
				gi := routers.GatewayInfo{NetworkID: p.st.get(&p.st.extNet), EnableSNAT: &off,
					ExternalFixedIPs: []routers.ExternalFixedIP{{SubnetID: p.st.get(&p.st.extSub), IPAddress: gw.String()}}}
				if _, err := routers.Update(ctx, n.Network, rid, routers.UpdateOpts{GatewayInfo: &gi}).Extract(); err != nil {
					return nil, fmt.Errorf("set the router's gateway: %w", err)
				}
				return res("new/router_gateway", "new", "router_gateway", rid), nil
			}})
	}
	return nil
}

// oldRoute: the old side's route to the new subnet (on old.router_id, or a note).
func (rp *routedPlan) oldRoute(ctx context.Context) error {
	p, b, o, rt, gw := rp.p, rp.b, rp.p.old, rp.b.GetRouted(), rp.gw
	if orid := b.GetOld().GetRouterId(); orid != "" {
		or, err := routers.Get(ctx, o.Network, orid).Extract()
		if err != nil {
			return fmt.Errorf("old router %s: %w", orid, err)
		}
		route := routers.Route{DestinationCIDR: rt.GetCidr(), NextHop: gw.String()}
		if slices.Contains(or.Routes, route) {
			p.Plan.Unchanged++
		} else {
			p.add(step{change: change("old/router_route", "create", "old", "router_route", "old router %s: route %s via %s", or.Name, rt.GetCidr(), gw),
				do: func(ctx context.Context) (*netbridgev1.Resource, error) {
					cur, err := routers.Get(ctx, o.Network, orid).Extract()
					if err != nil {
						return nil, err
					}
					routes := append(slices.Clone(cur.Routes), route)
					if _, err := routers.Update(ctx, o.Network, orid, routers.UpdateOpts{Routes: &routes}).Extract(); err != nil {
						return nil, fmt.Errorf("add the old router's route: %w", err)
					}
					return res("old/router_route", "old", "router_route", orid), nil
				}})
		}
	} else {
		p.Plan.Notes = append(p.Plan.Notes, fmt.Sprintf("the old side must route %s via %s: give old.router_id to have the plan add it, or add it by hand", rt.GetCidr(), gw))
	}
	return nil
}
