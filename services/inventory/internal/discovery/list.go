package discovery

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/floatingips"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/provider"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
	"github.com/gophercloud/gophercloud/v2/pagination"
	"golang.org/x/sync/errgroup"
)

// Clients are the API clients of one cloud a sync lists. BlockStorage is nil when the
// catalog has no block-storage service.
type Clients struct {
	Compute, Network, Image, BlockStorage *gophercloud.ServiceClient
}

// Network is a Neutron network with its provider attributes (admin only).
type Network struct {
	networks.Network
	provider.NetworkProviderExt
}

// Snapshot is what one listing of a cloud found.
type Snapshot struct {
	Servers     []servers.Server
	Ports       []ports.Port
	Networks    []Network
	Subnets     []subnets.Subnet
	FloatingIPs []floatingips.FloatingIP
	Volumes     []volumes.Volume
	Flavors     map[string]flavors.Flavor
	Images      map[string]string // ID → name
	// AllProjects is true when servers were listed for every project.
	AllProjects bool
	// Notes are what the operator should know about this listing.
	Notes []string
	// Complete is true for a full listing: a server it lacks is gone.
	Complete bool
	// Deleted are servers an incremental listing reported deleted (or found gone).
	Deleted []string
	// AllPorts is true when Ports holds every port (a full listing, or an incremental
	// one where Neutron refused changed_since).
	AllPorts bool
	// AllFloatingIPs is true when FloatingIPs holds every floating IP (it does in a
	// full listing, and in an incremental one: Neutron cannot filter them by time).
	AllFloatingIPs bool
	// AllVolumes is true when Volumes holds every volume the credentials see (a full
	// listing, and an incremental one: attaching or detaching a volume does not
	// change the server's updated_at, so Nova's changes-since misses it).
	AllVolumes bool
}

// listConcurrency bounds the API calls a sync has in flight.
const listConcurrency = 4

// withSince adds Neutron's changed_since filter (the timestamp extension) to a list
// query; gophercloud's ListOpts lack it.
func withSince(q string, since time.Time) string {
	if since.IsZero() {
		return q
	}
	sep := "?"
	if q != "" {
		sep = "&"
	}
	return q + sep + "changed_since=" + url.QueryEscape(since.UTC().Format("2006-01-02T15:04:05Z"))
}

type portOpts struct {
	ports.ListOpts
	since time.Time
}

func (o portOpts) ToPortListQuery() (string, error) {
	q, err := o.ListOpts.ToPortListQuery()
	return withSince(q, o.since), err
}

// ListAll lists everything a full sync needs, with at most listConcurrency calls in
// flight. Servers are listed for every project when the credentials allow it.
func ListAll(ctx context.Context, c Clients) (*Snapshot, error) {
	s := &Snapshot{Complete: true, AllPorts: true}
	var err error
	if s.Servers, s.AllProjects, err = listServers(ctx, c.Compute, servers.ListOpts{}); err != nil {
		return nil, err
	}
	if !s.AllProjects {
		s.Notes = append(s.Notes, "the credentials cannot list all projects' servers (Nova refused all_tenants): this project's only")
	}
	if err := s.listRest(ctx, c, time.Time{}, true); err != nil {
		return nil, err
	}
	return s, nil
}

// ListChanges lists what changed since: servers (Nova's changes-since, deleted ones
// included) and ports (Neutron's changed_since); then, for every server touched by
// either, the server itself and all its ports. Floating IPs are listed whole: Neutron
// refuses changed_since on them (400 "invalid attribute for filtering", Zed). Networks
// and subnets are listed whole too (they are few, and give the ports' names and
// CIDRs), and so are volumes: attaching or detaching one leaves the server's
// updated_at as it was (seen on Zed). A port deleted since is not reported by Neutron:
// a full sync catches those.
func ListChanges(ctx context.Context, c Clients, since time.Time) (*Snapshot, error) {
	s := &Snapshot{}
	changed, all, err := listServers(ctx, c.Compute, servers.ListOpts{ChangesSince: since.UTC().Format(time.RFC3339)})
	if err != nil {
		return nil, err
	}
	s.AllProjects = all
	var changedPorts []ports.Port
	g, gctx := errgroup.WithContext(ctx)
	s.listVolumes(g, gctx, c) // first: it may add a note, the goroutines below too
	g.Go(func() (err error) {
		changedPorts, err = extractAll(gctx, ports.List(c.Network, portOpts{since: since}), ports.ExtractPorts)
		if gophercloud.ResponseCodeIs(err, http.StatusBadRequest) {
			// No timestamp filter in this Neutron (Zed without the timestamp plugin
			// answers "['changed_since'] is invalid attribute for filtering").
			s.Ports, err = extractAll(gctx, ports.List(c.Network, ports.ListOpts{}), ports.ExtractPorts)
			s.AllPorts = true
			s.Notes = append(s.Notes, "Neutron refuses changed_since on ports: all ports listed, compared with the stored facts")
			changedPorts = nil
		}
		return wrap("list changed ports", err)
	})
	g.Go(func() (err error) {
		s.FloatingIPs, err = extractAll(gctx, floatingips.List(c.Network, floatingips.ListOpts{}), floatingips.ExtractFloatingIPs)
		s.AllFloatingIPs = true
		return wrap("list floating IPs", err)
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	touched := map[string]bool{}
	for _, srv := range changed {
		if srv.Status == "DELETED" || srv.Status == "SOFT_DELETED" {
			s.Deleted = append(s.Deleted, srv.ID)
			continue
		}
		touched[srv.ID] = true
		s.Servers = append(s.Servers, srv)
	}
	for _, p := range changedPorts {
		if isInstancePort(p) {
			touched[p.DeviceID] = true
		}
	}
	listed := map[string]bool{}
	for _, srv := range s.Servers {
		listed[srv.ID] = true
	}
	var mu sync.Mutex
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(listConcurrency)
	for id := range touched {
		g.Go(func() error {
			var srv *servers.Server
			if !listed[id] {
				got, err := servers.Get(gctx, c.Compute, id).Extract()
				if gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
					mu.Lock()
					s.Deleted = append(s.Deleted, id)
					mu.Unlock()
					return nil
				}
				if err != nil {
					return wrap("get server "+id, err)
				}
				srv = got
			}
			var ps []ports.Port
			if !s.AllPorts {
				var err error
				if ps, err = extractAll(gctx, ports.List(c.Network, ports.ListOpts{DeviceID: id}), ports.ExtractPorts); err != nil {
					return wrap("list ports of server "+id, err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if srv != nil {
				s.Servers = append(s.Servers, *srv)
			}
			s.Ports = append(s.Ports, ps...)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := s.listRest(ctx, c, since, len(s.Servers) > 0); err != nil {
		return nil, err
	}
	return s, nil
}

// listRest lists networks and subnets, and when details is true also the floating
// IPs, volumes, flavors and images the servers' facts need (and the ports, for a
// full listing).
func (s *Snapshot) listRest(ctx context.Context, c Clients, since time.Time, details bool) error {
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(listConcurrency)
	g.Go(func() error {
		var nets []Network
		pages, err := networks.List(c.Network, networks.ListOpts{}).AllPages(gctx)
		if err == nil {
			err = networks.ExtractNetworksInto(pages, &nets)
		}
		s.Networks = nets
		return wrap("list networks", err)
	})
	g.Go(func() (err error) {
		s.Subnets, err = extractAll(gctx, subnets.List(c.Network, subnets.ListOpts{}), subnets.ExtractSubnets)
		return wrap("list subnets", err)
	})
	if !details {
		return g.Wait()
	}
	if s.Complete {
		g.Go(func() (err error) {
			s.AllPorts = true
			s.Ports, err = extractAll(gctx, ports.List(c.Network, ports.ListOpts{}), ports.ExtractPorts)
			return wrap("list ports", err)
		})
	}
	if !s.AllFloatingIPs {
		g.Go(func() (err error) {
			s.FloatingIPs, err = extractAll(gctx, floatingips.List(c.Network, floatingips.ListOpts{}), floatingips.ExtractFloatingIPs)
			s.AllFloatingIPs = true
			return wrap("list floating IPs", err)
		})
	}
	g.Go(func() error {
		fl, err := extractAll(gctx, flavors.ListDetail(c.Compute, flavors.ListOpts{AccessType: flavors.AllAccess}), flavors.ExtractFlavors)
		if err != nil {
			return wrap("list flavors", err)
		}
		m := make(map[string]flavors.Flavor, len(fl))
		for _, f := range fl {
			m[f.ID] = f
		}
		s.Flavors = m
		return nil
	})
	g.Go(func() error {
		im, err := extractAll(gctx, images.List(c.Image, images.ListOpts{}), images.ExtractImages)
		if err != nil {
			return wrap("list images", err)
		}
		m := make(map[string]string, len(im))
		for _, i := range im {
			m[i.ID] = i.Name
		}
		s.Images = m
		return nil
	})
	if !s.AllVolumes {
		mu.Lock()
		s.listVolumes(g, gctx, c)
		mu.Unlock()
	}
	return g.Wait()
}

// listVolumes lists every volume the credentials see (all projects' when servers
// were listed so), in g; without a block-storage service it notes so.
func (s *Snapshot) listVolumes(g *errgroup.Group, ctx context.Context, c Clients) {
	if c.BlockStorage == nil {
		s.Notes = append(s.Notes, "no block-storage service in the catalog: volumes not listed")
		return
	}
	s.AllVolumes = true
	g.Go(func() (err error) {
		s.Volumes, err = extractAll(ctx, volumes.List(c.BlockStorage, volumes.ListOpts{AllTenants: s.AllProjects}), volumes.ExtractVolumes)
		return wrap("list volumes", err)
	})
}

// listServers lists servers with details, for all projects when Nova allows it.
func listServers(ctx context.Context, cc *gophercloud.ServiceClient, opts servers.ListOpts) ([]servers.Server, bool, error) {
	opts.AllTenants = true
	list, err := extractAll(ctx, servers.List(cc, opts), servers.ExtractServers)
	if gophercloud.ResponseCodeIs(err, http.StatusForbidden) {
		opts.AllTenants = false
		list, err = extractAll(ctx, servers.List(cc, opts), servers.ExtractServers)
		return list, false, wrap("list servers", err)
	}
	return list, true, wrap("list servers", err)
}

func isInstancePort(p ports.Port) bool {
	return p.DeviceID != "" && len(p.DeviceOwner) >= 8 && p.DeviceOwner[:8] == "compute:"
}

func extractAll[T any](ctx context.Context, pager pagination.Pager, extract func(pagination.Page) ([]T, error)) ([]T, error) {
	pages, err := pager.AllPages(ctx)
	if err != nil {
		return nil, err
	}
	return extract(pages)
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

var zeroTime time.Time
