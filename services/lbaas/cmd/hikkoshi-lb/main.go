// Command hikkoshi-lb manages Octavia load balancers with PROXY-protocol pools,
// straight against the Octavia API (no Hikkoshi service, no etcd). It reads
// clouds.yaml like the openstack CLI: --os-cloud or OS_CLOUD picks the entry,
// OS_CLIENT_CONFIG_FILE names the file.
//
//	hikkoshi-lb create web --vip-subnet old-vlan-101-v4 --listener TCP:80 \
//	    --pool-protocol PROXYV2 --member 10.101.0.21:8080 --member 10.101.0.22:8080 \
//	    --monitor TCP --wait
//	hikkoshi-lb show web
//	hikkoshi-lb member drain web 10.101.0.21:8080
//	hikkoshi-lb delete web --wait
//	hikkoshi-lb import /etc/haproxy/haproxy.cfg --name shop   # a plan to review; no cloud
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hikkoshi/hikkoshi/services/lbaas/lbcli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := lbcli.NewRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "hikkoshi-lb:", err)
		var ue lbcli.UsageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		if errors.Is(err, lbcli.ErrIncomplete) {
			os.Exit(3)
		}
		os.Exit(1)
	}
}
