// Command inventory serves hikkoshi.inventory.v1.InventoryService: the registry of
// workloads to migrate, kept in etcd.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hikkoshi/hikkoshi/platform/service"
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
	if err := cfg.ParseFlags(fs, args); err != nil {
		return err
	}
	return service.Run(ctx, cfg, func(rt *service.Runtime) error { return registry.Register(rt) })
}
