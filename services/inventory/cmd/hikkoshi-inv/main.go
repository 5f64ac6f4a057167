// Command hikkoshi-inv is the operator's command line for the inventory service:
// list and change workloads (role, stateful, wave, labels), run and follow syncs,
// propose and accept wave plans, and check a wave before it moves.
package main

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
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/mtls"
)

// errNotReady is a pre-flight that ran and found the wave not ready: exit 3, apart
// from errors (1).
var errNotReady = errors.New("the wave is not ready for its destination")

func main() {
	err := newRoot().Execute()
	if errors.Is(err, errNotReady) {
		os.Exit(3)
	}
	if errors.Is(err, errRunNotDone) {
		os.Exit(4)
	}
	if err != nil {
		if st, ok := status.FromError(err); ok {
			fmt.Fprintf(os.Stderr, "hikkoshi-inv: %s: %s\n", st.Code(), st.Message())
		} else {
			fmt.Fprintln(os.Stderr, "hikkoshi-inv:", err)
		}
		os.Exit(1)
	}
}

type globals struct {
	addr    string
	output  string
	timeout time.Duration
	tls     mtls.Files
	conn    *grpc.ClientConn
	client  inventoryv1.InventoryServiceClient
}

func defaultAddr() string {
	if a := os.Getenv("HIKKOSHI_INVENTORY"); a != "" {
		return a
	}
	return "127.0.0.1:7401"
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "hikkoshi-inv",
		Short:         "The inventory's command line: workloads, syncs, wave plans, pre-flight",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if g.output != "table" && g.output != "json" {
				return fmt.Errorf("-o %q: use table or json", g.output)
			}
			creds, err := mtls.Client(g.tls)
			if err != nil {
				return fmt.Errorf("--tls-cert, --tls-key, --tls-ca: %w", err)
			}
			conn, err := grpc.NewClient(g.addr, grpc.WithTransportCredentials(creds))
			if err != nil {
				return err
			}
			g.conn, g.client = conn, inventoryv1.NewInventoryServiceClient(conn)
			return nil
		},
	}
	f := root.PersistentFlags()
	f.StringVar(&g.addr, "inventory", defaultAddr(), "inventory gRPC address (default $HIKKOSHI_INVENTORY, else 127.0.0.1:7401)")
	f.StringVarP(&g.output, "output", "o", "table", "output: table or json")
	f.DurationVar(&g.timeout, "timeout", 5*time.Minute, "how long a command may take")
	g.tls = mtls.FromEnv()
	f.StringVar(&g.tls.Cert, "tls-cert", g.tls.Cert, "your client certificate (mutual TLS; default $HIKKOSHI_TLS_CERT; none: plaintext)")
	f.StringVar(&g.tls.Key, "tls-key", g.tls.Key, "its key (default $HIKKOSHI_TLS_KEY)")
	f.StringVar(&g.tls.CA, "tls-ca", g.tls.CA, "the CA bundle that issues the inventory's certificate (default $HIKKOSHI_TLS_CA)")
	root.AddCommand(newWorkloads(g), newSync(g), newPlan(g), newPreflight(g), newWave(g))
	return root
}

func (g *globals) ctx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), g.timeout)
}

// print writes m as JSON with -o json, else calls table.
func (g *globals) print(w io.Writer, m proto.Message, table func(*tabwriter.Writer)) {
	if g.output == "json" {
		fmt.Fprintln(w, protojson.Format(m))
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	table(tw)
	_ = tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// short turns an enum value name into a word: WORKLOAD_STATE_CUT_OVER → cut_over.
func short(s, prefix string) string { return strings.ToLower(strings.TrimPrefix(s, prefix)) }

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
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", orDash(name), w.GetName(), short(w.GetKind().String(), "WORKLOAD_KIND_"), w.GetRole(),
		short(w.GetState().String(), "WORKLOAD_STATE_"), w.GetWave(), strings.Join(ips, ","), flags)
}

func newWorkloads(g *globals) *cobra.Command {
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
			fmt.Fprintln(cmd.OutOrStdout(), protojson.Format(resp.GetWorkload()))
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

func newSync(g *globals) *cobra.Command {
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
				if g.output == "table" {
					c := last.GetCounts()
					fmt.Fprintf(cmd.OutOrStdout(), "%s %s %s %s servers=%d ports=%d created=%d updated=%d unchanged=%d vanished=%d etcd-writes=%d api-calls=%d\n",
						last.GetName(), short(last.GetMode().String(), "SYNC_MODE_"), short(last.GetState().String(), "SYNC_STATE_"), last.GetPhase(),
						c.GetServers(), c.GetPorts(), c.GetCreated(), c.GetUpdated(), c.GetUnchanged(), c.GetVanished(), c.GetEtcdWrites(), c.GetApiCalls())
				}
			}
			if g.output == "json" {
				fmt.Fprintln(cmd.OutOrStdout(), protojson.Format(last))
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

func newPlan(g *globals) *cobra.Command {
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
			if g.output == "json" {
				fmt.Fprintln(cmd.OutOrStdout(), protojson.Format(resp))
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

func (g *globals) printPlan(w io.Writer, p *inventoryv1.Plan) {
	g.print(w, p, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "%s (%s)\n", p.GetName(), short(p.GetState().String(), "PLAN_STATE_"))
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

func newPreflight(g *globals) *cobra.Command {
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
				return errNotReady
			}
			return nil
		},
	}
	cmd.Flags().Int32Var(&wave, "wave", 0, "the wave to check")
	cmd.Flags().StringVar(&dest, "destination", "", "the destination cloud's clouds.yaml entry")
	cmd.Flags().StringToStringVar(&volumeTypes, "volume-type", nil, "SOURCE_TYPE=DESTINATION_TYPE, as the wave's run maps them (repeatable)")
	return cmd
}
