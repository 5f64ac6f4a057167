package registry

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/idem"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/platform/store"
)

// Store defaults.
const (
	// DefaultRequestIDTTL is how long a create's request_id is remembered.
	DefaultRequestIDTTL = 24 * time.Hour
	// DefaultProgressInterval is how often an idle watch reports its revision.
	DefaultProgressInterval = 10 * time.Second
	// scanBatch is how many keys a filtered list reads from etcd at a time.
	scanBatch = store.DefaultBatch
)

// ReasonExists is the reason of a create whose workload ID is taken (the discovery
// branches on it).
const ReasonExists = "WORKLOAD_EXISTS"

type storeOptions struct {
	requestTTL       time.Duration
	progressInterval time.Duration
	now              func() time.Time
}

// StoreOption configures NewStore.
type StoreOption func(*storeOptions)

// WithRequestIDTTL sets how long request IDs are remembered (default 24 h).
func WithRequestIDTTL(d time.Duration) StoreOption { return func(o *storeOptions) { o.requestTTL = d } }

// WithProgressInterval sets how often an idle watch sends a PROGRESS event.
func WithProgressInterval(d time.Duration) StoreOption {
	return func(o *storeOptions) { o.progressInterval = d }
}

// Store keeps workloads in etcd (platform/store), one key each under
// keys.WorkloadsPrefix. A workload's etag is its key's ModRevision.
type Store struct {
	records *store.Store[*inventoryv1.Workload]
	c       *clientv3.Client
	opts    storeOptions
}

// NewStore returns a store on the etcd client c.
func NewStore(c *clientv3.Client, opts ...StoreOption) (*Store, error) {
	if c == nil {
		return nil, errors.New("registry.NewStore: etcd client is nil")
	}
	o := storeOptions{requestTTL: DefaultRequestIDTTL, progressInterval: DefaultProgressInterval, now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	records := store.New[*inventoryv1.Workload](c, keys.WorkloadsPrefix, "workloads", "workload")
	for _, ix := range indexes {
		records.Index(ix.name, ix.values)
	}
	return &Store{records: records, c: c, opts: o}, nil
}

// indexes are the workload attributes a filtered list reads through an index, in
// the order a list picks the first one its filter names: a wave or a role selects
// few workloads of many; a state (most are planned, or cut over) selects many.
var indexes = []struct {
	name   string
	values func(*inventoryv1.Workload) []string
	of     func(Filter) (string, bool)
}{
	{"wave", func(w *inventoryv1.Workload) []string { return []string{strconv.Itoa(int(w.GetWave()))} },
		func(f Filter) (string, bool) {
			if f.Wave == nil {
				return "", false
			}
			return strconv.Itoa(int(*f.Wave)), true
		}},
	{"role", func(w *inventoryv1.Workload) []string { return one(w.GetRole()) },
		func(f Filter) (string, bool) { return f.Role, f.Role != "" }},
	{"cloud", func(w *inventoryv1.Workload) []string { return one(w.GetInstance().GetCloud()) },
		func(f Filter) (string, bool) { return f.Cloud, f.Cloud != "" }},
	{"state", func(w *inventoryv1.Workload) []string { return []string{w.GetState().String()} },
		func(f Filter) (string, bool) { return f.State.String(), f.State != 0 }},
}

func one(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// Reindex makes the workload indexes whole (once per etcd: see store.Reindex);
// until it has run, filtered lists read every workload.
func (s *Store) Reindex(ctx context.Context) error { return s.records.Reindex(ctx) }

// FollowIndexes keeps the workload indexes' keys in memory until ctx ends, so that
// a filtered list reads its page in one round trip (store.FollowIndexes).
func (s *Store) FollowIndexes(ctx context.Context) { s.records.FollowIndexes(ctx) }

// etag parses an etag the request validation has checked ("" is 0: any).
func etag(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// Create stores a new workload under id (a new ID when empty). With a requestID,
// a repeat of the same request (same fingerprint) returns the workload the first one
// created; a different request with the same requestID is refused.
func (s *Store) Create(ctx context.Context, id string, w *inventoryv1.Workload, requestID, fingerprint string) (*inventoryv1.Workload, error) {
	now := s.opts.now()
	if id == "" {
		id = store.NewID("wl", now)
	}
	w = proto.CloneOf(w)
	w.Name = namePrefix + id
	if w.GetState() == inventoryv1.WorkloadState_WORKLOAD_STATE_UNSPECIFIED {
		w.State = inventoryv1.WorkloadState_WORKLOAD_STATE_DISCOVERED
	}
	switch w.GetSource().(type) {
	case *inventoryv1.Workload_Instance:
		w.Kind = inventoryv1.WorkloadKind_WORKLOAD_KIND_INSTANCE
	case *inventoryv1.Workload_Physical:
		w.Kind = inventoryv1.WorkloadKind_WORKLOAD_KIND_PHYSICAL
	}
	ts := timestamppb.New(now)
	w.CreateTime, w.UpdateTime, w.StateTime = ts, ts, ts
	req := idem.Request{Fingerprint: fingerprint, TTL: s.opts.requestTTL}
	if requestID != "" {
		req.Key = keys.Request(requestID)
	}
	return s.records.Create(ctx, id, w, req, requestID)
}

// Get returns the workload with the given ID.
func (s *Store) Get(ctx context.Context, id string) (*inventoryv1.Workload, error) {
	w, _, err := s.records.Get(ctx, id)
	return w, err
}

// Filter selects workloads in List. A zero Filter matches everything.
type Filter struct {
	Wave   *int32
	Role   string
	State  inventoryv1.WorkloadState
	Kind   inventoryv1.WorkloadKind
	Labels map[string]string
	// Vanished, when set, selects workloads that are (or are not) marked vanished.
	Vanished *bool
	// Cloud selects instances of one clouds.yaml entry.
	Cloud string
}

func (f Filter) empty() bool {
	return f.Wave == nil && f.Role == "" && f.State == 0 && f.Kind == 0 && len(f.Labels) == 0 && f.Vanished == nil && f.Cloud == ""
}

// Match reports whether w passes the filter.
func (f Filter) Match(w *inventoryv1.Workload) bool {
	if f.Wave != nil && w.GetWave() != *f.Wave {
		return false
	}
	if f.Role != "" && w.GetRole() != f.Role {
		return false
	}
	if f.State != 0 && w.GetState() != f.State {
		return false
	}
	if f.Kind != 0 && w.GetKind() != f.Kind {
		return false
	}
	if f.Vanished != nil && w.GetVanished() != *f.Vanished {
		return false
	}
	if f.Cloud != "" && w.GetInstance().GetCloud() != f.Cloud {
		return false
	}
	for k, v := range f.Labels {
		if got, ok := w.GetLabels()[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// List returns up to pageSize workloads matching f with IDs after the ID after, in ID
// order, read at one revision, and the ID to continue after ("" when no more remain).
func (s *Store) List(ctx context.Context, f Filter, after string, pageSize int) ([]*inventoryv1.Workload, string, error) {
	if f.empty() {
		return s.records.Page(ctx, after, store.Ascending, pageSize, nil)
	}
	for _, ix := range indexes {
		if v, ok := ix.of(f); ok {
			return s.records.PageBy(ctx, ix.name, v, after, pageSize, f.Match)
		}
	}
	return s.records.Page(ctx, after, store.Ascending, pageSize, f.Match)
}

// Scan calls fn for every workload, read at one revision (passed to fn), in ID
// order, and returns that revision.
func (s *Store) Scan(ctx context.Context, fn func(w *inventoryv1.Workload, rev int64) error) (int64, error) {
	return s.records.Walk(ctx, "", store.Ascending, scanBatch, func(w *inventoryv1.Workload, rev int64) (bool, error) {
		return false, fn(w, rev)
	})
}

// Update reads the workload, checks the etag when one is given, applies mutate to a
// copy and writes it back if it changed, in a compare-and-swap on the key's
// revision. Without an etag a lost race is retried on fresh data; with one it is
// refused with ABORTED. An update that changes nothing writes nothing and keeps the
// etag.
func (s *Store) Update(ctx context.Context, id, wantEtag string, mutate func(cur, next *inventoryv1.Workload) error) (*inventoryv1.Workload, error) {
	return s.records.Update(ctx, id, func(next *inventoryv1.Workload) (bool, error) {
		cur := proto.CloneOf(next)
		if err := mutate(cur, next); err != nil {
			return false, err
		}
		if proto.Equal(cur, next) {
			return false, nil
		}
		now := timestamppb.New(s.opts.now())
		next.UpdateTime = now
		if next.GetState() != cur.GetState() {
			next.StateTime = now
		}
		return true, nil
	}, store.IfEtag(etag(wantEtag)))
}

// Delete removes a workload; with an etag, only if it still has it.
func (s *Store) Delete(ctx context.Context, id, wantEtag string) error {
	return s.records.Delete(ctx, id, etag(wantEtag))
}

// Revision returns the store's current revision.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	resp, err := s.c.Get(ctx, keys.WorkloadsPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, apierr.Etcd("WatchWorkloads", err)
	}
	return resp.Header.Revision, nil
}

// Watch sends every change to the workloads from revision from (which must be 1 or
// more) to send until ctx is cancelled or send fails. While no workload changes it
// asks etcd for progress every progress interval and sends PROGRESS events, once the
// store's revision has moved past from (etcd confirms no progress before that). A
// compacted revision is refused with OUT_OF_RANGE; a watch that etcd ends on its own
// with UNAVAILABLE.
func (s *Store) Watch(ctx context.Context, from int64, send func(*inventoryv1.WatchWorkloadsResponse) error) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	ch := s.c.Watch(wctx, keys.WorkloadsPrefix, clientv3.WithPrefix(), clientv3.WithRev(from),
		clientv3.WithPrevKV(), clientv3.WithProgressNotify())
	tick := time.NewTicker(s.opts.progressInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			// Ask for a progress notification so an idle client learns how far it is.
			_ = s.c.RequestProgress(wctx)
		case resp, ok := <-ch:
			if !ok {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				// etcd ended the watch (client closing, member lost): say so, with
				// where to resume, rather than end the stream as if all were well.
				return apierr.New(codes.Unavailable, "WATCH_ENDED",
					"the etcd watch ended: reconnect with start_revision one past the last revision received")
			}
			if resp.CompactRevision != 0 {
				return apierr.New(codes.OutOfRange, "REVISION_COMPACTED",
					"revision %d is no longer kept (compacted up to %d): list again with include_existing and follow from there", from, resp.CompactRevision)
			}
			if err := resp.Err(); err != nil {
				return apierr.Etcd("WatchWorkloads", err)
			}
			if resp.IsProgressNotify() {
				if err := send(&inventoryv1.WatchWorkloadsResponse{
					Type: inventoryv1.WatchEventType_WATCH_EVENT_TYPE_PROGRESS, Revision: resp.Header.Revision,
				}); err != nil {
					return err
				}
				continue
			}
			for _, ev := range resp.Events {
				out, err := s.event(ev)
				if err != nil {
					return err
				}
				if err := send(out); err != nil {
					return err
				}
			}
		}
	}
}

// event converts one etcd event into a watch event.
func (s *Store) event(ev *clientv3.Event) (*inventoryv1.WatchWorkloadsResponse, error) {
	out := &inventoryv1.WatchWorkloadsResponse{Revision: ev.Kv.ModRevision}
	switch {
	case ev.Type == clientv3.EventTypeDelete:
		out.Type = inventoryv1.WatchEventType_WATCH_EVENT_TYPE_DELETED
		if ev.PrevKv != nil {
			w, err := s.records.Decode(ev.PrevKv)
			if err != nil {
				return nil, err
			}
			out.Workload = w
		} else {
			out.Workload = &inventoryv1.Workload{Name: namePrefix + strings.TrimPrefix(string(ev.Kv.Key), keys.WorkloadsPrefix)}
		}
	case ev.IsCreate():
		out.Type = inventoryv1.WatchEventType_WATCH_EVENT_TYPE_CREATED
	default:
		out.Type = inventoryv1.WatchEventType_WATCH_EVENT_TYPE_UPDATED
	}
	if out.Workload == nil {
		w, err := s.records.Decode(ev.Kv)
		if err != nil {
			return nil, err
		}
		out.Workload = w
	}
	return out, nil
}
