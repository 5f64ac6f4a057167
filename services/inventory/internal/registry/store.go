package registry

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/idem"
	"github.com/hikkoshi/hikkoshi/platform/keys"
)

// Store defaults.
const (
	// DefaultRequestIDTTL is how long a create's request_id is remembered.
	DefaultRequestIDTTL = 24 * time.Hour
	// DefaultProgressInterval is how often an idle watch reports its revision.
	DefaultProgressInterval = 10 * time.Second
	// maxUpdateAttempts bounds the read-modify-write retries of an update without etag.
	maxUpdateAttempts = 16
	// scanBatch is how many keys a filtered list reads from etcd at a time.
	scanBatch = 512
)

// ErrCorrupt is returned when a stored value cannot be decoded.
var ErrCorrupt = errors.New("registry: stored workload cannot be decoded")

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

// Store keeps workloads in etcd, one key each under keys.WorkloadsPrefix. A
// workload's etag is its key's ModRevision.
type Store struct {
	c    *clientv3.Client
	opts storeOptions
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
	return &Store{c: c, opts: o}, nil
}

func etag(rev int64) string { return strconv.FormatInt(rev, 10) }

// decode returns the workload stored in kv, with its etag.
func decode(kv *mvccpb.KeyValue) (*inventoryv1.Workload, error) {
	w := &inventoryv1.Workload{}
	if err := proto.Unmarshal(kv.Value, w); err != nil {
		return nil, fmt.Errorf("%w: key %s: %w", ErrCorrupt, kv.Key, err)
	}
	w.Etag = etag(kv.ModRevision)
	return w, nil
}

// encode returns the stored form of w: everything but the etag.
func encode(w *inventoryv1.Workload) (string, error) {
	c := proto.CloneOf(w)
	c.Etag = ""
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("registry.encode: %w", err)
	}
	return string(b), nil
}

func notFound(id string) error {
	return apierr.New(codes.NotFound, "WORKLOAD_NOT_FOUND", "workload %q not found", namePrefix+id)
}

func etagMismatch(id, want string, have int64) error {
	return apierr.New(codes.Aborted, "ETAG_MISMATCH",
		"workload %q changed since it was read (etag %s, now %d): read it again and retry", namePrefix+id, want, have)
}

// etcdErr maps an etcd client error to a gRPC status error.
func etcdErr(op string, err error) error {
	if errors.Is(err, ErrCorrupt) {
		return apierr.New(codes.DataLoss, "CORRUPT", "%s: %v", op, err)
	}
	return apierr.Etcd(op, err)
}

// newID returns a server-chosen workload ID.
func newID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "wl-" + string(b)
}

// Create stores a new workload under id (a new ID when empty). With a requestID,
// a repeat of the same request (same fingerprint) returns the workload the first one
// created; a different request with the same requestID is refused.
func (s *Store) Create(ctx context.Context, id string, w *inventoryv1.Workload, requestID, fingerprint string) (*inventoryv1.Workload, error) {
	if id == "" {
		id = newID()
	}
	now := timestamppb.New(s.opts.now())
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
	w.CreateTime, w.UpdateTime, w.StateTime = now, now, now
	val, err := encode(w)
	if err != nil {
		return nil, apierr.New(codes.Internal, "ENCODE", "%v", err)
	}

	req := idem.Request{Fingerprint: fingerprint, TTL: s.opts.requestTTL}
	if requestID != "" {
		req.Key = keys.Request(requestID)
	}
	r, err := idem.Create(ctx, s.c, keys.Workload(id), val, id, req)
	switch {
	case errors.Is(err, idem.ErrOtherRequest):
		return nil, apierr.InvalidArgument("request_id",
			"%q was already used for a different request: use a new request_id for a new request", requestID)
	case errors.Is(err, idem.ErrCorruptRecord):
		return nil, etcdErr("CreateWorkload", fmt.Errorf("%w: %w", ErrCorrupt, err))
	case errors.Is(err, idem.ErrExists):
		return nil, apierr.New(codes.AlreadyExists, "WORKLOAD_EXISTS",
			"workload %q already exists: pick another workload_id, or update the existing one", namePrefix+id)
	case err != nil:
		return nil, etcdErr("CreateWorkload", err)
	case r.Created:
		w.Etag = etag(r.Revision)
		return w, nil
	}
	got, err := s.Get(ctx, r.Existing)
	if status := apierr.Reason(err); status == "WORKLOAD_NOT_FOUND" {
		return nil, apierr.New(codes.NotFound, "WORKLOAD_NOT_FOUND",
			"request_id %q created workload %q, which has since been deleted", requestID, namePrefix+r.Existing)
	}
	return got, err
}

// Get returns the workload with the given ID.
func (s *Store) Get(ctx context.Context, id string) (*inventoryv1.Workload, error) {
	resp, err := s.c.Get(ctx, keys.Workload(id))
	if err != nil {
		return nil, etcdErr("GetWorkload", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, notFound(id)
	}
	w, err := decode(resp.Kvs[0])
	return w, etcdErr("GetWorkload", err)
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

// walk reads the workloads with IDs after the ID after (all of them when ""), in ID
// order, batch keys at a time, every batch at the revision of the first, and calls fn
// with each workload and that revision until fn says stop. It returns the revision.
func (s *Store) walk(ctx context.Context, op, after string, batch int64, fn func(w *inventoryv1.Workload, rev int64) (stop bool, err error)) (int64, error) {
	start := keys.WorkloadsPrefix
	if after != "" {
		start = keys.Workload(after) + "\x00"
	}
	end := clientv3.GetPrefixRangeEnd(keys.WorkloadsPrefix)
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(batch)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.c.Get(ctx, start, opts...)
		if err != nil {
			return 0, etcdErr(op, err)
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			w, err := decode(kv)
			if err != nil {
				return 0, etcdErr(op, err)
			}
			if stop, err := fn(w, rev); stop || err != nil {
				return rev, err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// List returns up to pageSize workloads matching f with IDs after the ID after, in ID
// order, read at one revision, and the ID to continue after ("" when no more remain).
func (s *Store) List(ctx context.Context, f Filter, after string, pageSize int) ([]*inventoryv1.Workload, string, error) {
	batch := int64(pageSize + 1)
	if !f.empty() {
		batch = max(batch, scanBatch)
	}
	var (
		out  []*inventoryv1.Workload
		next string
	)
	_, err := s.walk(ctx, "ListWorkloads", after, batch, func(w *inventoryv1.Workload, _ int64) (bool, error) {
		if !f.Match(w) {
			return false, nil
		}
		if len(out) == pageSize {
			// A further match exists: the page is full and continues after its last.
			next, _ = parseName(out[len(out)-1].GetName())
			return true, nil
		}
		out = append(out, w)
		return false, nil
	})
	if err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// Scan calls fn for every workload, read at one revision (passed to fn), in ID
// order, and returns that revision.
func (s *Store) Scan(ctx context.Context, fn func(w *inventoryv1.Workload, rev int64) error) (int64, error) {
	return s.walk(ctx, "scan", "", scanBatch, func(w *inventoryv1.Workload, rev int64) (bool, error) {
		return false, fn(w, rev)
	})
}

// Update reads the workload, checks the etag when one is given, applies mutate to a
// copy and writes it back if it changed, in a compare-and-swap on the key's
// revision. Without an etag a lost race is retried on fresh data; with one it is
// refused with ABORTED. An update that changes nothing writes nothing and keeps the
// etag.
func (s *Store) Update(ctx context.Context, id, wantEtag string, mutate func(cur, next *inventoryv1.Workload) error) (*inventoryv1.Workload, error) {
	key := keys.Workload(id)
	for range maxUpdateAttempts {
		resp, err := s.c.Get(ctx, key)
		if err != nil {
			return nil, etcdErr("UpdateWorkload", err)
		}
		if len(resp.Kvs) == 0 {
			return nil, notFound(id)
		}
		kv := resp.Kvs[0]
		if wantEtag != "" && wantEtag != etag(kv.ModRevision) {
			return nil, etagMismatch(id, wantEtag, kv.ModRevision)
		}
		cur, err := decode(kv)
		if err != nil {
			return nil, etcdErr("UpdateWorkload", err)
		}
		next := proto.CloneOf(cur)
		if err := mutate(cur, next); err != nil {
			return nil, err
		}
		if proto.Equal(cur, next) {
			return cur, nil
		}
		now := timestamppb.New(s.opts.now())
		next.UpdateTime = now
		if next.GetState() != cur.GetState() {
			next.StateTime = now
		}
		val, err := encode(next)
		if err != nil {
			return nil, apierr.New(codes.Internal, "ENCODE", "%v", err)
		}
		tresp, err := s.c.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
			Then(clientv3.OpPut(key, val)).
			Commit()
		if err != nil {
			return nil, etcdErr("UpdateWorkload", err)
		}
		if tresp.Succeeded {
			next.Etag = etag(tresp.Header.Revision)
			return next, nil
		}
		if wantEtag != "" {
			return nil, apierr.New(codes.Aborted, "ETAG_MISMATCH",
				"workload %q changed while it was being updated (etag %s is stale): read it again and retry", namePrefix+id, wantEtag)
		}
	}
	return nil, apierr.New(codes.Aborted, "CONTENTION",
		"workload %q kept changing under this update (%d attempts): retry", namePrefix+id, maxUpdateAttempts)
}

// Delete removes a workload; with an etag, only if it still has it.
func (s *Store) Delete(ctx context.Context, id, wantEtag string) error {
	key := keys.Workload(id)
	cmp := clientv3.Compare(clientv3.CreateRevision(key), ">", 0)
	if wantEtag != "" {
		rev, _ := strconv.ParseInt(wantEtag, 10, 64) // validated before
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", rev)
	}
	resp, err := s.c.Txn(ctx).If(cmp).Then(clientv3.OpDelete(key)).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return etcdErr("DeleteWorkload", err)
	}
	if resp.Succeeded {
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		return notFound(id)
	}
	return etagMismatch(id, wantEtag, kvs[0].ModRevision)
}

// Revision returns the store's current revision.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	resp, err := s.c.Get(ctx, keys.WorkloadsPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, etcdErr("WatchWorkloads", err)
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
				return etcdErr("WatchWorkloads", err)
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
				out, err := event(ev)
				if err != nil {
					return etcdErr("WatchWorkloads", err)
				}
				if err := send(out); err != nil {
					return err
				}
			}
		}
	}
}

// event converts one etcd event into a watch event.
func event(ev *clientv3.Event) (*inventoryv1.WatchWorkloadsResponse, error) {
	out := &inventoryv1.WatchWorkloadsResponse{Revision: ev.Kv.ModRevision}
	switch {
	case ev.Type == clientv3.EventTypeDelete:
		out.Type = inventoryv1.WatchEventType_WATCH_EVENT_TYPE_DELETED
		if ev.PrevKv != nil {
			w, err := decode(ev.PrevKv)
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
		w, err := decode(ev.Kv)
		if err != nil {
			return nil, err
		}
		out.Workload = w
	}
	return out, nil
}
