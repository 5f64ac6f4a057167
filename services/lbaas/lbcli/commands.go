package lbcli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/loadbalancers"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/hikkoshi/hikkoshi/platform/cliout"
	"github.com/hikkoshi/hikkoshi/services/lbaas/octavia"
)

func newShow(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show LB",
		Short: "Show a load balancer (name or ID) with its listeners, pools, members and monitors, and their statuses",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withLB(cmd, args[0], func(ctx context.Context, c *octavia.Client, lb *octavia.LoadBalancer) error {
				return show(ctx, g, c, lb.ID)
			})
		},
	}
}

func show(ctx context.Context, g *globals, c *octavia.Client, id string) error {
	t, err := c.Show(ctx, id)
	if err != nil {
		return err
	}
	if g.output.Structured() {
		return g.printData(os.Stdout, t)
	}
	lb := t.LoadBalancer
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "load balancer\t%s\t%s\t%s/%s\tvip %s\ttags %s\n", lb.Name, lb.ID, lb.ProvisioningStatus, lb.OperatingStatus, lb.VipAddress, strings.Join(lb.Tags, ","))
	for _, l := range t.Listeners {
		fmt.Fprintf(w, "  listener\t%s\t%s\t%s/%s\t%s:%d\n", l.Listener.Name, l.Listener.ID, l.Listener.ProvisioningStatus, l.Listener.OperatingStatus, l.Listener.Protocol, l.Listener.ProtocolPort)
		if p := l.Pool; p != nil {
			fmt.Fprintf(w, "    pool\t%s\t%s\t%s/%s\t%s %s\n", p.Pool.Name, p.Pool.ID, p.Pool.ProvisioningStatus, p.Pool.OperatingStatus, p.Pool.Protocol, p.Pool.LBMethod)
			for _, m := range p.Members {
				fmt.Fprintf(w, "      member\t%s\t%s\t%s/%s\t%s:%d weight %d\n", m.Name, m.ID, m.ProvisioningStatus, m.OperatingStatus, m.Address, m.ProtocolPort, m.Weight)
			}
			if m := p.Monitor; m != nil {
				fmt.Fprintf(w, "      monitor\t%s\t%s\t%s/%s\t%s every %ds, timeout %ds, %d retries\n", m.Name, m.ID, m.ProvisioningStatus, m.OperatingStatus, m.Type, m.Delay, m.Timeout, m.MaxRetries)
			}
		}
	}
	return w.Flush()
}

// printData writes v (not a protobuf message: Octavia's own objects) as JSON or
// YAML, by its JSON field names.
func (g *globals) printData(w io.Writer, v any) error {
	if g.output == cliout.YAML {
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "---\n%s", b)
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newList(g *globals) *cobra.Command {
	var tags []string
	var all bool
	cmd := &cobra.Command{
		Use:   "list [--tag TAG]... [--all]",
		Short: "List load balancers carrying the owner tag (and every --tag), or --all",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := g.deadline(cmd)
			defer cancel()
			c, _, err := g.open(ctx)
			if err != nil {
				return err
			}
			var list []octavia.LoadBalancer
			if all {
				list, err = c.List(ctx, loadbalancers.ListOpts{Tags: tags})
			} else {
				list, err = c.ListOwned(ctx, tags...)
			}
			if err != nil {
				return err
			}
			if g.output.Structured() {
				if list == nil {
					list = []octavia.LoadBalancer{}
				}
				return g.printData(os.Stdout, list)
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tID\tPROVISIONING\tOPERATING\tVIP\tTAGS")
			for _, lb := range list {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", lb.Name, lb.ID, lb.ProvisioningStatus, lb.OperatingStatus, lb.VipAddress, strings.Join(lb.Tags, ","))
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringArrayVar(&tags, "tag", nil, "only load balancers with this tag too (repeat for more)")
	cmd.Flags().BoolVar(&all, "all", false, "not only those with the owner tag")
	return cmd
}

func newDelete(g *globals) *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "delete LB [--wait]",
		Short: "Delete a load balancer (name or ID) with everything under it (cascade)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withLB(cmd, args[0], func(ctx context.Context, c *octavia.Client, lb *octavia.LoadBalancer) error {
				start := time.Now()
				if err := c.DeleteAsync(ctx, lb.ID); err != nil {
					return err
				}
				if !wait {
					fmt.Fprintf(os.Stderr, "deleting load balancer %s (cascade)\n", lb.ID)
					return nil
				}
				if err := c.WaitDeleted(ctx, lb.ID); err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "deleted load balancer %s (cascade) in %.1fs\n", lb.ID, time.Since(start).Seconds())
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until it is gone")
	return cmd
}

func newVersion(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "api-version",
		Short: "Print the newest Octavia API version the cloud offers (GET /)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := g.deadline(cmd)
			defer cancel()
			c, _, err := g.open(ctx)
			if err != nil {
				return err
			}
			v, err := c.APIVersion(ctx)
			if err != nil {
				return err
			}
			proxyV2 := "no (needs 2.22)"
			if !(octavia.Version{Major: 2, Minor: 22}).After(v) {
				proxyV2 = "yes"
			}
			if g.output.Structured() {
				return g.printData(os.Stdout, map[string]any{"version": v.String(), "proxyv2": proxyV2 == "yes"})
			}
			fmt.Printf("Octavia API %s; PROXYV2 pools: %s\n", v, proxyV2)
			return nil
		},
	}
}
