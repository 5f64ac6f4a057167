package invcli

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/cliout"
)

// ErrRunNotDone is a followed run that ended other than done: exit 4.
var ErrRunNotDone = errors.New("the run did not end done")

func newWave(g *Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "wave", Short: "Move whole waves: run, follow, pause, resume, abort, approve, decommission"}
	runs := func() inventoryv1.WaveRunServiceClient { return inventoryv1.NewWaveRunServiceClient(g.conn) }

	var (
		dest, override, health, requestID string
		zone, keyPairUser                 string
		dry, approve, follow, warm        bool
		warmRounds                        int32
		nets, roles                       []string
		volumeTypes                       map[string]string
	)
	run := &cobra.Command{
		Use:   "run WAVE --to DESTINATION",
		Short: "Move a wave to a destination cloud (--dry-run shows the plan first)",
		Example: `  hikkoshi-inv wave run 1 --to new --dry-run
  hikkoshi-inv wave run 1 --to new --role web:max_surge=1,min_healthy=1,drain=5 --follow`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			wave, err := strconv.ParseInt(args[0], 10, 32)
			if err != nil {
				return fmt.Errorf("WAVE %q: give the wave's number", args[0])
			}
			r := &inventoryv1.Run{Wave: int32(wave), Destination: dest, DryRun: dry, PreflightOverrideReason: override,
				ApproveStateful: approve, HealthCheck: health, Networks: map[string]string{}, Roles: map[string]*inventoryv1.RoleSettings{},
				WarmStateful: warm, WarmRounds: warmRounds, VolumeTypes: volumeTypes, AvailabilityZone: zone, KeyPairUser: keyPairUser}
			for _, n := range nets {
				src, dst, ok := strings.Cut(n, "=")
				if !ok {
					return fmt.Errorf("--network %q: give SOURCE_NETWORK_ID=DESTINATION_NETWORK_ID", n)
				}
				r.Networks[src] = dst
			}
			for _, spec := range roles {
				role, settings, err := parseRole(spec)
				if err != nil {
					return err
				}
				r.Roles[role] = settings
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			resp, err := runs().CreateRun(ctx, &inventoryv1.CreateRunRequest{Run: r, RequestId: requestID})
			if err != nil {
				return err
			}
			if !follow || dry {
				g.print(cmd.OutOrStdout(), resp.GetRun(), func(tw *tabwriter.Writer) { runTable(tw, resp.GetRun()) })
				return nil
			}
			return g.follow(cmd, runs(), resp.GetRun().GetName())
		},
	}
	f := run.Flags()
	f.StringVar(&dest, "to", "", "the destination cloud's clouds.yaml entry")
	f.BoolVar(&dry, "dry-run", false, "show each workload's strategy and steps; move nothing")
	f.StringVar(&override, "override-preflight", "", "start although the pre-flight is not ready, for this reason (recorded)")
	f.BoolVar(&approve, "approve-stateful", false, "move stateful workloads without an ApproveStep each")
	f.BoolVar(&warm, "warm-stateful", false, "copy each stateful server's disk while it runs, before its stop: the downtime then follows what changed since")
	f.Int32Var(&warmRounds, "warm-rounds", 0, "pre-copy rounds of a --warm-stateful move (0: 1)")
	f.StringVar(&zone, "availability-zone", "", "the destination availability zone the moved servers boot in (default: the destination's)")
	f.StringVar(&keyPairUser, "key-pair-user", "", "an existing user of each moved instance who gets the destination key pair (default: nobody)")
	f.StringVar(&health, "health-check", "", "probe of each replacement (tcp:PORT, http:PORT/PATH); default tcp and the member's port")
	f.StringArrayVar(&nets, "network", nil, "SOURCE_NETWORK_ID=DESTINATION_NETWORK_ID (repeatable); default: netbridge's bridges")
	f.StringArrayVar(&roles, "role", nil, "ROLE:max_surge=N,min_healthy=N,drain=SECONDS (repeatable)")
	f.StringToStringVar(&volumeTypes, "volume-type", nil, "SOURCE_TYPE=DESTINATION_TYPE for the wave's Cinder volumes (repeatable); a type not given keeps its name")
	f.StringVar(&requestID, "request-id", "", "makes the call idempotent: a repeat returns the run it started")
	f.BoolVar(&follow, "follow", false, "follow the run until it ends (exit 4 unless it ends done)")

	status := &cobra.Command{
		Use: "status RUN", Short: "Show a run (runs/ID or ID)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if follow {
				return g.follow(cmd, runs(), runName(args[0]))
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			resp, err := runs().GetRun(ctx, &inventoryv1.GetRunRequest{Name: runName(args[0])})
			if err != nil {
				return err
			}
			g.print(cmd.OutOrStdout(), resp.GetRun(), func(tw *tabwriter.Writer) { runTable(tw, resp.GetRun()) })
			return nil
		},
	}
	status.Flags().BoolVar(&follow, "follow", false, "follow the run until it ends")

	var wave int32
	list := &cobra.Command{
		Use: "runs", Short: "List the runs, newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			resp := &inventoryv1.ListRunsResponse{}
			for token := ""; ; {
				page, err := runs().ListRuns(ctx, &inventoryv1.ListRunsRequest{Wave: wave, PageSize: 500, PageToken: token})
				if err != nil {
					return err
				}
				resp.Runs = append(resp.Runs, page.GetRuns()...)
				if token = page.GetNextPageToken(); token == "" {
					break
				}
			}
			g.print(cmd.OutOrStdout(), resp, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "RUN\tWAVE\tTO\tSTATE\tWORKLOADS\tREASON")
				for _, r := range resp.GetRuns() {
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\n", r.GetName(), r.GetWave(), r.GetDestination(), cliout.Short(r.GetState().String(), "RUN_STATE_"), len(r.GetWorkloads()), r.GetStateReason())
				}
			})
			return nil
		},
	}
	list.Flags().Int32Var(&wave, "wave", 0, "only this wave's runs")

	var reason string
	simple := func(use, short string, call func(cmd *cobra.Command, name string, args []string) (*inventoryv1.Run, error), nargs int) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Args: cobra.MinimumNArgs(nargs),
			RunE: func(cmd *cobra.Command, args []string) error {
				r, err := call(cmd, runName(args[0]), args[1:])
				if err != nil {
					return err
				}
				g.print(cmd.OutOrStdout(), r, func(tw *tabwriter.Writer) { runTable(tw, r) })
				return nil
			},
		}
	}
	pause := simple("pause RUN", "Pause a run: in-flight steps finish, no new one starts", func(cmd *cobra.Command, name string, _ []string) (*inventoryv1.Run, error) {
		ctx, cancel := g.ctx(cmd)
		defer cancel()
		resp, err := runs().PauseRun(ctx, &inventoryv1.PauseRunRequest{Name: name})
		return resp.GetRun(), err
	}, 1)
	resume := simple("resume RUN", "Resume a paused run", func(cmd *cobra.Command, name string, _ []string) (*inventoryv1.Run, error) {
		ctx, cancel := g.ctx(cmd)
		defer cancel()
		resp, err := runs().ResumeRun(ctx, &inventoryv1.ResumeRunRequest{Name: name})
		return resp.GetRun(), err
	}, 1)
	abort := simple("abort RUN", "Abort a run: the wave is rolled back in reverse order", func(cmd *cobra.Command, name string, _ []string) (*inventoryv1.Run, error) {
		ctx, cancel := g.ctx(cmd)
		defer cancel()
		resp, err := runs().AbortRun(ctx, &inventoryv1.AbortRunRequest{Name: name, Reason: reason})
		return resp.GetRun(), err
	}, 1)
	abort.Flags().StringVar(&reason, "reason", "", "why (recorded with the run)")
	approveCmd := simple("approve RUN WORKLOAD", "Let a waiting stateful workload move", func(cmd *cobra.Command, name string, args []string) (*inventoryv1.Run, error) {
		if len(args) != 1 {
			return nil, errors.New("give the run and one workload")
		}
		ctx, cancel := g.ctx(cmd)
		defer cancel()
		resp, err := runs().ApproveStep(ctx, &inventoryv1.ApproveStepRequest{Name: name, Workload: workloadName(args[0])})
		return resp.GetRun(), err
	}, 2)
	decommission := &cobra.Command{
		Use: "decommission RUN WORKLOAD...", Short: "Delete the old servers of moved workloads (they are done then)", Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			var ws []string
			for _, a := range args[1:] {
				ws = append(ws, workloadName(a))
			}
			resp, err := runs().DecommissionRun(ctx, &inventoryv1.DecommissionRunRequest{Name: runName(args[0]), Workloads: ws})
			if err != nil {
				return err
			}
			g.print(cmd.OutOrStdout(), resp, func(tw *tabwriter.Writer) {
				for _, l := range resp.GetDecommissioned() {
					fmt.Fprintln(tw, l)
				}
			})
			return nil
		},
	}
	cmd.AddCommand(run, status, list, pause, resume, abort, approveCmd, decommission)
	return cmd
}

func runName(s string) string {
	if strings.HasPrefix(s, "runs/") {
		return s
	}
	return "runs/" + s
}

// parseRole reads "web:max_surge=2,min_healthy=1,drain=5".
func parseRole(spec string) (string, *inventoryv1.RoleSettings, error) {
	role, rest, _ := strings.Cut(spec, ":")
	s := &inventoryv1.RoleSettings{}
	if rest == "" {
		return role, s, nil
	}
	for _, kv := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.ParseInt(v, 10, 32)
		if !ok || err != nil {
			return "", nil, fmt.Errorf("--role %q: give ROLE:max_surge=N,min_healthy=N,drain=SECONDS", spec)
		}
		switch k {
		case "max_surge":
			s.MaxSurge = int32(n)
		case "min_healthy":
			s.MinHealthy = int32(n)
		case "drain":
			s.DrainSeconds = int32(n)
		default:
			return "", nil, fmt.Errorf("--role %q: %q is not a setting (max_surge, min_healthy, drain)", spec, k)
		}
	}
	return role, s, nil
}

// bar draws a progress bar of done out of total, width characters wide.
func bar(done, total int64, width int) string {
	if total <= 0 {
		return strings.Repeat("·", width)
	}
	n := int(done * int64(width) / total)
	return strings.Repeat("█", n) + strings.Repeat("·", width-n)
}

// workloadLine is one workload of a run, in a line.
func workloadLine(w *inventoryv1.RunWorkload) string {
	step := cliout.Short(w.GetStep().String(), "RUN_STEP_")
	if w.GetStep() == inventoryv1.RunStep_RUN_STEP_UNSPECIFIED {
		step = "waiting"
	}
	if st := w.GetStepState(); st == inventoryv1.StepState_STEP_STATE_WAITING || st == inventoryv1.StepState_STEP_STATE_ROLLING_BACK || st == inventoryv1.StepState_STEP_STATE_FAILED {
		step += " (" + cliout.Short(st.String(), "STEP_STATE_") + ")"
	}
	line := fmt.Sprintf("%-22s %-10s %-14s %-24s", w.GetDisplayName(), w.GetRole(), strings.ReplaceAll(cliout.Short(w.GetStrategy().String(), "STRATEGY_"), "_", "-"), step)
	if p := w.GetProgress(); p != nil && w.GetStep() == inventoryv1.RunStep_RUN_STEP_CONVERT && p.GetTotalBytes() == 0 && w.GetNewAddress() == "" {
		line += " job step: " + p.GetJobStep() // no copy to count (yet): a P2V job's build, its boot
	} else if p != nil && w.GetStep() == inventoryv1.RunStep_RUN_STEP_CONVERT && p.GetTotalBytes() > 0 {
		line += fmt.Sprintf(" [%s] %5.1f/%.1f MiB %.1f MiB/s ETA %ds %s", bar(p.GetDoneBytes(), p.GetTotalBytes(), 20), float64(p.GetDoneBytes())/(1<<20),
			float64(p.GetTotalBytes())/(1<<20), float64(p.GetBytesPerSecond())/(1<<20), p.GetEtaSeconds(), p.GetJobStep())
	}
	if w.GetNewAddress() != "" {
		line += " → " + w.GetNewAddress()
	}
	if w.GetDowntimeMs() > 0 {
		line += fmt.Sprintf(" downtime %.1f s", float64(w.GetDowntimeMs())/1000)
	}
	if w.GetError() != "" {
		line += " — " + w.GetError()
	}
	return line
}

func runTable(tw *tabwriter.Writer, r *inventoryv1.Run) {
	fmt.Fprintf(tw, "%s wave %d → %s: %s", orDash(r.GetName()), r.GetWave(), r.GetDestination(), cliout.Short(r.GetState().String(), "RUN_STATE_"))
	if r.GetStateReason() != "" {
		fmt.Fprintf(tw, " (%s)", r.GetStateReason())
	}
	fmt.Fprintln(tw)
	if r.GetPreflightOverrideReason() != "" {
		fmt.Fprintf(tw, "  pre-flight overridden: %s\n", r.GetPreflightOverrideReason())
	}
	for _, w := range r.GetWorkloads() {
		fmt.Fprintf(tw, "  %s\n", workloadLine(w))
		if r.GetState() == inventoryv1.RunState_RUN_STATE_PLANNED {
			var steps []string
			for _, s := range w.GetSteps() {
				steps = append(steps, cliout.Short(s.String(), "RUN_STEP_"))
			}
			if len(steps) > 0 {
				fmt.Fprintf(tw, "    steps: %s\n", strings.Join(steps, " → "))
			}
			for _, m := range w.GetMembers() {
				fmt.Fprintf(tw, "    member %s:%d of %s (weight %d)\n", m.GetAddress(), m.GetPort(), m.GetLoadBalancer(), m.GetWeight())
			}
		}
		for _, gate := range w.GetGates() {
			fmt.Fprintf(tw, "    gate: %s\n", gate)
		}
	}
}

// follow streams a run until it ends, a line per workload change (JSON lines with
// -o json).
func (g *Globals) follow(cmd *cobra.Command, c inventoryv1.WaveRunServiceClient, name string) error {
	stream, err := c.WatchRun(cmd.Context(), &inventoryv1.WatchRunRequest{Name: name})
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	seen := map[string]string{}
	var last *inventoryv1.Run
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		last = m.GetRun()
		if g.Output.Structured() {
			g.emit(out, last)
			continue
		}
		if k := "run"; seen[k] != last.GetState().String() {
			seen[k] = last.GetState().String()
			fmt.Fprintf(out, "%s %s %s\n", last.GetName(), cliout.Short(last.GetState().String(), "RUN_STATE_"), last.GetStateReason())
		}
		for _, w := range last.GetWorkloads() {
			if l := workloadLine(w); seen[w.GetWorkload()] != l {
				seen[w.GetWorkload()] = l
				fmt.Fprintf(out, "  %s\n", l)
			}
		}
	}
	if last != nil && !g.Output.Structured() {
		tw := cliout.NewTabWriter(out)
		runTable(tw, last)
		_ = tw.Flush()
	}
	if last == nil || last.GetState() != inventoryv1.RunState_RUN_STATE_DONE {
		return ErrRunNotDone
	}
	return nil
}
