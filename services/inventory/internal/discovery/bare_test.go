package discovery

import (
	"context"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// bareList is the baseline: the same pages, listed one resource after the other
// with gophercloud and nothing else.
func bareList(ctx context.Context, c Clients) (*Snapshot, error) {
	s := &Snapshot{}
	var err error
	if s.Servers, err = extractAll(ctx, servers.List(c.Compute, servers.ListOpts{AllTenants: true}), servers.ExtractServers); err != nil {
		return s, err
	}
	if s.Ports, err = extractAll(ctx, ports.List(c.Network, ports.ListOpts{}), ports.ExtractPorts); err != nil {
		return s, err
	}
	if s.Subnets, err = extractAll(ctx, subnets.List(c.Network, subnets.ListOpts{}), subnets.ExtractSubnets); err != nil {
		return s, err
	}
	if _, err = extractAll(ctx, networks.List(c.Network, networks.ListOpts{}), networks.ExtractNetworks); err != nil {
		return s, err
	}
	if s.FloatingIPs, err = extractAll(ctx, floatingips.List(c.Network, floatingips.ListOpts{}), floatingips.ExtractFloatingIPs); err != nil {
		return s, err
	}
	if _, err = extractAll(ctx, flavors.ListDetail(c.Compute, flavors.ListOpts{}), flavors.ExtractFlavors); err != nil {
		return s, err
	}
	_, err = extractAll(ctx, images.List(c.Image, images.ListOpts{}), images.ExtractImages)
	return s, err
}

func clientv3WithPrefix() []clientv3.OpOption { return []clientv3.OpOption{clientv3.WithPrefix()} }
