package discovery

import (
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
)

func TestPreflightFindsWhatIsMissingAndWhatClashes(t *testing.T) {
	inst := func(name, flavor, image, network, ip string, gb int32) *inventoryv1.Workload {
		return &inventoryv1.Workload{Name: "workloads/" + name, Facts: &inventoryv1.Facts{Kind: &inventoryv1.Facts_Instance{Instance: &inventoryv1.InstanceFacts{
			Flavor: &inventoryv1.FlavorFacts{Name: flavor, DiskGb: gb}, ImageName: image,
			Ports:   []*inventoryv1.PortFacts{{NetworkName: network, FixedIps: []*inventoryv1.FixedIP{{IpAddress: ip, Cidr: "10.101.0.0/24", SubnetId: "old"}}}},
			Volumes: []*inventoryv1.VolumeFacts{{SizeGb: 10}},
		}}}}
	}
	phys := &inventoryv1.Workload{Name: "workloads/db-phys", Facts: &inventoryv1.Facts{Kind: &inventoryv1.Facts_Physical{Physical: &inventoryv1.PhysicalFacts{
		Disks: []*inventoryv1.Disk{{SizeBytes: 500 << 30}},
	}}}}
	d := &destination{
		flavors: map[string]bool{"m1.tiny": true}, images: map[string]bool{"centos-6": true}, networks: map[string]bool{"vlan-101": true},
		subnets: []subnets.Subnet{{ID: "new", Name: "vlan-101-v4", CIDR: "10.101.0.0/24",
			AllocationPools: []subnets.AllocationPool{{Start: "10.101.0.150", End: "10.101.0.199"}}}},
		ports: []ports.Port{{ID: "p1", DeviceOwner: "network:dhcp", FixedIPs: []ports.IP{{SubnetID: "new", IPAddress: "10.101.0.21"}}}},
	}
	// Booted from a 30 GiB volume, with a flavor that names a 20 GiB disk it does not use.
	bfv := inst("db-bfv", "m1.tiny", "", "vlan-101", "10.101.0.24", 20)
	bfv.GetFacts().GetInstance().Volumes = append(bfv.GetFacts().GetInstance().Volumes,
		&inventoryv1.VolumeFacts{SizeGb: 30, Boot: true, VolumeType: "standard"},
		&inventoryv1.VolumeFacts{SizeGb: 0, VolumeType: "legacy-ssd"}, &inventoryv1.VolumeFacts{SizeGb: 0, VolumeType: "legacy-hdd"})
	d.volumeTypes = map[string]bool{"standard": true, "ssd": true}
	r := preflight([]*inventoryv1.Workload{
		inst("web-1", "m1.tiny", "centos-6", "vlan-101", "10.101.0.21", 20),
		inst("web-2", "m1.large", "ubuntu", "old-vlan-101", "10.101.0.160", 20),
		inst("web-3", "m1.tiny", "centos-6", "vlan-101", "10.101.0.23", 20),
		phys, bfv,
	}, d, map[string]string{"legacy-ssd": "ssd"})
	if r.GetWorkloads() != 5 || r.GetDiskBytes() != (3*20+3*10+500+10+30)<<30 {
		t.Fatalf("workloads %d disk bytes %d", r.GetWorkloads(), r.GetDiskBytes())
	}
	if strings.Join(r.GetMissingFlavors(), ",") != "m1.large" || strings.Join(r.GetMissingImages(), ",") != "ubuntu" ||
		strings.Join(r.GetMissingNetworks(), ",") != "old-vlan-101" {
		t.Fatalf("missing %v %v %v", r.GetMissingFlavors(), r.GetMissingImages(), r.GetMissingNetworks())
	}
	// legacy-ssd is mapped to ssd, which the destination has; legacy-hdd is not.
	if strings.Join(r.GetMissingVolumeTypes(), ",") != "legacy-hdd" {
		t.Fatalf("missing volume types %v, want legacy-hdd", r.GetMissingVolumeTypes())
	}
	if len(r.GetIpConflicts()) != 2 || r.GetOk() {
		t.Fatalf("conflicts %v ok %v", r.GetIpConflicts(), r.GetOk())
	}
	for _, c := range r.GetIpConflicts() {
		switch c.GetIpAddress() {
		case "10.101.0.21":
			if !strings.Contains(c.GetReason(), "used by port p1") {
				t.Errorf("%v", c)
			}
		case "10.101.0.160":
			if !strings.Contains(c.GetReason(), "inside allocation pool 10.101.0.150-10.101.0.199") {
				t.Errorf("%v", c)
			}
		default:
			t.Errorf("unexpected conflict %v", c)
		}
	}
}
