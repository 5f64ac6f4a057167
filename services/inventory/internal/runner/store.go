// Package runner moves whole waves: the WaveRunService API, the run records in
// etcd, and the engine that the elected runner drives them with.
package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sort"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/keys"
)

// Store keeps runs in etcd: one key a run, and one key a wave naming its live run.
type Store struct{ c *clientv3.Client }

// NewStore returns a Store on c.
func NewStore(c *clientv3.Client) *Store { return &Store{c: c} }

// RunID returns the ID in "runs/{id}".
func RunID(name string) (string, bool) {
	id, ok := strings.CutPrefix(name, "runs/")
	return id, ok && id != "" && !strings.Contains(id, "/")
}

func newRunID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Live reports whether a run has not ended.
func Live(st inventoryv1.RunState) bool {
	switch st {
	case inventoryv1.RunState_RUN_STATE_RUNNING, inventoryv1.RunState_RUN_STATE_PAUSED, inventoryv1.RunState_RUN_STATE_ABORTING:
		return true
	}
	return false
}

func etcdErr(op string, err error) error { return apierr.Etcd(op, err) }

func decode(b []byte, rev int64) (*inventoryv1.Run, error) {
	r := &inventoryv1.Run{}
	if err := proto.Unmarshal(b, r); err != nil {
		return nil, apierr.New(codes.Internal, "CORRUPT_RECORD", "run record: %v", err)
	}
	r.Etag = strconv.FormatInt(rev, 10)
	return r, nil
}

func encode(r *inventoryv1.Run) string {
	c := proto.Clone(r).(*inventoryv1.Run)
	c.Etag = ""
	b, _ := proto.Marshal(c)
	return string(b)
}

// Create records a new live run of its wave, unless the wave has one: then the
// live run is returned with exists set.
func (s *Store) Create(ctx context.Context, r *inventoryv1.Run) (run *inventoryv1.Run, exists bool, err error) {
	id := newRunID()
	r.Name = "runs/" + id
	now := timestamppb.Now()
	r.CreateTime, r.UpdateTime = now, now
	live := keys.LiveRun(r.GetWave())
	resp, err := s.c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(live), "=", 0)).
		Then(clientv3.OpPut(keys.Run(id), encode(r)), clientv3.OpPut(live, id)).
		Else(clientv3.OpGet(live)).
		Commit()
	if err != nil {
		return nil, false, etcdErr("CreateRun", err)
	}
	if resp.Succeeded {
		r.Etag = strconv.FormatInt(resp.Header.Revision, 10)
		return r, false, nil
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		return nil, false, apierr.New(codes.Aborted, "CONTENTION", "wave %d's live run changed meanwhile: retry", r.GetWave())
	}
	cur, _, err := s.Get(ctx, string(kvs[0].Value))
	if err != nil {
		return nil, false, err
	}
	return cur, true, nil
}

// Get reads one run and its revision.
func (s *Store) Get(ctx context.Context, id string) (*inventoryv1.Run, int64, error) {
	resp, err := s.c.Get(ctx, keys.Run(id))
	if err != nil {
		return nil, 0, etcdErr("GetRun", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, apierr.New(codes.NotFound, "RUN_NOT_FOUND", "no run %q", "runs/"+id)
	}
	r, err := decode(resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
	return r, resp.Kvs[0].ModRevision, err
}

// List reads every run, newest first.
func (s *Store) List(ctx context.Context) ([]*inventoryv1.Run, error) {
	resp, err := s.c.Get(ctx, keys.RunsPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, etcdErr("ListRuns", err)
	}
	var out []*inventoryv1.Run
	for _, kv := range resp.Kvs {
		r, err := decode(kv.Value, kv.ModRevision)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetCreateTime().AsTime().After(out[j].GetCreateTime().AsTime()) })
	return out, nil
}

// Update applies change to the stored run and writes it if nothing wrote it in
// between (compare-and-swap on its revision, retried), and if guard holds (the
// runner's leadership; nil for none). change returns false to write nothing. A run
// that ends gives its wave's live key up in the same transaction.
func (s *Store) Update(ctx context.Context, id string, guard []clientv3.Cmp, change func(*inventoryv1.Run) (bool, error)) (*inventoryv1.Run, error) {
	for range 20 {
		r, rev, err := s.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		wasLive := Live(r.GetState())
		ok, err := change(r)
		if err != nil || !ok {
			return r, err
		}
		r.UpdateTime = timestamppb.Now()
		ops := []clientv3.Op{clientv3.OpPut(keys.Run(id), encode(r))}
		if wasLive && !Live(r.GetState()) {
			if r.EndTime == nil {
				r.EndTime = r.UpdateTime
				ops[0] = clientv3.OpPut(keys.Run(id), encode(r))
			}
			ops = append(ops, clientv3.OpDelete(keys.LiveRun(r.GetWave())))
		}
		cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(keys.Run(id)), "=", rev)}, guard...)
		resp, err := s.c.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return nil, etcdErr("update run", err)
		}
		if resp.Succeeded {
			r.Etag = strconv.FormatInt(resp.Header.Revision, 10)
			return r, nil
		}
		if len(guard) > 0 {
			// Lost leadership, or the run changed: tell which.
			g, err := s.c.Txn(ctx).If(guard...).Commit()
			if err != nil {
				return nil, etcdErr("update run", err)
			}
			if !g.Succeeded {
				return nil, ErrNotLeader
			}
		}
	}
	return nil, apierr.New(codes.Aborted, "CONTENTION", "run %s kept changing: retry", id)
}

// ErrNotLeader is returned by a guarded write of a runner that no longer leads.
var ErrNotLeader = errors.New("runner: no longer the leader")
