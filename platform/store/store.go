// Package store keeps one kind of protobuf record in etcd, one key per record under
// a prefix: the workloads, jobs, bridges and runs of the services. It is the one place
// where a record is read, written under compare-and-swap, paged in etcd (never read
// whole to page in memory) and where etcd's errors become gRPC statuses (through
// apierr.Etcd), so that every service answers the same way:
//
//   - a record that is not found is NOT_FOUND with reason {NOUN}_NOT_FOUND;
//   - a record that cannot be decoded is DATA_LOSS with reason CORRUPT_RECORD;
//   - a stale etag is ABORTED with reason ETAG_MISMATCH; a record that kept changing
//     under an update is ABORTED with reason CONTENTION;
//   - a client's cancel is CANCELLED, a request etcd cannot take INVALID_ARGUMENT, an
//     unreachable etcd UNAVAILABLE (apierr.Etcd).
//
// A record whose message has a string field "etag" carries its key's ModRevision
// there when read; the etag is never stored.
package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/idem"
)

// Reasons every store gives (besides {NOUN}_NOT_FOUND and {NOUN}_EXISTS).
const (
	ReasonCorrupt      = apierr.ReasonCorrupt
	ReasonEtagMismatch = "ETAG_MISMATCH"
	ReasonContention   = "CONTENTION"
)

// maxAttempts bounds an update's read-modify-write retries.
const maxAttempts = 16

// Store keeps records of type T under one etcd prefix.
type Store[T proto.Message] struct {
	c          *clientv3.Client
	prefix     string
	collection string
	noun       string
	reason     string
	etag       protoreflect.FieldDescriptor
	indexes    []index[T]
	indexed    atomic.Bool // the indexes are whole (Reindex)
	hints      hints       // the index keys as a watch saw them (FollowIndexes)
}

// New returns the store of T's records on c: record id lives at prefix+id, and is
// called collection+"/"+id in the API (its name) and noun in messages ("job").
func New[T proto.Message](c *clientv3.Client, prefix, collection, noun string) *Store[T] {
	var zero T
	s := &Store[T]{c: c, prefix: prefix, collection: collection, noun: noun,
		reason: strings.ToUpper(strings.ReplaceAll(noun, " ", "_"))}
	if f := zero.ProtoReflect().Descriptor().Fields().ByName("etag"); f != nil && f.Kind() == protoreflect.StringKind {
		s.etag = f
	}
	return s
}

// Client is the store's etcd client, for transactions a service adds its own keys to.
func (s *Store[T]) Client() *clientv3.Client { return s.c }

// Key is the etcd key of record id.
func (s *Store[T]) Key(id string) string { return s.prefix + id }

// Name is the API name of record id: "jobs/{id}".
func (s *Store[T]) Name(id string) string { return s.collection + "/" + id }

// ID returns the ID in an API name "{collection}/{id}".
func (s *Store[T]) ID(name string) (string, bool) { return NameID(s.collection, name) }

// NameID returns the ID in an API name "{collection}/{id}": one path segment, not
// empty.
func NameID(collection, name string) (string, bool) {
	id, ok := strings.CutPrefix(name, collection+"/")
	return id, ok && id != "" && !strings.Contains(id, "/")
}

// NotFound is the NOT_FOUND error of record id.
func (s *Store[T]) NotFound(id string) error {
	return apierr.New(codes.NotFound, s.reason+"_NOT_FOUND", "no %s %q", s.noun, s.Name(id))
}

// NewID returns a server-chosen ID: kind, the UTC time to the second and six random
// hex digits ("job-20261207t103000z-3fa9c1"), so that IDs of one kind sort by age.
func NewID(kind string, now time.Time) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%s-%x", kind, now.UTC().Format("20060102t150405z"), b)
}

func (s *Store[T]) setEtag(v T, rev int64) {
	if s.etag != nil {
		v.ProtoReflect().Set(s.etag, protoreflect.ValueOfString(strconv.FormatInt(rev, 10)))
	}
}

// Decode reads the record in kv, its etag set. A value that is not a T is DATA_LOSS.
func (s *Store[T]) Decode(kv *mvccpb.KeyValue) (T, error) {
	v := s.new()
	if err := proto.Unmarshal(kv.Value, v); err != nil {
		var zero T
		return zero, apierr.Corrupt("the %s record at %s cannot be read: %v", s.noun, kv.Key, err)
	}
	s.setEtag(v, kv.ModRevision)
	return v, nil
}

func (s *Store[T]) new() T {
	var zero T
	return zero.ProtoReflect().New().Interface().(T)
}

// Encode is the stored form of v: everything but its etag, deterministically.
func (s *Store[T]) Encode(v T) (string, error) {
	if s.etag != nil {
		c := proto.Clone(v)
		c.ProtoReflect().Clear(s.etag)
		v = c.(T)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(v)
	if err != nil {
		return "", apierr.New(codes.Internal, "ENCODE", "the %s cannot be encoded: %v", s.noun, err)
	}
	return string(b), nil
}

// Get reads record id and its revision.
func (s *Store[T]) Get(ctx context.Context, id string) (T, int64, error) {
	var zero T
	resp, err := s.c.Get(ctx, s.Key(id))
	if err != nil {
		return zero, 0, apierr.Etcd("get "+s.noun, err)
	}
	if len(resp.Kvs) == 0 {
		return zero, 0, s.NotFound(id)
	}
	v, err := s.Decode(resp.Kvs[0])
	return v, resp.Kvs[0].ModRevision, err
}

// Create stores v as record id, which must not exist (ALREADY_EXISTS, reason
// {NOUN}_EXISTS). With req.Key set, a repeat of the same request (same fingerprint)
// returns the record the first one made; a different request with the same key is
// INVALID_ARGUMENT at request_id.
func (s *Store[T]) Create(ctx context.Context, id string, v T, req idem.Request, requestID string) (T, error) {
	var zero T
	val, err := s.Encode(v)
	if err != nil {
		return zero, err
	}
	var also []clientv3.Op
	for _, k := range s.indexKeys(id, v) {
		also = append(also, clientv3.OpPut(k, ""))
	}
	r, err := idem.Create(ctx, s.c, s.Key(id), val, id, req, also...)
	switch {
	case errors.Is(err, idem.ErrOtherRequest):
		return zero, apierr.InvalidArgument("request_id", "%q was already used for a different request: use a new request_id for a new request", requestID)
	case errors.Is(err, idem.ErrCorruptRecord):
		return zero, apierr.Corrupt("the record of request_id %q cannot be read: %v", requestID, err)
	case errors.Is(err, idem.ErrExists):
		return zero, apierr.New(codes.AlreadyExists, s.reason+"_EXISTS", "%s %q already exists: choose another ID, or update the existing one", s.noun, s.Name(id))
	case err != nil:
		return zero, apierr.Etcd("create "+s.noun, err)
	case r.Created:
		v = proto.Clone(v).(T)
		s.setEtag(v, r.Revision)
		return v, nil
	}
	got, _, err := s.Get(ctx, r.Existing)
	if apierr.Reason(err) == s.reason+"_NOT_FOUND" {
		return zero, apierr.New(codes.NotFound, s.reason+"_NOT_FOUND",
			"request_id %q made %s %q, which has since been deleted", requestID, s.noun, s.Name(r.Existing))
	}
	return got, err
}

// UpdateOption refines an Update.
type UpdateOption func(*update)

type update struct {
	etag     int64
	guard    []clientv3.Cmp
	guardErr error
	ops      func(after proto.Message) []clientv3.Op
}

// IfEtag makes the update apply only to the record at revision etag: a record that
// has moved on is ABORTED (ETAG_MISMATCH), never retried. 0: any revision.
func IfEtag(etag int64) UpdateOption { return func(u *update) { u.etag = etag } }

// Guard adds conditions the write needs besides the record's revision (a claim or a
// leadership key); when they no longer hold, Update returns err.
func Guard(err error, cmps ...clientv3.Cmp) UpdateOption {
	return func(u *update) { u.guard, u.guardErr = append(u.guard, cmps...), err }
}

// AlsoOps adds operations to the update's transaction, made from the record as
// changed (a run that ends frees its wave's key).
func AlsoOps[T proto.Message](ops func(after T) []clientv3.Op) UpdateOption {
	return func(u *update) { u.ops = func(m proto.Message) []clientv3.Op { return ops(m.(T)) } }
}

// Update reads record id, lets change modify it, and writes it back under a
// compare-and-swap on its revision; a lost race is read again and retried (unless
// IfEtag). change returns false to write nothing: the record is returned as read.
// The written record carries its new etag.
func (s *Store[T]) Update(ctx context.Context, id string, change func(T) (bool, error), opts ...UpdateOption) (T, error) {
	var zero T
	var u update
	for _, o := range opts {
		o(&u)
	}
	key := s.Key(id)
	for range maxAttempts {
		v, rev, err := s.Get(ctx, id)
		if err != nil {
			return zero, err
		}
		if u.etag != 0 && rev != u.etag {
			return zero, s.etagMismatch(id, u.etag, rev)
		}
		indexed := s.indexKeys(id, v)
		write, err := change(v)
		if err != nil || !write {
			return v, err
		}
		val, err := s.Encode(v)
		if err != nil {
			return zero, err
		}
		ops := append([]clientv3.Op{clientv3.OpPut(key, val)}, indexOps(indexed, s.indexKeys(id, v))...)
		if u.ops != nil {
			ops = append(ops, u.ops(v)...)
		}
		cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", rev)}, u.guard...)
		resp, err := s.c.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return zero, apierr.Etcd("update "+s.noun, err)
		}
		if resp.Succeeded {
			s.setEtag(v, resp.Header.Revision)
			return v, nil
		}
		if err := s.guardHolds(ctx, u); err != nil {
			return zero, err
		}
		if u.etag != 0 {
			return zero, apierr.New(codes.Aborted, ReasonEtagMismatch,
				"%s %q changed while it was being updated (etag %d is stale): read it again and retry", s.noun, s.Name(id), u.etag)
		}
	}
	return zero, apierr.New(codes.Aborted, ReasonContention, "%s %q kept changing under this update (%d attempts): retry", s.noun, s.Name(id), maxAttempts)
}

// guardHolds tells a failed write's guard apart from a lost race: nil while the
// guard holds.
func (s *Store[T]) guardHolds(ctx context.Context, u update) error {
	if len(u.guard) == 0 {
		return nil
	}
	g, err := s.c.Txn(ctx).If(u.guard...).Commit()
	if err != nil {
		return apierr.Etcd("update "+s.noun, err)
	}
	if !g.Succeeded {
		return u.guardErr
	}
	return nil
}

func (s *Store[T]) etagMismatch(id string, want, have int64) error {
	return apierr.New(codes.Aborted, ReasonEtagMismatch,
		"%s %q changed since it was read (etag %d, now %d): read it again and retry", s.noun, s.Name(id), want, have)
}

// Delete deletes record id; with etag (not 0), only if it is still at that revision.
func (s *Store[T]) Delete(ctx context.Context, id string, etag int64) error {
	if len(s.indexes) > 0 {
		return s.deleteIndexed(ctx, id, etag)
	}
	key := s.Key(id)
	cmp := clientv3.Compare(clientv3.CreateRevision(key), ">", 0)
	if etag != 0 {
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", etag)
	}
	resp, err := s.c.Txn(ctx).If(cmp).Then(clientv3.OpDelete(key)).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return apierr.Etcd("delete "+s.noun, err)
	}
	if resp.Succeeded {
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 0 {
		return s.NotFound(id)
	}
	return s.etagMismatch(id, etag, kvs[0].ModRevision)
}

// Walk calls fn with the records after the ID after ("" from the first), in ID
// order (Descending: from the last), read batch keys at a time, every batch at the
// revision of the first (one consistent view), until fn says stop. It returns that
// revision.
func (s *Store[T]) Walk(ctx context.Context, after string, order Order, batch int64, fn func(v T, rev int64) (stop bool, err error)) (int64, error) {
	return s.walk(ctx, after, order, batch, func(_ string, v T, rev int64) (bool, error) { return fn(v, rev) })
}

// walk is Walk, telling fn each record's ID too (its key less the prefix).
func (s *Store[T]) walk(ctx context.Context, after string, order Order, batch int64, fn func(id string, v T, rev int64) (stop bool, err error)) (int64, error) {
	start, end := s.prefix, clientv3.GetPrefixRangeEnd(s.prefix)
	if after != "" {
		if order == Descending {
			end = s.Key(after)
		} else {
			start = s.Key(after) + "\x00"
		}
	}
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(batch)}
		if order == Descending {
			opts = append(opts, clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
		}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.c.Get(ctx, start, opts...)
		if err != nil {
			return 0, apierr.Etcd("list "+s.noun+"s", err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			v, err := s.Decode(kv)
			if err != nil {
				return 0, err
			}
			if stop, err := fn(strings.TrimPrefix(string(kv.Key), s.prefix), v, rev); stop || err != nil {
				return rev, err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		last := string(resp.Kvs[len(resp.Kvs)-1].Key)
		if order == Descending {
			end = last
		} else {
			start = last + "\x00"
		}
	}
}

// Order is the order of a Walk or a Page.
type Order int

// Orders.
const (
	Ascending Order = iota
	Descending
)

// DefaultBatch is how many keys a filtered page reads from etcd at a time.
const DefaultBatch = 512

// Page returns up to size records that keep accepts (nil: all), after the ID after,
// in order, read at one revision; next is the ID to continue after ("" when no
// further record is kept). A page reads only as far as it must.
func (s *Store[T]) Page(ctx context.Context, after string, order Order, size int, keep func(T) bool) (page []T, next string, err error) {
	batch := int64(size + 1)
	if keep != nil {
		batch = max(batch, DefaultBatch)
	}
	var lastID string
	_, err = s.walk(ctx, after, order, batch, func(id string, v T, _ int64) (bool, error) {
		if keep != nil && !keep(v) {
			return false, nil
		}
		if len(page) == size {
			next = lastID
			return true, nil
		}
		page = append(page, v)
		lastID = id
		return false, nil
	})
	if err != nil {
		return nil, "", err
	}
	return page, next, nil
}

// deleteIndexed deletes record id and its index keys, which it reads the record
// for: in a transaction that holds only while the record is as read (a record that
// changed meanwhile is read again, unless etag says which revision to delete).
func (s *Store[T]) deleteIndexed(ctx context.Context, id string, etag int64) error {
	key := s.Key(id)
	for range maxAttempts {
		resp, err := s.c.Get(ctx, key)
		if err != nil {
			return apierr.Etcd("delete "+s.noun, err)
		}
		if len(resp.Kvs) == 0 {
			return s.NotFound(id)
		}
		rev := resp.Kvs[0].ModRevision
		if etag != 0 && rev != etag {
			return s.etagMismatch(id, etag, rev)
		}
		ops := []clientv3.Op{clientv3.OpDelete(key)}
		if v, err := s.Decode(resp.Kvs[0]); err == nil {
			// A record that cannot be read is deleted all the same; its index keys
			// then point at nothing, which a page skips and Reindex removes.
			ops = append(ops, indexOps(s.indexKeys(id, v), nil)...)
		}
		tr, err := s.c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).Then(ops...).Commit()
		if err != nil {
			return apierr.Etcd("delete "+s.noun, err)
		}
		if tr.Succeeded {
			return nil
		}
	}
	return apierr.New(codes.Aborted, ReasonContention, "%s %q kept changing under this delete (%d attempts): retry", s.noun, s.Name(id), maxAttempts)
}
