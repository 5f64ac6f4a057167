// Package contract runs the netbridge binary against a real etcd and the dev
// cloud's Neutron (tilt/devcloud), with the old and new projects standing in for the
// two clouds, speaking to netbridge only over gRPC.
package contract

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/provider"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

var binary string

func TestMain(m *testing.M) {
	bin, cleanup := servicetest.MustBuild("github.com/hikkoshi/hikkoshi/services/netbridge/cmd/netbridge")
	binary = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

func must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// oldNet is the fixture: a VLAN provider network of the old project with a /26,
// pools .10–.50, three workload ports (.12, .15, .20) and a router on .1.
type oldNet struct {
	oc, nc           *gophercloud.ServiceClient // old-admin, new-admin Neutron
	op, np           string                     // their projects
	net, sub, router string
	vlan             int
	prefix           string // "10.1xx.0"
	ports            map[string]string
}

func fixture(t *testing.T) *oldNet {
	t.Helper()
	o, n := devcloud.Open(t, "old-admin"), devcloud.Open(t, "new-admin")
	f := &oldNet{oc: must(o.Network())(t), nc: must(n.Network())(t), ports: map[string]string{}}
	oldProject := must(o.ProjectID())(t)
	f.op, f.np = oldProject, must(n.ProjectID())(t)
	ctx := t.Context()
	tag := fmt.Sprintf("ctest-nb-%d", rand.IntN(1_000_000))
	start := 150 + rand.IntN(50)
	for i := range 50 {
		vlan := 150 + (start-150+i)%50
		net, err := networks.Create(ctx, f.oc, provider.CreateOptsExt{
			CreateOptsBuilder: networks.CreateOpts{Name: tag, ProjectID: oldProject},
			Segments:          []provider.Segment{{NetworkType: "vlan", PhysicalNetwork: "physnet1", SegmentationID: vlan}},
		}).Extract()
		if err != nil {
			continue // that VLAN is in use
		}
		f.net, f.vlan = net.ID, vlan
		break
	}
	if f.net == "" {
		t.Fatal("no free VLAN on physnet1 150–199")
	}
	t.Cleanup(func() { _ = networks.Delete(context.Background(), f.oc, f.net).ExtractErr() })
	f.prefix = fmt.Sprintf("10.%d.0", f.vlan)
	gw := f.prefix + ".1"
	sub := must(subnets.Create(ctx, f.oc, subnets.CreateOpts{
		NetworkID: f.net, Name: tag + "-v4", CIDR: f.prefix + ".0/26", IPVersion: gophercloud.IPv4, GatewayIP: &gw, ProjectID: oldProject,
		AllocationPools: []subnets.AllocationPool{{Start: f.prefix + ".10", End: f.prefix + ".50"}},
	}).Extract())(t)
	f.sub = sub.ID
	for _, h := range []string{"12", "15", "20"} {
		p := must(ports.Create(ctx, f.oc, ports.CreateOpts{Name: tag + "-w" + h, NetworkID: f.net, ProjectID: oldProject,
			FixedIPs: []ports.IP{{SubnetID: f.sub, IPAddress: f.prefix + "." + h}}}).Extract())(t)
		f.ports[h] = p.ID
		t.Cleanup(func() { _ = ports.Delete(context.Background(), f.oc, p.ID).ExtractErr() })
	}
	r := must(routers.Create(ctx, f.oc, routers.CreateOpts{Name: tag + "-router", ProjectID: oldProject}).Extract())(t)
	f.router = r.ID
	must(routers.AddInterface(ctx, f.oc, r.ID, routers.AddInterfaceOpts{SubnetID: f.sub}).Extract())(t)
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = routers.Update(ctx, f.oc, r.ID, routers.UpdateOpts{Routes: &[]routers.Route{}}).Extract()
		_, _ = routers.RemoveInterface(ctx, f.oc, r.ID, routers.RemoveInterfaceOpts{SubnetID: f.sub}).Extract()
		_ = routers.Delete(ctx, f.oc, r.ID).ExtractErr()
	})
	return f
}

func start(t *testing.T) netbridgev1.NetbridgeServiceClient {
	t.Helper()
	env := servicetest.NewEnv(t)
	p := env.Start(t, binary, "netbridge", "--clouds-yaml", devcloud.CloudsYAML())
	return netbridgev1.NewNetbridgeServiceClient(p.Conn)
}

// marked lists what carries the bridge's marker on one side.
// The dev cloud's two clouds share one Neutron, so it is scoped by project.
func marked(t *testing.T, sc *gophercloud.ServiceClient, project, id string) (nets, prts, rtrs int) {
	t.Helper()
	marker := "hikkoshi-bridge:" + id
	np := must(networks.List(sc, networks.ListOpts{Description: marker, ProjectID: project}).AllPages(t.Context()))(t)
	pp := must(ports.List(sc, ports.ListOpts{Description: marker, ProjectID: project}).AllPages(t.Context()))(t)
	rp := must(routers.List(sc, routers.ListOpts{Description: marker, ProjectID: project}).AllPages(t.Context()))(t)
	return len(must(networks.ExtractNetworks(np))(t)), len(must(ports.ExtractPorts(pp))(t)), len(must(routers.ExtractRouters(rp))(t))
}

func pools(t *testing.T, sc *gophercloud.ServiceClient, id string) string {
	t.Helper()
	s := must(subnets.Get(t.Context(), sc, id).Extract())(t)
	var out []string
	for _, p := range s.AllocationPools {
		out = append(out, p.Start+"-"+p.End)
	}
	return strings.Join(out, ",")
}

func keys(cs []*netbridgev1.Change) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.GetKey())
	}
	return out
}

func bridgeID(b *netbridgev1.Bridge) string { return strings.TrimPrefix(b.GetName(), "bridges/") }

// TestSharedL2 plans, applies, re-applies (no change), finishes a half-applied
// bridge, refuses a conflicting plan, and rolls back to nothing.
func TestSharedL2(t *testing.T) {
	f := fixture(t)
	c := start(t)
	ctx := t.Context()
	spec := &netbridgev1.Bridge{
		Mode:     netbridgev1.BridgeMode_BRIDGE_MODE_SHARED_L2,
		Old:      &netbridgev1.OldSide{Cloud: "old-admin", NetworkId: f.net},
		New:      &netbridgev1.NewSide{Cloud: "new-admin", PhysicalNetwork: "physnet2"},
		SharedL2: &netbridgev1.SharedL2{OldKeepFree: 5},
	}
	b := must(c.CreateBridge(ctx, &netbridgev1.CreateBridgeRequest{Bridge: spec}))(t).GetBridge()
	t.Cleanup(func() {
		_, _ = c.RollbackBridge(context.Background(), &netbridgev1.RollbackBridgeRequest{Name: b.GetName()})
	})
	plan := must(c.PlanBridge(ctx, &netbridgev1.PlanBridgeRequest{Name: b.GetName()}))(t).GetPlan()
	p := f.prefix
	// In use .12 .15 .20, then 5 free: the old cloud keeps .10–.25, the new one gets .26–.50.
	if got := strings.Join(plan.GetSplit().GetOldPools(), ","); got != p+".10-"+p+".25" {
		t.Fatalf("old pools %s", got)
	}
	if got := strings.Join(plan.GetSplit().GetNewPools(), ","); got != p+".26-"+p+".50" {
		t.Fatalf("new pools %s", got)
	}
	// 1 pool update + 25 old reservations + network + subnet + 16 new reservations.
	if n := len(plan.GetChanges()); n != 44 || len(plan.GetConflicts()) != 0 {
		t.Fatalf("%d changes %v, conflicts %v", n, keys(plan.GetChanges())[:5], plan.GetConflicts())
	}
	if pools(t, f.oc, f.sub) != p+".10-"+p+".50" {
		t.Fatal("the plan changed the old pools")
	}
	// A stale plan is refused.
	_, err := c.ApplyBridge(ctx, &netbridgev1.ApplyBridgeRequest{Name: b.GetName(), PlanEtag: "1"})
	servicetest.WantCode(t, err, codes.Aborted)
	applied := must(c.ApplyBridge(ctx, &netbridgev1.ApplyBridgeRequest{Name: b.GetName(), PlanEtag: plan.GetPlanEtag()}))(t)
	if len(applied.GetApplied()) != 44 || applied.GetBridge().GetState() != netbridgev1.BridgeState_BRIDGE_STATE_APPLIED {
		t.Fatalf("applied %d changes, state %s (%s)", len(applied.GetApplied()), applied.GetBridge().GetState(), applied.GetBridge().GetError())
	}
	if got := pools(t, f.oc, f.sub); got != p+".10-"+p+".25" {
		t.Fatalf("old pools after apply %s", got)
	}
	id := bridgeID(b)
	if nets, prts, _ := marked(t, f.nc, f.np, id); nets != 1 || prts != 16 {
		t.Fatalf("new cloud: %d networks, %d reservations; want 1 and 16", nets, prts)
	}
	if _, prts, _ := marked(t, f.oc, f.op, id); prts != 25 {
		t.Fatalf("old cloud: %d reservations; want 25", prts)
	}
	var nn struct {
		networks.Network
		provider.NetworkProviderExt
	}
	np := must(networks.List(f.nc, networks.ListOpts{Description: "hikkoshi-bridge:" + id, ProjectID: f.np}).AllPages(ctx))(t)
	var list []struct {
		networks.Network
		provider.NetworkProviderExt
	}
	if err := networks.ExtractNetworksInto(np, &list); err != nil || len(list) != 1 {
		t.Fatal(err)
	}
	nn = list[0]
	if nn.PhysicalNetwork != "physnet2" || nn.SegmentationID != fmt.Sprint(f.vlan) || nn.NetworkType != "vlan" {
		t.Fatalf("new network %s %s %s, want vlan physnet2 %d", nn.NetworkType, nn.PhysicalNetwork, nn.SegmentationID, f.vlan)
	}
	// Re-apply: nothing to do.
	again := must(c.PlanBridge(ctx, &netbridgev1.PlanBridgeRequest{Name: b.GetName()}))(t).GetPlan()
	if len(again.GetChanges()) != 0 {
		t.Fatalf("a second plan has %d changes: %v", len(again.GetChanges()), keys(again.GetChanges()))
	}
	if n := len(must(c.ApplyBridge(ctx, &netbridgev1.ApplyBridgeRequest{Name: b.GetName()}))(t).GetApplied()); n != 0 {
		t.Fatalf("a second apply made %d changes", n)
	}
	// Half-applied: three reservations gone (a crash, a hand) — the plan has exactly them.
	pp := must(ports.List(f.nc, ports.ListOpts{Description: "hikkoshi-bridge:" + id, ProjectID: f.np}).AllPages(ctx))(t)
	for _, pt := range must(ports.ExtractPorts(pp))(t)[:3] {
		must(0, ports.Delete(ctx, f.nc, pt.ID).ExtractErr())(t)
	}
	half := must(c.PlanBridge(ctx, &netbridgev1.PlanBridgeRequest{Name: b.GetName()}))(t).GetPlan()
	if len(half.GetChanges()) != 3 || !strings.HasPrefix(half.GetChanges()[0].GetKey(), "new/reserve/") {
		t.Fatalf("after 3 reservations went: plan %v", keys(half.GetChanges()))
	}
	if n := len(must(c.ApplyBridge(ctx, &netbridgev1.ApplyBridgeRequest{Name: b.GetName()}))(t).GetApplied()); n != 3 {
		t.Fatalf("finishing made %d changes, want 3", n)
	}
	// Roll back: nothing left, the old pools as they were.
	rb := must(c.RollbackBridge(ctx, &netbridgev1.RollbackBridgeRequest{Name: b.GetName()}))(t)
	if rb.GetBridge().GetState() != netbridgev1.BridgeState_BRIDGE_STATE_ROLLED_BACK {
		t.Fatalf("after rollback %s: %s", rb.GetBridge().GetState(), rb.GetBridge().GetError())
	}
	for side, sc := range map[string]*gophercloud.ServiceClient{f.op: f.oc, f.np: f.nc} {
		if nets, prts, rtrs := marked(t, sc, side, id); nets+prts+rtrs != 0 {
			t.Fatalf("%s cloud after rollback: %d networks, %d ports, %d routers left", side, nets, prts, rtrs)
		}
	}
	if got := pools(t, f.oc, f.sub); got != p+".10-"+p+".50" {
		t.Fatalf("old pools after rollback %s", got)
	}
	must(c.DeleteBridge(ctx, &netbridgev1.DeleteBridgeRequest{Name: b.GetName()}))(t)
	t.Logf("shared L2: 44 changes applied, re-plan 0, 3 lost reservations re-made, rollback: %v", keys(rb.GetUndone()))
}

// TestConflictsAndRefusals: a new pool over a port in use is a conflict in the plan
// and the apply changes nothing; bad requests name their fields.
func TestConflictsAndRefusals(t *testing.T) {
	f := fixture(t)
	c := start(t)
	ctx := t.Context()
	p := f.prefix
	b := must(c.CreateBridge(ctx, &netbridgev1.CreateBridgeRequest{Bridge: &netbridgev1.Bridge{
		Mode:     netbridgev1.BridgeMode_BRIDGE_MODE_SHARED_L2,
		Old:      &netbridgev1.OldSide{Cloud: "old-admin", NetworkId: f.net},
		New:      &netbridgev1.NewSide{Cloud: "new-admin", PhysicalNetwork: "physnet2"},
		SharedL2: &netbridgev1.SharedL2{NewPool: p + ".14-" + p + ".30"},
	}}))(t).GetBridge()
	plan := must(c.PlanBridge(ctx, &netbridgev1.PlanBridgeRequest{Name: b.GetName()}))(t).GetPlan()
	var ips []string
	for _, cf := range plan.GetConflicts() {
		ips = append(ips, cf.GetIpAddress())
	}
	if !slices.Equal(ips, []string{p + ".15", p + ".20"}) {
		t.Fatalf("conflicts at %v, want .15 and .20 (ports in the requested new pool)", ips)
	}
	_, err := c.ApplyBridge(ctx, &netbridgev1.ApplyBridgeRequest{Name: b.GetName()})
	servicetest.WantCode(t, err, codes.FailedPrecondition)
	if pools(t, f.oc, f.sub) != p+".10-"+p+".50" {
		t.Fatal("a refused apply changed the old pools")
	}
	if nets, prts, _ := marked(t, f.nc, f.np, bridgeID(b)); nets+prts != 0 {
		t.Fatal("a refused apply made something")
	}
	_, err = c.CreateBridge(ctx, &netbridgev1.CreateBridgeRequest{Bridge: &netbridgev1.Bridge{
		Mode: netbridgev1.BridgeMode_BRIDGE_MODE_ROUTED, Old: &netbridgev1.OldSide{NetworkId: "x"},
		Routed: &netbridgev1.Routed{Cidr: "10.0.0.0/33"},
	}})
	fv := apierr.FieldViolations(err)
	for _, field := range []string{"bridge.old.cloud", "bridge.old.network_id", "bridge.new.cloud", "bridge.routed.cidr", "bridge.routed.gateway_ip"} {
		if status.Code(err) != codes.InvalidArgument || fv[field] == "" {
			t.Fatalf("bad create: %v; want INVALID_ARGUMENT on %s", err, field)
		}
	}
	_, err = c.MoveAddressBack(ctx, &netbridgev1.MoveAddressBackRequest{Bridge: "br-1", IpAddress: "10.0.0.300"})
	fv = apierr.FieldViolations(err)
	if status.Code(err) != codes.InvalidArgument || fv["bridge"] == "" || fv["ip_address"] == "" {
		t.Fatalf("bad move back: %v; want INVALID_ARGUMENT on bridge and ip_address", err)
	}
	// An address that was never moved, on a bridge not applied: its old port holds it.
	back := must(c.MoveAddressBack(ctx, &netbridgev1.MoveAddressBackRequest{Bridge: b.GetName(), IpAddress: p + ".15"}))(t)
	if back.GetOldPortId() != f.ports["15"] {
		t.Fatalf("move back of an address never moved: %v", back)
	}
}
