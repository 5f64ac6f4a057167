package lbsvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"

	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/platform/locks"
)

// DefaultRequestTTL is how long a create's request_id is remembered.
const DefaultRequestTTL = 24 * time.Hour

// requestRecord is what etcd keeps of a create with a request_id. It holds no
// secrets: IDs, a digest of the request and how the tree was built.
type requestRecord struct {
	LoadBalancerID string    `json:"load_balancer_id"`
	Fingerprint    string    `json:"fingerprint"`
	CreateMode     string    `json:"create_mode"`
	Created        time.Time `json:"created"`
}

// lock takes the lock at prefix (platform/locks: in-process, then the etcd mutex
// under the process's lease), waiting while another call or replica holds it, as long
// as ctx allows. The returned function releases it.
func (s *Server) lock(ctx context.Context, prefix string) (func(), error) {
	unlock, _, err := s.lockLost(ctx, prefix)
	return unlock, err
}

// lockLost is lock, and also returns a channel closed when the lock is lost with
// the process's lease: detached work under it stops there.
func (s *Server) lockLost(ctx context.Context, prefix string) (func(), <-chan struct{}, error) {
	start := time.Now()
	unlock, lost, err := s.locks.LockLost(ctx, prefix)
	switch {
	case errors.Is(err, locks.ErrNoSession):
		return nil, nil, apierr.New(codes.Unavailable, ReasonUnregistered,
			"this lbaas instance has lost its etcd lease and cannot take locks: retry (another replica, or this one once re-registered)")
	case err != nil:
		return nil, nil, toStatus("lock "+prefix, fmt.Errorf("etcd lock: %w", err))
	}
	s.metrics.lockWait.Observe(time.Since(start).Seconds())
	return unlock, lost, nil
}

// underRequest runs fn holding the lock of request rid, detached from the caller:
// a caller that goes away does not undo the work, and its retry waits for the lock
// and then finds the request's record. fn's context ends after d, or when the lock
// is lost with the lease (another replica may run the same request from then on).
// what names the work in the error a caller who went away gets.
func underRequest[T any](ctx context.Context, s *Server, rid string, d time.Duration, what string, fn func(ctx context.Context) (T, error)) (T, error) {
	var zero T
	unlock, lost, err := s.lockLost(ctx, keys.LBRequestLock(s.scope, rid))
	if err != nil {
		return zero, err
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer unlock()
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d)
		defer cancel()
		go func() {
			select {
			case <-lost:
				cancel()
			case <-bctx.Done():
			}
		}()
		v, err := fn(bctx)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		return zero, toStatus(what+" (it goes on: repeat the request with the same request_id to get its result)", ctx.Err())
	}
}

// locked reports whether anyone (any replica) holds the lock at prefix.
func (s *Server) locked(ctx context.Context, prefix string) (bool, error) {
	held, err := locks.Held(ctx, s.etcd, prefix)
	if err != nil {
		return false, apierr.New(codes.Unavailable, "ETCD_UNAVAILABLE", "read lock %s: %v", prefix, err)
	}
	return held, nil
}

// readRecord returns the record of a request_id at key, or nil.
func readRecord[T any](ctx context.Context, s *Server, key string) (*T, error) {
	resp, err := s.etcd.Get(ctx, key)
	if err != nil {
		return nil, apierr.New(codes.Unavailable, "ETCD_UNAVAILABLE", "read request record: %v", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	var rec T
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		return nil, apierr.Corrupt("request record %s is not JSON: %v", key, err)
	}
	return &rec, nil
}

// writeRecord stores the record of a request_id (a struct of plain fields) at key
// for the request TTL.
func (s *Server) writeRecord(ctx context.Context, key string, rec any) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return apierr.New(codes.Internal, "RECORD", "request record %s: %v", key, err)
	}
	lease, err := s.etcd.Grant(ctx, int64(s.requestTTL/time.Second))
	if err != nil {
		return apierr.New(codes.Unavailable, "ETCD_UNAVAILABLE", "write request record: %v", err)
	}
	if _, err := s.etcd.Put(ctx, key, string(b), clientv3.WithLease(lease.ID)); err != nil {
		return apierr.New(codes.Unavailable, "ETCD_UNAVAILABLE", "write request record: %v", err)
	}
	return nil
}
