// Command inventory serves hikkoshi.inventory.v1.InventoryService: the registry of
// workloads to migrate, kept in etcd.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/hikkoshi/hikkoshi/platform/locks"
	"github.com/hikkoshi/hikkoshi/platform/service"
	"github.com/hikkoshi/hikkoshi/services/inventory/internal/discovery"
	"github.com/hikkoshi/hikkoshi/services/inventory/internal/registry"
)

// DefaultPort is the inventory's gRPC port on 127.0.0.1.
const DefaultPort = 7401

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "inventory:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	cfg := service.NewConfig("inventory", DefaultPort)
	fs := flag.NewFlagSet("inventory", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	var cloudsYAML, sources, destinations string
	fs.StringVar(&cloudsYAML, "clouds-yaml", os.Getenv("OS_CLIENT_CONFIG_FILE"), "clouds.yaml path (default $OS_CLIENT_CONFIG_FILE, else the usual places)")
	fs.StringVar(&sources, "source-clouds", "", "comma-separated clouds.yaml entries of the source clouds CreateSync may sync (empty: no syncs)")
	fs.StringVar(&destinations, "destination-clouds", "", "comma-separated clouds.yaml entries of the destination clouds GetPreflight checks against")
	if err := cfg.ParseFlags(fs, args); err != nil {
		return err
	}
	list := func(s string) []string {
		var out []string
		for _, c := range strings.Split(s, ",") {
			if c = strings.TrimSpace(c); c != "" {
				out = append(out, c)
			}
		}
		return out
	}
	srcs, dsts := list(sources), list(destinations)
	return service.Run(ctx, cfg, func(rt *service.Runtime) error {
		store, err := registry.NewStore(rt.Etcd)
		if err != nil {
			return err
		}
		if len(srcs)+len(dsts) == 0 {
			return registry.RegisterStore(rt, store, nil)
		}
		syncer := discovery.New(discovery.Options{
			Store: store, Etcd: rt.Etcd, Locks: locks.New(rt.Session), Open: discovery.CloudsYAMLOpener(cloudsYAML),
			Sources: srcs, Destinations: dsts, Instance: cfg.Instance, Logger: rt.Logger, Stopping: rt.Stopping(),
		})
		rt.OnShutdown(syncer.Wait)
		rt.Logger.Info("clouds configured", "source_clouds", srcs, "destination_clouds", dsts)
		return registry.RegisterStore(rt, store, syncer)
	})
}
