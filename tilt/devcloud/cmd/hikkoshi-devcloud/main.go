// Command hikkoshi-devcloud shows what the dev cloud (tilt/devcloud/devcloud.sh) holds,
// through gophercloud and its clouds.yaml, and builds the demo's estate in it.
//
//	hikkoshi-devcloud tour      each cloud: token, endpoints, images, flavors, networks, computes
//	hikkoshi-devcloud estate    boot the demo's servers in the old cloud (idempotent, by name)
//	                            and print one JSON object per server
//	hikkoshi-devcloud snapshot  boot the seed image on the TCG compute, snapshot it, and
//	                            compare the snapshot's bytes with the seed's (then clean up)
//	hikkoshi-devcloud traffic --lb NAME [--rate N] [--for D] [-o json]
//	                            the traffic meter: requests through a load balancer's VIP
//	                            from inside the data plane's namespace, counted (traffic.go)
//	hikkoshi-devcloud disk-marker IMAGE [--cloud new]
//	                            the server marker a dev cloud snapshot carries (marker.go)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/snapshots"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/services"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/volumeattach"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/hikkoshi/hikkoshi/platform/cloud"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

const usage = "usage: hikkoshi-devcloud tour | estate | snapshot | subnet-id | network-id | dest-network | undo-moves | traffic ... | disk-marker ..."

func main() {
	if len(os.Args) >= 2 && (os.Args[1] == "traffic" || os.Args[1] == "disk-marker") {
		run := traffic
		if os.Args[1] == "disk-marker" {
			run = diskMarker
		}
		if err := run(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "hikkoshi-devcloud:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var err error
	switch os.Args[1] {
	case "tour":
		err = tour(ctx)
	case "estate":
		err = estate(ctx)
	case "snapshot":
		err = snapshot(ctx)
	case "subnet-id":
		err = subnetID(ctx, false)
	case "network-id":
		err = subnetID(ctx, true)
	case "dest-network":
		err = destNetwork(ctx)
	case "undo-moves":
		err = undoMoves(ctx)
	default:
		err = fmt.Errorf("unknown command %q: want tour, estate, snapshot, subnet-id, network-id, dest-network or undo-moves", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hikkoshi-devcloud:", err)
		os.Exit(1)
	}
}

func open(ctx context.Context, name string) (*cloud.Cloud, error) {
	if why := devcloud.Up(); why != "" {
		return nil, fmt.Errorf("dev cloud not up (%s): run %s up --libvirt", why, devcloud.Script())
	}
	return cloud.Open(ctx, name, cloud.WithCloudsYAML(devcloud.CloudsYAML()), cloud.WithUserAgent("hikkoshi-devcloud"))
}

// subnetID prints the ID of the old cloud's VLAN subnet (where the estate's ports
// and the demo's load balancer VIPs are), or of its network.
func subnetID(ctx context.Context, network bool) error {
	c, err := open(ctx, "old")
	if err != nil {
		return err
	}
	nc, err := c.Network()
	if err != nil {
		return err
	}
	sub, err := devcloud.FindSubnet(ctx, nc, devcloud.VLANSubnet)
	if err != nil {
		return err
	}
	if network {
		fmt.Println(sub.NetworkID)
	} else {
		fmt.Println(sub.ID)
	}
	return nil
}

// DestNetwork is the network in the new project that converted instances boot on,
// with the old VLAN's CIDR (what netbridge will build; made by hand until then).
const DestNetwork = "new-vlan-101"

// destNetwork makes DestNetwork in the new cloud if it is missing and prints its ID.
func destNetwork(ctx context.Context) error {
	c, err := open(ctx, "new")
	if err != nil {
		return err
	}
	nc, err := c.Network()
	if err != nil {
		return err
	}
	pages, err := networks.List(nc, networks.ListOpts{Name: DestNetwork}).AllPages(ctx)
	if err != nil {
		return err
	}
	list, _ := networks.ExtractNetworks(pages)
	if len(list) > 0 {
		fmt.Println(list[0].ID)
		return nil
	}
	n, err := networks.Create(ctx, nc, networks.CreateOpts{Name: DestNetwork}).Extract()
	if err != nil {
		return err
	}
	if _, err := subnets.Create(ctx, nc, subnets.CreateOpts{
		NetworkID: n.ID, Name: DestNetwork + "-v4", CIDR: "10.101.0.0/24", IPVersion: gophercloud.IPv4,
		AllocationPools: []subnets.AllocationPool{{Start: "10.101.0.200", End: "10.101.0.250"}},
	}).Extract(); err != nil {
		return err
	}
	fmt.Println(n.ID)
	return nil
}

// undoMoves deletes what converter jobs made in the dev cloud (servers and images in
// the new region marked by a job, their ports, the snapshots in the old region) and
// starts the sources those snapshots were taken of, so the demo can run again.
func undoMoves(ctx context.Context) error {
	oc, err := open(ctx, "old")
	if err != nil {
		return err
	}
	ncl, err := open(ctx, "new")
	if err != nil {
		return err
	}
	oldc, err := clientsOf(oc)
	if err != nil {
		return err
	}
	newc, err := clientsOf(ncl)
	if err != nil {
		return err
	}
	n := 0
	pages, err := servers.List(newc.compute, servers.ListOpts{}).AllPages(ctx)
	if err != nil {
		return err
	}
	srvs, _ := servers.ExtractServers(pages)
	for _, s := range srvs {
		if s.Metadata["hikkoshi_job"] == "" {
			continue
		}
		if err := servers.Delete(ctx, newc.compute, s.ID).ExtractErr(); err == nil {
			n++
		}
		for range 120 {
			if _, err := servers.Get(ctx, newc.compute, s.ID).Extract(); err != nil {
				break
			}
			_ = sleep(ctx, 250*time.Millisecond)
		}
	}
	pp, err := ports.List(newc.network, ports.ListOpts{}).AllPages(ctx)
	if err != nil {
		return err
	}
	ps, _ := ports.ExtractPorts(pp)
	for _, p := range ps {
		if strings.HasPrefix(p.Name, "hikkoshi-") && p.DeviceID == "" {
			_ = ports.Delete(ctx, newc.network, p.ID).ExtractErr()
		}
	}
	// Volumes: the moves' new volumes (hikkoshi_job in their metadata) once their
	// servers are gone, and the snapshots and temporary volumes of moves cut short.
	if newc.volume != nil {
		vp, err := volumes.List(newc.volume, volumes.ListOpts{}).AllPages(ctx)
		if err != nil {
			return err
		}
		vs, _ := volumes.ExtractVolumes(vp)
		for _, v := range vs {
			if v.Metadata["hikkoshi_job"] != "" {
				_ = devcloud.DeleteVolume(newc.volume, v.ID)
			}
		}
	}
	if oldc.volume != nil {
		vp, err := volumes.List(oldc.volume, volumes.ListOpts{}).AllPages(ctx)
		if err != nil {
			return err
		}
		vs, _ := volumes.ExtractVolumes(vp)
		for _, v := range vs {
			if strings.HasPrefix(v.Name, "hikkoshi-") && strings.Contains(v.Name, "-vol") {
				_ = devcloud.DeleteVolume(oldc.volume, v.ID)
			}
		}
		sp, err := snapshots.List(oldc.volume, snapshots.ListOpts{}).AllPages(ctx)
		if err != nil {
			return err
		}
		ss, _ := snapshots.ExtractSnapshots(sp)
		for _, sn := range ss {
			if strings.HasPrefix(sn.Name, "hikkoshi-") {
				_ = snapshots.Delete(ctx, oldc.volume, sn.ID).ExtractErr()
			}
		}
	}
	moved := map[string]bool{} // source servers, from their snapshots' instance_uuid
	for _, side := range []struct {
		ic   *gophercloud.ServiceClient
		keep func(images.Image) bool
	}{
		{newc.image, func(i images.Image) bool {
			return !slices.Contains(i.Tags, "hikkoshi") && !slices.Contains(i.Tags, "hikkoshi-chunk")
		}},
		{oldc.image, func(i images.Image) bool {
			return !strings.HasPrefix(i.Name, "hikkoshi-") || !strings.HasSuffix(i.Name, "-snapshot") && !strings.Contains(i.Name, "-vol")
		}},
	} {
		for _, hidden := range []bool{false, true} {
			ip, err := images.List(side.ic, images.ListOpts{Hidden: hidden}).AllPages(ctx)
			if err != nil {
				return err
			}
			list, _ := images.ExtractImages(ip)
			for _, i := range list {
				if !side.keep(i) {
					if u, ok := i.Properties["instance_uuid"].(string); ok && side.ic == oldc.image {
						moved[u] = true
					}
					_ = images.Delete(ctx, side.ic, i.ID).ExtractErr()
				}
			}
		}
	}
	for id := range moved {
		if s, err := servers.Get(ctx, oldc.compute, id).Extract(); err == nil && s.Status == "SHUTOFF" {
			_ = servers.Start(ctx, oldc.compute, id).ExtractErr()
		}
	}
	fmt.Printf("undid %d moves\n", n)
	return nil
}

type clients struct{ compute, network, image, volume *gophercloud.ServiceClient }

func clientsOf(c *cloud.Cloud) (cl clients, err error) {
	if cl.compute, err = c.Compute(); err != nil {
		return cl, err
	}
	if cl.network, err = c.Network(); err != nil {
		return cl, err
	}
	if cl.image, err = c.Image(); err != nil {
		return cl, err
	}
	cl.volume, err = c.BlockStorage()
	return cl, err
}

func tour(ctx context.Context) error {
	for _, name := range []string{"old", "new"} {
		c, err := open(ctx, name)
		if err != nil {
			return err
		}
		cl, err := clientsOf(c)
		if err != nil {
			return err
		}
		fmt.Printf("  cloud %-3s region %-9s token issued; glance %s nova %s\n", name, c.Region(), cl.image.Endpoint, cl.compute.Endpoint)
		imgPages, err := images.List(cl.image, images.ListOpts{}).AllPages(ctx)
		if err != nil {
			return err
		}
		imgs, _ := images.ExtractImages(imgPages)
		for _, i := range imgs {
			fmt.Printf("    image   %-22s %-6s %-5s %9d bytes  md5 %s\n", i.Name, i.Status, i.DiskFormat, i.SizeBytes, i.Checksum)
		}
		if len(imgs) == 0 {
			fmt.Println("    image   (none: this cloud's Glance is its own)")
		}
		flPages, err := flavors.ListDetail(cl.compute, nil).AllPages(ctx)
		if err != nil {
			return err
		}
		fls, _ := flavors.ExtractFlavors(flPages)
		var fnames []string
		for _, f := range fls {
			fnames = append(fnames, fmt.Sprintf("%s(%dMiB/%dvcpu/%dGB)", f.Name, f.RAM, f.VCPUs, f.Disk))
		}
		fmt.Printf("    flavors %s\n", strings.Join(fnames, " "))
		netPages, err := networks.List(cl.network, networks.ListOpts{}).AllPages(ctx)
		if err != nil {
			return err
		}
		nets, _ := networks.ExtractNetworks(netPages)
		for _, n := range nets {
			subPages, err := subnets.List(cl.network, subnets.ListOpts{NetworkID: n.ID}).AllPages(ctx)
			if err != nil {
				return err
			}
			subs, _ := subnets.ExtractSubnets(subPages)
			if len(subs) == 0 {
				fmt.Printf("    network %-12s (no subnet this project may see; external: %v)\n", n.Name, externalOf(ctx, cl.network, n.ID))
			}
			for _, sn := range subs {
				var pools []string
				for _, p := range sn.AllocationPools {
					pools = append(pools, p.Start+"-"+p.End)
				}
				fmt.Printf("    network %-12s subnet %-16s %-16s pools %s\n", n.Name, sn.Name, sn.CIDR, strings.Join(pools, ", "))
			}
		}
	}
	// Compute hosts are an admin's view.
	admin, err := open(ctx, "admin")
	if err != nil {
		return err
	}
	for _, region := range []string{devcloud.RegionOld, devcloud.RegionNew} {
		cc, err := admin.InRegion(region).Compute()
		if err != nil {
			return err
		}
		pages, err := services.List(cc, services.ListOpts{Binary: "nova-compute"}).AllPages(ctx)
		if err != nil {
			return err
		}
		list, _ := services.ExtractServices(pages)
		for _, s := range list {
			fmt.Printf("  %-9s nova-compute on %-22s zone %-5s %s\n", region, s.Host, s.Zone, s.State)
		}
	}
	return nil
}

// externalOf reports whether network id is router:external.
func externalOf(ctx context.Context, nc *gophercloud.ServiceClient, id string) bool {
	var n struct {
		External bool `json:"router:external"`
	}
	if err := networks.Get(ctx, nc, id).ExtractInto(&n); err != nil {
		return false
	}
	return n.External
}

// member is one server of the demo's estate in the old cloud.
type member struct {
	Name string `json:"name"`
	Role string `json:"role"`
	IP   string `json:"ip,omitempty"` // a fixed IP on the VLAN network; none on the TCG compute
	Zone string `json:"zone"`
	// DataVolume is the type of a 1 GiB Cinder volume attached to the server
	// (<name>-data, its first bytes a known text); BootVolume the type of the 1 GiB
	// volume (<name>-root, made from the seed image) it boots from.
	DataVolume string `json:"data_volume_type,omitempty"`
	BootVolume string `json:"boot_volume_type,omitempty"`
}

// The web and API servers sit behind PROXY-protocol load balancers and are
// configured to require the header (the data plane's stand-ins refuse a connection
// without one, as nginx with proxy_protocol does).
var members = []member{
	{Name: "web-1", Role: "web", IP: "10.101.0.21", Zone: "nova"},
	{Name: "web-2", Role: "web", IP: "10.101.0.22", Zone: "nova"},
	{Name: "api-1", Role: "api", IP: "10.101.0.31", Zone: "nova"},
	{Name: "db-1", Role: "db", Zone: devcloud.ZoneTCG},                                                    // a real disk: V2V copies its bytes
	{Name: "db-2", Role: "db", IP: "10.101.0.42", Zone: "nova", DataVolume: devcloud.VolumeTypeLegacySSD}, // keeps its address and its data volume
	{Name: "files-1", Role: "files", IP: "10.101.0.43", Zone: "nova", BootVolume: devcloud.VolumeTypeStandard},
}

type built struct {
	member
	ServerID  string   `json:"server_id"`
	ProjectID string   `json:"project_id"`
	Status    string   `json:"status"`
	Volumes   []string `json:"volumes,omitempty"` // the IDs of its volumes
}

func estate(ctx context.Context) error {
	c, err := open(ctx, "old")
	if err != nil {
		return err
	}
	cl, err := clientsOf(c)
	if err != nil {
		return err
	}
	cl.compute.Microversion = "2.37" // networks "none" for the TCG compute
	image, err := devcloud.FindImage(ctx, cl.image, devcloud.SeedImage)
	if err != nil {
		return err
	}
	flavor, err := devcloud.FindFlavor(ctx, cl.compute, devcloud.FlavorTiny)
	if err != nil {
		return err
	}
	out := json.NewEncoder(os.Stdout)
	for _, m := range members {
		id, err := ensureServer(ctx, cl, m, image, flavor)
		if err != nil {
			return fmt.Errorf("server %s: %w", m.Name, err)
		}
		s, err := waitServer(ctx, cl.compute, id)
		if err != nil {
			return fmt.Errorf("server %s: %w", m.Name, err)
		}
		b := built{member: m, ServerID: id, ProjectID: s.TenantID, Status: s.Status}
		for _, a := range s.AttachedVolumes {
			b.Volumes = append(b.Volumes, a.ID)
		}
		if m.DataVolume != "" && len(b.Volumes) == 0 {
			vid, err := ensureDataVolume(ctx, cl, m, id)
			if err != nil {
				return fmt.Errorf("server %s: %w", m.Name, err)
			}
			b.Volumes = append(b.Volumes, vid)
		}
		if err := out.Encode(b); err != nil {
			return err
		}
	}
	return nil
}

// ensureServer returns the ID of the server named m.Name, booting it (on a port with
// its fixed IP, when it has one) if there is none. A port it made for a boot that
// failed is deleted again.
func ensureServer(ctx context.Context, cl clients, m member, image, flavor string) (string, error) {
	pages, err := servers.List(cl.compute, servers.ListOpts{Name: "^" + m.Name + "$"}).AllPages(ctx)
	if err != nil {
		return "", err
	}
	if list, _ := servers.ExtractServers(pages); len(list) > 0 {
		return list[0].ID, nil
	}
	opts := servers.CreateOpts{Name: m.Name, ImageRef: image, FlavorRef: flavor, AvailabilityZone: m.Zone,
		Metadata: map[string]string{"role": m.Role}, Networks: "none"}
	if m.BootVolume != "" {
		root, err := ensureVolume(ctx, cl, volumes.CreateOpts{Name: m.Name + "-root", Size: 1, VolumeType: m.BootVolume, ImageID: image})
		if err != nil {
			return "", err
		}
		opts.ImageRef, opts.BlockDevice = "", []servers.BlockDevice{{SourceType: servers.SourceVolume,
			DestinationType: servers.DestinationVolume, UUID: root, BootIndex: 0}}
	}
	if m.IP != "" {
		opts.Metadata[devcloud.MetaProxyProtocol] = "required"
	}
	portID := ""
	if m.IP != "" {
		if portID, err = ensurePort(ctx, cl.network, m.Name+"-port", m.IP); err != nil {
			return "", err
		}
		opts.Networks = []servers.Network{{Port: portID}}
	}
	s, err := servers.Create(ctx, cl.compute, opts, nil).Extract()
	if err != nil {
		if portID != "" {
			err = errors.Join(err, ports.Delete(context.WithoutCancel(ctx), cl.network, portID).ExtractErr())
		}
		return "", err
	}
	return s.ID, nil
}

// ensureVolume returns the ID of the available volume named opts.Name, making it if
// there is none.
func ensureVolume(ctx context.Context, cl clients, opts volumes.CreateOpts) (string, error) {
	pages, err := volumes.List(cl.volume, volumes.ListOpts{Name: opts.Name}).AllPages(ctx)
	if err != nil {
		return "", err
	}
	id := ""
	if list, _ := volumes.ExtractVolumes(pages); len(list) > 0 {
		id = list[0].ID
	} else {
		v, err := volumes.Create(ctx, cl.volume, opts, nil).Extract()
		if err != nil {
			return "", fmt.Errorf("volume %s: %w", opts.Name, err)
		}
		id = v.ID
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	v, err := volumes.Get(wctx, cl.volume, id).Extract()
	if err == nil && v.Status != "in-use" {
		_, err = devcloud.WaitVolume(wctx, cl.volume, id, "available")
	}
	return id, err
}

// ensureDataVolume makes m's data volume — its first bytes a text a database's
// files could hold, written by Cinder from a temporary image — and attaches it to
// server serverID.
func ensureDataVolume(ctx context.Context, cl clients, m member, serverID string) (string, error) {
	name := m.Name + "-data"
	pages, err := volumes.List(cl.volume, volumes.ListOpts{Name: name}).AllPages(ctx)
	if err != nil {
		return "", err
	}
	opts := volumes.CreateOpts{Name: name, Size: 1, VolumeType: m.DataVolume}
	if list, _ := volumes.ExtractVolumes(pages); len(list) == 0 {
		private := images.ImageVisibilityPrivate
		img, err := images.Create(ctx, cl.image, images.CreateOpts{Name: name + "-bytes", DiskFormat: "raw", ContainerFormat: "bare", Visibility: &private}).Extract()
		if err != nil {
			return "", err
		}
		defer func() { _ = images.Delete(context.WithoutCancel(ctx), cl.image, img.ID).ExtractErr() }()
		var data strings.Builder
		for i := 0; data.Len() < 4<<20; i++ {
			fmt.Fprintf(&data, "%s row %08d: the data of %s, which moves with it\n", name, i, m.Name)
		}
		if err := imagedata.Upload(ctx, cl.image, img.ID, strings.NewReader(data.String())).ExtractErr(); err != nil {
			return "", err
		}
		opts.ImageID = img.ID
	}
	id, err := ensureVolume(ctx, cl, opts)
	if err != nil {
		return "", err
	}
	if _, err := volumeattach.Create(ctx, cl.compute, serverID, volumeattach.CreateOpts{VolumeID: id}).Extract(); err != nil {
		return "", fmt.Errorf("attach %s: %w", name, err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, err = devcloud.WaitVolume(wctx, cl.volume, id, "in-use")
	return id, err
}

func ensurePort(ctx context.Context, nc *gophercloud.ServiceClient, name, ip string) (string, error) {
	pages, err := ports.List(nc, ports.ListOpts{Name: name}).AllPages(ctx)
	if err != nil {
		return "", err
	}
	if list, _ := ports.ExtractPorts(pages); len(list) > 0 {
		return list[0].ID, nil
	}
	nets, err := networks.List(nc, networks.ListOpts{Name: devcloud.VLANNetwork}).AllPages(ctx)
	if err != nil {
		return "", err
	}
	nl, _ := networks.ExtractNetworks(nets)
	if len(nl) != 1 {
		return "", fmt.Errorf("%d networks named %s, want 1 (is the dev cloud seeded?)", len(nl), devcloud.VLANNetwork)
	}
	p, err := ports.Create(ctx, nc, ports.CreateOpts{Name: name, NetworkID: nl[0].ID, FixedIPs: []ports.IP{{IPAddress: ip}}}).Extract()
	if err != nil {
		return "", err
	}
	return p.ID, nil
}

func waitServer(ctx context.Context, cc *gophercloud.ServiceClient, id string) (*servers.Server, error) {
	for {
		s, err := servers.Get(ctx, cc, id).Extract()
		if err != nil {
			return nil, err
		}
		switch s.Status {
		case "ACTIVE", "SHUTOFF":
			return s, nil
		case "ERROR":
			return nil, fmt.Errorf("server %s is in ERROR: %s", id, s.Fault.Message)
		}
		if err := sleep(ctx, time.Second); err != nil {
			return nil, fmt.Errorf("server %s still %s: %w", id, s.Status, err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// snapshot snapshots the estate's db-1 (on the TCG compute) through Nova and compares
// the snapshot's bytes with the seed image it booted from; the snapshot is deleted.
func snapshot(ctx context.Context) error {
	c, err := open(ctx, "old")
	if err != nil {
		return err
	}
	cl, err := clientsOf(c)
	if err != nil {
		return err
	}
	pages, err := servers.List(cl.compute, servers.ListOpts{Name: "^db-1$"}).AllPages(ctx)
	if err != nil {
		return err
	}
	list, _ := servers.ExtractServers(pages)
	if len(list) != 1 {
		return errors.New("no server db-1: run hikkoshi-devcloud estate first")
	}
	seed, err := devcloud.FindImage(ctx, cl.image, devcloud.SeedImage)
	if err != nil {
		return err
	}
	start := time.Now()
	id, err := servers.CreateImage(ctx, cl.compute, list[0].ID, servers.CreateImageOpts{Name: "db-1-demo-snapshot"}).ExtractImageID()
	if err != nil {
		return err
	}
	defer images.Delete(context.WithoutCancel(ctx), cl.image, id) //nolint:errcheck // best effort: a demo artefact
	var img *images.Image
	for {
		if img, err = images.Get(ctx, cl.image, id).Extract(); err != nil {
			return err
		}
		if img.Status == images.ImageStatusActive {
			break
		}
		if img.Status == images.ImageStatusKilled || img.Status == images.ImageStatusDeleted {
			return fmt.Errorf("snapshot %s went %s", id, img.Status)
		}
		if err := sleep(ctx, time.Second); err != nil {
			return fmt.Errorf("snapshot %s still %s: %w", id, img.Status, err)
		}
	}
	fmt.Printf("  snapshot of db-1 active after %s: %s, %d bytes, md5 %s\n",
		time.Since(start).Round(100*time.Millisecond), img.DiskFormat, img.SizeBytes, img.Checksum)
	report, err := devcloud.CompareImages(ctx, cl.image, seed, "raw", id, img.DiskFormat)
	if err != nil {
		return err
	}
	fmt.Printf("  qemu-img compare seed snapshot: %s\n", report)
	return nil
}
