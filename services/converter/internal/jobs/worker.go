package jobs

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/protobuf/types/known/timestamppb"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/platform/store"
)

// Executor runs a job's steps, cleans up after a failed or cancelled one, and
// decommissions a succeeded one's source (Runner).
type Executor interface {
	Run(ctx context.Context, j *converterv1.Job, save func(context.Context, *converterv1.Job) error) error
	Cleanup(ctx context.Context, j *converterv1.Job) error
	Decommission(ctx context.Context, j *converterv1.Job) (*converterv1.Decommission, error)
}

// Worker claims queued jobs (and jobs whose worker died) and runs them.
type Worker struct {
	Store    *Store
	Etcd     *clientv3.Client
	Exec     Executor
	Instance string
	// Session returns the process's etcd session (nil while it has none).
	Session func() *concurrency.Session
	// Concurrency is how many jobs this worker runs at once.
	Concurrency int
	// CloudLimits caps the jobs running at once against a cloud (as source or
	// destination) across every worker sharing the etcd; give each worker the same.
	CloudLimits map[string]int
	// Rescan is how often the worker looks for claimable jobs besides watching.
	Rescan time.Duration
	// Inventory, when set, has each job's workload follow it: converting while it
	// runs, cut_over when it succeeds, failed (with the error) when it fails, planned
	// again when it is cancelled.
	Inventory inventoryv1.InventoryServiceClient
	Log       *slog.Logger

	mu      sync.Mutex
	running map[string]bool
	wg      sync.WaitGroup
}

// Run claims and runs jobs until ctx ends; then it releases the jobs it holds (so
// another worker takes them over at once) and waits for their runs to stop.
func (w *Worker) Run(ctx context.Context) {
	if w.Concurrency < 1 {
		w.Concurrency = 1
	}
	if w.Rescan == 0 {
		w.Rescan = 2 * time.Second
	}
	w.running = map[string]bool{}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	jobsCh := w.Etcd.Watch(wctx, keys.JobsPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	claimsCh := w.Etcd.Watch(wctx, keys.ClaimsPrefix, clientv3.WithPrefix(), clientv3.WithFilterPut(), clientv3.WithKeysOnly())
	slotsCh := w.Etcd.Watch(wctx, keys.JobSlotsRoot, clientv3.WithPrefix(), clientv3.WithFilterPut(), clientv3.WithKeysOnly())
	tick := time.NewTicker(w.Rescan)
	defer tick.Stop()
	for {
		w.scan(ctx)
		select {
		case <-ctx.Done():
			w.wg.Wait()
			return
		case <-tick.C:
		case <-jobsCh:
		case <-claimsCh: // a claim ended: its job may be ours to take over
		case <-slotsCh: // a cloud's slot is free again
		}
	}
}

func (w *Worker) busy() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.running)
}

// scan claims claimable jobs, oldest first, while this worker has room.
func (w *Worker) scan(ctx context.Context) {
	sess := w.Session()
	if sess == nil || w.busy() >= w.Concurrency {
		return
	}
	claims, err := w.Etcd.Get(ctx, keys.ClaimsPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return
	}
	held := map[string]bool{}
	for _, kv := range claims.Kvs {
		held[string(kv.Key)[len(keys.ClaimsPrefix):]] = true
	}
	// Job IDs sort by age: oldest first, read in batches, as far as there is room.
	_, err = w.Store.Walk(ctx, "", store.Ascending, store.DefaultBatch, func(j *converterv1.Job, _ int64) (bool, error) {
		if w.busy() >= w.Concurrency {
			return true, nil
		}
		id, _ := ID(j.GetName())
		if Terminal(j.GetState()) || held[id] {
			return false, nil
		}
		w.tryClaim(ctx, sess, id, j)
		return false, nil
	})
	if err != nil {
		w.Log.Warn("list jobs", "err", err)
	}
}

// tryClaim claims job id for this worker and runs it, unless the clouds it needs
// have no free slot (then the job records what it waits for).
func (w *Worker) tryClaim(ctx context.Context, sess *concurrency.Session, id string, j *converterv1.Job) {
	slots, waiting, err := w.takeSlots(ctx, id, j, sess.Lease())
	if err != nil {
		return
	}
	if waiting != "" {
		if j.GetWaiting() != waiting && j.GetState() == converterv1.JobState_JOB_STATE_QUEUED {
			_, _ = w.Store.Update(ctx, id, func(cur *converterv1.Job) (bool, error) {
				ok := cur.GetState() == converterv1.JobState_JOB_STATE_QUEUED && cur.GetWaiting() != waiting
				cur.Waiting = waiting
				return ok, nil
			})
		}
		return
	}
	claimed, ok, err := w.Store.Claim(ctx, id, w.Instance, sess.Lease())
	if err != nil || !ok {
		w.giveSlots(context.WithoutCancel(ctx), id, slots)
		return
	}
	w.mu.Lock()
	w.running[id] = true
	w.mu.Unlock()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer func() { w.mu.Lock(); delete(w.running, id); w.mu.Unlock() }()
		defer w.giveSlots(context.WithoutCancel(ctx), id, slots)
		w.run(ctx, id, claimed, sess)
	}()
}

func (w *Worker) run(ctx context.Context, id string, j *converterv1.Job, sess *concurrency.Session) {
	h := w.Store.Hold(id, w.Instance, sess.Lease())
	log := w.Log.With("job", j.GetName(), "attempt", j.GetAttempts())
	log.Info("job claimed", "step", j.GetStep().String())
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var cancelled atomic.Bool
	go func() { // a cancel request, or the session's end, stops the run
		wch := w.Etcd.Watch(runCtx, keys.Job(id))
		for {
			select {
			case <-runCtx.Done():
				return
			case <-sess.Done():
				stop()
				return
			case resp, ok := <-wch:
				if !ok {
					return
				}
				for _, ev := range resp.Events {
					if cur, err := w.Store.Decode(ev.Kv); err == nil && cur.GetCancelRequested() {
						cancelled.Store(true)
						stop()
					}
				}
			}
		}
	}()
	if j.GetCancelRequested() {
		cancelled.Store(true)
		stop()
	}
	var err error
	if !cancelled.Load() {
		w.follow(ctx, log, j, inventoryv1.WorkloadState_WORKLOAD_STATE_CONVERTING, "")
		err = w.Exec.Run(runCtx, j, h.Save)
	}
	switch {
	case errors.Is(err, ErrLostClaim):
		log.Warn("lost the job to another worker; stopping")
		return
	case err != nil && ctx.Err() != nil && !cancelled.Load():
		// This worker is shutting down: hand the job over as it stands.
		_ = h.Release(context.WithoutCancel(ctx))
		log.Info("job released at shutdown", "step", j.GetStep().String())
		return
	}
	end := context.WithoutCancel(ctx)
	if cancelled.Load() || err != nil {
		if cerr := w.Exec.Cleanup(end, j); cerr != nil {
			log.Error("cleanup after the job left something behind", "err", cerr)
			if err == nil {
				err = cerr
			}
		}
		j.State, j.Error = converterv1.JobState_JOB_STATE_FAILED, errText(err)
		if cancelled.Load() {
			j.State, j.Error = converterv1.JobState_JOB_STATE_CANCELLED, "cancelled on request; what the job made is deleted"
		}
	} else {
		j.State, j.Step = converterv1.JobState_JOB_STATE_SUCCEEDED, converterv1.JobStep_JOB_STEP_DONE
	}
	j.EndTime = timestamppb.Now()
	if serr := h.Save(end, j); serr != nil {
		log.Error("could not record the job's end", "err", serr)
		return
	}
	if j.GetSource().GetHoldForCutover() {
		_, _ = w.Etcd.Delete(end, keys.JobCutOver(id)) // the request is the job's record's now
	}
	switch j.GetState() {
	case converterv1.JobState_JOB_STATE_SUCCEEDED:
		w.follow(end, log, j, inventoryv1.WorkloadState_WORKLOAD_STATE_CUT_OVER, "")
	case converterv1.JobState_JOB_STATE_CANCELLED:
		w.follow(end, log, j, inventoryv1.WorkloadState_WORKLOAD_STATE_PLANNED, "")
	default:
		w.follow(end, log, j, inventoryv1.WorkloadState_WORKLOAD_STATE_FAILED, "conversion job "+j.GetName()+": "+j.GetError())
	}
	log.Info("job ended", "state", j.GetState().String(), "err", j.GetError())
}

// follow moves the job's workload to st (see followWorkload).
func (w *Worker) follow(ctx context.Context, log *slog.Logger, j *converterv1.Job, st inventoryv1.WorkloadState, reason string) {
	followWorkload(ctx, w.Inventory, log, j, st, reason)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
