package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/external"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/provider"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/hikkoshi/hikkoshi/platform/cloud"
)

// ReservedOwner is the device_owner of the ports that hold addresses for the other
// cloud.
const ReservedOwner = "reserved:hikkoshi"

// Marker returns the description every resource of bridge id carries.
func Marker(id string) string { return "hikkoshi-bridge:" + id }

// MovedMarker returns the description of a port an address was moved to.
func MovedMarker(id string) string { return "hikkoshi-moved:" + id }

// Side is one cloud's Neutron (and Nova, for the old side's servers).
type Side struct {
	Name    string // "old" or "new"
	Network *gophercloud.ServiceClient
	Compute *gophercloud.ServiceClient
	Project string
}

// Opener opens a clouds.yaml entry as a Side.
type Opener func(ctx context.Context, cloudName, side string) (*Side, error)

// CloudsOpener opens entries of the clouds.yaml at path ("" for the usual places).
func CloudsOpener(path string) Opener {
	return func(ctx context.Context, name, side string) (*Side, error) {
		c, err := cloud.Open(ctx, name, cloud.WithCloudsYAML(path), cloud.WithUserAgent("hikkoshi-netbridge"))
		if err != nil {
			return nil, err
		}
		s := &Side{Name: side}
		if s.Project, err = c.ProjectID(); err != nil {
			return nil, err
		}
		if s.Network, err = c.Network(); err != nil {
			return nil, err
		}
		if s.Compute, err = c.Compute(); err != nil {
			return nil, err
		}
		return s, nil
	}
}

func notFound(err error) bool { return gophercloud.ResponseCodeIs(err, http.StatusNotFound) }

// network is a network with its provider and external attributes.
type network struct {
	networks.Network
	provider.NetworkProviderExt
	external.NetworkExternalExt
}

func getNetwork(ctx context.Context, s *Side, id string) (*network, error) {
	var n network
	if err := networks.Get(ctx, s.Network, id).ExtractInto(&n); err != nil {
		return nil, fmt.Errorf("%s network %s: %w", s.Name, id, err)
	}
	return &n, nil
}

// ours lists the networks of bridge id on s.
func ourNetworks(ctx context.Context, s *Side, id string) ([]network, error) {
	pages, err := networks.List(s.Network, networks.ListOpts{Description: Marker(id)}).AllPages(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s networks: %w", s.Name, err)
	}
	var out []network
	err = networks.ExtractNetworksInto(pages, &out)
	return out, err
}

func listSubnets(ctx context.Context, s *Side, netID string) ([]subnets.Subnet, error) {
	pages, err := subnets.List(s.Network, subnets.ListOpts{NetworkID: netID}).AllPages(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s subnets: %w", s.Name, err)
	}
	return subnets.ExtractSubnets(pages)
}

func listPorts(ctx context.Context, s *Side, opts ports.ListOpts) ([]ports.Port, error) {
	pages, err := ports.List(s.Network, opts).AllPages(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s ports: %w", s.Name, err)
	}
	return ports.ExtractPorts(pages)
}

// holders maps each address of subnet to the ports holding it.
func holders(ps []ports.Port, subnetID string) map[netip.Addr][]ports.Port {
	out := map[netip.Addr][]ports.Port{}
	for _, p := range ps {
		for _, ip := range p.FixedIPs {
			if ip.SubnetID != subnetID {
				continue
			}
			if a, err := netip.ParseAddr(ip.IPAddress); err == nil {
				out[a] = append(out[a], p)
			}
		}
	}
	return out
}

// reserved reports whether p is a reservation port of bridge id.
func reserved(p ports.Port, id string) bool {
	return p.DeviceOwner == ReservedOwner && p.Description == Marker(id)
}

func poolStrings(ps []subnets.AllocationPool) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Start+"-"+p.End)
	}
	return out
}

func poolsOf(ranges []string) []subnets.AllocationPool {
	out := make([]subnets.AllocationPool, 0, len(ranges))
	for _, r := range ranges {
		a, b, _ := strings.Cut(r, "-")
		out = append(out, subnets.AllocationPool{Start: a, End: b})
	}
	return out
}

func reservePort(ctx context.Context, s *Side, id, netID, subnetID string, a netip.Addr) (string, error) {
	down := false
	p, err := ports.Create(ctx, s.Network, ports.CreateOpts{
		Name: "hikkoshi-reserve-" + a.String(), Description: Marker(id), NetworkID: netID, ProjectID: s.Project,
		DeviceOwner: ReservedOwner, AdminStateUp: &down, FixedIPs: []ports.IP{{SubnetID: subnetID, IPAddress: a.String()}},
	}).Extract()
	if err != nil {
		return "", fmt.Errorf("reserve %s in the %s cloud: %w", a, s.Name, err)
	}
	return p.ID, nil
}

func deletePort(ctx context.Context, s *Side, id string) error {
	if err := ports.Delete(ctx, s.Network, id).ExtractErr(); err != nil && !notFound(err) {
		return fmt.Errorf("delete %s port %s: %w", s.Name, id, err)
	}
	return nil
}

func ourRouters(ctx context.Context, s *Side, id string) ([]routers.Router, error) {
	pages, err := routers.List(s.Network, routers.ListOpts{Description: Marker(id)}).AllPages(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s routers: %w", s.Name, err)
	}
	return routers.ExtractRouters(pages)
}

// errConflict is a Neutron 409 (an address or VLAN in use).
func errConflict(err error) bool {
	var e gophercloud.ErrUnexpectedResponseCode
	return errors.As(err, &e) && e.Actual == http.StatusConflict
}
