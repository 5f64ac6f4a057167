package poll

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestPauseGrowsToItsCap(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Factor: 2}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for n, w := range want {
		if got := b.Pause(n); got != w*time.Millisecond {
			t.Errorf("pause %d: %v, want %v", n, got, w*time.Millisecond)
		}
	}
	if got := Constant(time.Second).Pause(7); got != time.Second {
		t.Errorf("constant: %v", got)
	}
	j := Backoff{Initial: time.Second, Max: time.Second, Factor: 1, Jitter: 0.2}
	for range 100 {
		if p := j.Pause(3); p < 800*time.Millisecond || p > 1200*time.Millisecond {
			t.Fatalf("jitter out of ±20%%: %v", p)
		}
	}
}

func TestUntil(t *testing.T) {
	ctx := t.Context()
	calls := 0
	if err := Until(ctx, Constant(time.Millisecond), func(n int) (bool, error) { calls++; return n == 3, nil }); err != nil || calls != 4 {
		t.Fatalf("done at the 4th try: %v after %d", err, calls)
	}
	boom := errors.New("boom")
	if err := Until(ctx, Constant(time.Millisecond), func(int) (bool, error) { return false, boom }); err != boom {
		t.Fatalf("a try's error: %v", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := Until(cctx, Constant(5*time.Millisecond), func(int) (bool, error) { return false, nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("context end: %v", err)
	}
}
