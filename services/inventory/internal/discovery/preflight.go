package discovery

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"sort"

	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumetypes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
)

// destination is what a pre-flight needs to know of a destination cloud.
type destination struct {
	flavors  map[string]bool // names
	images   map[string]bool // names
	networks map[string]bool // names
	subnets  []subnets.Subnet
	ports    []ports.Port
	// volumeTypes are the destination Cinder's volume types (names); nil when the
	// destination has no Cinder.
	volumeTypes map[string]bool
}

func listDestination(ctx context.Context, c Clients) (*destination, error) {
	d := &destination{flavors: map[string]bool{}, images: map[string]bool{}, networks: map[string]bool{}}
	s := &Snapshot{}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(listConcurrency)
	g.Go(func() error {
		fl, err := extractAll(gctx, flavors.ListDetail(c.Compute, flavors.ListOpts{AccessType: flavors.AllAccess}), flavors.ExtractFlavors)
		for _, f := range fl {
			d.flavors[f.Name] = true
		}
		return wrap("list the destination's flavors", err)
	})
	g.Go(func() error {
		im, err := extractAll(gctx, images.List(c.Image, images.ListOpts{}), images.ExtractImages)
		for _, i := range im {
			d.images[i.Name] = true
		}
		return wrap("list the destination's images", err)
	})
	g.Go(func() (err error) {
		d.ports, err = extractAll(gctx, ports.List(c.Network, ports.ListOpts{}), ports.ExtractPorts)
		return wrap("list the destination's ports", err)
	})
	if c.BlockStorage != nil {
		d.volumeTypes = map[string]bool{}
		g.Go(func() error {
			vt, err := extractAll(gctx, volumetypes.List(c.BlockStorage, volumetypes.ListOpts{}), volumetypes.ExtractVolumeTypes)
			for _, t := range vt {
				d.volumeTypes[t.Name] = true
			}
			return wrap("list the destination's volume types", err)
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := s.listRest(ctx, c, zeroTime, false); err != nil { // networks and subnets
		return nil, err
	}
	for _, n := range s.Networks {
		d.networks[n.Name] = true
	}
	d.subnets = s.Subnets
	return d, nil
}

// Preflight checks wave against the destination cloud dest, read live; volumeTypes
// maps source volume types to the destination's, as the run will.
func (s *Syncer) Preflight(ctx context.Context, wave int32, dest string, volumeTypes map[string]string) (*inventoryv1.PreflightReport, error) {
	if !slices.Contains(s.destinations, dest) {
		return nil, apierr.InvalidArgument("destination", "%q is not a destination cloud of this inventory: use one of %v (--destination-clouds)", dest, s.destinations)
	}
	var ws []*inventoryv1.Workload
	if _, err := s.store.Scan(ctx, func(w *inventoryv1.Workload, _ int64) error {
		if w.GetWave() == wave && !w.GetVanished() {
			ws = append(ws, w)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if len(ws) == 0 {
		return nil, apierr.New(codes.NotFound, "WAVE_EMPTY", "no workload is in wave %d: accept a plan first", wave)
	}
	cl, _, err := s.open(ctx, dest, func() {})
	if err != nil {
		return nil, apierr.New(codes.Unavailable, "CLOUD_UNAVAILABLE", "open destination %q: %v", dest, err)
	}
	d, err := listDestination(ctx, cl)
	if err != nil {
		return nil, apierr.New(codes.Unavailable, "CLOUD_UNAVAILABLE", "destination %q: %v", dest, err)
	}
	r := preflight(ws, d, volumeTypes)
	r.Wave, r.Destination = wave, dest
	return r, nil
}

// preflight compares a wave's workloads with a destination; volumeTypes maps
// source volume types to the destination's.
func preflight(ws []*inventoryv1.Workload, d *destination, volumeTypes map[string]string) *inventoryv1.PreflightReport {
	r := &inventoryv1.PreflightReport{Workloads: int32(len(ws))}
	missing := func(set map[string]bool, name string, out *[]string) {
		if name != "" && !set[name] && !slices.Contains(*out, name) {
			*out = append(*out, name)
		}
	}
	for _, w := range ws {
		if f := w.GetFacts().GetInstance(); f != nil {
			// A server booted from a volume has its root disk there, not in the
			// flavor (whose disk is usually 0 for such servers, or unused).
			boot := false
			for _, v := range f.GetVolumes() {
				r.DiskBytes += int64(v.GetSizeGb()) << 30
				boot = boot || v.GetBoot()
				t := v.GetVolumeType()
				if m, ok := volumeTypes[t]; ok {
					t = m
				}
				missing(d.volumeTypes, t, &r.MissingVolumeTypes)
			}
			if !boot {
				r.DiskBytes += int64(f.GetFlavor().GetDiskGb()) << 30
			}
			missing(d.flavors, f.GetFlavor().GetName(), &r.MissingFlavors)
			missing(d.images, f.GetImageName(), &r.MissingImages)
			for _, p := range f.GetPorts() {
				missing(d.networks, p.GetNetworkName(), &r.MissingNetworks)
				for _, ip := range p.GetFixedIps() {
					r.IpConflicts = append(r.IpConflicts, conflicts(w.GetName(), ip, d)...)
				}
			}
		}
		if f := w.GetFacts().GetPhysical(); f != nil {
			for _, disk := range f.GetDisks() {
				r.DiskBytes += disk.GetSizeBytes()
			}
		}
	}
	sort.Strings(r.MissingFlavors)
	sort.Strings(r.MissingImages)
	sort.Strings(r.MissingNetworks)
	sort.Strings(r.MissingVolumeTypes)
	r.Ok = len(r.MissingFlavors)+len(r.MissingImages)+len(r.MissingNetworks)+len(r.MissingVolumeTypes)+len(r.IpConflicts) == 0
	return r
}

// conflicts reports how an address of the source clashes with the destination:
// inside an allocation pool of a destination subnet with the same CIDR (Neutron could
// hand it to someone else), or already on a destination port in such a subnet.
func conflicts(workload string, ip *inventoryv1.FixedIP, d *destination) []*inventoryv1.IPConflict {
	addr := net.ParseIP(ip.GetIpAddress())
	if addr == nil || ip.GetCidr() == "" {
		return nil
	}
	var out []*inventoryv1.IPConflict
	same := map[string]bool{}
	for _, sn := range d.subnets {
		if sn.CIDR != ip.GetCidr() {
			continue
		}
		same[sn.ID] = true
		for _, pool := range sn.AllocationPools {
			lo, hi := net.ParseIP(pool.Start), net.ParseIP(pool.End)
			if lo != nil && hi != nil && bytes.Compare(addr.To16(), lo.To16()) >= 0 && bytes.Compare(addr.To16(), hi.To16()) <= 0 {
				out = append(out, &inventoryv1.IPConflict{Workload: workload, IpAddress: ip.GetIpAddress(),
					Reason: fmt.Sprintf("inside allocation pool %s-%s of subnet %s (%s): Neutron may hand it out there", pool.Start, pool.End, sn.Name, sn.ID)})
			}
		}
	}
	for _, p := range d.ports {
		for _, f := range p.FixedIPs {
			if same[f.SubnetID] && f.IPAddress == ip.GetIpAddress() {
				out = append(out, &inventoryv1.IPConflict{Workload: workload, IpAddress: ip.GetIpAddress(),
					Reason: fmt.Sprintf("used by port %s (%s) in the destination", p.ID, p.DeviceOwner)})
			}
		}
	}
	return out
}
