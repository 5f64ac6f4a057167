package locks

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/hikkoshi/hikkoshi/platform/etcdtest"
)

func session(t *testing.T, e *etcdtest.Server) *concurrency.Session {
	t.Helper()
	s, err := concurrency.NewSession(e.Client(t), concurrency.WithTTL(5))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestOneSessionManyGoroutines: goroutines of one process sharing one session are
// excluded from each other, which a bare etcd mutex does not do.
func TestOneSessionManyGoroutines(t *testing.T) {
	e := etcdtest.Start(t)
	s := session(t, e)
	l := New(func() *concurrency.Session { return s })
	var inside, most atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			unlock, err := l.Lock(t.Context(), "/test/lock")
			if err != nil {
				t.Error(err)
				return
			}
			if n := inside.Add(1); n > most.Load() {
				most.Store(n)
			}
			time.Sleep(10 * time.Millisecond)
			inside.Add(-1)
			unlock()
		})
	}
	wg.Wait()
	if most.Load() != 1 {
		t.Fatalf("%d holders at once, want 1", most.Load())
	}
	if len(l.local) != 0 {
		t.Fatalf("%d in-process locks left", len(l.local))
	}
}

// TestTwoSessions: a lock held by one process is seen by TryLock and Held of
// another, and freed for it when the first releases it.
func TestTwoSessions(t *testing.T) {
	e := etcdtest.Start(t)
	s1, s2 := session(t, e), session(t, e)
	a := New(func() *concurrency.Session { return s1 })
	b := New(func() *concurrency.Session { return s2 })
	unlock, err := a.Lock(t.Context(), "/test/lock")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.TryLock(t.Context(), "/test/lock"); !errors.Is(err, ErrLocked) {
		t.Fatalf("TryLock while held elsewhere: %v", err)
	}
	if _, err := a.TryLock(t.Context(), "/test/lock"); !errors.Is(err, ErrLocked) {
		t.Fatalf("TryLock while held in-process: %v", err)
	}
	if held, err := Held(t.Context(), e.Client(t), "/test/lock"); err != nil || !held {
		t.Fatalf("Held = %v, %v", held, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if _, err := b.Lock(ctx, "/test/lock"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock while held elsewhere: %v", err)
	}
	unlock()
	unlock2, err := b.TryLock(t.Context(), "/test/lock")
	if err != nil {
		t.Fatalf("TryLock after release: %v", err)
	}
	unlock2()
	if New(func() *concurrency.Session { return nil }).lockNoSession(t) == nil {
		t.Fatal("no session: no error")
	}
}

func (l *Locker) lockNoSession(t *testing.T) error {
	_, err := l.Lock(t.Context(), "/test/other")
	if !errors.Is(err, ErrNoSession) {
		t.Fatalf("no session: %v", err)
	}
	return err
}

// TestLockLostWithTheSession: the channel LockLost returns stays open while the
// lock is held and closes when the session holding it ends (its lease gone), after
// which another process takes the lock.
func TestLockLostWithTheSession(t *testing.T) {
	e := etcdtest.Start(t)
	s1, s2 := session(t, e), session(t, e)
	a := New(func() *concurrency.Session { return s1 })
	unlock, lost, err := a.LockLost(t.Context(), "/test/lost")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	select {
	case <-lost:
		t.Fatal("lost while the session lives")
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := e.Client(t).Revoke(t.Context(), s1.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the lease is revoked and the lock is not lost")
	}
	unlock2, err := New(func() *concurrency.Session { return s2 }).TryLock(t.Context(), "/test/lost")
	if err != nil {
		t.Fatalf("another process after the loss: %v", err)
	}
	unlock2()
}
