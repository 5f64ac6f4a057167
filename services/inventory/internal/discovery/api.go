package discovery

import (
	"context"
	"sort"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/platform/locks"
)

func syncID(name string) (string, bool) {
	id, ok := strings.CutPrefix(name, "syncs/")
	return id, ok && id != "" && !strings.Contains(id, "/")
}

func decodeSync(b []byte) (*inventoryv1.Sync, error) {
	sy := &inventoryv1.Sync{}
	if err := proto.Unmarshal(b, sy); err != nil {
		return nil, apierr.Corrupt("a sync record is not a Sync: %v", err)
	}
	return sy, nil
}

// Get returns one sync. A sync recorded RUNNING whose cloud's sync lock nobody holds
// lost its instance (killed): it is recorded FAILED and returned so.
func (s *Syncer) Get(ctx context.Context, name string) (*inventoryv1.Sync, int64, error) {
	id, ok := syncID(name)
	if !ok {
		return nil, 0, apierr.InvalidArgument("name", "%q is not a sync name: use syncs/{sync_id}", name)
	}
	resp, err := s.etcd.Get(ctx, keys.Sync(id))
	if err != nil {
		return nil, 0, apierr.New(codes.Unavailable, "ETCD_UNAVAILABLE", "read sync: %v", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, apierr.New(codes.NotFound, "SYNC_NOT_FOUND", "no sync %q", name)
	}
	sy, err := decodeSync(resp.Kvs[0].Value)
	if err != nil {
		return nil, 0, err
	}
	sy, err = s.orphaned(ctx, sy, resp.Kvs[0].ModRevision)
	return sy, resp.Header.Revision, err
}

// orphaned marks a RUNNING sync FAILED when nobody holds its cloud's sync lock.
func (s *Syncer) orphaned(ctx context.Context, sy *inventoryv1.Sync, rev int64) (*inventoryv1.Sync, error) {
	if sy.GetState() != inventoryv1.SyncState_SYNC_STATE_RUNNING {
		return sy, nil
	}
	held, err := locks.Held(ctx, s.etcd, keys.SyncLock(sy.GetCloud()))
	if err != nil || held {
		return sy, nil
	}
	failed := proto.CloneOf(sy)
	failed.State = inventoryv1.SyncState_SYNC_STATE_FAILED
	failed.Error = "instance " + sy.GetInstance() + " stopped running this sync (its lock is gone); what it wrote stays: start another sync"
	failed.EndTime = timestamppb.New(s.now())
	failed.Phase = ""
	b, _ := proto.Marshal(failed)
	key := keys.Sync(sy.GetName()[len("syncs/"):])
	if _, err := s.etcd.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).Then(clientv3.OpPut(key, string(b))).Commit(); err != nil {
		return sy, nil
	}
	return failed, nil
}

// List returns the syncs of a cloud ("" for all), newest first.
func (s *Syncer) List(ctx context.Context, cloudName string) ([]*inventoryv1.Sync, error) {
	resp, err := s.etcd.Get(ctx, keys.SyncsPrefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
	if err != nil {
		return nil, apierr.New(codes.Unavailable, "ETCD_UNAVAILABLE", "list syncs: %v", err)
	}
	var out []*inventoryv1.Sync
	for _, kv := range resp.Kvs {
		sy, err := decodeSync(kv.Value)
		if err != nil {
			return nil, err
		}
		if cloudName == "" || sy.GetCloud() == cloudName {
			if sy, err = s.orphaned(ctx, sy, kv.ModRevision); err != nil {
				return nil, err
			}
			out = append(out, sy)
		}
	}
	return out, nil
}

func (s *Syncer) lastSucceeded(ctx context.Context, cloudName string) (*inventoryv1.Sync, error) {
	list, err := s.List(ctx, cloudName)
	if err != nil {
		return nil, err
	}
	for _, sy := range list {
		if sy.GetState() == inventoryv1.SyncState_SYNC_STATE_SUCCEEDED {
			return sy, nil
		}
	}
	return nil, nil
}

// Watch calls send with the sync now and after each change, until it has ended.
func (s *Syncer) Watch(ctx context.Context, name string, send func(*inventoryv1.Sync) error) error {
	sy, rev, err := s.Get(ctx, name)
	if err != nil {
		return err
	}
	if err := send(sy); err != nil || sy.GetState() != inventoryv1.SyncState_SYNC_STATE_RUNNING {
		return err
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	key := keys.Sync(sy.GetName()[len("syncs/"):])
	ch := s.etcd.Watch(wctx, key, clientv3.WithRev(rev+1))
	for {
		select {
		case <-s.stopping:
			return apierr.New(codes.Unavailable, "SHUTTING_DOWN", "this inventory instance is shutting down: watch %s again", name)
		case wr, ok := <-ch:
			if !ok {
				return ctx.Err()
			}
			if err := wr.Err(); err != nil {
				return apierr.New(codes.Unavailable, "ETCD_UNAVAILABLE", "watch sync: %v", err)
			}
			for _, ev := range wr.Events {
				next, err := decodeSync(ev.Kv.Value)
				if err != nil {
					return err
				}
				if err := send(next); err != nil || next.GetState() != inventoryv1.SyncState_SYNC_STATE_RUNNING {
					return err
				}
			}
		}
	}
}

// Networks returns a cloud's networks as its last sync stored them, by name.
func (s *Syncer) Networks(ctx context.Context, cloudName string) ([]*inventoryv1.Network, error) {
	resp, err := s.etcd.Get(ctx, keys.CloudNetworks(cloudName), clientv3.WithPrefix())
	if err != nil {
		return nil, apierr.New(codes.Unavailable, "ETCD_UNAVAILABLE", "list networks: %v", err)
	}
	out := make([]*inventoryv1.Network, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		n := &inventoryv1.Network{}
		if err := proto.Unmarshal(kv.Value, n); err != nil {
			return nil, apierr.Corrupt("a network record is not a Network: %v", err)
		}
		out = append(out, n)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].GetDisplayName() < out[b].GetDisplayName() })
	return out, nil
}
