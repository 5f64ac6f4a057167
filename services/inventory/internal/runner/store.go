// Package runner moves whole waves: the WaveRunService API, the run records in
// etcd, and the engine that the elected runner drives them with.
package runner

import (
	"context"
	"errors"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/platform/store"
)

// Store keeps runs in etcd (platform/store): one key a run, and one key a wave
// naming its live run.
type Store struct {
	*store.Store[*inventoryv1.Run]
}

// NewStore returns a Store on c.
func NewStore(c *clientv3.Client) *Store {
	return &Store{store.New[*inventoryv1.Run](c, keys.RunsPrefix, "runs", "run")}
}

// RunID returns the ID in "runs/{id}".
func RunID(name string) (string, bool) { return store.NameID("runs", name) }

// Live reports whether a run has not ended.
func Live(st inventoryv1.RunState) bool {
	switch st {
	case inventoryv1.RunState_RUN_STATE_RUNNING, inventoryv1.RunState_RUN_STATE_PAUSED, inventoryv1.RunState_RUN_STATE_ABORTING:
		return true
	}
	return false
}

// Create records a new live run of its wave, unless the wave has one: then the
// live run is returned with exists set.
func (s *Store) Create(ctx context.Context, r *inventoryv1.Run) (run *inventoryv1.Run, exists bool, err error) {
	now := time.Now()
	id := store.NewID("run", now)
	r.Name = s.Name(id)
	r.CreateTime, r.UpdateTime = timestamppb.New(now), timestamppb.New(now)
	val, err := s.Encode(r)
	if err != nil {
		return nil, false, err
	}
	live := keys.LiveRun(r.GetWave())
	resp, err := s.Client().Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(live), "=", 0)).
		Then(clientv3.OpPut(s.Key(id), val), clientv3.OpPut(live, id)).
		Else(clientv3.OpGet(live)).
		Commit()
	if err != nil {
		return nil, false, apierr.Etcd("CreateRun", err)
	}
	if resp.Succeeded {
		r.Etag = strconv.FormatInt(resp.Header.Revision, 10)
		return r, false, nil
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		return nil, false, apierr.New(codes.Aborted, store.ReasonContention, "wave %d's live run changed meanwhile: retry", r.GetWave())
	}
	cur, _, err := s.Get(ctx, string(kvs[0].Value))
	if err != nil {
		return nil, false, err
	}
	return cur, true, nil
}

// Update applies change to the stored run and writes it if nothing wrote it in
// between (compare-and-swap on its revision, retried), and if guard holds (the
// runner's leadership; nil for none). change returns false to write nothing. A run
// that ends gives its wave's live key up in the same transaction.
func (s *Store) Update(ctx context.Context, id string, guard []clientv3.Cmp, change func(*inventoryv1.Run) (bool, error)) (*inventoryv1.Run, error) {
	var ended bool
	opts := []store.UpdateOption{store.AlsoOps(func(r *inventoryv1.Run) []clientv3.Op {
		if ended {
			return []clientv3.Op{clientv3.OpDelete(keys.LiveRun(r.GetWave()))}
		}
		return nil
	})}
	if len(guard) > 0 {
		opts = append(opts, store.Guard(ErrNotLeader, guard...))
	}
	return s.Store.Update(ctx, id, func(r *inventoryv1.Run) (bool, error) {
		wasLive := Live(r.GetState())
		ok, err := change(r)
		if err != nil || !ok {
			return ok, err
		}
		r.UpdateTime = timestamppb.Now()
		ended = wasLive && !Live(r.GetState())
		if ended && r.EndTime == nil {
			r.EndTime = r.UpdateTime
		}
		return true, nil
	}, opts...)
}

// ErrNotLeader is returned by a guarded write of a runner that no longer leads.
var ErrNotLeader = errors.New("runner: no longer the leader")
