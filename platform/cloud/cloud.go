// Package cloud builds gophercloud clients for one entry of clouds.yaml, the way the
// openstack CLI reads it (OS_CLOUD, OS_CLIENT_CONFIG_FILE and the usual locations).
// Credentials stay in clouds.yaml or the environment; they are never copied out of
// the provider client, logged or put in errors.
package cloud

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
)

// Cloud is an authenticated connection to one clouds.yaml entry.
type Cloud struct {
	// Name is the clouds.yaml entry.
	Name string
	// Provider is the authenticated provider client; it re-authenticates on expiry.
	Provider  *gophercloud.ProviderClient
	endpoints gophercloud.EndpointOpts
}

type options struct {
	files     []string
	userAgent string
}

// Option configures Open.
type Option func(*options)

// WithCloudsYAML reads clouds.yaml from path instead of the usual locations; an
// empty path changes nothing (the usual locations).
func WithCloudsYAML(path string) Option {
	return func(o *options) {
		if path != "" {
			o.files = append(o.files, path)
		}
	}
}

// WithUserAgent names the calling service in the User-Agent of every request.
func WithUserAgent(ua string) Option { return func(o *options) { o.userAgent = ua } }

// Open authenticates as the clouds.yaml entry name. Cancelling ctx abandons the
// authentication.
func Open(ctx context.Context, name string, opts ...Option) (*Cloud, error) {
	if name == "" {
		return nil, errors.New("cloud.Open: a clouds.yaml entry name is required")
	}
	o := options{userAgent: "hikkoshi"}
	for _, opt := range opts {
		opt(&o)
	}
	popts := []clouds.ParseOption{clouds.WithCloudName(name)}
	if len(o.files) > 0 {
		popts = append(popts, clouds.WithLocations(o.files...))
	}
	ao, eo, tlsCfg, err := clouds.Parse(popts...)
	if err != nil {
		return nil, fmt.Errorf("cloud.Open %q: clouds.yaml: %w", name, err)
	}
	ao.AllowReauth = true
	pc, err := config.NewProviderClient(ctx, ao, config.WithTLSConfig(tlsCfg))
	if err != nil {
		return nil, fmt.Errorf("cloud.Open %q: authenticate at %s: %w", name, ao.IdentityEndpoint, err)
	}
	pc.UserAgent.Prepend(o.userAgent)
	return &Cloud{Name: name, Provider: pc, endpoints: eo}, nil
}

// Region returns the region the entry selects.
func (c *Cloud) Region() string { return c.endpoints.Region }

// InRegion returns the same authenticated entry with its clients in another region
// of the same catalog (one token serves every region of a Keystone).
func (c *Cloud) InRegion(region string) *Cloud {
	cp := *c
	cp.endpoints.Region = region
	return &cp
}

// client builds one service's client with the entry's region and interface.
func (c *Cloud) client(kind string, build func(*gophercloud.ProviderClient, gophercloud.EndpointOpts) (*gophercloud.ServiceClient, error)) (*gophercloud.ServiceClient, error) {
	sc, err := build(c.Provider, c.endpoints)
	if err != nil {
		return nil, fmt.Errorf("cloud %q: no %s endpoint in region %q: %w", c.Name, kind, c.endpoints.Region, err)
	}
	return sc, nil
}

// Compute returns a Nova client.
func (c *Cloud) Compute() (*gophercloud.ServiceClient, error) {
	return c.client("compute", openstack.NewComputeV2)
}

// Network returns a Neutron client.
func (c *Cloud) Network() (*gophercloud.ServiceClient, error) {
	return c.client("network", openstack.NewNetworkV2)
}

// Image returns a Glance client.
func (c *Cloud) Image() (*gophercloud.ServiceClient, error) {
	return c.client("image", openstack.NewImageV2)
}

// LoadBalancer returns an Octavia client.
func (c *Cloud) LoadBalancer() (*gophercloud.ServiceClient, error) {
	return c.client("load-balancer", openstack.NewLoadBalancerV2)
}

// BlockStorage returns a Cinder v3 client; an error wrapping
// gophercloud.ErrEndpointNotFound when the catalog has no block-storage service.
func (c *Cloud) BlockStorage() (*gophercloud.ServiceClient, error) {
	return c.client("block-storage", openstack.NewBlockStorageV3)
}

// Identity returns a Keystone v3 client.
func (c *Cloud) Identity() (*gophercloud.ServiceClient, error) {
	return c.client("identity", openstack.NewIdentityV3)
}

// ProjectID returns the ID of the project the entry's token is scoped to (from the
// Keystone v3 token the provider holds; no API call).
func (c *Cloud) ProjectID() (string, error) {
	r, ok := c.Provider.GetAuthResult().(tokens.CreateResult)
	if !ok {
		return "", fmt.Errorf("cloud %q: the token is not a Keystone v3 token", c.Name)
	}
	p, err := r.ExtractProject()
	if err != nil || p == nil || p.ID == "" {
		return "", fmt.Errorf("cloud %q: the token is not scoped to a project (set auth.project_name or project_id in clouds.yaml): %v", c.Name, err)
	}
	return p.ID, nil
}

// Memo returns open made to open each clouds.yaml entry once: later calls for the
// same name get the same value; a failed open is not remembered (the next call
// tries again). Safe for concurrent use.
func Memo[T any](open func(ctx context.Context, name string) (T, error)) func(ctx context.Context, name string) (T, error) {
	var mu sync.Mutex
	opened := map[string]T{}
	return func(ctx context.Context, name string) (T, error) {
		mu.Lock()
		defer mu.Unlock()
		if v, ok := opened[name]; ok {
			return v, nil
		}
		v, err := open(ctx, name)
		if err == nil {
			opened[name] = v
		}
		return v, err
	}
}
