package lbsvc

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc/codes"

	"github.com/hikkoshi/hikkoshi/platform/apierr"
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

// lock takes the etcd mutex at prefix under the process's session lease, so that a
// dead holder's lock vanishes with its lease. It waits while another replica, or
// another call in this process, holds it, as long as ctx allows. The returned
// function releases it.
//
// An etcd mutex belongs to a session, not to a goroutine: two calls of one process
// sharing the session would both "hold" it. So calls in this process first queue on
// an in-process lock per prefix, and only its holder takes the etcd mutex.
func (s *Server) lock(ctx context.Context, prefix string) (func(), error) {
	start := time.Now()
	local := s.local.get(prefix)
	select {
	case local <- struct{}{}:
	case <-ctx.Done():
		s.local.put(prefix)
		return nil, toStatus("lock "+prefix, ctx.Err())
	}
	releaseLocal := func() { <-local; s.local.put(prefix) }
	sess := s.session()
	if sess == nil {
		releaseLocal()
		return nil, apierr.New(codes.Unavailable, ReasonUnregistered,
			"this lbaas instance has lost its etcd lease and cannot take locks: retry (another replica, or this one once re-registered)")
	}
	m := concurrency.NewMutex(sess, prefix)
	if err := m.Lock(ctx); err != nil {
		releaseLocal()
		return nil, toStatus("lock "+prefix, fmt.Errorf("etcd lock: %w", err))
	}
	s.metrics.lockWait.Observe(time.Since(start).Seconds())
	return func() {
		defer releaseLocal()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := m.Unlock(ctx); err != nil {
			// The lease ends it at the latest.
			s.log.Warn("etcd unlock failed; the lock ends with the lease", "key", prefix, "err", err)
		}
	}, nil
}

// locked reports whether anyone (any replica) holds the etcd mutex at prefix.
func (s *Server) locked(ctx context.Context, prefix string) (bool, error) {
	resp, err := s.etcd.Get(ctx, prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return false, apierr.New(codes.Unavailable, "ETCD_UNAVAILABLE", "read lock %s: %v", prefix, err)
	}
	return resp.Count > 0, nil
}

// localLocks are in-process locks by key: a channel of capacity 1 per key, dropped
// when nobody holds or waits for it.
type localLocks struct {
	mu sync.Mutex
	m  map[string]*localLock
}

type localLock struct {
	ch    chan struct{}
	users int
}

func (l *localLocks) get(key string) chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]*localLock{}
	}
	x, ok := l.m[key]
	if !ok {
		x = &localLock{ch: make(chan struct{}, 1)}
		l.m[key] = x
	}
	x.users++
	return x.ch
}

func (l *localLocks) put(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if x := l.m[key]; x != nil {
		if x.users--; x.users == 0 {
			delete(l.m, key)
		}
	}
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
		return nil, apierr.New(codes.Internal, "CORRUPT_RECORD", "request record %s is not JSON: %v", key, err)
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
