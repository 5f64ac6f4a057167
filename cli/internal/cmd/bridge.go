package cmd

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/cliout"
	"github.com/hikkoshi/hikkoshi/platform/pagetoken"
)

func (g *globals) netbridge() (netbridgev1.NetbridgeServiceClient, error) {
	c, err := g.conn("netbridge")
	if err != nil {
		return nil, err
	}
	return netbridgev1.NewNetbridgeServiceClient(c), nil
}

const bridgeHeader = "NAME\tMODE\tSTATE\tOLD\tNEW\tRESOURCES\tMOVED"

func bridgeRow(tw *tabwriter.Writer, b *netbridgev1.Bridge) {
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s/%s\t%s/%s\t%d\t%d\n", b.GetName(), cliout.Short(b.GetMode().String(), "BRIDGE_MODE_"), cliout.Short(b.GetState().String(), "BRIDGE_STATE_"),
		b.GetOld().GetCloud(), b.GetOld().GetNetworkId(), b.GetNew().GetCloud(), cliout.OrDash(b.GetNew().GetNetworkName()), len(b.GetResources()), len(b.GetMoved()))
}

func (g *globals) printBridge(cmd *cobra.Command, b *netbridgev1.Bridge, changes []*netbridgev1.Change, verb string) error {
	return g.format.Print(cmd.OutOrStdout(), b, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, bridgeHeader)
		bridgeRow(tw, b)
		if s := b.GetSplit(); s != nil {
			fmt.Fprintf(tw, "split %s: old pools %s → %s; new pools %s\n", s.GetCidr(), strings.Join(s.GetOriginalPools(), ","), strings.Join(s.GetOldPools(), ","), strings.Join(s.GetNewPools(), ","))
		}
		for _, c := range changes {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", verb, c.GetAction(), c.GetSide(), c.GetKind(), c.GetDescription())
		}
		if e := b.GetError(); e != "" {
			fmt.Fprintf(tw, "error: %s\n", e)
		}
	})
}

func newBridge(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "bridge", Aliases: []string{"bridges"}, Short: "Join two clouds' networks: create, plan, apply, roll back"}
	name := func(s string) string { return resourceName("bridges", s) }

	list := &cobra.Command{
		Use: "list", Short: "List bridges (all pages)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.netbridge()
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			bridges, err := pagetoken.Collect(func(token string) ([]*netbridgev1.Bridge, string, error) {
				r, err := c.ListBridges(ctx, &netbridgev1.ListBridgesRequest{PageSize: 500, PageToken: token})
				return r.GetBridges(), r.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			all := &netbridgev1.ListBridgesResponse{Bridges: bridges}
			return g.format.Print(cmd.OutOrStdout(), all, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, bridgeHeader)
				for _, b := range all.GetBridges() {
					bridgeRow(tw, b)
				}
			})
		},
	}
	get := &cobra.Command{
		Use: "get BRIDGE", Short: "Show a bridge with its pool split", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.netbridge()
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			r, err := c.GetBridge(ctx, &netbridgev1.GetBridgeRequest{Name: name(args[0])})
			if err != nil {
				return err
			}
			return g.printBridge(cmd, r.GetBridge(), nil, "")
		},
	}
	var file, requestID string
	create := &cobra.Command{
		Use:   "create BRIDGE_ID -f SPEC",
		Short: "Create a bridge from its spec (a Bridge in JSON or YAML, the API's fields); nothing changes in a cloud before apply",
		Long: `Create a bridge from its spec: a Bridge message in JSON or YAML with the API's field names.

  hikkoshi bridge create old-vlan-101 -f - <<EOF
  mode: BRIDGE_MODE_SHARED_L2
  old: {cloud: old-admin, network_id: 1c9e…}
  new: {cloud: new-admin, physical_network: physnet2, network_name: old-vlan-101-bridged}
  shared_l2: {old_keep_free: 16}
  EOF`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b := &netbridgev1.Bridge{}
			if err := readSpec(cmd, file, b); err != nil {
				return err
			}
			c, err := g.netbridge()
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			r, err := c.CreateBridge(ctx, &netbridgev1.CreateBridgeRequest{Bridge: b, BridgeId: args[0], RequestId: requestID})
			if err != nil {
				return err
			}
			return g.printBridge(cmd, r.GetBridge(), nil, "")
		},
	}
	create.Flags().StringVarP(&file, "file", "f", "", "the bridge's spec, JSON or YAML (- reads standard input)")
	create.Flags().StringVar(&requestID, "request-id", "", "makes a retried create return the same bridge instead of an error")

	plan := &cobra.Command{
		Use: "plan BRIDGE", Short: "What apply would change in each cloud, the conflicts, and the plan's etag", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.netbridge()
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			r, err := c.PlanBridge(ctx, &netbridgev1.PlanBridgeRequest{Name: name(args[0])})
			if err != nil {
				return err
			}
			p := r.GetPlan()
			return g.format.Print(cmd.OutOrStdout(), p, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "%s: %d changes, %d already as planned, %d conflicts; etag %s\n", p.GetBridge(), len(p.GetChanges()), p.GetUnchanged(), len(p.GetConflicts()), p.GetPlanEtag())
				if len(p.GetChanges()) > 0 {
					fmt.Fprintln(tw, "ACTION\tSIDE\tKIND\tDESCRIPTION")
				}
				for _, ch := range p.GetChanges() {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ch.GetAction(), ch.GetSide(), ch.GetKind(), ch.GetDescription())
				}
				if s := p.GetSplit(); s != nil {
					fmt.Fprintf(tw, "split %s: old pools %s → %s; new pools %s\n", s.GetCidr(), strings.Join(s.GetOriginalPools(), ","), strings.Join(s.GetOldPools(), ","), strings.Join(s.GetNewPools(), ","))
				}
				for _, cf := range p.GetConflicts() {
					fmt.Fprintf(tw, "CONFLICT\t%s\t%s\n", cf.GetIpAddress(), cf.GetReason())
				}
				for _, n := range p.GetNotes() {
					fmt.Fprintf(tw, "note: %s\n", n)
				}
			})
		},
	}
	var etag string
	var unreviewed bool
	apply := &cobra.Command{
		Use: "apply BRIDGE --etag ETAG", Short: "Make the reviewed plan's changes (refused if the bridge or the clouds changed since the plan)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if etag == "" && !unreviewed {
				return usagef("--etag: give the plan_etag of the plan you reviewed (hikkoshi bridge plan %s), or --unreviewed to apply whatever the plan is now", args[0])
			}
			c, err := g.netbridge()
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			r, err := c.ApplyBridge(ctx, &netbridgev1.ApplyBridgeRequest{Name: name(args[0]), PlanEtag: etag})
			if err != nil {
				return err
			}
			if g.format.Structured() {
				return g.format.Message(cmd.OutOrStdout(), r)
			}
			return g.printBridge(cmd, r.GetBridge(), r.GetApplied(), "applied")
		},
	}
	apply.Flags().StringVar(&etag, "etag", "", "the plan_etag of the plan you reviewed (hikkoshi bridge plan)")
	apply.Flags().BoolVar(&unreviewed, "unreviewed", false, "apply the plan as it is now, without an etag to check")
	rollback := &cobra.Command{
		Use: "rollback BRIDGE", Short: "Undo what apply made, in reverse order (refused while addresses are moved)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.netbridge()
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			r, err := c.RollbackBridge(ctx, &netbridgev1.RollbackBridgeRequest{Name: name(args[0])})
			if err != nil {
				return err
			}
			if g.format.Structured() {
				return g.format.Message(cmd.OutOrStdout(), r)
			}
			return g.printBridge(cmd, r.GetBridge(), r.GetUndone(), "undone")
		},
	}
	del := &cobra.Command{
		Use: "delete BRIDGE", Short: "Delete a bridge that is new or rolled back", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.netbridge()
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			r, err := c.DeleteBridge(ctx, &netbridgev1.DeleteBridgeRequest{Name: name(args[0])})
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
	for _, c := range []*cobra.Command{get, plan, apply, rollback, del} {
		c.ValidArgsFunction = g.completeBridges
	}
	cmd.AddCommand(list, get, create, plan, apply, rollback, del)
	return cmd
}

func newAddress(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "address", Short: "Move a server's address across a bridge, keeping it (and back)"}
	var portName string
	var keepMAC bool
	steps := func(cmd *cobra.Command, head string, s []string) {
		fmt.Fprintln(cmd.OutOrStdout(), head)
		for _, x := range s {
			fmt.Fprintf(cmd.OutOrStdout(), "  %s\n", x)
		}
	}
	move := &cobra.Command{
		Use: "move BRIDGE IP", Short: "Move IP to the new cloud: its old port released, a new port made with it", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.netbridge()
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			r, err := c.MoveAddress(ctx, &netbridgev1.MoveAddressRequest{Bridge: resourceName("bridges", args[0]), IpAddress: args[1], PortName: portName, KeepMac: keepMAC})
			if err != nil {
				return err
			}
			if g.format.Structured() {
				return g.format.Message(cmd.OutOrStdout(), r)
			}
			steps(cmd, fmt.Sprintf("%s moved: new port %s (old port %s)", args[1], r.GetNewPortId(), r.GetOldPortId()), r.GetSteps())
			return nil
		},
	}
	move.Flags().StringVar(&portName, "port-name", "", "the new port's name (default: the old port's)")
	move.Flags().BoolVar(&keepMAC, "keep-mac", false, "give the new port the old port's MAC address too")
	back := &cobra.Command{
		Use: "move-back BRIDGE IP", Short: "Give IP back to its old port (the new port deleted)", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.netbridge()
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			r, err := c.MoveAddressBack(ctx, &netbridgev1.MoveAddressBackRequest{Bridge: resourceName("bridges", args[0]), IpAddress: args[1]})
			if err != nil {
				return err
			}
			if g.format.Structured() {
				return g.format.Message(cmd.OutOrStdout(), r)
			}
			steps(cmd, fmt.Sprintf("%s back on its old port %s", args[1], r.GetOldPortId()), r.GetSteps())
			return nil
		},
	}
	for _, c := range []*cobra.Command{move, back} {
		c.ValidArgsFunction = g.completeBridges
	}
	cmd.AddCommand(move, back)
	return cmd
}

func newConsolePorts(g *globals) *cobra.Command {
	req := &netbridgev1.PlanConsolePortsRequest{}
	var nodes []string
	cmd := &cobra.Command{
		Use:   "console-ports",
		Short: "Plan each compute node's serial-console port range so that no two overlap",
		Long: `Plan each compute node's serial-console port range ([serial_console] port_range)
so that no two nodes of the clouds overlap. Nodes come from --cloud (Nova's
hypervisors, asked) and --node CLOUD/HOST[=FIRST:LAST] (given).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, n := range nodes {
				cloudHost, rng, _ := strings.Cut(n, "=")
				cloud, host, ok := strings.Cut(cloudHost, "/")
				if !ok {
					return usagef("--node %q: use CLOUD/HOST or CLOUD/HOST=FIRST:LAST", n)
				}
				req.Nodes = append(req.Nodes, &netbridgev1.ComputeNode{Cloud: cloud, Host: host, CurrentRange: rng})
			}
			c, err := g.netbridge()
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			r, err := c.PlanConsolePorts(ctx, req)
			if err != nil {
				return err
			}
			return g.format.Print(cmd.OutOrStdout(), r, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "CLOUD\tHOST\tPORT_RANGE\tCHANGED")
				for _, x := range r.GetRanges() {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%v\n", x.GetCloud(), x.GetHost(), x.GetPortRange(), x.GetChanged())
				}
				for _, o := range r.GetOverlaps() {
					fmt.Fprintf(tw, "overlap now: %s and %s share %s\n", o.GetFirst(), o.GetSecond(), o.GetPorts())
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&req.Clouds, "cloud", nil, "clouds.yaml entries whose compute nodes are planned (repeat)")
	f.StringArrayVar(&nodes, "node", nil, "a node given by hand: CLOUD/HOST or CLOUD/HOST=FIRST:LAST (repeat)")
	f.Int32Var(&req.FirstPort, "first-port", 0, "the first node's first port (default: the service's)")
	f.Int32Var(&req.PortsPerNode, "ports-per-node", 0, "ports per node (default: the service's)")
	f.StringVar(&req.AssumedCurrentRange, "assumed-current-range", "", "the range nodes whose own is unknown use now (Nova's default 10000:20000)")
	return cmd
}

func newWatchdog(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "watchdog",
		Short: "The HA-router watchdog's view: each router's health, heals and events",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.netbridge()
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			r, err := c.GetWatchdogStatus(ctx, &netbridgev1.GetWatchdogStatusRequest{})
			if err != nil {
				return err
			}
			st := r.GetStatus()
			return g.format.Print(cmd.OutOrStdout(), st, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "leader %s, clouds %s\n", cliout.OrDash(st.GetLeader()), strings.Join(st.GetClouds(), ","))
				fmt.Fprintln(tw, "CLOUD\tROUTER\tNAME\tHEALTHY\tACTIVE\tVRRP_PORTS\tHEALS\tPROBLEMS")
				for _, h := range st.GetRouters() {
					health := fmt.Sprint(h.GetHealthy())
					if h.GetGaveUp() {
						health += " (gave up)"
					} else if h.GetHealing() {
						health += " (healing)"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", h.GetCloud(), h.GetRouterId(), h.GetName(), health, h.GetActiveAgents(), h.GetVrrpPorts(), len(h.GetHealTimes()), strings.Join(h.GetProblems(), "; "))
				}
				for _, e := range st.GetEvents() {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.GetTime().AsTime().Format("15:04:05"), e.GetKind(), e.GetRouterId(), e.GetInstance(), e.GetDetail())
				}
			})
		},
	}
}

func (g *globals) completeBridges(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	if err := g.setup(cmd); err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	c, err := g.netbridge()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	ctx, cancel := g.ctx(cmd)
	defer cancel()
	r, err := c.ListBridges(ctx, &netbridgev1.ListBridgesRequest{PageSize: 500})
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var names []string
	for _, b := range r.GetBridges() {
		names = append(names, b.GetName()+"\t"+cliout.Short(b.GetState().String(), "BRIDGE_STATE_"))
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}
