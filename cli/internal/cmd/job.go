package cmd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/platform/cliout"
	"github.com/hikkoshi/hikkoshi/platform/pagetoken"
)

func (g *globals) converter() (converterv1.ConverterServiceClient, error) {
	c, err := g.conn("converter")
	if err != nil {
		return nil, err
	}
	return converterv1.NewConverterServiceClient(c), nil
}

// resourceName accepts "jobs/x" or "x".
func resourceName(collection, s string) string {
	if strings.HasPrefix(s, collection+"/") {
		return s
	}
	return collection + "/" + s
}

// readSpec reads a message from a JSON or YAML file ("-": standard input), in the
// API's field names, refusing unknown fields.
func readSpec(cmd *cobra.Command, path string, m proto.Message) error {
	if path == "" {
		return usagef("-f: name a file with the spec (JSON or YAML, the API's fields; - reads standard input)")
	}
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(cmd.InOrStdin())
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return usagef("-f: %v", err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return usagef("-f %s: not JSON or YAML: %v", path, err)
	}
	if err := protojson.Unmarshal(j, m); err != nil {
		return usagef("-f %s: %v", path, err)
	}
	return nil
}

func jobKind(j *converterv1.Job) string {
	if j.GetP2VSource() != nil {
		return "p2v"
	}
	return "v2v"
}

func jobProgress(j *converterv1.Job) string {
	p := j.GetProgress()
	if p.GetTotalBytes() == 0 {
		return "-"
	}
	return fmt.Sprintf("%d%% of %s", p.GetDoneBytes()*100/p.GetTotalBytes(), bytesIEC(p.GetTotalBytes()))
}

func jobRow(tw *tabwriter.Writer, j *converterv1.Job) {
	age := "-"
	if t := j.GetCreateTime(); t != nil {
		age = time.Since(t.AsTime()).Round(time.Second).String()
	}
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.GetName(), cliout.OrDash(j.GetWorkload()), jobKind(j),
		cliout.Short(j.GetState().String(), "JOB_STATE_"), cliout.Short(j.GetStep().String(), "JOB_STEP_"), jobProgress(j), cliout.OrDash(j.GetWorker()), age)
}

const jobHeader = "NAME\tWORKLOAD\tKIND\tSTATE\tSTEP\tPROGRESS\tWORKER\tAGE"

func newJob(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "job", Aliases: []string{"jobs"}, Short: "Conversion jobs: V2V (instance → destination) and P2V (physical disk → cloud image)"}

	var state string
	list := &cobra.Command{
		Use: "list", Short: "List jobs (all pages)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.converter()
			if err != nil {
				return err
			}
			req := &converterv1.ListJobsRequest{PageSize: 500}
			if state != "" {
				v, ok := converterv1.JobState_value["JOB_STATE_"+strings.ToUpper(state)]
				if !ok || v == 0 {
					return usagef("--state %q: use queued, running, succeeded, failed, cancelled or reverted", state)
				}
				req.State = converterv1.JobState(v)
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			jobs, err := pagetoken.Collect(func(token string) ([]*converterv1.Job, string, error) {
				req.PageToken = token
				r, err := c.ListJobs(ctx, req)
				return r.GetJobs(), r.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			all := &converterv1.ListJobsResponse{Jobs: jobs}
			return g.format.Print(cmd.OutOrStdout(), all, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, jobHeader)
				for _, j := range all.GetJobs() {
					jobRow(tw, j)
				}
			})
		},
	}
	list.Flags().StringVar(&state, "state", "", "only jobs in this state (queued, running, succeeded, failed, cancelled, reverted)")

	// one runs a call that answers with a job, and prints it.
	one := func(use, short string, args cobra.PositionalArgs, call func(cmd *cobra.Command, c converterv1.ConverterServiceClient, args []string) (*converterv1.Job, error)) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Args: args,
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := g.converter()
				if err != nil {
					return err
				}
				j, err := call(cmd, c, args)
				if err != nil {
					return err
				}
				return g.printJob(cmd.OutOrStdout(), j)
			},
		}
	}
	get := one("get JOB", "Show a job: its step, progress, what it made", cobra.ExactArgs(1), func(cmd *cobra.Command, c converterv1.ConverterServiceClient, args []string) (*converterv1.Job, error) {
		ctx, cancel := g.ctx(cmd)
		defer cancel()
		r, err := c.GetJob(ctx, &converterv1.GetJobRequest{Name: resourceName("jobs", args[0])})
		return r.GetJob(), err
	})
	cancelJob := one("cancel JOB", "Cancel a job: its worker stops it and deletes what it made", cobra.ExactArgs(1), func(cmd *cobra.Command, c converterv1.ConverterServiceClient, args []string) (*converterv1.Job, error) {
		ctx, cancel := g.ctx(cmd)
		defer cancel()
		r, err := c.CancelJob(ctx, &converterv1.CancelJobRequest{Name: resourceName("jobs", args[0])})
		return r.GetJob(), err
	})
	revert := one("revert JOB", "Revert a finished V2V job: delete what it made, start the source server again", cobra.ExactArgs(1), func(cmd *cobra.Command, c converterv1.ConverterServiceClient, args []string) (*converterv1.Job, error) {
		ctx, cancel := g.ctx(cmd)
		defer cancel()
		r, err := c.RevertJob(ctx, &converterv1.RevertJobRequest{Name: resourceName("jobs", args[0])})
		return r.GetJob(), err
	})
	var portID string
	var sourceStopped bool
	cutover := one("cutover JOB", "Go on with a warm job holding before its stop: stop the source, last copy, boot", cobra.ExactArgs(1), func(cmd *cobra.Command, c converterv1.ConverterServiceClient, args []string) (*converterv1.Job, error) {
		ctx, cancel := g.ctx(cmd)
		defer cancel()
		r, err := c.CutOverJob(ctx, &converterv1.CutOverJobRequest{Name: resourceName("jobs", args[0]), PortId: portID, SourceStopped: sourceStopped})
		return r.GetJob(), err
	})
	cutover.Flags().StringVar(&portID, "port-id", "", "boot the new server on this port (netbridge's moved address)")
	cutover.Flags().BoolVar(&sourceStopped, "source-stopped", false, "the source server is stopped already (by the operator)")
	var confirm string
	decommission := one("decommission JOB --confirm-server-id ID", "Delete a moved server's source and the job's snapshot, once the new one is confirmed", cobra.ExactArgs(1), func(cmd *cobra.Command, c converterv1.ConverterServiceClient, args []string) (*converterv1.Job, error) {
		ctx, cancel := g.ctx(cmd)
		defer cancel()
		r, err := c.DecommissionSource(ctx, &converterv1.DecommissionSourceRequest{Name: resourceName("jobs", args[0]), ConfirmServerId: confirm})
		return r.GetJob(), err
	})
	decommission.Flags().StringVar(&confirm, "confirm-server-id", "", "the source server's ID, typed again as a confirmation")

	var file, requestID string
	var follow bool
	create := &cobra.Command{
		Use:   "create -f SPEC",
		Short: "Create a job from its spec (a Job in JSON or YAML, the API's fields)",
		Long: `Create a job from its spec: a Job message in JSON or YAML with the API's field names.

  hikkoshi job create -f - <<EOF
  source: {cloud: old, server_id: 2b1d…}
  destination: {cloud: new, flavor_id: m1.small, network_id: 7f3a…}
  EOF

  hikkoshi job create -f p2v.yaml --follow   # p2v_source: {disk_path: …, inspect_only: true}`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			job := &converterv1.Job{}
			if err := readSpec(cmd, file, job); err != nil {
				return err
			}
			c, err := g.converter()
			if err != nil {
				return err
			}
			ctx, cancel := g.ctx(cmd)
			defer cancel()
			r, err := c.CreateJob(ctx, &converterv1.CreateJobRequest{Job: job, RequestId: requestID})
			if err != nil {
				return err
			}
			if follow {
				return g.watchJob(cmd, c, r.GetJob().GetName())
			}
			return g.printJob(cmd.OutOrStdout(), r.GetJob())
		},
	}
	create.Flags().StringVarP(&file, "file", "f", "", "the job's spec, JSON or YAML (- reads standard input)")
	create.Flags().StringVar(&requestID, "request-id", "", "makes a retried create return the same job instead of a second one")
	create.Flags().BoolVar(&follow, "follow", false, "watch the job until it ends (exit 4 unless it succeeds)")

	watch := &cobra.Command{
		Use:   "watch JOB",
		Short: "Follow a job until it ends: a progress bar with bytes, rate and ETA on a terminal, a line per change otherwise",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.converter()
			if err != nil {
				return err
			}
			return g.watchJob(cmd, c, resourceName("jobs", args[0]))
		},
	}
	for _, c := range []*cobra.Command{get, cancelJob, revert, cutover, decommission, watch} {
		c.ValidArgsFunction = g.completeJobs
	}
	cmd.AddCommand(list, get, create, watch, cancelJob, cutover, revert, decommission)
	return cmd
}

func (g *globals) printJob(w io.Writer, j *converterv1.Job) error {
	return g.format.Print(w, j, func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, jobHeader)
		jobRow(tw, j)
		if e := j.GetError(); e != "" {
			fmt.Fprintf(tw, "error: %s\n", e)
		}
		if w := j.GetWaiting(); w != "" {
			fmt.Fprintf(tw, "waiting: %s\n", w)
		}
	})
}

// watchJob follows a job until it ends: -o json|yaml prints each change as a
// message; a terminal gets a progress bar; anything else a line per change.
func (g *globals) watchJob(cmd *cobra.Command, c converterv1.ConverterServiceClient, name string) error {
	stream, err := c.WatchJob(cmd.Context(), &converterv1.WatchJobRequest{Name: name})
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	var view jobView = &lineView{w: out}
	if g.format.Structured() {
		view = &messageView{w: out, f: g.format}
	} else if isTerminal(out) {
		view = newBarView(out)
	}
	var last *converterv1.Job
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			view.done(last)
			return err
		}
		last = m.GetJob()
		view.update(last)
	}
	view.done(last)
	if last.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED {
		if e := last.GetError(); e != "" {
			return fmt.Errorf("%w: %s %s: %s", ErrNotDone, name, cliout.Short(last.GetState().String(), "JOB_STATE_"), e)
		}
		return fmt.Errorf("%w: %s %s", ErrNotDone, name, cliout.Short(last.GetState().String(), "JOB_STATE_"))
	}
	return nil
}

// jobView shows a watched job's changes.
type jobView interface {
	update(*converterv1.Job)
	done(last *converterv1.Job)
}

// messageView prints every change as a message (JSON, or YAML documents).
type messageView struct {
	w io.Writer
	f cliout.Format
}

func (v *messageView) update(j *converterv1.Job) { _ = v.f.Message(v.w, j) }
func (v *messageView) done(*converterv1.Job)     {}

// lineView prints a line when the state, the step or the progress (by whole
// percents) changes: for logs and pipes.
type lineView struct {
	w    io.Writer
	last string
}

func (v *lineView) update(j *converterv1.Job) {
	l := jobLine(j)
	if l == v.last {
		return
	}
	v.last = l
	fmt.Fprintf(v.w, "%s %s\n", time.Now().Format("15:04:05"), l)
}

func (v *lineView) done(j *converterv1.Job) {
	if e := j.GetError(); e != "" {
		fmt.Fprintf(v.w, "error: %s\n", e)
	}
}

// jobLine is a job's state, step, and copy progress with rate and ETA.
func jobLine(j *converterv1.Job) string {
	l := j.GetName() + " " + cliout.Short(j.GetState().String(), "JOB_STATE_")
	if j.GetStep() != converterv1.JobStep_JOB_STEP_UNSPECIFIED {
		l += " " + cliout.Short(j.GetStep().String(), "JOB_STEP_")
	}
	if p := j.GetProgress(); p.GetTotalBytes() > 0 {
		l += fmt.Sprintf(" %d%% %s/%s", p.GetDoneBytes()*100/p.GetTotalBytes(), bytesIEC(p.GetDoneBytes()), bytesIEC(p.GetTotalBytes()))
		if p.GetDoneBytes() < p.GetTotalBytes() && p.GetBytesPerSecond() > 0 {
			l += fmt.Sprintf(" %s/s ETA %s", bytesIEC(p.GetBytesPerSecond()), time.Duration(p.GetEtaSeconds())*time.Second)
		}
	}
	if w := j.GetWaiting(); w != "" {
		l += " (waiting: " + w + ")"
	}
	return l
}

// bytesIEC is n in B, KiB, MiB, GiB, TiB.
func bytesIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 3; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGT"[exp])
}

func (g *globals) completeJobs(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	if err := g.setup(cmd); err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	c, err := g.converter()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	ctx, cancel := g.ctx(cmd)
	defer cancel()
	r, err := c.ListJobs(ctx, &converterv1.ListJobsRequest{PageSize: 500})
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var names []string
	for _, j := range r.GetJobs() {
		names = append(names, j.GetName()+"\t"+cliout.Short(j.GetState().String(), "JOB_STATE_")+" "+j.GetWorkload())
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}
