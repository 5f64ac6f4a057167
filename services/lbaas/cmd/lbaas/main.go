// Command lbaas serves hikkoshi.lbaas.v1.LoadBalancerService: Octavia load balancers
// with PROXY-protocol pools, built declaratively, their members moved under etcd
// locks shared by every replica.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/cloud"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/platform/service"
	"github.com/hikkoshi/hikkoshi/services/lbaas/internal/lbsvc"
	"github.com/hikkoshi/hikkoshi/services/lbaas/octavia"
)

// DefaultPort is the lbaas service's gRPC port on 127.0.0.1.
const DefaultPort = 7404

type config struct {
	service.Config
	cloud      string
	region     string
	cloudsYAML string
	ownerTag   string
	timeout    time.Duration
	createMode string
	requestTTL time.Duration
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "lbaas:", err)
		os.Exit(1)
	}
}

func (c *config) register(fs *flag.FlagSet) {
	fs.StringVar(&c.cloud, "cloud", os.Getenv("OS_CLOUD"), "clouds.yaml entry of the cloud whose Octavia this service manages (default $OS_CLOUD)")
	fs.StringVar(&c.region, "region", os.Getenv("OS_REGION_NAME"), "region (default: the entry's, or $OS_REGION_NAME)")
	fs.StringVar(&c.cloudsYAML, "clouds-yaml", os.Getenv("OS_CLIENT_CONFIG_FILE"), "clouds.yaml path (default $OS_CLIENT_CONFIG_FILE, else the usual places)")
	fs.StringVar(&c.ownerTag, "owner-tag", octavia.DefaultOwnerTag, "tag put on everything the service creates; ListLoadBalancers lists by it")
	fs.DurationVar(&c.timeout, "octavia-timeout", octavia.DefaultTimeout, "how long one operation may wait for Octavia (PENDING_* to clear, 409/503 retries)")
	fs.StringVar(&c.createMode, "create-mode", "auto", "auto (single-call create, serial where the provider refuses it or leaves it stuck) or serial")
	fs.DurationVar(&c.requestTTL, "request-ttl", lbsvc.DefaultRequestTTL, "how long a create's request_id is remembered")
}

// validate refuses what lbaas cannot run with, naming the flag.
func (c *config) validate() error {
	switch {
	case c.cloud == "":
		return errors.New("--cloud is empty (and OS_CLOUD is not set): name the clouds.yaml entry of the cloud to manage")
	case c.createMode != "auto" && c.createMode != "serial":
		return fmt.Errorf("--create-mode %q: use auto or serial", c.createMode)
	case c.requestTTL < time.Minute:
		return fmt.Errorf("--request-ttl %s: use at least 1m", c.requestTTL)
	}
	return nil
}

func run(ctx context.Context, args []string) error {
	cfg := &config{Config: service.NewConfig("lbaas", DefaultPort)}
	if err := cfg.Parse(args, cfg.register, cfg.validate); err != nil {
		return err
	}
	return service.Run(ctx, cfg.Config, func(rt *service.Runtime) error {
		m := lbsvc.NewMetrics(rt.Metrics)
		c, err := cloud.Open(ctx, cfg.cloud, cloud.WithCloudsYAML(cfg.cloudsYAML), cloud.WithUserAgent("hikkoshi-lbaas"))
		if err != nil {
			return err
		}
		if cfg.region != "" {
			c = c.InRegion(cfg.region)
		}
		cloud.Observe(c.Provider, m.ObserveOctavia)
		sc, err := c.LoadBalancer()
		if err != nil {
			return err
		}
		opts := []octavia.Option{octavia.WithOwnerTag(cfg.ownerTag), octavia.WithTimeout(cfg.timeout)}
		if cfg.createMode == "serial" {
			opts = append(opts, octavia.WithSerialCreate())
		}
		oc := octavia.New(sc, opts...)
		v, err := oc.APIVersion(ctx)
		if err != nil {
			return err
		}
		rt.Logger.Info("Octavia reached", "cloud", cfg.cloud, "region", c.Region(), "api_version", v.String(), "owner_tag", cfg.ownerTag)
		// An import asks the inventory and netbridge, found in the registry when
		// it asks (the connections are lazy: neither needs to run for the rest).
		others := lbsvc.Others{}
		for _, svc := range []string{"inventory", "netbridge"} {
			conn, err := rt.DialService(svc)
			if err != nil {
				return fmt.Errorf("%s client: %w", svc, err)
			}
			rt.OnShutdown(func() { _ = conn.Close() })
			if svc == "inventory" {
				others.Inventory, others.Runs = inventoryv1.NewInventoryServiceClient(conn), inventoryv1.NewWaveRunServiceClient(conn)
			} else {
				others.Netbridge = netbridgev1.NewNetbridgeServiceClient(conn)
			}
		}
		return lbsvc.Register(rt, lbsvc.Options{
			Octavia: oc, Timeout: cfg.timeout, Scope: keys.LBScope(cfg.cloud, c.Region()), RequestTTL: cfg.requestTTL,
			Others: others,
		}, m)
	})
}
