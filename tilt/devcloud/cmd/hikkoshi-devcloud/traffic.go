package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/listeners"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/loadbalancers"

	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud/meter"
)

// traffic runs the traffic meter: requests at a steady rate through a load balancer's
// VIP (--lb, found in Octavia) or to an address (--addr), sent from inside the data
// plane's namespace. Outside it, it finds the address first, then runs itself again
// inside with `ip netns exec`. SIGINT or SIGTERM stops sending and prints the report.
func traffic(args []string) error {
	fs := flag.NewFlagSet("traffic", flag.ContinueOnError)
	lb := fs.String("lb", "", "a load balancer's name or ID: send to its VIP")
	port := fs.Int("port", 0, "with --lb: the listener's port (default: its first listener's)")
	addr := fs.String("addr", "", "IP:PORT to send to instead of a load balancer")
	cloudName := fs.String("cloud", "admin", "the clouds.yaml entry to look the load balancer up with")
	rate := fs.Float64("rate", 20, "requests per second, each on a new connection")
	dur := fs.Duration("for", 10*time.Second, "how long to send (0: until SIGINT or SIGTERM)")
	timeout := fs.Duration("timeout", 2*time.Second, "per request")
	mode := fs.String("mode", "http", "http (GET, Connection: close) or tcp (read the first line)")
	path := fs.String("path", "/", "the HTTP path")
	out := fs.String("o", "text", "text or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("traffic: unexpected argument %q", fs.Arg(0))
	}
	if (*lb == "") == (*addr == "") {
		return errors.New("traffic: give --lb NAME or --addr IP:PORT (one of them)")
	}
	if *out != "text" && *out != "json" {
		return fmt.Errorf("traffic: -o %q: want text or json", *out)
	}
	if !devcloud.InNetns() {
		if !devcloud.NetnsUp() {
			return fmt.Errorf("traffic: the data plane's namespace %s does not exist: run %s up", devcloud.Netns, devcloud.Script())
		}
		target := *addr
		if *lb != "" {
			var err error
			if target, err = lbTarget(*cloudName, *lb, *port); err != nil {
				return err
			}
		}
		self, err := os.Executable()
		if err != nil {
			return err
		}
		ip, err := exec.LookPath("ip")
		if err != nil {
			return fmt.Errorf("traffic: %w (iproute2)", err)
		}
		argv := []string{"ip", "netns", "exec", devcloud.Netns, self, "traffic", "--addr", target,
			"--rate", strconv.FormatFloat(*rate, 'f', -1, 64), "--for", dur.String(), "--timeout", timeout.String(),
			"--mode", *mode, "--path", *path, "-o", *out}
		return syscall.Exec(ip, argv, os.Environ())
	}
	if _, _, err := net.SplitHostPort(*addr); err != nil {
		return fmt.Errorf("traffic: --addr %q: %w", *addr, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := meter.Run(ctx, meter.Options{Target: *addr, Source: devcloud.ClientAddr, Mode: meter.Mode(*mode),
		Path: *path, Rate: *rate, For: *dur, Timeout: *timeout})
	if err != nil {
		return err
	}
	if *out == "json" {
		return json.NewEncoder(os.Stdout).Encode(rep)
	}
	rep.Format(os.Stdout)
	return nil
}

// lbTarget finds a load balancer by name or ID and returns VIP:port of the listener
// on port (or of its first listener).
func lbTarget(cloudName, nameOrID string, port int) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := open(ctx, cloudName)
	if err != nil {
		return "", err
	}
	lc, err := c.LoadBalancer()
	if err != nil {
		return "", err
	}
	lb, err := loadbalancers.Get(ctx, lc, nameOrID).Extract()
	if err != nil {
		pages, lerr := loadbalancers.List(lc, loadbalancers.ListOpts{Name: nameOrID}).AllPages(ctx)
		if lerr != nil {
			return "", lerr
		}
		list, _ := loadbalancers.ExtractLoadBalancers(pages)
		if len(list) != 1 {
			return "", fmt.Errorf("traffic: %d load balancers named %q, want 1", len(list), nameOrID)
		}
		lb = &list[0]
	}
	pages, err := listeners.List(lc, listeners.ListOpts{LoadbalancerID: lb.ID}).AllPages(ctx)
	if err != nil {
		return "", err
	}
	ls, _ := listeners.ExtractListeners(pages)
	for _, l := range ls {
		if port == 0 || l.ProtocolPort == port {
			return net.JoinHostPort(lb.VipAddress, strconv.Itoa(l.ProtocolPort)), nil
		}
	}
	if port != 0 {
		return "", fmt.Errorf("traffic: load balancer %s has no listener on port %d", nameOrID, port)
	}
	return "", fmt.Errorf("traffic: load balancer %s has no listener", nameOrID)
}
