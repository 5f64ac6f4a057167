package lbcli

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/loadbalancers"
	"github.com/spf13/cobra"

	"github.com/hikkoshi/hikkoshi/services/lbaas/haproxycfg"
	"github.com/hikkoshi/hikkoshi/services/lbaas/haproxyimport"
	"github.com/hikkoshi/hikkoshi/services/lbaas/octavia"
)

// ErrIncomplete ends an import whose plan has leftovers: exit 3.
var ErrIncomplete = errors.New("the plan is not complete: review the leftovers")

// noCloud marks a command that reads no clouds.yaml.
const noCloud = "no-cloud"

func newImport(g *globals) *cobra.Command {
	var name, vipSubnet string
	var env, certs, moved, names map[string]string
	var apply, accept, diff bool
	var acceptAt []string
	cmd := &cobra.Command{
		Use:   "import FILE... [--name NAME] [--env NAME=VALUE]... [--moved OLD=NEW]... [--accept FILE:LINE]... [--apply --vip-subnet SUBNET [--certificate FILE=CONTAINER]... [--accept-leftovers]]",
		Short: "Plan the Octavia load balancers an haproxy configuration becomes, line by line (no cloud needed)",
		Long: `import reads haproxy configuration files (as haproxy -f reads them, in order) and prints
the plan they become in Octavia: load balancers (one an address bound), listeners,
pools, members, health monitors, session persistence and L7 policies — and a ledger
of every line: mapped (to which Octavia field), mapped with a loss, or left over, with
file:line and why. Without --apply nothing is made and no cloud is read: the plan
is for review. The exit status is 0 when the plan is complete, 3 when lines are left
over (-o json for scripts). --accept FILE:LINE accepts one leftover (it is lost in
Octavia, knowingly): a plan whose every leftover is accepted is complete.

With --apply the load balancers are built in Octavia (each waited for until it and
everything under it is ACTIVE): the VIPs on --vip-subnet at the addresses the
configuration bound, a TERMINATED_HTTPS listener with the Barbican container given
for its certificate file. A plan with leftovers is applied only with
--accept-leftovers. A load balancer of that name that exists already is converged to
the plan: members added, removed and updated, pools' algorithm, persistence and
monitor, a pool whose protocol changed rebuilt alone beside the old one, listeners'
settings, default pools and L7 policies (the new ones in front, then the old ones
deleted), listeners removed and added, pools no longer used deleted.
--diff says what --apply would change, and changes nothing.`,
		Example: `  hikkoshi-lb import /etc/haproxy/haproxy.cfg --name shop
  hikkoshi-lb import haproxy.cfg conf.d/*.cfg --env BACKEND_PORT=8080 -o json`,
		Args:        cobra.MinimumNArgs(1),
		Annotations: map[string]string{noCloud: "true"},
		RunE: func(cmd *cobra.Command, files []string) error {
			c, err := haproxycfg.ReadFiles(haproxycfg.Options{Env: func(n string) (string, bool) {
				v, ok := env[n]
				return v, ok
			}}, files...)
			if err != nil {
				return err
			}
			for _, m := range []struct {
				flag string
				kv   map[string]string
				ip   bool
			}{{"--moved", moved, true}, {"--member-name", names, false}} {
				for k, v := range m.kv {
					if net.ParseIP(k) == nil || m.ip && net.ParseIP(v) == nil || v == "" {
						return usagef("%s %s=%s: give %s", m.flag, k, v, map[bool]string{true: "OLD_ADDRESS=NEW_ADDRESS (two IP addresses)", false: "ADDRESS=NAME"}[m.ip])
					}
				}
			}
			p, err := haproxyimport.Map(c, haproxyimport.Options{Name: name, Addresses: moved, Names: names})
			if err != nil {
				return err
			}
			if err := p.Accept(acceptAt); err != nil {
				return usagef("--accept %v", err)
			}
			out := cmd.OutOrStdout()
			if g.output.Structured() {
				if err := g.printData(out, p); err != nil {
					return err
				}
			} else {
				printPlan(out, p)
			}
			if diff {
				apply = true
			}
			if !apply {
				if !p.Complete {
					return ErrIncomplete
				}
				return nil
			}
			if !p.Complete && !accept {
				return fmt.Errorf("%w (--accept-leftovers applies it without them)", ErrIncomplete)
			}
			if vipSubnet == "" {
				return usagef("--apply needs --vip-subnet: the subnet (name or ID) of the VIPs")
			}
			return applyPlan(cmd, g, p, vipSubnet, certs, diff)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "the load balancers' name (NAME, or NAME-ADDRESS for each of several; default haproxy)")
	cmd.Flags().StringToStringVar(&env, "env", nil, `NAME=VALUE for "$NAME" in the files (repeatable); a variable not given is an error`)
	cmd.Flags().StringToStringVar(&moved, "moved", nil, "OLD_ADDRESS=NEW_ADDRESS: a backend server that moved becomes a member at its new address (repeatable)")
	cmd.Flags().StringToStringVar(&names, "member-name", nil, "ADDRESS=NAME: name the member at ADDRESS (after --moved) NAME, its workload's name, instead of haproxy's server name (repeatable)")
	cmd.Flags().BoolVar(&apply, "apply", false, "build the load balancers in Octavia, or converge those built already to the plan (needs --os-cloud)")
	cmd.Flags().BoolVar(&diff, "diff", false, "say what --apply would change in Octavia; change nothing (needs --os-cloud and --vip-subnet)")
	cmd.Flags().StringVar(&vipSubnet, "vip-subnet", "", "with --apply: the subnet (name or ID) of the VIPs")
	cmd.Flags().StringToStringVar(&certs, "certificate", nil, "with --apply: PEM_FILE=BARBICAN_CONTAINER_REF for each certificate a TLS bind served (repeatable)")
	cmd.Flags().BoolVar(&accept, "accept-leftovers", false, "with --apply: build a plan that has leftovers (they are lost)")
	cmd.Flags().StringArrayVar(&acceptAt, "accept", nil, "FILE:LINE of a leftover that may be lost (repeatable): a plan whose every leftover is accepted is complete")
	return cmd
}

// applyPlan builds the plan's load balancers in Octavia, one after the other, and
// converges those built already to it (octavia.Converge); with diff it only says
// what it would change.
func applyPlan(cmd *cobra.Command, g *globals, p *haproxyimport.Plan, vipSubnet string, certs map[string]string, diff bool) error {
	if g.cloud == "" {
		return usagef("--apply: no cloud: set --os-cloud or OS_CLOUD to an entry of clouds.yaml")
	}
	ctx, cancel := g.deadline(cmd)
	defer cancel()
	c, cl, err := g.open(ctx)
	if err != nil {
		return err
	}
	subnet, err := resolveSubnet(ctx, cl, vipSubnet)
	if err != nil {
		return err
	}
	specs, err := p.Specs(haproxyimport.Where{VIPSubnetID: subnet, Certificates: certs})
	if err != nil {
		return err
	}
	// A load balancer of that name is converged to the plan; first every one is
	// planned, so that one that cannot be converged changes nothing.
	existing := map[string]string{}
	changes := map[string][]octavia.Change{}
	for _, spec := range specs {
		list, err := c.List(ctx, loadbalancers.ListOpts{Name: spec.Name})
		if err != nil {
			return err
		}
		switch len(list) {
		case 0:
			if diff {
				fmt.Fprintf(cmd.OutOrStdout(), "load balancer %s: not built: it would be created\n", spec.Name)
			}
			continue
		case 1:
		default:
			return fmt.Errorf("%d load balancers are named %s: delete the ones that are not this import's", len(list), spec.Name)
		}
		existing[spec.Name] = list[0].ID
		ch, err := c.Converge(ctx, list[0].ID, spec, false)
		if err != nil {
			return fmt.Errorf("load balancer %s (%s): %w", spec.Name, list[0].ID, err)
		}
		changes[spec.Name] = ch
		fmt.Fprintf(cmd.OutOrStdout(), "load balancer %s (%s): %d change(s)\n", spec.Name, list[0].ID, len(ch))
		for _, x := range ch {
			fmt.Fprintf(cmd.OutOrStdout(), "  %s\n", x)
		}
	}
	if diff {
		return nil
	}
	for _, spec := range specs {
		if id, ok := existing[spec.Name]; ok {
			if len(changes[spec.Name]) == 0 {
				continue
			}
			start := time.Now()
			if _, err := c.Converge(ctx, id, spec, true); err != nil {
				return fmt.Errorf("load balancer %s: %w", spec.Name, err)
			}
			fmt.Fprintf(os.Stderr, "load balancer %s %s converged in %.1fs\n", spec.Name, id, time.Since(start).Seconds())
			continue
		}
		start := time.Now()
		created, _, err := c.CreateReady(ctx, spec, progress(start))
		if err != nil {
			return fmt.Errorf("load balancer %s: %w", spec.Name, err)
		}
		fmt.Fprintf(os.Stderr, "load balancer %s %s (%s create) in %.1fs\n", spec.Name, created.LoadBalancer.ID, created.Mode, time.Since(start).Seconds())
	}
	return nil
}

func printPlan(out io.Writer, p *haproxyimport.Plan) {
	tw := out
	mapped, lossy := 0, 0
	for _, e := range p.Ledger {
		switch {
		case e.Lossy:
			lossy++
		case e.Mapped():
			mapped++
		}
	}
	left := len(p.Leftovers()) - lossy
	verdict := "complete"
	if !p.Complete {
		verdict = "NOT complete"
	}
	if n := len(p.Leftovers()) - len(p.Unaccepted()); n > 0 {
		verdict += fmt.Sprintf(" (%d accepted)", n)
	}
	fmt.Fprintf(tw, "%d load balancer(s); %d lines mapped, %d mapped with a loss, %d left over: %s\n", len(p.LoadBalancers), mapped, lossy, left, verdict)
	for _, lb := range p.LoadBalancers {
		vip := lb.VIPAddress
		if vip == "" {
			vip = "chosen by Neutron"
		}
		fmt.Fprintf(tw, "load balancer %s (VIP %s)\n", lb.Name, vip)
		for _, l := range lb.Listeners {
			fmt.Fprintf(tw, "  listener %s %s:%d → %s  %s\n", l.Name, l.Protocol, l.Port, orDash(l.DefaultPool), listenerExtras(l))
			for _, pol := range l.L7Policies {
				target := pol.RedirectPool + pol.RedirectURL + pol.RedirectPrefix
				if pol.RedirectHTTPCode != 0 {
					target += fmt.Sprintf(" (%d)", pol.RedirectHTTPCode)
				}
				var rules []string
				for _, r := range pol.Rules {
					s := r.Type
					if r.Key != "" {
						s += "(" + r.Key + ")"
					}
					if r.Invert {
						s = "not " + s
					}
					rules = append(rules, fmt.Sprintf("%s %s %q", s, r.CompareType, r.Value))
				}
				fmt.Fprintf(tw, "    policy %d: %s %s if %s\n", pol.Position, pol.Action, target, strings.Join(rules, " and "))
			}
		}
		for _, pl := range lb.Pools {
			extra := pl.LBMethod
			if sp := pl.SessionPersistence; sp != nil {
				extra += ", sticky " + sp.Type
				if sp.CookieName != "" {
					extra += " " + sp.CookieName
				}
			}
			if m := pl.Monitor; m != nil {
				extra += fmt.Sprintf(", monitor %s every %d s (timeout %d s, up after %d, down after %d)", m.Type, m.Delay, m.Timeout, m.MaxRetries, m.MaxRetriesDown)
				if m.URLPath != "" {
					extra += fmt.Sprintf(" %s %s expecting %s", m.HTTPMethod, m.URLPath, m.ExpectedCodes)
				}
			}
			fmt.Fprintf(tw, "  pool %s %s: %s\n", pl.Name, pl.Protocol, extra)
			for _, mem := range pl.Members {
				var flags []string
				if mem.Weight != nil {
					flags = append(flags, fmt.Sprintf("weight %d", *mem.Weight))
				}
				if mem.Backup {
					flags = append(flags, "backup")
				}
				if !mem.AdminStateUp {
					flags = append(flags, "disabled")
				}
				if mem.MonitorPort != 0 || mem.MonitorAddress != "" {
					flags = append(flags, fmt.Sprintf("checked at %s:%d", orDash(mem.MonitorAddress), mem.MonitorPort))
				}
				fmt.Fprintf(tw, "    member %s %s:%d %s\n", mem.Name, mem.Address, mem.Port, strings.Join(flags, ", "))
			}
		}
	}
	lw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	defer lw.Flush()
	for _, e := range p.Leftovers() {
		kind := "left over"
		if e.Lossy {
			kind = "lossy"
		}
		if e.Accepted {
			kind += " (accepted)"
		}
		fmt.Fprintf(lw, "%s\t%s\t%s\t%s\n", kind, e.Where, e.Directive, e.Why)
	}
}

func listenerExtras(l *haproxyimport.Listener) string {
	var out []string
	if l.ConnectionLimit != nil {
		out = append(out, fmt.Sprintf("maxconn %d", *l.ConnectionLimit))
	}
	for _, t := range []struct {
		name string
		v    *int
	}{{"client", l.TimeoutClientData}, {"connect", l.TimeoutMemberConnect}, {"server", l.TimeoutMemberData}, {"inspect", l.TimeoutTCPInspect}} {
		if t.v != nil {
			out = append(out, fmt.Sprintf("timeout %s %d ms", t.name, *t.v))
		}
	}
	for _, h := range slices.Sorted(maps.Keys(l.InsertHeaders)) {
		out = append(out, "+"+h)
	}
	if l.Certificate != "" {
		out = append(out, "certificate "+l.Certificate)
	}
	return strings.Join(out, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
