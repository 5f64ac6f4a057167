package cmd

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
	"github.com/hikkoshi/hikkoshi/platform/cliout"
	"github.com/hikkoshi/hikkoshi/platform/pagetoken"
)

func (g *globals) lbaas() (lbaasv1.LoadBalancerServiceClient, error) {
	c, err := g.conn("lbaas")
	if err != nil {
		return nil, err
	}
	return lbaasv1.NewLoadBalancerServiceClient(c), nil
}

const lbHeader = "NAME\tID\tPROVISIONING\tOPERATING\tVIP\tLISTENERS\tMEMBERS"

func lbRow(tw *tabwriter.Writer, lb *lbaasv1.LoadBalancer) {
	members := 0
	for _, l := range lb.GetListeners() {
		members += len(l.GetPool().GetMembers())
	}
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\n", lb.GetName(), lb.GetId(), lb.GetStatus().GetProvisioningStatus(), lb.GetStatus().GetOperatingStatus(),
		lb.GetVip().GetAddress(), len(lb.GetListeners()), members)
}

// lbTree is a load balancer with its listeners, pools, members and their health.
func lbTree(tw *tabwriter.Writer, lb *lbaasv1.LoadBalancer) {
	fmt.Fprintln(tw, lbHeader)
	lbRow(tw, lb)
	for _, l := range lb.GetListeners() {
		fmt.Fprintf(tw, "  listener\t%s\t%s:%d\t%s/%s\n", l.GetDisplayName(), l.GetProtocol(), l.GetPort(), l.GetStatus().GetProvisioningStatus(), l.GetStatus().GetOperatingStatus())
		p := l.GetPool()
		if p == nil {
			continue
		}
		fmt.Fprintf(tw, "    pool\t%s\t%s %s\t%s/%s\n", p.GetDisplayName(), p.GetProtocol(), p.GetLbMethod(), p.GetStatus().GetProvisioningStatus(), p.GetStatus().GetOperatingStatus())
		for _, m := range p.GetMembers() {
			fmt.Fprintf(tw, "      member\t%s\t%s:%d\t%s/%s\n", m.GetDisplayName(), m.GetAddress(), m.GetPort(), m.GetStatus().GetProvisioningStatus(), m.GetStatus().GetOperatingStatus())
		}
	}
}

func newLoadBalancers(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "loadbalancers", Aliases: []string{"lbs"}, Short: "The lbaas service's load balancers: list, show, watch their members' health"}
	name := func(s string) string { return resourceName("loadBalancers", s) }
	var tags []string
	list := &cobra.Command{
		Use: "list", Short: "List load balancers (all pages)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.lbaas()
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			lbs, err := pagetoken.Collect(func(token string) ([]*lbaasv1.LoadBalancer, string, error) {
				r, err := c.ListLoadBalancers(ctx, &lbaasv1.ListLoadBalancersRequest{PageSize: 500, Tags: tags, PageToken: token})
				return r.GetLoadBalancers(), r.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			all := &lbaasv1.ListLoadBalancersResponse{LoadBalancers: lbs}
			return g.format.Print(cmd.OutOrStdout(), all, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, lbHeader)
				for _, lb := range all.GetLoadBalancers() {
					lbRow(tw, lb)
				}
			})
		},
	}
	list.Flags().StringSliceVar(&tags, "tag", nil, "only load balancers with all these tags")
	get := &cobra.Command{
		Use: "get LB", Short: "Show a load balancer with its listeners, pools and members", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.lbaas()
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			r, err := c.GetLoadBalancer(ctx, &lbaasv1.GetLoadBalancerRequest{Name: name(args[0])})
			if err != nil {
				return err
			}
			return g.format.Print(cmd.OutOrStdout(), r.GetLoadBalancer(), func(tw *tabwriter.Writer) { lbTree(tw, r.GetLoadBalancer()) })
		},
	}
	var now bool
	watch := &cobra.Command{
		Use:   "watch LB",
		Short: "Follow a load balancer through its next change (an update, a member's health, its deletion) until it settles again: its tree at each step",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.lbaas()
			if err != nil {
				return err
			}
			return g.watchLB(cmd, c, name(args[0]), !now)
		},
	}
	watch.Flags().BoolVar(&now, "now", false, "wait for no change: follow it only until it is settled (at once if it is)")

	var file, requestID string
	var wait bool
	create := &cobra.Command{
		Use:   "create -f SPEC",
		Short: "Create a load balancer with its listeners, pools, members and monitors from its spec (a LoadBalancer in JSON or YAML)",
		Long: `Create a load balancer from its spec: a LoadBalancer message in JSON or YAML with the
API's field names; the lbaas service builds the whole tree in Octavia.

  hikkoshi loadbalancers create --wait -f - <<EOF
  display_name: shop-web
  vip: {subnet_id: 5d1c…}
  listeners:
  - {display_name: web, protocol: TCP, port: 80, pool: {protocol: PROXYV2, members: [{address: 10.101.0.21, port: 8080}]}}
  EOF`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lb := &lbaasv1.LoadBalancer{}
			if err := readSpec(cmd, file, lb); err != nil {
				return err
			}
			c, err := g.lbaas()
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			r, err := c.CreateLoadBalancer(ctx, &lbaasv1.CreateLoadBalancerRequest{LoadBalancer: lb, RequestId: requestID})
			if err != nil {
				return err
			}
			if wait {
				return g.watchLB(cmd, c, r.GetLoadBalancer().GetName(), false)
			}
			return g.format.Print(cmd.OutOrStdout(), r.GetLoadBalancer(), func(tw *tabwriter.Writer) { lbTree(tw, r.GetLoadBalancer()) })
		},
	}
	create.Flags().StringVarP(&file, "file", "f", "", "the load balancer's spec, JSON or YAML (- reads standard input)")
	create.Flags().StringVar(&requestID, "request-id", "", "makes a retried create return the same load balancer instead of a second one")
	create.Flags().BoolVar(&wait, "wait", false, "follow it until it is built (settled)")
	del := &cobra.Command{
		Use: "delete LB", Short: "Delete a load balancer with everything under it", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.lbaas()
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			r, err := c.DeleteLoadBalancer(ctx, &lbaasv1.DeleteLoadBalancerRequest{Name: name(args[0])})
			if err != nil {
				return err
			}
			if g.format.Structured() {
				return g.format.Message(cmd.OutOrStdout(), r)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s deleted\n", name(args[0]))
			return nil
		},
	}
	cmd.AddCommand(list, get, create, watch, del)
	return cmd
}

// watchLB prints a load balancer's tree at each change until the service ends the
// stream: once it is settled (after a change first, with waitForChange; a deletion
// is settled); -o json|yaml prints each WatchLoadBalancer message.
func (g *globals) watchLB(cmd *cobra.Command, c lbaasv1.LoadBalancerServiceClient, name string, waitForChange bool) error {
	stream, err := c.WatchLoadBalancer(cmd.Context(), &lbaasv1.WatchLoadBalancerRequest{Name: name, WaitForChange: waitForChange})
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	last := ""
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if g.format.Structured() {
			if err := g.format.Message(out, m); err != nil {
				return err
			}
		} else {
			var b strings.Builder
			tw := cliout.NewTabWriter(&b)
			lbTree(tw, m.GetLoadBalancer())
			_ = tw.Flush()
			if s := fmt.Sprintf("settled=%v deleted=%v\n%s", m.GetSettled(), m.GetDeleted(), b.String()); s != last {
				last = s
				fmt.Fprintf(out, "%s %s", time.Now().Format("15:04:05"), s)
			}
		}
	}
}
