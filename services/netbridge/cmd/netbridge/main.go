// Command netbridge serves hikkoshi.netbridge.v1.NetbridgeService: bridges between
// the old and new clouds' networks (planned from live state, applied, rolled
// back), addresses moved with their workloads, and serial-console port plans.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/hikkoshi/hikkoshi/platform/cloud"
	"github.com/hikkoshi/hikkoshi/platform/service"
	"github.com/hikkoshi/hikkoshi/services/netbridge/internal/bridge"
	"github.com/hikkoshi/hikkoshi/services/netbridge/internal/watchdog"
)

// DefaultPort is netbridge's gRPC port on 127.0.0.1.
const DefaultPort = 7403

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "netbridge:", err)
		os.Exit(1)
	}
}

// config is netbridge's configuration: the flags, then what validate makes of them.
type config struct {
	service.Config
	cloudsYAML, watchClouds string
	interval                time.Duration
	pol                     watchdog.Policy
	clouds                  []string // made by validate
}

func (c *config) register(fs *flag.FlagSet) {
	c.pol = watchdog.DefaultPolicy
	fs.StringVar(&c.cloudsYAML, "clouds-yaml", os.Getenv("OS_CLIENT_CONFIG_FILE"), "clouds.yaml path (default $OS_CLIENT_CONFIG_FILE, else the usual places); bridges name its entries, which must be admin-scoped")
	fs.StringVar(&c.watchClouds, "watch-clouds", "", "clouds.yaml entries whose HA routers the VRRP watchdog guards (admin-scoped, comma-separated); empty: no watchdog")
	fs.DurationVar(&c.interval, "watch-interval", 10*time.Second, "pause between the watchdog's passes")
	fs.DurationVar(&c.pol.Backoff, "heal-backoff", c.pol.Backoff, "pause after a router's first heal; it doubles with each next one")
	fs.DurationVar(&c.pol.MaxBackoff, "heal-max-backoff", c.pol.MaxBackoff, "longest pause between two heals of a router")
	fs.IntVar(&c.pol.MaxHeals, "heal-max", c.pol.MaxHeals, "most heals of one router within --heal-window; then the watchdog only reports")
	fs.DurationVar(&c.pol.Window, "heal-window", c.pol.Window, "window of --heal-max")
	fs.DurationVar(&c.pol.Settle, "heal-settle", c.pol.Settle, "pause between disabling and enabling a router")
}

// validate refuses what netbridge cannot run with, naming the flag.
func (c *config) validate() error {
	switch {
	case c.interval < 100*time.Millisecond:
		return fmt.Errorf("--watch-interval %s: use at least 100ms", c.interval)
	case c.pol.MaxHeals < 1:
		return fmt.Errorf("--heal-max %d: use at least 1 (the limit is what keeps a heal from flapping)", c.pol.MaxHeals)
	case c.pol.Backoff <= 0 || c.pol.MaxBackoff < c.pol.Backoff:
		return fmt.Errorf("--heal-backoff %s, --heal-max-backoff %s: give a positive back-off no longer than the maximum", c.pol.Backoff, c.pol.MaxBackoff)
	}
	c.clouds = service.SplitList(c.watchClouds)
	return nil
}

func run(ctx context.Context, args []string) error {
	cfg := &config{Config: service.NewConfig("netbridge", DefaultPort)}
	if err := cfg.Parse(args, cfg.register, cfg.validate); err != nil {
		return err
	}
	cloudsYAML, clouds, interval, pol := cfg.cloudsYAML, cfg.clouds, cfg.interval, cfg.pol
	return service.Run(ctx, cfg.Config, func(rt *service.Runtime) error {
		open := bridge.CloudsOpener(cloudsYAML)
		bridge.Register(rt, &bridge.Engine{Open: open, Log: rt.Logger})
		if len(clouds) == 0 {
			return nil
		}
		w := &watchdog.Watchdog{
			Etcd: rt.Etcd, Session: rt.Session, Clouds: clouds, Interval: interval, Log: rt.Logger,
			Checker: &watchdog.Checker{Policy: pol, Instance: cfg.Instance, Log: rt.Logger, Now: time.Now,
				Neutron: cloud.Memo(func(ctx context.Context, name string) (*gophercloud.ServiceClient, error) {
					s, err := open(ctx, name, "watched")
					if err != nil {
						return nil, err
					}
					return s.Network, nil
				})},
		}
		rt.Go(w.Run)
		return nil
	})
}
