// Package locks takes etcd mutexes (go.etcd.io/etcd/client/v3/concurrency) held under
// a process's session lease, so a dead holder's lock ends with its lease.
//
// An etcd mutex belongs to a session, not to a goroutine: two calls of one process
// sharing its session would both "hold" the same mutex. A Locker therefore queues the
// calls of its own process on an in-process lock per key first, and only the holder
// of that one takes the etcd mutex.
package locks

import (
	"context"
	"errors"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// ErrNoSession is returned while the process has no etcd session (its lease was
// lost and it has not registered again).
var ErrNoSession = errors.New("locks: this process has no etcd session (lease lost): retry")

// ErrLocked is returned by TryLock when the lock is held, here or elsewhere.
var ErrLocked = errors.New("locks: held by another holder")

// Locker takes locks under the session session returns.
type Locker struct {
	session func() *concurrency.Session
	mu      sync.Mutex
	local   map[string]*local
}

type local struct {
	ch    chan struct{}
	users int
}

// New returns a Locker; session returns the process's current session (nil while
// it has none).
func New(session func() *concurrency.Session) *Locker {
	return &Locker{session: session, local: map[string]*local{}}
}

func (l *Locker) acquireLocal(ctx context.Context, key string, wait bool) (func(), error) {
	l.mu.Lock()
	x, ok := l.local[key]
	if !ok {
		x = &local{ch: make(chan struct{}, 1)}
		l.local[key] = x
	}
	x.users++
	l.mu.Unlock()
	put := func() {
		l.mu.Lock()
		if x.users--; x.users == 0 {
			delete(l.local, key)
		}
		l.mu.Unlock()
	}
	if !wait {
		select {
		case x.ch <- struct{}{}:
			return func() { <-x.ch; put() }, nil
		default:
			put()
			return nil, ErrLocked
		}
	}
	select {
	case x.ch <- struct{}{}:
		return func() { <-x.ch; put() }, nil
	case <-ctx.Done():
		put()
		return nil, ctx.Err()
	}
}

// Lock waits until it holds the lock at key (an etcd prefix), as long as ctx allows,
// and returns the function that releases it.
func (l *Locker) Lock(ctx context.Context, key string) (func(), error) {
	return l.lock(ctx, key, true)
}

// LockLost is Lock, and also returns a channel closed when the lock is lost with
// the session (the lease) that holds it: work done under the lock stops there,
// since another process may take the lock from then on.
func (l *Locker) LockLost(ctx context.Context, key string) (func(), <-chan struct{}, error) {
	unlock, sess, err := l.lockSession(ctx, key, true)
	if err != nil {
		return nil, nil, err
	}
	return unlock, sess.Done(), nil
}

// TryLock takes the lock at key if nobody holds it, else returns ErrLocked at once.
func (l *Locker) TryLock(ctx context.Context, key string) (func(), error) {
	return l.lock(ctx, key, false)
}

func (l *Locker) lock(ctx context.Context, key string, wait bool) (func(), error) {
	unlock, _, err := l.lockSession(ctx, key, wait)
	return unlock, err
}

func (l *Locker) lockSession(ctx context.Context, key string, wait bool) (func(), *concurrency.Session, error) {
	releaseLocal, err := l.acquireLocal(ctx, key, wait)
	if err != nil {
		return nil, nil, err
	}
	sess := l.session()
	if sess == nil {
		releaseLocal()
		return nil, nil, ErrNoSession
	}
	m := concurrency.NewMutex(sess, key)
	if wait {
		err = m.Lock(ctx)
	} else if err = m.TryLock(ctx); errors.Is(err, concurrency.ErrLocked) {
		err = ErrLocked
	}
	if err != nil {
		releaseLocal()
		return nil, nil, err
	}
	return func() {
		defer releaseLocal()
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = m.Unlock(uctx) // on failure the lock ends with the lease
	}, sess, nil
}

// Held reports whether anyone (any process) holds the lock at key.
func Held(ctx context.Context, c *clientv3.Client, key string) (bool, error) {
	resp, err := c.Get(ctx, key+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return false, err
	}
	return resp.Count > 0, nil
}
