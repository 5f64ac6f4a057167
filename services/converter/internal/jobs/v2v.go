package jobs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"google.golang.org/protobuf/types/known/durationpb"

	"google.golang.org/grpc/status"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/platform/cloud"
	"github.com/hikkoshi/hikkoshi/platform/mtls"
	"github.com/hikkoshi/hikkoshi/platform/poll"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/imagecopy"
)

// ErrNotDecommissionable refuses DecommissionSource for a P2V job.
var ErrNotDecommissionable = errors.New("jobs: nothing to decommission")

// ErrCancelled ends a job whose cancel was requested.
var ErrCancelled = errors.New("jobs: cancelled on request")

// clients are one cloud's API clients.
type clients struct {
	compute, network, image *gophercloud.ServiceClient
	// volume is Cinder's client; nil when the cloud's catalog has no block storage.
	volume *gophercloud.ServiceClient
	// project is the ID of the project the entry is scoped to.
	project string
}

// Runner runs V2V jobs step by step against the clouds of a clouds.yaml.
type Runner struct {
	// CloudsYAML is the clouds.yaml path ("" for the usual places).
	CloudsYAML string
	// ChunkSize is the image copy's chunk size (0: imagecopy.DefaultChunkSize).
	ChunkSize int64
	// CopyMode is how images larger than a chunk are copied (imagecopy.Tee: 0).
	CopyMode imagecopy.Mode
	// CutOvers reads a job's CutOverJob request (nil: none yet), for warm jobs
	// that hold after their pre-copy.
	CutOvers func(ctx context.Context, id string) (*converterv1.CutOver, error)
	// Bandwidth caps one copy's read rate in bytes per second (0: no cap).
	Bandwidth int64
	// Poll is the pause between status reads while waiting (0: 1 s).
	Poll time.Duration
	// P2VWork is where P2V jobs build their disks (DefaultP2VWork when empty).
	P2VWork string
	// CloudInitDebs is a directory of .deb files P2V installs cloud-init from (an
	// offline worker); empty: from the server's own package sources.
	CloudInitDebs string
	// AgentTokenFile holds the bearer token of the P2V agents (read per job; never
	// logged or stored).
	AgentTokenFile string
	// AgentTLS are this worker's certificate, key and CA bundle for https P2V
	// agents (mutual TLS; the converter's own --tls-* files).
	AgentTLS mtls.Files
	// Probe dials the health probes (nil: straight).
	Probe *ProbeDialer
	// Policy is what a job may name (checked again before a job starts).
	Policy Policy
	Log    *slog.Logger
}

// openRetry is how long opening a cloud is retried while its APIs restart.
const openRetry = 2 * time.Minute

// open opens a cloud's clients, retrying while an API is restarting (its endpoint
// refuses connections or answers 502/503/504): an API process's restart must not
// fail a job that has not started yet.
func (r *Runner) open(ctx context.Context, name string) (clients, error) {
	deadline := time.Now().Add(openRetry)
	for {
		cl, err := r.openOnce(ctx, name)
		if err == nil || !passing(err) || time.Now().After(deadline) || ctx.Err() != nil {
			return cl, err
		}
		if r.Log != nil {
			r.Log.Warn("opening a cloud while an API restarts; retrying", "cloud", name, "err", err)
		}
		if poll.Sleep(ctx, 2*time.Second) != nil {
			return cl, err
		}
	}
}

// passing reports whether err is an API that is restarting rather than refusing.
func passing(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) {
		return true
	}
	for _, code := range []int{http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout} {
		if gophercloud.ResponseCodeIs(err, code) {
			return true
		}
	}
	msg := err.Error()
	return strings.Contains(msg, "connection refused") || strings.Contains(msg, "connection reset")
}

func (r *Runner) openOnce(ctx context.Context, name string) (clients, error) {
	c, err := cloud.Open(ctx, name, cloud.WithCloudsYAML(r.CloudsYAML), cloud.WithUserAgent("hikkoshi-converter"))
	if err != nil {
		return clients{}, err
	}
	var cl clients
	if cl.project, err = c.ProjectID(); err != nil {
		return cl, err
	}
	if cl.compute, err = c.Compute(); err != nil {
		return cl, err
	}
	cl.compute.Microversion = "2.47" // the server's flavor by name
	if cl.network, err = c.Network(); err != nil {
		return cl, err
	}
	if cl.image, err = c.Image(); err != nil {
		return cl, err
	}
	if cl.volume, err = c.BlockStorage(); err != nil {
		var nf *gophercloud.ErrEndpointNotFound
		if !errors.As(err, &nf) {
			return cl, err
		}
		cl.volume = nil // a server with volumes is refused at the pre-flight
	}
	return cl, nil
}

// pause is the pause between status reads (Poll, 1 s when unset).
func (r *Runner) pause() time.Duration { return cmp.Or(r.Poll, time.Second) }

// wait polls get until done says stop.
func (r *Runner) wait(ctx context.Context, what string, get func() (string, error), want string, bad ...string) error {
	last := ""
	err := poll.Until(ctx, poll.Constant(r.pause()), func(int) (bool, error) {
		st, err := get()
		if err != nil {
			return false, fmt.Errorf("%s: %w", what, err)
		}
		last = st
		if slices.Contains(bad, st) {
			return false, fmt.Errorf("%s: %s", what, st)
		}
		return st == want, nil
	})
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%s: still %s: %w", what, last, err)
	}
	return err
}

// task is one job as this worker runs it: what every step needs, so that a step
// takes its context and nothing else.
type task struct {
	*Runner
	j        *converterv1.Job
	id       string
	src, dst clients
	pl       *plan
	save     func(context.Context, *converterv1.Job) error
}

// plan is what the pre-flight found, for the later steps.
type plan struct {
	srv      *servers.Server
	flavorID string
	fixedIP  string
	keyName  string
	sgIDs    []string
	nics     []nicPlan // destination.nics, in the guest's order
	// bootVolume is true when the server boots from a volume: its root disk moves
	// with the volumes (JOB_STEP_VOLUMES), not as a Nova snapshot image.
	bootVolume bool
}

// nicPlan is one NIC's destination: a given port, or a new port on a network with an
// address (and the source NIC's MAC, when kept).
type nicPlan struct {
	portID, networkID, fixedIP, mac string
}

// Run runs j from the step after its last recorded one. save records the job
// (fenced by the claim); cancelled reports a cancel request.
func (r *Runner) Run(ctx context.Context, j *converterv1.Job, save func(context.Context, *converterv1.Job) error) error {
	if err := r.Policy.Err(j); err != nil {
		return fmt.Errorf("refused by this worker's policy: %s", status.Convert(err).Message())
	}
	if IsP2V(j) {
		id, _ := ID(j.GetName())
		if err := r.runP2V(ctx, j, id, save); err != nil {
			return err
		}
		if j.GetDestination() != nil && !j.GetP2VSource().GetInspectOnly() {
			if err := r.bootP2V(ctx, j, id, save); err != nil {
				return err
			}
		}
		j.Step = converterv1.JobStep_JOB_STEP_DONE
		return nil
	}
	src, err := r.open(ctx, j.GetSource().GetCloud())
	if err != nil {
		return fmt.Errorf("source cloud %q: %w", j.GetSource().GetCloud(), err)
	}
	dst, err := r.open(ctx, j.GetDestination().GetCloud())
	if err != nil {
		return fmt.Errorf("destination cloud %q: %w", j.GetDestination().GetCloud(), err)
	}
	if j.Created == nil {
		j.Created = &converterv1.Created{}
	}
	id, _ := ID(j.GetName())
	t := &task{Runner: r, j: j, id: id, src: src, dst: dst, save: save}
	at := slices.Index(v2vSteps, j.GetStep())
	for i, step := range v2vSteps {
		if i < at && step != converterv1.JobStep_JOB_STEP_PREFLIGHT {
			continue // done before this worker took the job over
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		j.Step = step
		if err := save(ctx, j); err != nil {
			return err
		}
		switch step {
		case converterv1.JobStep_JOB_STEP_PREFLIGHT:
			t.pl, err = t.preflight(ctx)
		case converterv1.JobStep_JOB_STEP_PRECOPY:
			err = t.precopy(ctx)
		case converterv1.JobStep_JOB_STEP_STOP:
			err = t.stop(ctx)
		case converterv1.JobStep_JOB_STEP_SNAPSHOT:
			if !t.pl.bootVolume {
				err = t.snapshot(ctx)
			}
		case converterv1.JobStep_JOB_STEP_COPY:
			if !t.pl.bootVolume {
				err = t.copyImage(ctx)
			}
		case converterv1.JobStep_JOB_STEP_VOLUMES:
			err = t.moveVolumes(ctx)
		case converterv1.JobStep_JOB_STEP_BOOT:
			err = t.boot(ctx)
		case converterv1.JobStep_JOB_STEP_HEALTH:
			err = t.health(ctx)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", strings.ToLower(strings.TrimPrefix(step.String(), "JOB_STEP_")), err)
		}
	}
	if j.GetStopTime() != nil && j.GetDowntime() == nil {
		// The server answers in the destination now: the downtime ends.
		j.Downtime = durationpb.New(time.Since(j.GetStopTime().AsTime()))
	}
	j.Step = converterv1.JobStep_JOB_STEP_DONE
	return nil
}

// v2vSteps are a V2V job's steps in the order they run.
var v2vSteps = []converterv1.JobStep{
	converterv1.JobStep_JOB_STEP_PREFLIGHT, converterv1.JobStep_JOB_STEP_PRECOPY, converterv1.JobStep_JOB_STEP_STOP,
	converterv1.JobStep_JOB_STEP_SNAPSHOT, converterv1.JobStep_JOB_STEP_COPY, converterv1.JobStep_JOB_STEP_VOLUMES,
	converterv1.JobStep_JOB_STEP_BOOT, converterv1.JobStep_JOB_STEP_HEALTH,
}

// CleanupTimeout bounds a clean-up (it runs after the job's own context ended).
const CleanupTimeout = 5 * time.Minute
