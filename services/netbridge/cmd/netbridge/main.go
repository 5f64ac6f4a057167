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

func run(ctx context.Context, args []string) error {
	cfg := service.NewConfig("netbridge", DefaultPort)
	fs := flag.NewFlagSet("netbridge", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	var cloudsYAML, watchClouds string
	var interval time.Duration
	pol := watchdog.DefaultPolicy
	fs.StringVar(&cloudsYAML, "clouds-yaml", os.Getenv("OS_CLIENT_CONFIG_FILE"), "clouds.yaml path (default $OS_CLIENT_CONFIG_FILE, else the usual places); bridges name its entries, which must be admin-scoped")
	fs.StringVar(&watchClouds, "watch-clouds", "", "clouds.yaml entries whose HA routers the VRRP watchdog guards (admin-scoped, comma-separated); empty: no watchdog")
	fs.DurationVar(&interval, "watch-interval", 10*time.Second, "pause between the watchdog's passes")
	fs.DurationVar(&pol.Backoff, "heal-backoff", pol.Backoff, "pause after a router's first heal; it doubles with each next one")
	fs.DurationVar(&pol.MaxBackoff, "heal-max-backoff", pol.MaxBackoff, "longest pause between two heals of a router")
	fs.IntVar(&pol.MaxHeals, "heal-max", pol.MaxHeals, "most heals of one router within --heal-window; then the watchdog only reports")
	fs.DurationVar(&pol.Window, "heal-window", pol.Window, "window of --heal-max")
	fs.DurationVar(&pol.Settle, "heal-settle", pol.Settle, "pause between disabling and enabling a router")
	if err := cfg.ParseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case interval < 100*time.Millisecond:
		return fmt.Errorf("--watch-interval %s: use at least 100ms", interval)
	case pol.MaxHeals < 1:
		return fmt.Errorf("--heal-max %d: use at least 1 (the limit is what keeps a heal from flapping)", pol.MaxHeals)
	case pol.Backoff <= 0 || pol.MaxBackoff < pol.Backoff:
		return fmt.Errorf("--heal-backoff %s, --heal-max-backoff %s: give a positive back-off no longer than the maximum", pol.Backoff, pol.MaxBackoff)
	}
	clouds := service.SplitList(watchClouds)
	return service.Run(ctx, cfg, func(rt *service.Runtime) error {
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
