package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/platform/poll"
)

// Registration is the value of a service instance's registry key.
type Registration struct {
	Service        string    `json:"service"`
	Instance       string    `json:"instance"`
	Address        string    `json:"address"`
	MetricsAddress string    `json:"metrics_address,omitempty"`
	PID            int       `json:"pid"`
	Started        time.Time `json:"started"`
}

// ErrInstanceTaken is returned while another live process holds the same instance
// name in the registry.
var ErrInstanceTaken = errors.New("service: instance name is registered by another live process")

// registrar keeps the process's etcd session and its registration under it.
type registrar struct {
	client *clientv3.Client
	key    string
	value  string
	ttl    int
	log    *slog.Logger
	// onChange is told when the instance becomes registered or unregistered.
	onChange func(registered bool)

	mu      sync.Mutex
	session *concurrency.Session
	// sessCtx outlives the serving context so that the lease can still be revoked.
	sessCtx    context.Context
	sessCancel context.CancelFunc
}

func newRegistrar(client *clientv3.Client, reg Registration, ttl time.Duration, log *slog.Logger, onChange func(bool)) (*registrar, error) {
	b, err := json.Marshal(reg)
	if err != nil {
		return nil, fmt.Errorf("service.newRegistrar: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &registrar{
		client:     client,
		key:        keys.Registration(reg.Service, reg.Instance),
		value:      string(b),
		ttl:        int((ttl + time.Second - 1) / time.Second),
		log:        log,
		onChange:   onChange,
		sessCtx:    ctx,
		sessCancel: cancel,
	}, nil
}

// Session returns the current session, or nil while unregistered.
func (r *registrar) Session() *concurrency.Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.session
}

// registerOnce grants a new lease and writes the registration under it, unless a live
// registration of another lease holds the key.
func (r *registrar) registerOnce(ctx context.Context) error {
	s, err := concurrency.NewSession(r.client, concurrency.WithTTL(r.ttl), concurrency.WithContext(r.sessCtx))
	if err != nil {
		return fmt.Errorf("service.register: new session: %w", err)
	}
	resp, err := r.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(r.key), "=", 0)).
		Then(clientv3.OpPut(r.key, r.value, clientv3.WithLease(s.Lease()))).
		Commit()
	if err != nil {
		_ = s.Close()
		return fmt.Errorf("service.register: %w", err)
	}
	if !resp.Succeeded {
		_ = s.Close()
		return fmt.Errorf("service.register %s: %w", r.key, ErrInstanceTaken)
	}
	r.mu.Lock()
	r.session = s
	r.mu.Unlock()
	r.onChange(true)
	r.log.Info("registered", "key", r.key, "lease", fmt.Sprintf("%x", s.Lease()), "ttl_seconds", r.ttl)
	return nil
}

// register retries registerOnce with capped exponential backoff until it succeeds or
// ctx is cancelled.
func (r *registrar) register(ctx context.Context) error {
	backoff := poll.Backoff{Initial: 200 * time.Millisecond, Max: 5 * time.Second, Factor: 2}
	return poll.Until(ctx, backoff, func(attempt int) (bool, error) {
		err := r.registerOnce(ctx)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, ErrInstanceTaken):
			r.log.Warn("waiting for the earlier registration of this instance to expire", "key", r.key)
		default:
			r.log.Warn("registration failed; retrying", "err", err, "retry_in", backoff.Pause(attempt))
		}
		return false, nil
	})
}

// keep watches the session; when its lease is lost it marks the instance unregistered
// at once and registers again. It returns when ctx is cancelled.
func (r *registrar) keep(ctx context.Context) {
	for {
		s := r.Session()
		if s == nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-s.Done():
		}
		r.mu.Lock()
		r.session = nil
		r.mu.Unlock()
		r.onChange(false)
		r.log.Error("etcd lease lost: not serving until registered again", "key", r.key)
		if err := r.register(ctx); err != nil {
			return
		}
	}
}

// deregister deletes the registration key (so that nobody discovers the instance any
// more) but keeps the lease for what the process still owns.
func (r *registrar) deregister(ctx context.Context) {
	r.onChange(false)
	if _, err := r.client.Delete(ctx, r.key); err != nil {
		r.log.Warn("deregister failed; the key expires with the lease", "err", err)
	}
}

// close revokes the lease, releasing everything held under it.
func (r *registrar) close() {
	r.mu.Lock()
	s := r.session
	r.session = nil
	r.mu.Unlock()
	if s != nil {
		if err := s.Close(); err != nil {
			r.log.Warn("lease revoke failed; it expires with its TTL", "err", err)
		}
	}
	r.sessCancel()
}
