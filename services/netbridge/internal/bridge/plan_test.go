package bridge

import (
	"slices"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
)

// planFixture is an old VLAN subnet 10.0.0.0/24 with pools .10-.99 and .150-.199,
// two servers' ports on it, and no network of the bridge in the new cloud yet (so
// the planner makes no API call: what it plans is all it computes).
func planFixture() (*network, *subnets.Subnet, []ports.Port) {
	on := &network{Network: networks.Network{ID: "old-net", Name: "old-vlan"}}
	on.NetworkType, on.PhysicalNetwork, on.SegmentationID = "vlan", "physnet1", "101"
	osub := &subnets.Subnet{ID: "old-sub", CIDR: "10.0.0.0/24", GatewayIP: "10.0.0.1",
		AllocationPools: []subnets.AllocationPool{{Start: "10.0.0.10", End: "10.0.0.99"}, {Start: "10.0.0.150", End: "10.0.0.199"}}}
	port := func(id, ip string) ports.Port {
		return ports.Port{ID: id, Name: id, FixedIPs: []ports.IP{{SubnetID: "old-sub", IPAddress: ip}}}
	}
	return on, osub, []ports.Port{port("web-1", "10.0.0.11"), port("db-1", "10.0.0.12")}
}

func planShared(t *testing.T, b *netbridgev1.Bridge) (*Planned, error) {
	t.Helper()
	on, osub, oports := planFixture()
	p := &Planned{Plan: &netbridgev1.Plan{Bridge: b.GetName()}, st: &state{}, old: &Side{Name: "old"}, new: &Side{Name: "new"}}
	err := (&Engine{}).planShared(t.Context(), p, &planInput{b: b, id: "br-1", on: on, osub: osub, oports: oports, physnet: "physnet1", seg: 101, name: "old-vlan"})
	for _, s := range p.steps {
		p.Plan.Changes = append(p.Plan.Changes, s.change)
	}
	return p, err
}

// TestPlanSharedSplitsThePools: the first plan gives the new cloud the tail of the
// old pools, shrinks the old pools to the rest, makes the new network and subnet with
// the new pools, and reserves each side's addresses on the other.
func TestPlanSharedSplitsThePools(t *testing.T) {
	b := &netbridgev1.Bridge{Name: "bridges/br-1", Mode: netbridgev1.BridgeMode_BRIDGE_MODE_SHARED_L2,
		SharedL2: &netbridgev1.SharedL2{NewPool: "10.0.0.150-10.0.0.199"}}
	p, err := planShared(t, b)
	if err != nil {
		t.Fatal(err)
	}
	sp := p.Plan.GetSplit()
	if !slices.Equal(sp.GetOldPools(), []string{"10.0.0.10-10.0.0.99"}) || !slices.Equal(sp.GetNewPools(), []string{"10.0.0.150-10.0.0.199"}) {
		t.Fatalf("split %v", sp)
	}
	if len(p.Plan.GetConflicts()) != 0 {
		t.Fatalf("conflicts %v", p.Plan.GetConflicts())
	}
	var keys []string
	for _, c := range p.Plan.GetChanges() {
		keys = append(keys, c.GetKey())
		if c.GetChangeAction() == netbridgev1.ChangeAction_CHANGE_ACTION_UNSPECIFIED || c.GetCloudSide() == netbridgev1.CloudSide_CLOUD_SIDE_UNSPECIFIED {
			t.Errorf("change %s (%s, %s) without its enums", c.GetKey(), c.GetAction(), c.GetSide())
		}
	}
	for _, want := range []string{"old/subnet_pools", "new/network", "new/subnet"} {
		if !slices.Contains(keys, want) {
			t.Errorf("no change %s in %v", want, keys)
		}
	}
}

// TestPlanSharedRefusesAnUnreadableStoredSplit: a bridge's stored split whose old
// pools do not parse is an error — read as empty, it planned the old subnet's pools
// down to nothing (the old cloud could then hand out no address at all).
func TestPlanSharedRefusesAnUnreadableStoredSplit(t *testing.T) {
	for _, sp := range []*netbridgev1.PoolSplit{
		{Cidr: "10.0.0.0/24", OldPools: []string{"10.0.0.99-10.0.0.10"}, NewPools: []string{"10.0.0.150-10.0.0.199"}},
		{Cidr: "10.0.0.0/24", OldPools: []string{"10.0.0.10-10.0.0.99"}, NewPools: []string{"not-a-range"}},
	} {
		b := &netbridgev1.Bridge{Name: "bridges/br-1", Mode: netbridgev1.BridgeMode_BRIDGE_MODE_SHARED_L2, Split: sp}
		p, err := planShared(t, b)
		if err == nil {
			var shrink string
			for _, c := range p.Plan.GetChanges() {
				if c.GetKey() == "old/subnet_pools" {
					shrink = c.GetDescription()
				}
			}
			t.Fatalf("split %v planned without an error (old pools change: %q)", sp, shrink)
		}
		if !strings.Contains(err.Error(), "split") {
			t.Errorf("error %q does not say it is the stored split", err)
		}
	}
}
