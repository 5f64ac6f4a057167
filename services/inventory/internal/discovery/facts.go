package discovery

import (
	"fmt"
	"slices"
	"sort"
	"strconv"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
)

// index is a snapshot arranged for building facts.
type index struct {
	portsByDevice map[string][]int
	fipsByPort    map[string][]string
	subnets       map[string]int
	networks      map[string]int
	volumes       map[string]int
	// volumesByServer are the volumes Cinder says are attached to a server.
	volumesByServer map[string][]int
	snap            *Snapshot
}

func newIndex(s *Snapshot) *index {
	ix := &index{
		portsByDevice: map[string][]int{}, fipsByPort: map[string][]string{},
		subnets: map[string]int{}, networks: map[string]int{}, volumes: map[string]int{}, snap: s,
	}
	for i, p := range s.Ports {
		if isInstancePort(p) {
			ix.portsByDevice[p.DeviceID] = append(ix.portsByDevice[p.DeviceID], i)
		}
	}
	for _, f := range s.FloatingIPs {
		if f.PortID != "" {
			ix.fipsByPort[f.PortID] = append(ix.fipsByPort[f.PortID], f.FloatingIP)
		}
	}
	for i, sn := range s.Subnets {
		ix.subnets[sn.ID] = i
	}
	for i, n := range s.Networks {
		ix.networks[n.ID] = i
	}
	ix.volumesByServer = map[string][]int{}
	for i, v := range s.Volumes {
		ix.volumes[v.ID] = i
		for _, a := range v.Attachments {
			if a.ServerID != "" && !slices.Contains(ix.volumesByServer[a.ServerID], i) {
				ix.volumesByServer[a.ServerID] = append(ix.volumesByServer[a.ServerID], i)
			}
		}
	}
	return ix
}

// volumeFacts are the facts of a server's volumes: those Cinder says are attached to
// it, and of known (those Nova listed, or the stored facts named) the ones Cinder
// does not show these credentials at all, by ID only. A volume Cinder shows without
// an attachment to the server is not the server's any more. imageID and rootDevice
// pick the boot volume (VolumeFacts.boot). Sorted by ID.
func (ix *index) volumeFacts(serverID string, known []string, imageID, rootDevice string) []*inventoryv1.VolumeFacts {
	var out []*inventoryv1.VolumeFacts
	seen := map[string]bool{}
	for _, i := range ix.volumesByServer[serverID] {
		v := ix.snap.Volumes[i]
		seen[v.ID] = true
		vf := &inventoryv1.VolumeFacts{Id: v.ID, Name: v.Name, SizeGb: int32(v.Size), VolumeType: v.VolumeType}
		vf.Bootable, _ = strconv.ParseBool(v.Bootable)
		for _, a := range v.Attachments {
			if a.ServerID == serverID {
				vf.Device = a.Device
			}
		}
		out = append(out, vf)
	}
	for _, id := range known {
		if _, listed := ix.volumes[id]; !listed && !seen[id] {
			seen[id] = true
			out = append(out, &inventoryv1.VolumeFacts{Id: id})
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].GetId() < out[b].GetId() })
	if imageID == "" {
		var boot *inventoryv1.VolumeFacts
		for _, vf := range out {
			switch {
			case rootDevice != "" && vf.GetDevice() == rootDevice:
				boot = vf
			case rootDevice == "" && vf.GetBootable() && vf.GetDevice() != "" &&
				(boot == nil || vf.GetDevice() < boot.GetDevice()):
				boot = vf
			}
		}
		if boot != nil {
			boot.Boot = true
		}
	}
	return out
}

// instanceFacts builds a server's facts. Lists inside are sorted so that the same
// cloud state gives equal facts.
func (ix *index) instanceFacts(srv *servers.Server) *inventoryv1.InstanceFacts {
	f := &inventoryv1.InstanceFacts{
		Name: srv.Name, Status: srv.Status, Host: srv.Host, AvailabilityZone: srv.AvailabilityZone,
		KeyName: srv.KeyName, Metadata: srv.Metadata,
	}
	if !srv.Updated.IsZero() {
		f.ServerUpdateTime = timestamppb.New(srv.Updated)
	}
	f.Flavor = ix.flavor(srv.Flavor)
	if id, ok := srv.Image["id"].(string); ok {
		f.ImageId = id
		f.ImageName = ix.snap.Images[id]
	}
	seen := map[string]bool{}
	for _, sg := range srv.SecurityGroups {
		if name, ok := sg["name"].(string); ok && !seen[name] {
			seen[name] = true
			f.SecurityGroups = append(f.SecurityGroups, name)
		}
	}
	sort.Strings(f.SecurityGroups)
	f.Ports = ix.portFacts(srv.ID)
	if srv.RootDeviceName != nil {
		f.RootDeviceName = *srv.RootDeviceName
	}
	known := make([]string, 0, len(srv.AttachedVolumes))
	for _, av := range srv.AttachedVolumes {
		known = append(known, av.ID)
	}
	f.Volumes = ix.volumeFacts(srv.ID, known, f.GetImageId(), f.GetRootDeviceName())
	return f
}

// portFacts builds the facts of a server's ports, sorted by ID.
func (ix *index) portFacts(serverID string) []*inventoryv1.PortFacts {
	var out []*inventoryv1.PortFacts
	for _, i := range ix.portsByDevice[serverID] {
		p := ix.snap.Ports[i]
		pf := &inventoryv1.PortFacts{
			Id: p.ID, MacAddress: p.MACAddress, NetworkId: p.NetworkID, Status: p.Status,
			SecurityGroupIds: sortedCopy(p.SecurityGroups), FloatingIps: sortedCopy(ix.fipsByPort[p.ID]),
		}
		if n, ok := ix.networks[p.NetworkID]; ok {
			pf.NetworkName = ix.snap.Networks[n].Name
		}
		for _, ip := range p.FixedIPs {
			fip := &inventoryv1.FixedIP{SubnetId: ip.SubnetID, IpAddress: ip.IPAddress}
			if sn, ok := ix.subnets[ip.SubnetID]; ok {
				fip.Cidr = ix.snap.Subnets[sn].CIDR
			}
			pf.FixedIps = append(pf.FixedIps, fip)
		}
		out = append(out, pf)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].GetId() < out[b].GetId() })
	return out
}

// flavor reads Nova's flavor of a server: {"id"} before microversion 2.47, the
// name and size after; the flavor list fills in what is missing.
func (ix *index) flavor(m map[string]any) *inventoryv1.FlavorFacts {
	out := &inventoryv1.FlavorFacts{}
	if id, ok := m["id"].(string); ok {
		out.Id = id
		if fl, ok := ix.snap.Flavors[id]; ok {
			out.Name, out.Vcpus, out.RamMb, out.DiskGb = fl.Name, int32(fl.VCPUs), int32(fl.RAM), int32(fl.Disk)
		}
	}
	if name, ok := m["original_name"].(string); ok {
		out.Name = name
	}
	num := func(k string) int32 {
		if v, ok := m[k].(float64); ok {
			return int32(v)
		}
		return 0
	}
	if v := num("vcpus"); v > 0 {
		out.Vcpus, out.RamMb, out.DiskGb = v, num("ram"), num("disk")
	}
	return out
}

// networkOf builds the registry's view of a network with its subnets.
func (ix *index) network(cloud string, n Network) *inventoryv1.Network {
	out := &inventoryv1.Network{
		Name: fmt.Sprintf("clouds/%s/networks/%s", cloud, n.ID), Id: n.ID, DisplayName: n.Name,
		ProjectId: n.ProjectID, Shared: n.Shared, NetworkType: n.NetworkType, PhysicalNetwork: n.PhysicalNetwork,
	}
	if id, err := strconv.Atoi(n.SegmentationID); err == nil {
		out.SegmentationId = int32(id)
	}
	for _, sn := range ix.snap.Subnets {
		if sn.NetworkID != n.ID {
			continue
		}
		s := &inventoryv1.Subnet{
			Id: sn.ID, DisplayName: sn.Name, Cidr: sn.CIDR, GatewayIp: sn.GatewayIP,
			IpVersion: int32(sn.IPVersion), EnableDhcp: sn.EnableDHCP,
		}
		for _, p := range sn.AllocationPools {
			s.AllocationPools = append(s.AllocationPools, &inventoryv1.AllocationPool{Start: p.Start, End: p.End})
		}
		out.Subnets = append(out.Subnets, s)
	}
	sort.Slice(out.Subnets, func(a, b int) bool { return out.Subnets[a].GetId() < out.Subnets[b].GetId() })
	return out
}

func sortedCopy(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	out := append([]string(nil), in...)
	sort.Strings(out)
	return out
}
