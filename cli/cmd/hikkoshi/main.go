// Command hikkoshi is the operator's one command line over all four services:
// the inventory's workloads, syncs, plans and wave runs, the converter's jobs,
// netbridge's bridges, moved addresses, console ports and router watchdog, the
// lbaas service's load balancers, and (hikkoshi lb) Octavia straight, without any
// Hikkoshi service.
//
//	hikkoshi workloads list --wave 1
//	hikkoshi wave run 1 --to new --follow
//	hikkoshi job list
//	hikkoshi job watch jobs/5c0d…            # bytes, rate and ETA
//	hikkoshi bridge plan bridges/old-vlan-101
//	hikkoshi bridge apply bridges/old-vlan-101 --etag 9f1c…
//	hikkoshi lb --os-cloud old list           # Octavia, no Hikkoshi service
//
// Each service's address comes from its flag (--inventory, --converter,
// --netbridge, --lbaas), else $HIKKOSHI_INVENTORY …, else the config file, else
// the etcd service registry (--etcd or $HIKKOSHI_ETCD), else the default port on
// 127.0.0.1.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hikkoshi/hikkoshi/cli/internal/cmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cmd.NewRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprint(os.Stderr, cmd.Explain(err))
		os.Exit(cmd.ExitCode(err))
	}
}
