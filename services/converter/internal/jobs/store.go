// Package jobs keeps conversion jobs in etcd and runs them on workers: a worker
// claims a job with a key under its lease, writes the job only while it holds that
// claim (every write is conditional on it), and when it dies its lease — and so its
// claim — expires, and another worker takes the job over from its last recorded step.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/idem"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/platform/store"
)

// RequestTTL is how long a CreateJob's request_id is remembered.
const RequestTTL = 24 * time.Hour

// ErrLostClaim is a write refused because the worker no longer holds the job.
var ErrLostClaim = errors.New("jobs: this worker no longer holds the job (its lease ended or the job was taken over)")

// Store keeps jobs in etcd (platform/store), and their claims beside them.
type Store struct {
	*store.Store[*converterv1.Job]
}

// NewStore returns a Store on c.
func NewStore(c *clientv3.Client) *Store {
	return &Store{store.New[*converterv1.Job](c, keys.JobsPrefix, "jobs", "job")}
}

// ID returns the job ID of a name "jobs/{id}".
func ID(name string) (string, bool) { return store.NameID("jobs", name) }

// Create queues a job. With a requestID, a repeat of the same request (same
// fingerprint) returns the job the first one created.
func (s *Store) Create(ctx context.Context, j *converterv1.Job, requestID, fingerprint string) (*converterv1.Job, error) {
	now := time.Now()
	j = proto.CloneOf(j)
	id := store.NewID("job", now)
	j.Name, j.State, j.Step = s.Name(id), converterv1.JobState_JOB_STATE_QUEUED, converterv1.JobStep_JOB_STEP_UNSPECIFIED
	j.CreateTime, j.UpdateTime = timestamppb.New(now), timestamppb.New(now)
	req := idem.Request{Fingerprint: fingerprint, TTL: RequestTTL}
	if requestID != "" {
		req.Key = keys.JobRequest(requestID)
	}
	return s.Store.Create(ctx, id, j, req, requestID)
}

// Page reads jobs newest first — those older than the job afterID ("" from the
// newest) — from etcd in batches, and returns the first size that keep accepts;
// more says whether another one may follow. A page reads only as far as it must,
// never every job.
func (s *Store) Page(ctx context.Context, afterID string, size int, keep func(*converterv1.Job) bool) (jobs []*converterv1.Job, more bool, err error) {
	jobs, next, err := s.Store.Page(ctx, afterID, store.Descending, size, keep)
	return jobs, next != "", err
}

// Terminal reports whether a job has ended.
func Terminal(st converterv1.JobState) bool {
	switch st {
	case converterv1.JobState_JOB_STATE_SUCCEEDED, converterv1.JobState_JOB_STATE_FAILED, converterv1.JobState_JOB_STATE_CANCELLED,
		converterv1.JobState_JOB_STATE_REVERTED:
		return true
	}
	return false
}

// Claim makes worker the holder of job id under lease, if nobody holds it and it
// has not ended. It returns the job as claimed (RUNNING, attempts + 1).
func (s *Store) Claim(ctx context.Context, id, worker string, lease clientv3.LeaseID) (*converterv1.Job, bool, error) {
	j, rev, err := s.Get(ctx, id)
	if err != nil || Terminal(j.GetState()) {
		return nil, false, err
	}
	j.State, j.Worker, j.Attempts, j.UpdateTime = converterv1.JobState_JOB_STATE_RUNNING, worker, j.GetAttempts()+1, timestamppb.Now()
	j.Waiting = ""
	val, err := s.Encode(j)
	if err != nil {
		return nil, false, err
	}
	ck := keys.Claim(id)
	resp, err := s.Client().Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(ck), "=", 0), clientv3.Compare(clientv3.ModRevision(keys.Job(id)), "=", rev)).
		Then(clientv3.OpPut(ck, worker, clientv3.WithLease(lease)), clientv3.OpPut(keys.Job(id), string(val))).
		Commit()
	if err != nil {
		return nil, false, apierr.Etcd("claim job", err)
	}
	return j, resp.Succeeded, nil
}

// Holder writes a claimed job, only while its worker holds the claim.
type Holder struct {
	s      *Store
	id     string
	worker string
	lease  clientv3.LeaseID
}

// Hold returns the writer of a job worker has claimed under lease.
func (s *Store) Hold(id, worker string, lease clientv3.LeaseID) *Holder {
	return &Holder{s: s, id: id, worker: worker, lease: lease}
}

func (h *Holder) held() []clientv3.Cmp {
	ck := keys.Claim(h.id)
	return []clientv3.Cmp{clientv3.Compare(clientv3.Value(ck), "=", h.worker), clientv3.Compare(clientv3.LeaseValue(ck), "=", h.lease)}
}

// Save writes j, and releases the claim when the job has ended.
func (h *Holder) Save(ctx context.Context, j *converterv1.Job) error {
	j.UpdateTime = timestamppb.Now()
	val, err := h.s.Encode(j)
	if err != nil {
		return err
	}
	ops := []clientv3.Op{clientv3.OpPut(keys.Job(h.id), val)}
	if Terminal(j.GetState()) {
		ops = append(ops, clientv3.OpDelete(keys.Claim(h.id)))
	}
	resp, err := h.s.Client().Txn(ctx).If(h.held()...).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("jobs: save job %s: %w", h.id, err)
	}
	if !resp.Succeeded {
		return ErrLostClaim
	}
	return nil
}

// Release gives the job up without ending it (the worker is shutting down): another
// worker takes it over at once instead of after the lease's TTL.
func (h *Holder) Release(ctx context.Context) error {
	_, err := h.s.Client().Txn(ctx).If(h.held()...).Then(clientv3.OpDelete(keys.Claim(h.id))).Commit()
	return err
}

// Current reads the job as stored (to see a cancel request).
func (h *Holder) Current(ctx context.Context) (*converterv1.Job, error) {
	j, _, err := h.s.Get(ctx, h.id)
	return j, err
}

// RequestCancel marks a job cancelled-on-request: a queued job that nobody holds
// is ended at once (it has made nothing yet); a running one is ended by its worker,
// which deletes what it made first.
func (s *Store) RequestCancel(ctx context.Context, id string) (*converterv1.Job, error) {
	for range 10 {
		j, rev, err := s.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if Terminal(j.GetState()) {
			return nil, apierr.New(codes.FailedPrecondition, ReasonJobEnded, "job %s has already ended (%s)", j.GetName(), j.GetState())
		}
		j.CancelRequested = true
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(keys.Job(id)), "=", rev)}
		if j.GetState() == converterv1.JobState_JOB_STATE_QUEUED && j.GetCreated() == nil {
			j.State, j.EndTime, j.Error = converterv1.JobState_JOB_STATE_CANCELLED, timestamppb.Now(), "cancelled before any worker took it"
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(keys.Claim(id)), "=", 0))
		}
		j.UpdateTime = timestamppb.Now()
		val, err := s.Encode(j)
		if err != nil {
			return nil, err
		}
		resp, err := s.Client().Txn(ctx).If(cmps...).Then(clientv3.OpPut(keys.Job(id), val)).Commit()
		if err != nil {
			return nil, apierr.Etcd("CancelJob", err)
		}
		if resp.Succeeded {
			return j, nil
		}
	}
	return nil, apierr.New(codes.Aborted, store.ReasonContention, "job %s kept changing: retry the cancel", id)
}

// Update applies change to the stored job and writes it if the job did not change
// in between (compare-and-swap on its revision, retried). change returns false to
// write nothing. It is for what the API or a worker without the claim records
// (a decommission, why a queued job waits); a claimed job is written by its holder.
func (s *Store) Update(ctx context.Context, id string, change func(*converterv1.Job) (bool, error)) (*converterv1.Job, error) {
	return s.Store.Update(ctx, id, func(j *converterv1.Job) (bool, error) {
		ok, err := change(j)
		if ok && err == nil {
			j.UpdateTime = timestamppb.Now()
		}
		return ok, err
	})
}

// Reasons of the converter's errors that callers branch on.
const (
	ReasonJobEnded = "JOB_ENDED"
)
