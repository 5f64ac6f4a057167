package store

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/poll"
)

// hints is this process's copy of the index keys, kept by a watch (FollowIndexes):
// which IDs an index value lists, as far as the watch has told. It is never an
// answer, only a guess of which records a page will need. PageBy reads an index's
// page from etcd and, in the same transaction, the records the hints name for it;
// what the index's own keys say decides the page, and a record the guess missed
// is read in a second transaction at the same revision. A lagging watch costs that
// second read, never a stale or wrong page: every byte of a page still comes from
// one linearizable read of etcd.
type hints struct {
	mu    sync.RWMutex
	ready bool
	ids   map[string][]string // index prefix ("…-index/{name}/{value}/") → sorted IDs
}

// split cuts an index key into its index prefix and record ID.
func splitIndexKey(key string) (pfx, id string, ok bool) {
	i := strings.LastIndexByte(key, '/')
	if i < 0 || i == len(key)-1 {
		return "", "", false
	}
	return key[:i+1], key[i+1:], true
}

func (h *hints) reset(ids map[string][]string) {
	h.mu.Lock()
	h.ids, h.ready = ids, ids != nil
	h.mu.Unlock()
}

func (h *hints) apply(events []*clientv3.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ev := range events {
		pfx, id, ok := splitIndexKey(string(ev.Kv.Key))
		if !ok {
			continue
		}
		list := h.ids[pfx]
		i, found := slices.BinarySearch(list, id)
		switch {
		case ev.Type == clientv3.EventTypePut && !found:
			h.ids[pfx] = slices.Insert(list, i, id)
		case ev.Type == clientv3.EventTypeDelete && found:
			if list = slices.Delete(list, i, i+1); len(list) == 0 {
				delete(h.ids, pfx)
			} else {
				h.ids[pfx] = list
			}
		}
	}
}

// next returns up to n IDs listed under pfx after the ID after ("" for the first),
// and whether the hints are being kept at all.
func (h *hints) next(pfx, after string, n int) ([]string, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if !h.ready {
		return nil, false
	}
	list := h.ids[pfx]
	i, found := slices.BinarySearch(list, after)
	if found {
		i++
	}
	return slices.Clone(list[i:min(len(list), i+n)]), true
}

// FollowIndexes keeps, until ctx ends, an in-memory copy of the store's index keys
// (IDs only, never records), fed by a watch, so that PageBy reads a filtered page
// in one round trip to etcd instead of two (see hints). It reloads after the
// watch breaks (compaction, a lost leader) and is harmless to stop: PageBy then
// reads as without it. It returns when ctx ends.
func (s *Store[T]) FollowIndexes(ctx context.Context) {
	if len(s.indexes) == 0 {
		return
	}
	root := s.indexRoot()
	wait := poll.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Factor: 2, Jitter: 0.2}
	for failures := 0; ctx.Err() == nil; {
		ids, rev, err := s.loadIndexKeys(ctx, root)
		if err != nil {
			if poll.Sleep(ctx, wait.Pause(failures)) != nil {
				break
			}
			failures++
			continue
		}
		began := time.Now()
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.c.Watch(wctx, root, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		s.hints.reset(ids)
		for wr := range wch {
			if wr.Err() != nil || wr.Canceled {
				break
			}
			s.hints.apply(wr.Events)
		}
		cancel()
		s.hints.reset(nil)
		// A watch that keeps breaking at once (no leader) is not reloaded in a
		// tight loop.
		if time.Since(began) > time.Minute {
			failures = 0
		}
		if poll.Sleep(ctx, wait.Pause(failures)) != nil {
			break
		}
		failures++
	}
	s.hints.reset(nil)
}

// loadIndexKeys reads every index key at one revision, in pages.
func (s *Store[T]) loadIndexKeys(ctx context.Context, root string) (map[string][]string, int64, error) {
	ids := map[string][]string{}
	start, end := root, clientv3.GetPrefixRangeEnd(root)
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(10000), clientv3.WithKeysOnly()}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.c.Get(ctx, start, opts...)
		if err != nil {
			return nil, 0, apierr.Etcd("read the "+s.noun+" indexes", err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			if pfx, id, ok := splitIndexKey(string(kv.Key)); ok {
				ids[pfx] = append(ids[pfx], id) // keys come sorted, so do the IDs of a prefix
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return ids, rev, nil
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
