// Package idem makes a create idempotent by its request_id: the new resource and the
// record of the request that made it are written in one etcd transaction, each only
// if it is not there yet. A repeat of the request (same fingerprint) finds the record
// and gets the resource the first one made; another request with that request_id is
// refused; a resource key that exists without a matching record is a conflict. The
// record lives under a lease of its own, so etcd forgets it after the TTL.
//
// It serves the inventory's CreateWorkload, the converter's CreateJob and
// netbridge's CreateBridge, whose resources live in etcd itself. (lbaas's creates
// make an Octavia load balancer, which no etcd transaction covers; it keeps its own
// records under a lock.)
package idem

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

var (
	// ErrOtherRequest: the request_id was used before, for a different request.
	ErrOtherRequest = errors.New("idem: the request_id was already used for a different request")
	// ErrExists: the resource key exists and no record of this request made it.
	ErrExists = errors.New("idem: the resource exists")
	// ErrCorruptRecord: a request record that is not one.
	ErrCorruptRecord = errors.New("idem: a request record is unreadable")
)

// Record is the value of a request key: which resource the request made, and the
// fingerprint of the request that made it.
type Record struct {
	ID          string `json:"id"`
	Fingerprint string `json:"fingerprint"`
}

// UnmarshalJSON also reads records written before this package, which named the ID
// after the resource (job_id, workload_id, bridge_id); they live 24 hours.
func (r *Record) UnmarshalJSON(b []byte) error {
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	r.ID, r.Fingerprint = m["id"], m["fingerprint"]
	for _, k := range []string{"job_id", "workload_id", "bridge_id"} {
		if r.ID == "" {
			r.ID = m[k]
		}
	}
	if r.ID == "" {
		return errors.New("no resource ID")
	}
	return nil
}

// Request is the request side of a create: where its record goes, and what it holds.
// A zero Key is a create without a request_id.
type Request struct {
	Key         string // the request record's key
	Fingerprint string // of the request message (pagetoken.MessageFingerprint)
	TTL         time.Duration
}

// Result is what a Create did. Created: the resource was written (at Revision).
// Otherwise Existing is the ID an earlier create with the same request made.
type Result struct {
	Created  bool
	Revision int64
	Existing string
}

// Create writes value at key, if key does not exist, together with req's record
// pointing at id (if req.Key is set and the record does not exist) and the also
// operations (an index's keys). Errors are ErrOtherRequest, ErrExists,
// ErrCorruptRecord, or etcd's own.
func Create(ctx context.Context, c *clientv3.Client, key, value, id string, req Request, also ...clientv3.Op) (Result, error) {
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)}
	ops := append([]clientv3.Op{clientv3.OpPut(key, value)}, also...)
	var lease clientv3.LeaseID
	if req.Key != "" {
		l, err := c.Grant(ctx, int64(req.TTL/time.Second))
		if err != nil {
			return Result{}, err
		}
		lease = l.ID
		rec, _ := json.Marshal(Record{ID: id, Fingerprint: req.Fingerprint}) // two strings
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(req.Key), "=", 0))
		ops = append(ops, clientv3.OpPut(req.Key, string(rec), clientv3.WithLease(lease)))
	}
	var elses []clientv3.Op
	if req.Key != "" {
		elses = append(elses, clientv3.OpGet(req.Key))
	}
	resp, err := c.Txn(ctx).If(cmps...).Then(ops...).Else(elses...).Commit()
	if err != nil {
		return Result{}, err
	}
	if resp.Succeeded {
		return Result{Created: true, Revision: resp.Header.Revision}, nil
	}
	if lease != 0 {
		_, _ = c.Revoke(ctx, lease) // unused; it would expire on its own anyway
		if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
			var rec Record
			if err := json.Unmarshal(kvs[0].Value, &rec); err != nil {
				return Result{}, fmt.Errorf("%w: %s: %v", ErrCorruptRecord, req.Key, err)
			}
			if rec.Fingerprint != req.Fingerprint {
				return Result{}, ErrOtherRequest
			}
			return Result{Existing: rec.ID}, nil
		}
	}
	return Result{}, ErrExists
}
