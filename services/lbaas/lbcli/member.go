package lbcli

import (
	"context"
	"fmt"
	"os"

	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/pools"
	"github.com/spf13/cobra"

	"github.com/hikkoshi/hikkoshi/services/lbaas/octavia"
)

func newMember(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "member",
		Short: "Add, remove or drain a pool's members (each change waits for ACTIVE)",
	}
	var pool string
	var weight int
	cmd.PersistentFlags().StringVar(&pool, "pool", "", "pool name or ID (default: the load balancer's only pool)")
	add := &cobra.Command{
		Use:   "add LB ADDRESS:PORT[:WEIGHT]",
		Short: "Add a member",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := parseMember(args[1])
			if err != nil {
				return err
			}
			return memberOp(cmd, g, args[0], pool, func(ctx context.Context, c *octavia.Client, lbID, poolID string) error {
				got, err := c.AddMember(ctx, lbID, poolID, m)
				if err == nil {
					fmt.Fprintf(os.Stderr, "added member %s %s:%d\n", got.ID, got.Address, got.ProtocolPort)
				}
				return err
			})
		},
	}
	remove := &cobra.Command{
		Use:   "remove LB ADDRESS:PORT",
		Short: "Remove a member",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return existingMemberOp(cmd, g, args, pool, func(ctx context.Context, c *octavia.Client, lbID, poolID string, m *octavia.Member) error {
				if err := c.RemoveMember(ctx, lbID, poolID, m.ID); err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "removed member %s %s:%d\n", m.ID, m.Address, m.ProtocolPort)
				return nil
			})
		},
	}
	drain := &cobra.Command{
		Use:   "drain LB ADDRESS:PORT",
		Short: "Drain a member: weight 0, no new connections, the open ones stay",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return setWeight(cmd, g, args, pool, 0)
		},
	}
	setw := &cobra.Command{
		Use:   "weight LB ADDRESS:PORT --weight N",
		Short: "Set a member's weight (0..256)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return setWeight(cmd, g, args, pool, weight)
		},
	}
	setw.Flags().IntVar(&weight, "weight", 1, "the new weight")
	cmd.AddCommand(add, remove, drain, setw)
	return cmd
}

func setWeight(cmd *cobra.Command, g *globals, args []string, pool string, weight int) error {
	return existingMemberOp(cmd, g, args, pool, func(ctx context.Context, c *octavia.Client, lbID, poolID string, m *octavia.Member) error {
		got, err := c.SetMemberWeight(ctx, lbID, poolID, m.ID, weight)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "member %s %s:%d weight %d\n", got.ID, got.Address, got.ProtocolPort, got.Weight)
		return nil
	})
}

// existingMemberOp runs op on the member args[1] (ADDRESS:PORT) of load balancer args[0].
func existingMemberOp(cmd *cobra.Command, g *globals, args []string, pool string, op func(context.Context, *octavia.Client, string, string, *octavia.Member) error) error {
	want, err := parseMember(args[1])
	if err != nil {
		return err
	}
	return memberOp(cmd, g, args[0], pool, func(ctx context.Context, c *octavia.Client, lbID, poolID string) error {
		m, err := c.FindMember(ctx, poolID, want.Address, want.Port)
		if err != nil {
			return err
		}
		return op(ctx, c, lbID, poolID, m)
	})
}

// memberOp finds the load balancer and its pool, runs op, and shows the result.
func memberOp(cmd *cobra.Command, g *globals, lbRef, poolRef string, op func(context.Context, *octavia.Client, string, string) error) error {
	return g.withLB(cmd, lbRef, func(ctx context.Context, c *octavia.Client, lb *octavia.LoadBalancer) error {
		poolID, err := findPool(ctx, c, lb, poolRef)
		if err != nil {
			return err
		}
		if err := op(ctx, c, lb.ID, poolID); err != nil {
			return err
		}
		return show(ctx, g, c, lb.ID)
	})
}

func findPool(ctx context.Context, c *octavia.Client, lb *octavia.LoadBalancer, ref string) (string, error) {
	list, err := c.Pools(ctx, lb.ID)
	if err != nil {
		return "", err
	}
	var match []pools.Pool
	for _, p := range list {
		if ref == "" || p.ID == ref || p.Name == ref {
			match = append(match, p)
		}
	}
	switch {
	case len(match) == 1:
		return match[0].ID, nil
	case len(match) == 0 && ref != "":
		return "", usagef("load balancer %s has no pool %q", lb.Name, ref)
	case len(match) == 0:
		return "", fmt.Errorf("load balancer %s has no pool", lb.Name)
	}
	return "", usagef("load balancer %s has %d pools: choose one with --pool", lb.Name, len(match))
}
