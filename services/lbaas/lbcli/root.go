package lbcli

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/hikkoshi/hikkoshi/platform/cliout"
	"github.com/hikkoshi/hikkoshi/platform/cloud"
	"github.com/hikkoshi/hikkoshi/services/lbaas/octavia"
)

// UsageError is a command line the user must change; it exits with 2.
type UsageError struct{ Msg string }

func (e UsageError) Error() string { return e.Msg }

func usagef(format string, a ...any) error { return UsageError{fmt.Sprintf(format, a...)} }

type globals struct {
	cloud    string
	region   string
	output   cliout.Format
	outArg   string
	timeout  time.Duration
	ownerTag string
	calls    bool

	apiCalls int
}

func NewRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "hikkoshi-lb",
		Short: "Octavia load balancers with PROXY-protocol pools, straight against the Octavia API",
		Long: `hikkoshi-lb creates and manages Octavia load balancers whose pools speak the PROXY
protocol (PROXY or PROXYV2), so that backends see the client's address. It talks to
the Octavia API directly through gophercloud, reading clouds.yaml like the openstack
CLI (--os-cloud or OS_CLOUD; OS_CLIENT_CONFIG_FILE names the file).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			f, err := cliout.Parse(g.outArg)
			if err != nil {
				return UsageError{err.Error()}
			}
			g.output = f
			if g.cloud == "" && cmd.Annotations[noCloud] == "" {
				return usagef("no cloud: set --os-cloud or OS_CLOUD to an entry of clouds.yaml")
			}
			return nil
		},
		PersistentPostRun: func(cmd *cobra.Command, _ []string) {
			if g.calls {
				fmt.Fprintf(os.Stderr, "API calls: %d\n", g.apiCalls)
			}
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&g.cloud, "os-cloud", os.Getenv("OS_CLOUD"), "clouds.yaml entry (default $OS_CLOUD)")
	f.StringVar(&g.region, "os-region-name", os.Getenv("OS_REGION_NAME"), "region (default: the entry's, or $OS_REGION_NAME)")
	f.StringVarP(&g.outArg, "output", "o", "table", "output: table, json or yaml")
	f.DurationVar(&g.timeout, "timeout", octavia.DefaultTimeout, "how long to wait for Octavia (waits, retries of 409/503)")
	f.StringVar(&g.ownerTag, "owner-tag", octavia.DefaultOwnerTag, "tag put on everything created, and listed by default")
	f.BoolVar(&g.calls, "count-calls", false, "print how many API calls the command made after authenticating")
	root.AddCommand(newCreate(g), newShow(g), newList(g), newDelete(g), newMember(g), newVersion(g), newImport(g))
	return root
}

// open authenticates and returns the Octavia client and the cloud (for Neutron).
func (g *globals) open(ctx context.Context, opts ...octavia.Option) (*octavia.Client, *cloud.Cloud, error) {
	c, err := cloud.Open(ctx, g.cloud, cloud.WithCloudsYAML(os.Getenv("OS_CLIENT_CONFIG_FILE")), cloud.WithUserAgent("hikkoshi-lb"))
	if err != nil {
		return nil, nil, err
	}
	if g.region != "" {
		c = c.InRegion(g.region)
	}
	cloud.Observe(c.Provider, func(string, string, int) { g.apiCalls++ })
	sc, err := c.LoadBalancer()
	if err != nil {
		return nil, nil, err
	}
	opts = append([]octavia.Option{octavia.WithOwnerTag(g.ownerTag), octavia.WithTimeout(g.timeout)}, opts...)
	return octavia.New(sc, opts...), c, nil
}

// withLB runs fn on the load balancer ref (name or ID), under --timeout.
func (g *globals) withLB(cmd *cobra.Command, ref string, fn func(context.Context, *octavia.Client, *octavia.LoadBalancer) error) error {
	ctx, cancel := g.deadline(cmd)
	defer cancel()
	c, _, err := g.open(ctx)
	if err != nil {
		return err
	}
	lb, err := c.Find(ctx, ref)
	if err != nil {
		return err
	}
	return fn(ctx, c, lb)
}

// deadline bounds a whole command by --timeout.
func (g *globals) deadline(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), g.timeout)
}
