package contract

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
	"google.golang.org/grpc/codes"

	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
)

// holdersOf lists the ports holding ip on a network.
func holdersOf(ctx context.Context, sc *gophercloud.ServiceClient, netID, ip string) ([]ports.Port, error) {
	pages, err := ports.List(sc, ports.ListOpts{NetworkID: netID, FixedIPs: []ports.FixedIPOpts{{IPAddress: ip}}}).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	return ports.ExtractPorts(pages)
}

// raceStats are what the racers and watchers of one address saw.
type raceStats struct{ attempts, won, gaps, looks atomic.Int64 }

// raced runs f while, on each side, a client keeps asking Neutron for a port with ip
// and a watcher keeps listing who holds it.
func raced(sides []raceSide, ip string, f func()) *raceStats {
	st := &raceStats{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, side := range sides {
		wg.Add(2)
		go func() { // a client that wants this very address
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				st.attempts.Add(1)
				p, err := ports.Create(context.Background(), side.sc, ports.CreateOpts{Name: "ctest-racer", NetworkID: side.net, ProjectID: side.owner,
					FixedIPs: []ports.IP{{IPAddress: ip}}}).Extract()
				if err == nil {
					st.won.Add(1)
					_ = ports.Delete(context.Background(), side.sc, p.ID).ExtractErr()
				}
			}
		}()
		go func() { // a watcher: somebody must hold the address at every look
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if hs, err := holdersOf(context.Background(), side.sc, side.net, ip); err == nil {
					st.looks.Add(1)
					if len(hs) == 0 {
						st.gaps.Add(1)
					}
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond) // the racers are at it before f begins
	f()
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	return st
}

type raceSide struct {
	sc         *gophercloud.ServiceClient
	net, owner string
}

// TestMoveAddressRaced moves a workload's address from the old network to the new
// one, and back, while other clients keep asking both Neutrons for a port with that
// very address, and a watcher keeps listing who holds it on each side: no create may
// succeed, and no listing may find the address free on either side. Moved back,
// the old port is the workload's port again as it was (name, description, owner,
// device, state), the new port a reservation again, and the bridge rolls back.
func TestMoveAddressRaced(t *testing.T) {
	f := fixture(t)
	c := start(t)
	ctx := t.Context()
	b := must(c.CreateBridge(ctx, &netbridgev1.CreateBridgeRequest{Bridge: &netbridgev1.Bridge{
		Mode: netbridgev1.BridgeMode_BRIDGE_MODE_SHARED_L2,
		Old:  &netbridgev1.OldSide{Cloud: "old-admin", NetworkId: f.net},
		New:  &netbridgev1.NewSide{Cloud: "new-admin", PhysicalNetwork: "physnet2"},
	}}))(t).GetBridge()
	must(c.ApplyBridge(ctx, &netbridgev1.ApplyBridgeRequest{Name: b.GetName()}))(t)
	var newNet string
	t.Cleanup(func() {
		ctx := context.Background()
		if ps, err := holdersOf(ctx, f.nc, newNet, f.prefix+".15"); err == nil {
			for _, p := range ps {
				_ = ports.Delete(ctx, f.nc, p.ID).ExtractErr()
			}
		}
		_, _ = c.RollbackBridge(ctx, &netbridgev1.RollbackBridgeRequest{Name: b.GetName()})
	})
	np := must(networks.List(f.nc, networks.ListOpts{Description: "hikkoshi-bridge:" + bridgeID(b), ProjectID: f.np}).AllPages(ctx))(t)
	newNet = must(networks.ExtractNetworks(np))(t)[0].ID
	ip := f.prefix + ".15"
	// The workload's port as Nova leaves it: owned by a (stopped, here absent) server.
	vm, owner, desc := "5d4e1a1c-7c4b-4a53-9a51-0c1e2b3d4f15", "compute:nova", "web-1 eth0"
	old := must(ports.Update(ctx, f.oc, f.ports["15"], ports.UpdateOpts{DeviceOwner: &owner, DeviceID: &vm, Description: &desc}).Extract())(t)
	sides := []raceSide{{f.oc, f.net, f.op}, {f.nc, newNet, f.np}}

	var resp *netbridgev1.MoveAddressResponse
	var err error
	st := raced(sides, ip, func() {
		resp, err = c.MoveAddress(ctx, &netbridgev1.MoveAddressRequest{Bridge: b.GetName(), IpAddress: ip, KeepMac: true})
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.won.Load() != 0 || st.gaps.Load() != 0 {
		t.Fatalf("during the move %d of %d racing creates got %s, and %d of %d looks found it free", st.won.Load(), st.attempts.Load(), ip, st.gaps.Load(), st.looks.Load())
	}
	nw := must(ports.Get(ctx, f.nc, resp.GetNewPortId()).Extract())(t)
	od := must(ports.Get(ctx, f.oc, resp.GetOldPortId()).Extract())(t)
	if nw.MACAddress != old.MACAddress || nw.Name != old.Name || nw.DeviceOwner != "" || len(nw.FixedIPs) != 1 || nw.FixedIPs[0].IPAddress != ip {
		t.Fatalf("new port %s: %s %q %q %v (old MAC %s, name %q)", nw.ID, nw.MACAddress, nw.Name, nw.DeviceOwner, nw.FixedIPs, old.MACAddress, old.Name)
	}
	if od.ID != old.ID || od.DeviceOwner != "reserved:hikkoshi" || od.AdminStateUp || od.DeviceID != "" {
		t.Fatalf("old port after the move: %s owner %q device %q up %v, want the workload's port turned into a reservation", od.ID, od.DeviceOwner, od.DeviceID, od.AdminStateUp)
	}
	rec := must(c.GetBridge(ctx, &netbridgev1.GetBridgeRequest{Name: b.GetName()}))(t).GetBridge().GetMoved()
	if len(rec) != 1 || rec[0].GetOldDeviceId() != vm || rec[0].GetOldDeviceOwner() != owner || rec[0].GetNewPortCreated() {
		t.Fatalf("move record %v", rec)
	}
	again := must(c.MoveAddress(ctx, &netbridgev1.MoveAddressRequest{Bridge: b.GetName(), IpAddress: ip}))(t)
	if again.GetNewPortId() != resp.GetNewPortId() || again.GetOldPortId() != resp.GetOldPortId() {
		t.Fatalf("a repeated move gave other ports: %v then %v", resp, again)
	}
	_, err = c.RollbackBridge(ctx, &netbridgev1.RollbackBridgeRequest{Name: b.GetName()})
	servicetest.WantCode(t, err, codes.FailedPrecondition) // a moved address stops the rollback
	t.Logf("moved %s: %d racing creates all refused, %d looks all found it held; steps %v", ip, st.attempts.Load(), st.looks.Load(), resp.GetSteps())

	// Back: refused while a server is on the new port.
	newVM, newOwner := "6e5f2b2d-8d5c-4b64-8b62-1d2f3c4e5a26", "compute:nova"
	must(ports.Update(ctx, f.nc, nw.ID, ports.UpdateOpts{DeviceOwner: &newOwner, DeviceID: &newVM}).Extract())(t)
	_, err = c.MoveAddressBack(ctx, &netbridgev1.MoveAddressBackRequest{Bridge: b.GetName(), IpAddress: ip})
	servicetest.WantCode(t, err, codes.FailedPrecondition)
	none := ""
	must(ports.Update(ctx, f.nc, nw.ID, ports.UpdateOpts{DeviceOwner: &none, DeviceID: &none}).Extract())(t)
	var back *netbridgev1.MoveAddressBackResponse
	st = raced(sides, ip, func() {
		back, err = c.MoveAddressBack(ctx, &netbridgev1.MoveAddressBackRequest{Bridge: b.GetName(), IpAddress: ip})
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.won.Load() != 0 || st.gaps.Load() != 0 {
		t.Fatalf("during the move back %d of %d racing creates got %s, and %d of %d looks found it free", st.won.Load(), st.attempts.Load(), ip, st.gaps.Load(), st.looks.Load())
	}
	od = must(ports.Get(ctx, f.oc, old.ID).Extract())(t)
	if back.GetOldPortId() != old.ID || od.Name != old.Name || od.Description != desc || od.DeviceOwner != owner || od.DeviceID != vm || od.AdminStateUp != old.AdminStateUp || od.MACAddress != old.MACAddress {
		t.Fatalf("old port after the move back: %q %q %q %q up %v, want %q %q %q %q up %v", od.Name, od.Description, od.DeviceOwner, od.DeviceID, od.AdminStateUp,
			old.Name, desc, owner, vm, old.AdminStateUp)
	}
	nw = must(ports.Get(ctx, f.nc, nw.ID).Extract())(t)
	if nw.DeviceOwner != "reserved:hikkoshi" || nw.AdminStateUp || nw.Description != "hikkoshi-bridge:"+bridgeID(b) {
		t.Fatalf("new port after the move back: owner %q up %v description %q, want a reservation again", nw.DeviceOwner, nw.AdminStateUp, nw.Description)
	}
	if rec := must(c.GetBridge(ctx, &netbridgev1.GetBridgeRequest{Name: b.GetName()}))(t).GetBridge().GetMoved(); len(rec) != 0 {
		t.Fatalf("move records after the move back: %v", rec)
	}
	twice := must(c.MoveAddressBack(ctx, &netbridgev1.MoveAddressBackRequest{Bridge: b.GetName(), IpAddress: ip}))(t)
	if twice.GetOldPortId() != old.ID {
		t.Fatalf("a repeated move back: %v", twice)
	}
	// Nothing left to undo by hand: the plan has nothing to change, and the bridge rolls back.
	if p := must(c.PlanBridge(ctx, &netbridgev1.PlanBridgeRequest{Name: b.GetName()}))(t); len(p.GetPlan().GetChanges()) != 0 {
		t.Fatalf("plan after the move back: %v", p.GetPlan().GetChanges())
	}
	must(c.RollbackBridge(ctx, &netbridgev1.RollbackBridgeRequest{Name: b.GetName()}))(t)
	t.Logf("moved back: %d racing creates all refused, %d looks all found it held; steps %v", st.attempts.Load(), st.looks.Load(), back.GetSteps())
}

// TestRouted plans, applies, re-applies and rolls back a routed bridge: the old VLAN
// as an external network of the new cloud, a router created without a gateway and
// given one in a second call (SNAT off, at the reserved gateway_ip), the new subnet
// on it, and the old router's route to the new subnet.
func TestRouted(t *testing.T) {
	f := fixture(t)
	c := start(t)
	ctx := t.Context()
	p := f.prefix
	cidr := p[:len(p)-2] + ".1.0/24" // 10.<vlan>.1.0/24
	b := must(c.CreateBridge(ctx, &netbridgev1.CreateBridgeRequest{Bridge: &netbridgev1.Bridge{
		Mode:   netbridgev1.BridgeMode_BRIDGE_MODE_ROUTED,
		Old:    &netbridgev1.OldSide{Cloud: "old-admin", NetworkId: f.net, RouterId: f.router},
		New:    &netbridgev1.NewSide{Cloud: "new-admin", PhysicalNetwork: "physnet2", NetworkName: "routed-" + p},
		Routed: &netbridgev1.Routed{Cidr: cidr, GatewayIp: p + ".60"},
	}}))(t).GetBridge()
	t.Cleanup(func() {
		_, _ = c.RollbackBridge(context.Background(), &netbridgev1.RollbackBridgeRequest{Name: b.GetName()})
	})
	plan := must(c.PlanBridge(ctx, &netbridgev1.PlanBridgeRequest{Name: b.GetName()}))(t).GetPlan()
	want := []string{"old/reserve/" + p + ".60", "new/external_network", "new/external_subnet", "new/network", "new/subnet",
		"new/router", "new/router_interface", "new/router_gateway", "old/router_route"}
	if got := keys(plan.GetChanges()); len(got) != len(want) || got[5] != "new/router" || got[7] != "new/router_gateway" {
		t.Fatalf("plan %v, want %v", got, want)
	}
	must(c.ApplyBridge(ctx, &netbridgev1.ApplyBridgeRequest{Name: b.GetName(), PlanEtag: plan.GetPlanEtag()}))(t)
	id := bridgeID(b)
	rp := must(routers.List(f.nc, routers.ListOpts{Description: "hikkoshi-bridge:" + id, ProjectID: f.np}).AllPages(ctx))(t)
	rs := must(routers.ExtractRouters(rp))(t)
	if len(rs) != 1 {
		t.Fatalf("%d routers", len(rs))
	}
	gi := rs[0].GatewayInfo
	if gi.NetworkID == "" || gi.EnableSNAT == nil || *gi.EnableSNAT || len(gi.ExternalFixedIPs) != 1 || gi.ExternalFixedIPs[0].IPAddress != p+".60" {
		t.Fatalf("router gateway %+v, want the external network at %s.60 with SNAT off", gi, p)
	}
	var ext struct {
		External bool `json:"router:external"` // a plain struct: networks.Network's own UnmarshalJSON would drop it
	}
	must(0, networks.Get(ctx, f.nc, gi.NetworkID).ExtractInto(&ext))(t)
	if !ext.External {
		t.Fatal("the old VLAN is not an external network in the new cloud")
	}
	or := must(routers.Get(ctx, f.oc, f.router).Extract())(t)
	if len(or.Routes) != 1 || or.Routes[0].DestinationCIDR != cidr || or.Routes[0].NextHop != p+".60" {
		t.Fatalf("old router routes %v", or.Routes)
	}
	if again := must(c.PlanBridge(ctx, &netbridgev1.PlanBridgeRequest{Name: b.GetName()}))(t).GetPlan(); len(again.GetChanges()) != 0 {
		t.Fatalf("re-plan: %v", keys(again.GetChanges()))
	}
	rb := must(c.RollbackBridge(ctx, &netbridgev1.RollbackBridgeRequest{Name: b.GetName()}))(t)
	for project, sc := range map[string]*gophercloud.ServiceClient{f.op: f.oc, f.np: f.nc} {
		if nets, prts, rtrs := marked(t, sc, project, id); nets+prts+rtrs != 0 {
			t.Fatalf("after rollback: %d networks, %d ports, %d routers left", nets, prts, rtrs)
		}
	}
	if or := must(routers.Get(ctx, f.oc, f.router).Extract())(t); len(or.Routes) != 0 {
		t.Fatalf("old router routes after rollback %v", or.Routes)
	}
	sp := must(subnets.List(f.nc, subnets.ListOpts{CIDR: cidr, ProjectID: f.np}).AllPages(ctx))(t)
	if left := must(subnets.ExtractSubnets(sp))(t); len(left) != 0 {
		t.Fatalf("%d subnets %s left", len(left), cidr)
	}
	t.Logf("routed: %d changes applied, re-plan 0, rollback: %v", len(plan.GetChanges()), keys(rb.GetUndone()))
}
