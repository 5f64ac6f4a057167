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

	"github.com/hikkoshi/hikkoshi/platform/service"
	"github.com/hikkoshi/hikkoshi/services/netbridge/internal/bridge"
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
	var cloudsYAML string
	fs.StringVar(&cloudsYAML, "clouds-yaml", os.Getenv("OS_CLIENT_CONFIG_FILE"), "clouds.yaml path (default $OS_CLIENT_CONFIG_FILE, else the usual places); bridges name its entries, which must be admin-scoped")
	if err := cfg.ParseFlags(fs, args); err != nil {
		return err
	}
	return service.Run(ctx, cfg, func(rt *service.Runtime) error {
		bridge.Register(rt, &bridge.Engine{Open: bridge.CloudsOpener(cloudsYAML), Log: rt.Logger})
		return nil
	})
}
