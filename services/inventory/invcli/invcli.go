// Package invcli is the operator's command line for the inventory service: list and
// change workloads (role, stateful, wave, labels), run and follow syncs, propose and
// accept wave plans, check a wave before it moves, and run waves. It is the
// commands of hikkoshi-inv and of hikkoshi (which mounts them beside the other
// services').
package invcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/cliout"
	"github.com/hikkoshi/hikkoshi/platform/mtls"
)

// ErrNotReady is a pre-flight that ran and found the wave not ready: exit 3, apart
// from errors (1).
var ErrNotReady = errors.New("the wave is not ready for its destination")

// Globals are what every inventory command shares: the output format, the time a
// command may take, and the connection (set before a command runs).
type Globals struct {
	Output  cliout.Format
	Timeout time.Duration

	conn   *grpc.ClientConn
	client inventoryv1.InventoryServiceClient
}

// SetConn gives the commands their connection to the inventory.
func (g *Globals) SetConn(conn *grpc.ClientConn) {
	g.conn, g.client = conn, inventoryv1.NewInventoryServiceClient(conn)
}

// Commands are the inventory's commands, for a root that sets g before they run.
func Commands(g *Globals) []*cobra.Command {
	return []*cobra.Command{newWorkloads(g), newSync(g), newPlan(g), newPreflight(g), newWave(g)}
}

// DefaultAddr is $HIKKOSHI_INVENTORY, else 127.0.0.1:7401.
func DefaultAddr() string {
	if a := os.Getenv("HIKKOSHI_INVENTORY"); a != "" {
		return a
	}
	return "127.0.0.1:7401"
}

// NewRoot is hikkoshi-inv's root command: the inventory's commands with their own
// connection flags.
func NewRoot() *cobra.Command {
	g := &Globals{}
	var addr, output string
	var tls mtls.Files
	root := &cobra.Command{
		Use:           "hikkoshi-inv",
		Short:         "The inventory's command line: workloads, syncs, wave plans, pre-flight",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			f, err := cliout.Parse(output)
			if err != nil {
				return err
			}
			g.Output = f
			creds, err := mtls.Client(tls)
			if err != nil {
				return fmt.Errorf("--tls-cert, --tls-key, --tls-ca: %w", err)
			}
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
			if err != nil {
				return err
			}
			g.SetConn(conn)
			return nil
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&addr, "inventory", DefaultAddr(), "inventory gRPC address (default $HIKKOSHI_INVENTORY, else 127.0.0.1:7401)")
	f.StringVarP(&output, "output", "o", "table", "output: table, json or yaml")
	f.DurationVar(&g.Timeout, "timeout", 5*time.Minute, "how long a command may take")
	tls = mtls.FromEnv()
	f.StringVar(&tls.Cert, "tls-cert", tls.Cert, "your client certificate (mutual TLS; default $HIKKOSHI_TLS_CERT; none: plaintext)")
	f.StringVar(&tls.Key, "tls-key", tls.Key, "its key (default $HIKKOSHI_TLS_KEY)")
	f.StringVar(&tls.CA, "tls-ca", tls.CA, "the CA bundle that issues the inventory's certificate (default $HIKKOSHI_TLS_CA)")
	root.AddCommand(Commands(g)...)
	return root
}

func (g *Globals) ctx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), g.Timeout)
}

// print writes m as JSON or YAML with -o json|yaml, else calls table.
func (g *Globals) print(w io.Writer, m proto.Message, table func(*tabwriter.Writer)) {
	_ = g.Output.Print(w, m, table)
}

// emit writes m as JSON or YAML.
func (g *Globals) emit(w io.Writer, m proto.Message) { _ = g.Output.Message(w, m) }

func orDash(s string) string { return cliout.OrDash(s) }

func workloadRow(tw *tabwriter.Writer, w *inventoryv1.Workload) {
	ips := []string{}
	for _, p := range w.GetFacts().GetInstance().GetPorts() {
		for _, ip := range p.GetFixedIps() {
			ips = append(ips, ip.GetIpAddress())
		}
	}
	for _, n := range w.GetFacts().GetPhysical().GetNics() {
		ips = append(ips, n.GetAddresses()...)
	}
	flags := ""
	if w.GetStateful() {
		flags += "stateful "
	}
	if w.GetVanished() {
		flags += "VANISHED"
	}
	if st := w.GetFacts().GetInstance().GetStatus(); st != "" && st != "ACTIVE" {
		flags += st + " "
	}
	name := w.GetDisplayName()
	if name == "" {
		name = w.GetFacts().GetInstance().GetName()
	}
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", orDash(name), w.GetName(), cliout.Short(w.GetKind().String(), "WORKLOAD_KIND_"), w.GetRole(),
		cliout.Short(w.GetState().String(), "WORKLOAD_STATE_"), w.GetWave(), strings.Join(ips, ","), flags)
}

func newWorkloads(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "workloads", Aliases: []string{"wl"}, Short: "List, show and change workloads"}
	var wave int32
	var role, cloud string
	var vanished bool
	list := &cobra.Command{
		Use: "list", Short: "List workloads (all pages)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			req := &inventoryv1.ListWorkloadsRequest{Role: role, Cloud: cloud, PageSize: 500}
			if cmd.Flags().Changed("wave") {
				req.Wave = &wave
			}
			if cmd.Flags().Changed("vanished") {
				req.Vanished = &vanished
			}
			all := &inventoryv1.ListWorkloadsResponse{}
			for {
				resp, err := g.client.ListWorkloads(ctx, req)
				if err != nil {
					return err
				}
				all.Workloads = append(all.Workloads, resp.GetWorkloads()...)
				if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
					break
				}
			}
			g.print(cmd.OutOrStdout(), all, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "SERVER\tNAME\tKIND\tROLE\tSTATE\tWAVE\tADDRESSES\t")
				for _, w := range all.GetWorkloads() {
					workloadRow(tw, w)
				}
			})
			return nil
		},
	}
	list.Flags().Int32Var(&wave, "wave", 0, "only this wave")
	list.Flags().StringVar(&role, "role", "", "only this role")
	list.Flags().StringVar(&cloud, "cloud", "", "only instances of this cloud")
	list.Flags().BoolVar(&vanished, "vanished", false, "only vanished (true) or present (false) workloads")

	get := &cobra.Command{
		Use: "get NAME", Short: "Show one workload with its facts", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			resp, err := g.client.GetWorkload(ctx, &inventoryv1.GetWorkloadRequest{Name: workloadName(args[0])})
			if err != nil {
				return err
			}
			g.emit(cmd.OutOrStdout(), resp.GetWorkload())
			return nil
		},
	}

	var setRole string
	var setLabels []string
	var setStateful bool
	var setWave int32
	set := &cobra.Command{
		Use:   "set NAME",
		Short: "Change a workload's role, stateful flag, wave or labels (only the flags given)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			w := &inventoryv1.Workload{Name: workloadName(args[0])}
			var paths []string
			if cmd.Flags().Changed("role") {
				w.Role, paths = setRole, append(paths, "role")
			}
			if cmd.Flags().Changed("stateful") {
				w.Stateful, paths = setStateful, append(paths, "stateful")
			}
			if cmd.Flags().Changed("wave") {
				w.Wave, paths = setWave, append(paths, "wave")
			}
			if cmd.Flags().Changed("label") {
				w.Labels = map[string]string{}
				for _, kv := range setLabels {
					k, v, ok := strings.Cut(kv, "=")
					if !ok {
						return fmt.Errorf("--label %q: use key=value", kv)
					}
					w.Labels[k] = v
				}
				paths = append(paths, "labels")
			}
			if len(paths) == 0 {
				return errors.New("nothing to change: give --role, --stateful, --wave or --label")
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			resp, err := g.client.UpdateWorkload(ctx, &inventoryv1.UpdateWorkloadRequest{Workload: w, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}})
			if err != nil {
				return err
			}
			g.print(cmd.OutOrStdout(), resp.GetWorkload(), func(tw *tabwriter.Writer) { workloadRow(tw, resp.GetWorkload()) })
			return nil
		},
	}
	set.Flags().StringVar(&setRole, "role", "", "role (web, api, db, …)")
	set.Flags().BoolVar(&setStateful, "stateful", false, "holds state that must move with it")
	set.Flags().Int32Var(&setWave, "wave", 0, "wave (0: none)")
	set.Flags().StringArrayVar(&setLabels, "label", nil, "label key=value (repeat; replaces all labels)")
	cmd.AddCommand(list, get, set)
	return cmd
}

func workloadName(s string) string {
	if strings.HasPrefix(s, "workloads/") {
		return s
	}
	return "workloads/" + s
}

func newSync(g *Globals) *cobra.Command {
	var cloud, mode string
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Sync a source cloud and follow it to its end",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, ok := inventoryv1.SyncMode_value["SYNC_MODE_"+strings.ToUpper(mode)]
			if !ok {
				return fmt.Errorf("--mode %q: use auto, full or incremental", mode)
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			created, err := g.client.CreateSync(ctx, &inventoryv1.CreateSyncRequest{Sync: &inventoryv1.Sync{Cloud: cloud, Mode: inventoryv1.SyncMode(m)}})
			if err != nil {
				return err
			}
			stream, err := g.client.WatchSync(ctx, &inventoryv1.WatchSyncRequest{Name: created.GetSync().GetName()})
			if err != nil {
				return err
			}
			var last *inventoryv1.Sync
			for {
				msg, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return err
				}
				last = msg.GetSync()
				if !g.Output.Structured() {
					c := last.GetCounts()
					fmt.Fprintf(cmd.OutOrStdout(), "%s %s %s %s servers=%d ports=%d created=%d updated=%d unchanged=%d vanished=%d etcd-writes=%d api-calls=%d\n",
						last.GetName(), cliout.Short(last.GetMode().String(), "SYNC_MODE_"), cliout.Short(last.GetState().String(), "SYNC_STATE_"), last.GetPhase(),
						c.GetServers(), c.GetPorts(), c.GetCreated(), c.GetUpdated(), c.GetUnchanged(), c.GetVanished(), c.GetEtcdWrites(), c.GetApiCalls())
				}
			}
			if g.Output.Structured() {
				g.emit(cmd.OutOrStdout(), last)
			} else {
				for _, n := range last.GetNotes() {
					fmt.Fprintln(cmd.OutOrStdout(), "note:", n)
				}
			}
			if last.GetState() != inventoryv1.SyncState_SYNC_STATE_SUCCEEDED {
				return fmt.Errorf("sync %s %s: %s", last.GetName(), last.GetState(), last.GetError())
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cloud, "cloud", os.Getenv("OS_CLOUD"), "the source cloud's clouds.yaml entry (default $OS_CLOUD)")
	cmd.Flags().StringVar(&mode, "mode", "auto", "auto, full or incremental")
	return cmd
}

func newPlan(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "plan", Short: "Propose wave plans and accept them"}
	var rules, after, pins []string
	var includeError, startStopped bool
	create := &cobra.Command{
		Use:   "create",
		Short: "Propose waves: stateless roles first, dependants after, stateful last",
		Long: `Propose waves. Rules give a role to workloads that have none:
  --rule '^web-[0-9]+$=web'        name pattern = role
  --rule '^db=db:stateful'         … and stateful
  --rule 'meta:tier=db=db:stateful' metadata key=value = role
Dependencies: --after api=web,cache (api moves after web and cache).
Pins: --pin web-1=2 (workload web-1 in wave 2).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p := &inventoryv1.Plan{Pins: map[string]int32{}, IncludeErrorServers: includeError, StartStoppedServers: startStopped}
			for _, r := range rules {
				rule, err := parseRule(r)
				if err != nil {
					return err
				}
				p.Rules = append(p.Rules, rule)
			}
			for _, a := range after {
				role, deps, ok := strings.Cut(a, "=")
				if !ok {
					return fmt.Errorf("--after %q: use role=dep,dep", a)
				}
				p.Dependencies = append(p.Dependencies, &inventoryv1.RoleDependency{Role: role, DependsOn: strings.Split(deps, ",")})
			}
			for _, pin := range pins {
				name, w, ok := strings.Cut(pin, "=")
				n, err := strconv.Atoi(w)
				if !ok || err != nil {
					return fmt.Errorf("--pin %q: use workload=wave", pin)
				}
				p.Pins[workloadName(name)] = int32(n)
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			resp, err := g.client.CreatePlan(ctx, &inventoryv1.CreatePlanRequest{Plan: p})
			if err != nil {
				return err
			}
			g.printPlan(cmd.OutOrStdout(), resp.GetPlan())
			return nil
		},
	}
	create.Flags().StringArrayVar(&rules, "rule", nil, "role rule (repeat): PATTERN=ROLE[:stateful] or meta:KEY=VALUE=ROLE[:stateful]")
	create.Flags().StringArrayVar(&after, "after", nil, "dependency (repeat): ROLE=DEP[,DEP…]")
	create.Flags().StringArrayVar(&pins, "pin", nil, "pin (repeat): WORKLOAD=WAVE")
	create.Flags().BoolVar(&includeError, "include-error-servers", false, "place servers in ERROR too (recorded with the plan)")
	create.Flags().BoolVar(&startStopped, "start-stopped-servers", false, "start stopped servers at the destination (else they move cold and stay stopped)")
	accept := &cobra.Command{
		Use: "accept NAME", Short: "Write a proposed plan's waves into the workloads", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			name := args[0]
			if !strings.HasPrefix(name, "plans/") {
				name = "plans/" + name
			}
			resp, err := g.client.AcceptPlan(ctx, &inventoryv1.AcceptPlanRequest{Name: name})
			if err != nil {
				return err
			}
			if g.Output.Structured() {
				g.emit(cmd.OutOrStdout(), resp)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s accepted: %d workloads written\n", resp.GetPlan().GetName(), resp.GetUpdated())
			return nil
		},
	}
	cmd.AddCommand(create, accept)
	return cmd
}

// parseRule reads PATTERN=ROLE[:stateful] or meta:KEY=VALUE=ROLE[:stateful].
func parseRule(s string) (*inventoryv1.RoleRule, error) {
	r := &inventoryv1.RoleRule{}
	rest := s
	if m, ok := strings.CutPrefix(s, "meta:"); ok {
		kv, roleSpec, ok := cutLast(m, "=")
		k, v, ok2 := strings.Cut(kv, "=")
		if !ok || !ok2 {
			return nil, fmt.Errorf("--rule %q: use meta:KEY=VALUE=ROLE[:stateful]", s)
		}
		r.MetadataKey, r.MetadataValue, rest = k, v, roleSpec
	} else {
		pattern, roleSpec, ok := cutLast(s, "=")
		if !ok {
			return nil, fmt.Errorf("--rule %q: use PATTERN=ROLE[:stateful]", s)
		}
		r.NamePattern, rest = pattern, roleSpec
	}
	role, flag, _ := strings.Cut(rest, ":")
	r.Role, r.Stateful = role, flag == "stateful"
	return r, nil
}

func cutLast(s, sep string) (string, string, bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

func (g *Globals) printPlan(w io.Writer, p *inventoryv1.Plan) {
	g.print(w, p, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "%s (%s)\n", p.GetName(), cliout.Short(p.GetState().String(), "PLAN_STATE_"))
		for _, wv := range p.GetWaves() {
			kind := ""
			if wv.GetStateful() {
				kind = " (stateful)"
			}
			fmt.Fprintf(tw, "wave %d%s\troles %s\t%d workloads\n", wv.GetWave(), kind, strings.Join(wv.GetRoles(), ","), len(wv.GetWorkloads()))
		}
		for _, a := range p.GetAssignments() {
			fmt.Fprintf(tw, "  %s\t%s\twave %d\t%s\n", a.GetDisplayName(), a.GetWorkload(), a.GetWave(), a.GetReason())
		}
		for _, a := range p.GetUnassigned() {
			fmt.Fprintf(tw, "  %s\t%s\t-\t%s\n", a.GetDisplayName(), a.GetWorkload(), a.GetReason())
		}
	})
}

func newPreflight(g *Globals) *cobra.Command {
	var wave int32
	var dest string
	var volumeTypes map[string]string
	cmd := &cobra.Command{
		Use: "preflight", Short: "Check a wave against a destination cloud before it moves", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			resp, err := g.client.GetPreflight(ctx, &inventoryv1.GetPreflightRequest{Wave: wave, Destination: dest, VolumeTypes: volumeTypes})
			if err != nil {
				return err
			}
			r := resp.GetReport()
			g.print(cmd.OutOrStdout(), r, func(tw *tabwriter.Writer) {
				verdict := "ready"
				if !r.GetOk() {
					verdict = "NOT ready"
				}
				fmt.Fprintf(tw, "wave %d → %s: %d workloads, %.1f GiB to move: %s\n", r.GetWave(), r.GetDestination(), r.GetWorkloads(), float64(r.GetDiskBytes())/(1<<30), verdict)
				for _, x := range [][2]any{{"flavors missing", r.GetMissingFlavors()}, {"images missing", r.GetMissingImages()}, {"networks missing", r.GetMissingNetworks()}, {"volume types missing", r.GetMissingVolumeTypes()}} {
					if l := x[1].([]string); len(l) > 0 {
						fmt.Fprintf(tw, "  %s\t%s\n", x[0], strings.Join(l, ", "))
					}
				}
				for _, c := range r.GetIpConflicts() {
					fmt.Fprintf(tw, "  IP conflict\t%s %s: %s\n", c.GetWorkload(), c.GetIpAddress(), c.GetReason())
				}
			})
			if !r.GetOk() {
				return ErrNotReady
			}
			return nil
		},
	}
	cmd.Flags().Int32Var(&wave, "wave", 0, "the wave to check")
	cmd.Flags().StringVar(&dest, "destination", "", "the destination cloud's clouds.yaml entry")
	cmd.Flags().StringToStringVar(&volumeTypes, "volume-type", nil, "SOURCE_TYPE=DESTINATION_TYPE, as the wave's run maps them (repeatable)")
	return cmd
}
