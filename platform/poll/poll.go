// Package poll is the one way Hikkoshi waits on something that changes on its own
// (a server becoming ACTIVE, a load balancer leaving PENDING_*, a registration
// that may be retried): a capped exponential backoff with jitter, a sleep that ends
// with its context, and a loop of tries between them.
package poll

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is a capped exponential backoff with jitter.
type Backoff struct {
	Initial time.Duration // the first pause
	Max     time.Duration // the cap (0: Initial)
	Factor  float64       // growth per attempt (below 1: 1)
	Jitter  float64       // ± this fraction of each pause, at random (0: none)
}

// Constant is a backoff that always pauses d.
func Constant(d time.Duration) Backoff { return Backoff{Initial: d, Max: d, Factor: 1} }

// Pause is the pause after attempt n (0-based).
func (b Backoff) Pause(n int) time.Duration {
	d, top := float64(b.Initial), float64(max(b.Max, b.Initial))
	for i := 0; i < n && d < top && b.Factor > 1; i++ {
		d *= b.Factor
	}
	d = min(d, top)
	if b.Jitter > 0 {
		d *= 1 - b.Jitter + 2*b.Jitter*rand.Float64()
	}
	return time.Duration(d)
}

// Sleep pauses d, or less if ctx ends first (then it returns ctx.Err()).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Until calls try (with its 0-based attempt number) until it reports done or an
// error, pausing b.Pause(attempt) after each try. It returns try's error, or
// ctx.Err() when ctx ends first.
func Until(ctx context.Context, b Backoff, try func(attempt int) (done bool, err error)) error {
	for attempt := 0; ; attempt++ {
		done, err := try(attempt)
		if done || err != nil {
			return err
		}
		if err := Sleep(ctx, b.Pause(attempt)); err != nil {
			return err
		}
	}
}
