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

// detached returns a context for work that goes on when its caller goes away
// (ctx's values, not its end), bounded by d and ended when lost is closed: once
// the request's lock is lost with the lease, another replica may run the same
// request, so this one stops.
func detached(ctx context.Context, d time.Duration, lost <-chan struct{}) (context.Context, context.CancelFunc) {
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d)
	go func() {
		select {
		case <-lost:
			cancel()
		case <-bctx.Done():
		}
	}()
	return bctx, cancel
}

// locked reports whether anyone (any replica) holds the lock at prefix.
func (s *Server) locked(ctx context.Context, prefix string) (bool, error) {
	held, err := locks.Held(ctx, s.etcd, prefix)
	if err != nil {
		return false, apierr.New(codes.Unavailable, "ETCD_UNAVAILABLE", "read lock %s: %v", prefix, err)
	}
	return held, nil
}

// readRequest returns the record of a request_id, or nil.
func (s *Server) readRequest(ctx context.Context, key string) (*requestRecord, error) {
	resp, err := s.etcd.Get(ctx, key)
	if err != nil {
		return nil, apierr.New(codes.Unavailable, "ETCD_UNAVAILABLE", "read request record: %v", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	var rec requestRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		return nil, apierr.Corrupt("request record %s is not JSON: %v", key, err)
	}
	return &rec, nil
}

// writeRequest stores the record of a request_id for the request TTL.
func (s *Server) writeRequest(ctx context.Context, key string, rec requestRecord) error {
	b, _ := json.Marshal(rec) // strings and a time
	lease, err := s.etcd.Grant(ctx, int64(s.requestTTL/time.Second))
	if err != nil {
		return apierr.New(codes.Unavailable, "ETCD_UNAVAILABLE", "write request record: %v", err)
	}
	if _, err := s.etcd.Put(ctx, key, string(b), clientv3.WithLease(lease.ID)); err != nil {
		return apierr.New(codes.Unavailable, "ETCD_UNAVAILABLE", "write request record: %v", err)
	}
	return nil
}
