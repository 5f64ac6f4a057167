package store

import (
	"context"
	"net/url"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hikkoshi/hikkoshi/platform/apierr"
)

// An index lets a list filtered on one attribute read only the records that have
// the value asked for, instead of every record: one empty key per record and value,
//
//	{prefix less its slash}-index/{name}/{value}/{id}
//
// written and deleted in the same transaction as the record (Create, Update,
// Delete), so that it never disagrees with the records it lists. A record may have
// several values of an attribute (labels) or none.
type index[T any] struct {
	name   string
	values func(T) []string
}

// maxTxnOps is etcd's default limit on the operations of one transaction
// (--max-txn-ops); a page's records are read in transactions no larger.
const maxTxnOps = 128

// Index adds an index named name over the values values gives for a record. Add
// indexes before the store is used, then call Reindex once (at start) so that
// records written before the index existed are in it.
func (s *Store[T]) Index(name string, values func(T) []string) {
	s.indexes = append(s.indexes, index[T]{name: name, values: values})
}

func (s *Store[T]) indexRoot() string { return strings.TrimSuffix(s.prefix, "/") + "-index/" }

// indexPrefix is where the IDs of the records with value in index name are.
func (s *Store[T]) indexPrefix(name, value string) string {
	return s.indexRoot() + name + "/" + url.PathEscape(value) + "/"
}

// indexKeys are v's index keys.
func (s *Store[T]) indexKeys(id string, v T) []string {
	var out []string
	for _, ix := range s.indexes {
		for _, val := range ix.values(v) {
			out = append(out, s.indexPrefix(ix.name, val)+id)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// indexOps turn the index keys before into the keys after: deletes for the keys
// that go, puts for the keys that come.
func indexOps(before, after []string) []clientv3.Op {
	var ops []clientv3.Op
	for _, k := range before {
		if !slices.Contains(after, k) {
			ops = append(ops, clientv3.OpDelete(k))
		}
	}
	for _, k := range after {
		if !slices.Contains(before, k) {
			ops = append(ops, clientv3.OpPut(k, ""))
		}
	}
	return ops
}

// indexedKey records which indexes are whole (their names, comma-separated).
func (s *Store[T]) indexedKey() string { return strings.TrimSuffix(s.prefix, "/") + "-indexed" }

func (s *Store[T]) indexNames() string {
	var names []string
	for _, ix := range s.indexes {
		names = append(names, ix.name)
	}
	return strings.Join(names, ",")
}

// Reindex makes the indexes whole, once: records written before an index existed
// get their keys, and keys that point at nothing (or at a record that no longer
// has that value) are deleted, each write in a transaction that holds only while
// the record is as read (a record written meanwhile wrote its own keys). Until it
// has run, on this store or any other on the same etcd with the same indexes,
// PageBy reads every record. A store's users call it at start; it is idempotent,
// and safe beside writers that keep the indexes.
func (s *Store[T]) Reindex(ctx context.Context) error {
	if len(s.indexes) == 0 {
		return nil
	}
	names := s.indexNames()
	resp, err := s.c.Get(ctx, s.indexedKey())
	if err != nil {
		return apierr.Etcd("read the "+s.noun+" indexes' state", err)
	}
	if len(resp.Kvs) == 1 && string(resp.Kvs[0].Value) == names {
		s.indexed.Store(true)
		return nil
	}
	_, err = s.walk(ctx, "", Ascending, DefaultBatch, func(id string, v T, rev int64) (bool, error) {
		var ops []clientv3.Op
		for _, k := range s.indexKeys(id, v) {
			ops = append(ops, clientv3.OpPut(k, ""))
		}
		if len(ops) == 0 {
			return false, nil
		}
		// Only while the record is as the walk read it (at rev): still there, not
		// written since.
		key := s.Key(id)
		_, err := s.c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), ">", 0),
			clientv3.Compare(clientv3.ModRevision(key), "<", rev+1)).Then(ops...).Commit()
		return false, err
	})
	if err != nil {
		return err
	}
	if err := s.dropStrayKeys(ctx); err != nil {
		return err
	}
	if _, err := s.c.Put(ctx, s.indexedKey(), names); err != nil {
		return apierr.Etcd("record the "+s.noun+" indexes' state", err)
	}
	s.indexed.Store(true)
	return nil
}

// dropStrayKeys deletes the index keys whose record is gone, or no longer has that
// value, each only while the record is as read.
func (s *Store[T]) dropStrayKeys(ctx context.Context) error {
	root := s.indexRoot()
	start, end := root, clientv3.GetPrefixRangeEnd(root)
	for {
		resp, err := s.c.Get(ctx, start, clientv3.WithRange(end), clientv3.WithLimit(maxTxnOps), clientv3.WithKeysOnly())
		if err != nil {
			return apierr.Etcd("read the "+s.noun+" indexes", err)
		}
		for _, kv := range resp.Kvs {
			k := string(kv.Key)
			id := k[strings.LastIndexByte(k, '/')+1:]
			rec, err := s.c.Get(ctx, s.Key(id))
			if err != nil {
				return apierr.Etcd("read the "+s.noun+" indexes", err)
			}
			var cmp clientv3.Cmp
			switch {
			case len(rec.Kvs) == 0:
				cmp = clientv3.Compare(clientv3.CreateRevision(s.Key(id)), "=", 0)
			default:
				v, derr := s.Decode(rec.Kvs[0])
				if derr == nil && slices.Contains(s.indexKeys(id, v), k) {
					continue
				}
				cmp = clientv3.Compare(clientv3.ModRevision(s.Key(id)), "=", rec.Kvs[0].ModRevision)
			}
			if _, err := s.c.Txn(ctx).If(cmp).Then(clientv3.OpDelete(k)).Commit(); err != nil {
				return apierr.Etcd("clean the "+s.noun+" indexes", err)
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// PageBy is Page over the records whose index name holds value: it reads those
// records only (the index's keys, then the records at the same revision, in
// transactions of at most maxTxnOps reads). keep decides as for Page, and must
// check the indexed value too: before Reindex has run, PageBy is Page (every record
// read, keep deciding alone). next is the ID to continue after, as for Page.
//
// With FollowIndexes running, the records the index is expected to list are read
// in the same transaction as the index's keys: one round trip to etcd where the
// hints were right, and a second (at the same revision) only for the records they
// missed. The index's keys read in that transaction decide the page, never the
// hints.
func (s *Store[T]) PageBy(ctx context.Context, name, value, after string, size int, keep func(T) bool) (page []T, next string, err error) {
	if !s.indexed.Load() {
		return s.Page(ctx, after, Ascending, size, keep)
	}
	pfx := s.indexPrefix(name, value)
	start, end := pfx, clientv3.GetPrefixRangeEnd(pfx)
	if after != "" {
		start = pfx + after + "\x00"
	}
	// One op of each transaction is the index's range.
	batch := min(size+1, maxTxnOps-1)
	var rev int64
	var lastID string
	for {
		at := func(opts ...clientv3.OpOption) []clientv3.OpOption {
			if rev != 0 {
				opts = append(opts, clientv3.WithRev(rev))
			}
			return opts
		}
		ops := []clientv3.Op{clientv3.OpGet(start, at(clientv3.WithRange(end), clientv3.WithLimit(int64(batch)), clientv3.WithKeysOnly())...)}
		guess, _ := s.hints.next(pfx, after, batch)
		for _, id := range guess {
			ops = append(ops, clientv3.OpGet(s.Key(id), at()...))
		}
		tr, err := s.c.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, "", apierr.Etcd("list "+s.noun+"s", err)
		}
		if rev == 0 {
			rev = tr.Header.Revision
		}
		resp := tr.Responses[0].GetResponseRange()
		records := make(map[string]*mvccpb.KeyValue, len(resp.Kvs))
		for i, id := range guess {
			if kvs := tr.Responses[i+1].GetResponseRange().GetKvs(); len(kvs) > 0 {
				records[id] = kvs[0]
			}
		}
		ids := make([]string, len(resp.Kvs))
		var missed []clientv3.Op
		var missedIDs []string
		for i, kv := range resp.Kvs {
			ids[i] = strings.TrimPrefix(string(kv.Key), pfx)
			if _, ok := records[ids[i]]; !ok && !slices.Contains(guess, ids[i]) {
				missed = append(missed, clientv3.OpGet(s.Key(ids[i]), clientv3.WithRev(rev)))
				missedIDs = append(missedIDs, ids[i])
			}
		}
		if len(missed) > 0 {
			tr, err := s.c.Txn(ctx).Then(missed...).Commit()
			if err != nil {
				return nil, "", apierr.Etcd("list "+s.noun+"s", err)
			}
			for i, r := range tr.Responses {
				if kvs := r.GetResponseRange().GetKvs(); len(kvs) > 0 {
					records[missedIDs[i]] = kvs[0]
				}
			}
		}
		for _, id := range ids {
			kv := records[id]
			if kv == nil {
				continue // a key whose record could not be read when it was deleted
			}
			v, err := s.Decode(kv)
			if err != nil {
				return nil, "", err
			}
			if keep != nil && !keep(v) {
				continue
			}
			if len(page) == size {
				return page, lastID, nil
			}
			page = append(page, v)
			lastID = id
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return page, "", nil
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
		after = ids[len(ids)-1]
	}
}
