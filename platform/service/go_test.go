package service

import (
	"context"
	"testing"
	"time"
)

// TestGoEndsAtShutdown: a function started with Runtime.Go sees its context end when
// shutdown begins, and the shutdown functions wait for it.
func TestGoEndsAtShutdown(t *testing.T) {
	rt := &Runtime{stopping: make(chan struct{})}
	returned := make(chan struct{})
	rt.Go(func(ctx context.Context) {
		<-ctx.Done()
		time.Sleep(50 * time.Millisecond) // finishing its last step
		close(returned)
	})
	close(rt.stopping)
	for _, f := range rt.onShutdown {
		f()
	}
	select {
	case <-returned:
	default:
		t.Fatal("the shutdown functions returned before the function did")
	}
}
