package lbcli

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
	"github.com/spf13/cobra"

	"github.com/hikkoshi/hikkoshi/platform/cloud"
	"github.com/hikkoshi/hikkoshi/services/lbaas/octavia"
)

type createFlags struct {
	vipSubnet, vipAddress, provider, description string
	listener, poolProtocol, poolName, lbMethod   string
	tlsRef                                       string
	members, tags                                []string
	monitor, monitorURL, monitorCodes            string
	delay, mtimeout, retries                     int
	serial, wait                                 bool
}

func newCreate(g *globals) *cobra.Command {
	var f createFlags
	cmd := &cobra.Command{
		Use:   "create NAME --vip-subnet SUBNET --listener PROTOCOL:PORT --pool-protocol PROTOCOL [--member ADDRESS:PORT[:WEIGHT]]... [--monitor TYPE]",
		Short: "Create a load balancer, its listener, pool, members and health monitor in one command",
		Long: `create builds a whole load balancer: a listener (TCP, HTTP, HTTPS or TERMINATED_HTTPS),
its default pool (PROXY and PROXYV2 send the PROXY protocol header to the members),
members, and a health monitor. It uses Octavia's single-call create when the provider
supports it and one call per object otherwise (--serial forces that). Octavia's rules
are checked first: a listener/pool protocol pair Octavia does not allow (UDP with
PROXY, say) or PROXYV2 on an Octavia API older than 2.22 is refused before any call.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := f.spec(args[0])
			if err != nil {
				return err
			}
			// Refuse what Octavia would refuse before authenticating or calling anything.
			if err := octavia.Validate(spec); err != nil {
				return err
			}
			ctx, cancel := g.deadline(cmd)
			defer cancel()
			var opts []octavia.Option
			if f.serial {
				opts = append(opts, octavia.WithSerialCreate())
			}
			c, cl, err := g.open(ctx, opts...)
			if err != nil {
				return err
			}
			if spec.VIPSubnetID, err = resolveSubnet(ctx, cl, f.vipSubnet); err != nil {
				return err
			}
			start := time.Now()
			if !f.wait {
				created, err := c.Create(ctx, spec)
				if err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "created load balancer %s (%s create, %s)\n", created.LoadBalancer.ID, created.Mode, created.LoadBalancer.ProvisioningStatus)
				return show(ctx, g, c, created.LoadBalancer.ID)
			}
			// Wait until the load balancer and everything under it is ACTIVE; a
			// single-call create that leaves children stuck is rebuilt serially.
			created, _, err := c.CreateReady(ctx, spec, progress(start))
			if created != nil {
				fmt.Fprintf(os.Stderr, "load balancer %s (%s create) in %.1fs\n", created.LoadBalancer.ID, created.Mode, time.Since(start).Seconds())
			}
			if err != nil {
				return err
			}
			return show(ctx, g, c, created.LoadBalancer.ID)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.vipSubnet, "vip-subnet", "", "subnet (name or ID) the VIP is allocated from (required)")
	fl.StringVar(&f.vipAddress, "vip-address", "", "fixed VIP address")
	fl.StringVar(&f.provider, "provider", "", "Octavia provider (default: the cloud's)")
	fl.StringVar(&f.description, "description", "", "description")
	fl.StringVar(&f.listener, "listener", "", "listener PROTOCOL:PORT: TCP, HTTP, HTTPS or TERMINATED_HTTPS (required)")
	fl.StringVar(&f.tlsRef, "tls-container-ref", "", "Barbican container of the certificate (TERMINATED_HTTPS)")
	fl.StringVar(&f.poolProtocol, "pool-protocol", "PROXY", "pool protocol: PROXY, PROXYV2, TCP, HTTP, HTTPS")
	fl.StringVar(&f.poolName, "pool-name", "", "pool name (default NAME-pool)")
	fl.StringVar(&f.lbMethod, "lb-method", "ROUND_ROBIN", "ROUND_ROBIN, LEAST_CONNECTIONS, SOURCE_IP or SOURCE_IP_PORT")
	fl.StringArrayVar(&f.members, "member", nil, "member ADDRESS:PORT[:WEIGHT] (repeat for more)")
	fl.StringVar(&f.monitor, "monitor", "", "health monitor type: TCP, HTTP, HTTPS, PING, TLS-HELLO (none when empty)")
	fl.IntVar(&f.delay, "monitor-delay", 5, "seconds between health probes")
	fl.IntVar(&f.mtimeout, "monitor-timeout", 3, "seconds a probe may take")
	fl.IntVar(&f.retries, "monitor-max-retries", 3, "probes that must succeed before a member is ONLINE")
	fl.StringVar(&f.monitorURL, "monitor-url-path", "", "HTTP(S) monitor path")
	fl.StringVar(&f.monitorCodes, "monitor-expected-codes", "", "HTTP(S) monitor codes, e.g. 200-299")
	fl.StringArrayVar(&f.tags, "tag", nil, "extra tag (repeat for more); the owner tag is always added")
	fl.BoolVar(&f.serial, "serial", false, "create object by object even if the provider takes the whole tree in one call")
	fl.BoolVar(&f.wait, "wait", false, "wait until ACTIVE (or ERROR), showing each status")
	return cmd
}

func (f *createFlags) spec(name string) (octavia.Spec, error) {
	if f.vipSubnet == "" {
		return octavia.Spec{}, usagef("--vip-subnet is required")
	}
	proto, port, ok := strings.Cut(f.listener, ":")
	p, err := strconv.Atoi(port)
	if !ok || err != nil {
		return octavia.Spec{}, usagef("--listener %q: want PROTOCOL:PORT, e.g. TCP:80", f.listener)
	}
	pool := &octavia.PoolSpec{Name: f.poolName, Protocol: strings.ToUpper(f.poolProtocol), LBMethod: strings.ToUpper(f.lbMethod)}
	if pool.Name == "" {
		pool.Name = name + "-pool"
	}
	for _, m := range f.members {
		ms, err := parseMember(m)
		if err != nil {
			return octavia.Spec{}, err
		}
		pool.Members = append(pool.Members, ms)
	}
	if f.monitor != "" {
		pool.Monitor = &octavia.MonitorSpec{Type: strings.ToUpper(f.monitor), Delay: f.delay, Timeout: f.mtimeout,
			MaxRetries: f.retries, URLPath: f.monitorURL, ExpectedCodes: f.monitorCodes}
	}
	return octavia.Spec{
		Name: name, Description: f.description, VIPSubnetID: f.vipSubnet, VIPAddress: f.vipAddress,
		Provider: f.provider, Tags: f.tags,
		Listeners: []octavia.ListenerSpec{{Name: fmt.Sprintf("%s-%s-%d", name, strings.ToLower(proto), p),
			Protocol: strings.ToUpper(proto), Port: p, DefaultTLSContainerRef: f.tlsRef, Pool: pool}},
	}, nil
}

// parseMember parses ADDRESS:PORT[:WEIGHT]; an IPv6 address goes in brackets.
func parseMember(s string) (octavia.MemberSpec, error) {
	var weight *int
	host, port, err := net.SplitHostPort(s)
	if err != nil { // maybe ADDRESS:PORT:WEIGHT
		i := strings.LastIndex(s, ":")
		if i < 0 {
			return octavia.MemberSpec{}, usagef("member %q: want ADDRESS:PORT[:WEIGHT]", s)
		}
		w, werr := strconv.Atoi(s[i+1:])
		if werr != nil {
			return octavia.MemberSpec{}, usagef("member %q: want ADDRESS:PORT[:WEIGHT]", s)
		}
		weight = &w
		if host, port, err = net.SplitHostPort(s[:i]); err != nil {
			return octavia.MemberSpec{}, usagef("member %q: want ADDRESS:PORT[:WEIGHT]", s)
		}
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return octavia.MemberSpec{}, usagef("member %q: %q is not a port", s, port)
	}
	return octavia.MemberSpec{Address: host, Port: p, Weight: weight}, nil
}

// resolveSubnet accepts a subnet's ID or its unique name.
func resolveSubnet(ctx context.Context, c *cloud.Cloud, ref string) (string, error) {
	nc, err := c.Network()
	if err != nil {
		return "", err
	}
	if s, err := subnets.Get(ctx, nc, ref).Extract(); err == nil {
		return s.ID, nil
	}
	pages, err := subnets.List(nc, subnets.ListOpts{Name: ref}).AllPages(ctx)
	if err != nil {
		return "", fmt.Errorf("find subnet %q: %w", ref, err)
	}
	list, err := subnets.ExtractSubnets(pages)
	if err != nil {
		return "", err
	}
	switch len(list) {
	case 0:
		return "", usagef("--vip-subnet %q: no subnet with that ID or name", ref)
	case 1:
		return list[0].ID, nil
	}
	return "", usagef("--vip-subnet %q: %d subnets have that name; give the ID", ref, len(list))
}

// progress prints each status change while waiting.
func progress(start time.Time) func(*octavia.LoadBalancer) {
	last := ""
	return func(lb *octavia.LoadBalancer) {
		s := lb.ProvisioningStatus + "/" + lb.OperatingStatus
		if s != last {
			last = s
			fmt.Fprintf(os.Stderr, "  %6.1fs  %s\n", time.Since(start).Seconds(), s)
		}
	}
}
