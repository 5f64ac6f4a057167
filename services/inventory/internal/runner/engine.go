package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/services/inventory/internal/registry"
)

// Deps are what a run calls: the other services (through their generated clients,
// found in the service registry), Nova of the source clouds, and the pre-flight.
type Deps struct {
	Converter converterv1.ConverterServiceClient
	LB        lbaasv1.LoadBalancerServiceClient
	Netbridge netbridgev1.NetbridgeServiceClient
	// Compute returns Nova of a clouds.yaml entry (to stop and start old servers).
	Compute func(ctx context.Context, cloud string) (*gophercloud.ServiceClient, error)
	// Preflight checks a wave against a destination (nil: no destinations).
	Preflight func(ctx context.Context, wave int32, dest string, volumeTypes map[string]string) (*inventoryv1.PreflightReport, error)
	// Destinations are the destination clouds a run may name.
	Destinations []string
}

// Engine drives the live runs while its process leads the runner election.
type Engine struct {
	Etcd      *clientv3.Client
	Store     *Store
	Workloads *registry.Store
	Deps      Deps
	// Session returns the process's etcd session (nil while it has none).
	Session  func() *concurrency.Session
	Instance string
	Log      *slog.Logger
	// Poll is how often a step checks what it waits for; 0 means 1 s.
	Poll time.Duration
	// WaitTimeout bounds a wait for a load balancer member or a server status; 0
	// means 5 minutes.
	WaitTimeout time.Duration
	// StepRetry is how long a step failing for a passing cause (a service or an
	// API restarting) is retried before the workload fails; 0 means 10 minutes.
	StepRetry time.Duration

	mu      sync.Mutex
	driving map[string]bool
	guard   []clientv3.Cmp
}

func (e *Engine) poll() time.Duration {
	if e.Poll > 0 {
		return e.Poll
	}
	return time.Second
}

func (e *Engine) waitTimeout() time.Duration {
	if e.WaitTimeout > 0 {
		return e.WaitTimeout
	}
	return 5 * time.Minute
}

// Run campaigns for the runner election and, while it leads, drives every live
// run. It returns when ctx ends.
func (e *Engine) Run(ctx context.Context) {
	for ctx.Err() == nil {
		s := e.Session()
		if s == nil {
			sleep(ctx, time.Second)
			continue
		}
		el := concurrency.NewElection(s, keys.RunnerElection)
		if err := el.Campaign(ctx, e.Instance); err != nil {
			if ctx.Err() == nil {
				e.Log.Warn("runner election", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		e.Log.Info("leading the wave runner", "key", el.Key())
		lctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-s.Done():
			case <-lctx.Done():
			}
			cancel()
		}()
		e.lead(lctx, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(el.Key()), "=", el.Rev())})
		cancel()
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = el.Resign(rctx)
		rcancel()
		e.Log.Info("no longer leading the wave runner")
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// lead watches the runs and drives each live one until ctx ends.
func (e *Engine) lead(ctx context.Context, guard []clientv3.Cmp) {
	e.mu.Lock()
	e.guard, e.driving = guard, map[string]bool{}
	e.mu.Unlock()
	var wg sync.WaitGroup
	defer wg.Wait()
	start := func(id string) {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.driving[id] {
			return
		}
		e.driving[id] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.drive(ctx, id)
			e.mu.Lock()
			delete(e.driving, id)
			e.mu.Unlock()
		}()
	}
	for ctx.Err() == nil {
		resp, err := e.Etcd.Get(ctx, keys.RunsPrefix, clientv3.WithPrefix())
		if err != nil {
			sleep(ctx, time.Second)
			continue
		}
		for _, kv := range resp.Kvs {
			if r, err := e.Store.Decode(kv); err == nil && Live(r.GetState()) {
				id, _ := RunID(r.GetName())
				start(id)
			}
		}
		wch := e.Etcd.Watch(clientv3.WithRequireLeader(ctx), keys.RunsPrefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
		for wr := range wch {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type != clientv3.EventTypePut {
					continue
				}
				if r, err := e.Store.Decode(ev.Kv); err == nil && Live(r.GetState()) {
					id, _ := RunID(r.GetName())
					start(id)
				}
			}
		}
	}
}

// update writes a change to the run as the leader.
func (e *Engine) update(ctx context.Context, id string, change func(*inventoryv1.Run) (bool, error)) (*inventoryv1.Run, error) {
	e.mu.Lock()
	guard := e.guard
	e.mu.Unlock()
	return e.Store.Update(ctx, id, guard, change)
}

// updateWorkload writes a change to workload i of the run.
func (e *Engine) updateWorkload(ctx context.Context, id string, i int, change func(*inventoryv1.RunWorkload)) (*inventoryv1.RunWorkload, error) {
	r, err := e.update(ctx, id, func(r *inventoryv1.Run) (bool, error) {
		if i >= len(r.GetWorkloads()) {
			return false, fmt.Errorf("run %s has no workload %d", id, i)
		}
		change(r.GetWorkloads()[i])
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return r.GetWorkloads()[i], nil
}

// maxEvents bounds a workload's event list: the latest are kept.
const maxEvents = 40

func event(w *inventoryv1.RunWorkload, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if n := len(w.Events); n > 0 && strings.HasSuffix(w.Events[n-1], " "+msg) {
		return // a retry says the same again: once is enough
	}
	w.Events = append(w.Events, time.Now().UTC().Format("15:04:05.000")+" "+msg)
	if len(w.Events) > maxEvents {
		w.Events = append(w.Events[:1], w.Events[len(w.Events)-maxEvents+1:]...)
	}
}

// control is what the API asked of a run being driven: a pause stops new steps,
// an abort cancels the ones in flight.
type control struct {
	mu     sync.Mutex
	paused bool
	abort  bool
	cancel context.CancelFunc
	change chan struct{}
}

func (c *control) set(r *inventoryv1.Run) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paused = r.GetPauseRequested() || r.GetState() == inventoryv1.RunState_RUN_STATE_PAUSED
	if r.GetAbortRequested() && !c.abort {
		c.abort = true
		c.cancel()
	}
	select {
	case c.change <- struct{}{}:
	default:
	}
}

func (c *control) stop() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paused || c.abort
}

// errStopped ends a forward pass that a pause, an abort or a failure stopped.
var errStopped = errors.New("runner: stopped")

// drive runs one run until it ends or ctx ends (leadership lost).
func (e *Engine) drive(ctx context.Context, id string) {
	log := e.Log.With("run", "runs/"+id)
	for ctx.Err() == nil {
		r, rev, err := e.Store.Get(ctx, id)
		if err != nil {
			log.Warn("read run", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		if !Live(r.GetState()) {
			return
		}
		if r.GetRunner() != e.Instance {
			if _, err := e.update(ctx, id, func(r *inventoryv1.Run) (bool, error) {
				r.Runner = e.Instance
				return true, nil
			}); err != nil {
				log.Warn("take the run", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		switch {
		case r.GetAbortRequested() || r.GetState() == inventoryv1.RunState_RUN_STATE_ABORTING:
			e.abort(ctx, id, log)
			continue
		case r.GetPauseRequested():
			if r.GetState() != inventoryv1.RunState_RUN_STATE_PAUSED {
				_, _ = e.update(ctx, id, func(r *inventoryv1.Run) (bool, error) {
					if r.GetState() != inventoryv1.RunState_RUN_STATE_RUNNING || !r.GetPauseRequested() {
						return false, nil
					}
					r.State = inventoryv1.RunState_RUN_STATE_PAUSED
					if r.StateReason == "" {
						r.StateReason = "paused by the operator"
					}
					return true, nil
				})
				continue
			}
			e.waitChange(ctx, id, rev)
			continue
		case r.GetState() == inventoryv1.RunState_RUN_STATE_PAUSED:
			e.waitChange(ctx, id, rev)
			continue
		}
		err = e.forward(ctx, id, log)
		if err == nil {
			_, err = e.update(ctx, id, func(r *inventoryv1.Run) (bool, error) {
				if r.GetState() != inventoryv1.RunState_RUN_STATE_RUNNING || r.GetAbortRequested() || r.GetPauseRequested() {
					return false, nil
				}
				r.State, r.StateReason = inventoryv1.RunState_RUN_STATE_DONE, doneReason(r)
				return true, nil
			})
			if err == nil {
				log.Info("run done")
			}
		}
		if err != nil && !errors.Is(err, errStopped) && ctx.Err() == nil {
			log.Warn("run", "err", err)
			sleep(ctx, time.Second)
		}
	}
}

func doneReason(r *inventoryv1.Run) string {
	moved, failed, skipped := 0, 0, 0
	for _, w := range r.GetWorkloads() {
		switch {
		case w.GetStrategy() == inventoryv1.Strategy_STRATEGY_UNSUPPORTED:
			skipped++
		case w.GetStep() == inventoryv1.RunStep_RUN_STEP_DONE:
			moved++
		default:
			failed++
		}
	}
	return fmt.Sprintf("%d moved, %d failed (their old servers serve), %d not movable by the runner", moved, failed, skipped)
}

// waitChange waits until the run's record changes after rev.
func (e *Engine) waitChange(ctx context.Context, id string, rev int64) {
	wctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), 30*time.Second)
	defer cancel()
	for wr := range e.Etcd.Watch(wctx, keys.Run(id), clientv3.WithRev(rev+1)) {
		if wr.Err() != nil || len(wr.Events) > 0 {
			return
		}
	}
}

// watchControl feeds c from the run's record until ctx ends.
func (e *Engine) watchControl(ctx context.Context, id string, c *control) {
	for ctx.Err() == nil {
		r, rev, err := e.Store.Get(ctx, id)
		if err != nil {
			sleep(ctx, time.Second)
			continue
		}
		c.set(r)
		for wr := range e.Etcd.Watch(clientv3.WithRequireLeader(ctx), keys.Run(id), clientv3.WithRev(rev+1)) {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if r, err := e.Store.Decode(ev.Kv); err == nil {
					c.set(r)
				}
			}
		}
	}
}

func terminal(w *inventoryv1.RunWorkload) bool {
	return w.GetStrategy() == inventoryv1.Strategy_STRATEGY_UNSUPPORTED ||
		w.GetStep() == inventoryv1.RunStep_RUN_STEP_DONE || w.GetStep() == inventoryv1.RunStep_RUN_STEP_ROLLED_BACK
}

// forward moves the run's workloads role by role, at most max_surge of a role at
// once. It returns nil when every workload has ended, errStopped when a pause, an
// abort or a failure stopped it.
func (e *Engine) forward(ctx context.Context, id string, log *slog.Logger) error {
	r, _, err := e.Store.Get(ctx, id)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &control{cancel: cancel, change: make(chan struct{}, 1)}
	c.set(r)
	go e.watchControl(wctx, id, c)
	ws := r.GetWorkloads()
	for start := 0; start < len(ws); {
		end := start
		for end < len(ws) && ws[end].GetRole() == ws[start].GetRole() {
			end++
		}
		role := ws[start].GetRole()
		surge := int(r.GetRoles()[role].GetMaxSurge())
		if surge <= 0 {
			surge = 1
		}
		sem := make(chan struct{}, surge)
		var wg sync.WaitGroup
		for i := start; i < end; i++ {
			if terminal(ws[i]) {
				continue
			}
			sem <- struct{}{}
			if c.stop() || wctx.Err() != nil {
				<-sem
				break
			}
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				defer func() { <-sem }()
				e.move(wctx, id, i, c, log.With("workload", ws[i].GetWorkload(), "name", ws[i].GetDisplayName()))
			}(i)
		}
		wg.Wait()
		cur, _, err := e.Store.Get(ctx, id)
		if err != nil {
			return err
		}
		for i := start; i < end; i++ {
			if !terminal(cur.GetWorkloads()[i]) {
				return errStopped
			}
		}
		if c.stop() {
			return errStopped
		}
		start = end
	}
	return nil
}

// move runs workload i's steps from its recorded one. A failed step rolls the
// workload back, marks it failed and pauses the run.
func (e *Engine) move(ctx context.Context, id string, i int, c *control, log *slog.Logger) {
	r, _, err := e.Store.Get(ctx, id)
	if err != nil {
		return
	}
	w := r.GetWorkloads()[i]
	if w.GetStartTime() == nil {
		if _, err := e.updateWorkload(ctx, id, i, func(w *inventoryv1.RunWorkload) {
			w.StartTime = timestamppb.Now()
			event(w, "move started (%s)", strategyWord(w.GetStrategy()))
		}); err != nil {
			return
		}
		e.setWorkloadState(ctx, w.GetWorkload(), inventoryv1.WorkloadState_WORKLOAD_STATE_CONVERTING, "")
	}
	at := slices.Index(w.GetSteps(), w.GetStep()) // -1 before the first
	for k, st := range w.GetSteps() {
		if k < at || (st == w.GetStep() && w.GetStepState() == inventoryv1.StepState_STEP_STATE_DONE) {
			continue
		}
		if c.stop() || ctx.Err() != nil {
			return
		}
		w, err = e.updateWorkload(ctx, id, i, func(w *inventoryv1.RunWorkload) {
			if w.GetStep() != st {
				event(w, "%s", stepWord(st))
			}
			w.Step, w.StepState = st, inventoryv1.StepState_STEP_STATE_RUNNING
			if w.RequestIds == nil {
				w.RequestIds = map[string]string{}
			}
			w.RequestIds[stepWord(st)] = fmt.Sprintf("run-%s-%s-%s", id, trimWorkload(w.GetWorkload()), stepWord(st))
		})
		if err != nil {
			return
		}
		log.Info("step", "step", stepWord(st))
		err = e.retry(ctx, id, i, st, func() error { return e.step(ctx, id, i, r, w, st) }, log)
		if err != nil {
			if ctx.Err() != nil {
				return // aborted, or leadership lost: the record says where it was
			}
			log.Warn("step failed; rolling the workload back", "step", stepWord(st), "err", err)
			e.fail(ctx, id, i, st, err, log)
			return
		}
		w, err = e.updateWorkload(ctx, id, i, func(w *inventoryv1.RunWorkload) { w.StepState = inventoryv1.StepState_STEP_STATE_DONE })
		if err != nil {
			return
		}
	}
	if _, err := e.updateWorkload(ctx, id, i, func(w *inventoryv1.RunWorkload) {
		w.Step, w.StepState, w.EndTime = inventoryv1.RunStep_RUN_STEP_DONE, inventoryv1.StepState_STEP_STATE_DONE, timestamppb.Now()
		event(w, "moved")
	}); err == nil {
		e.setWorkloadState(ctx, w.GetWorkload(), inventoryv1.WorkloadState_WORKLOAD_STATE_CUT_OVER, "")
		log.Info("workload moved")
	}
}

// permanentError is a step's failure that a repeat cannot mend: a gate that did
// not pass, a conversion that failed. Every other error (a service or an API
// restarting, a timeout) is retried.
type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

func permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// retry runs a step until it succeeds, fails for good, or has failed for
// StepRetry: every step is idempotent, so a repeat after a lost answer is safe.
func (e *Engine) retry(ctx context.Context, id string, i int, st inventoryv1.RunStep, f func() error, log *slog.Logger) error {
	limit := e.StepRetry
	if limit <= 0 {
		limit = 10 * time.Minute
	}
	deadline := time.Now().Add(limit)
	backoff := time.Second
	for {
		err := f()
		var p permanentError
		if err == nil || ctx.Err() != nil || errors.As(err, &p) || time.Now().After(deadline) {
			return err
		}
		switch status.Code(err) {
		case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated:
			return err // what the called service refuses, it refuses again
		}
		log.Warn("step failed; retrying", "step", stepWord(st), "err", err, "retry_in", backoff)
		_, _ = e.updateWorkload(ctx, id, i, func(w *inventoryv1.RunWorkload) { event(w, "%s: %v (retrying)", stepWord(st), err) })
		sleep(ctx, backoff)
		backoff = min(2*backoff, 10*time.Second)
	}
}

func trimWorkload(n string) string {
	if len(n) > len("workloads/") {
		return n[len("workloads/"):]
	}
	return n
}

// fail rolls workload i back after step st failed, records the failure and pauses
// the run for the operator.
func (e *Engine) fail(ctx context.Context, id string, i int, st inventoryv1.RunStep, cause error, log *slog.Logger) {
	msg := fmt.Sprintf("%s: %v", stepWord(st), cause)
	w, err := e.updateWorkload(ctx, id, i, func(w *inventoryv1.RunWorkload) {
		w.StepState, w.Error = inventoryv1.StepState_STEP_STATE_FAILED, msg
		event(w, "failed: %s", msg)
	})
	if err != nil {
		return
	}
	for ctx.Err() == nil {
		if err := e.rollback(ctx, id, i); err != nil {
			log.Warn("rollback of a failed workload; retrying", "err", err)
			sleep(ctx, 2*time.Second)
			continue
		}
		break
	}
	if ctx.Err() != nil {
		return
	}
	e.setWorkloadState(ctx, w.GetWorkload(), inventoryv1.WorkloadState_WORKLOAD_STATE_FAILED, msg)
	_, _ = e.update(ctx, id, func(r *inventoryv1.Run) (bool, error) {
		if r.GetState() != inventoryv1.RunState_RUN_STATE_RUNNING {
			return false, nil
		}
		r.State, r.PauseRequested = inventoryv1.RunState_RUN_STATE_PAUSED, true
		r.StateReason = fmt.Sprintf("%s failed (%s); its move is undone and its old server serves: ResumeRun goes on without it, AbortRun rolls the wave back", w.GetDisplayName(), msg)
		return true, nil
	})
}

// abort rolls every started workload back, the last started first, and ends the
// run ABORTED. A rollback that fails is retried: an abort leaves nothing behind.
func (e *Engine) abort(ctx context.Context, id string, log *slog.Logger) {
	r, err := e.update(ctx, id, func(r *inventoryv1.Run) (bool, error) {
		if r.GetState() == inventoryv1.RunState_RUN_STATE_ABORTING {
			return false, nil
		}
		r.State = inventoryv1.RunState_RUN_STATE_ABORTING
		return true, nil
	})
	if err != nil {
		return
	}
	log.Info("aborting: rolling the wave back")
	order := make([]int, 0, len(r.GetWorkloads()))
	for i, w := range r.GetWorkloads() {
		if w.GetStartTime() != nil && w.GetStep() != inventoryv1.RunStep_RUN_STEP_ROLLED_BACK {
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return r.GetWorkloads()[b].GetStartTime().AsTime().Compare(r.GetWorkloads()[a].GetStartTime().AsTime())
	})
	for _, i := range order {
		for ctx.Err() == nil {
			err := e.rollback(ctx, id, i)
			if err == nil {
				e.setWorkloadState(ctx, r.GetWorkloads()[i].GetWorkload(), inventoryv1.WorkloadState_WORKLOAD_STATE_PLANNED, "")
				break
			}
			log.Warn("rollback; retrying", "workload", r.GetWorkloads()[i].GetWorkload(), "err", err)
			_, _ = e.updateWorkload(ctx, id, i, func(w *inventoryv1.RunWorkload) { event(w, "rollback: %v (retrying)", err) })
			sleep(ctx, 2*time.Second)
		}
	}
	if ctx.Err() != nil {
		return
	}
	if _, err := e.update(ctx, id, func(r *inventoryv1.Run) (bool, error) {
		r.State = inventoryv1.RunState_RUN_STATE_ABORTED
		return true, nil
	}); err == nil {
		log.Info("run aborted")
	}
}

func (e *Engine) setWorkloadState(ctx context.Context, name string, st inventoryv1.WorkloadState, reason string) {
	_, err := e.Workloads.Update(ctx, trimWorkload(name), "", func(cur, next *inventoryv1.Workload) error {
		if cur.GetState() == st || !registry.CanTransition(cur.GetState(), st) {
			return errNoChange
		}
		next.State = st
		next.StateReason = reason
		return nil
	})
	if err != nil && !errors.Is(err, errNoChange) {
		e.Log.Warn("workload state", "workload", name, "state", st.String(), "err", err)
	}
}

var errNoChange = errors.New("no change")
