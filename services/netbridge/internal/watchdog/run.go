package watchdog

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/platform/poll"
)

// Watchdog campaigns in an etcd election and, while it leads, runs the Checker
// every Interval. On the loss of its session it stops acting at once; when its
// context ends it resigns, so another replica takes over without waiting for the
// lease to expire.
type Watchdog struct {
	Etcd *clientv3.Client
	// Session returns the process's current session (nil while it has none).
	Session  func() *concurrency.Session
	Checker  *Checker
	Clouds   []string
	Interval time.Duration
	Log      *slog.Logger
}

// Run campaigns and leads until ctx ends.
func (w *Watchdog) Run(ctx context.Context) {
	for ctx.Err() == nil {
		sess := w.Session()
		if sess == nil {
			_ = poll.Sleep(ctx, 500*time.Millisecond)
			continue
		}
		e := concurrency.NewElection(sess, keys.WatchdogElection)
		cctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-sess.Done():
				cancel()
			case <-cctx.Done():
			}
		}()
		if err := e.Campaign(cctx, w.Checker.Instance); err != nil {
			cancel()
			if ctx.Err() == nil {
				w.Log.Warn("watchdog campaign", "err", err)
				_ = poll.Sleep(ctx, time.Second)
			}
			continue
		}
		w.lead(cctx, e)
		cancel()
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = e.Resign(rctx)
		rcancel()
	}
}

// lead runs passes while this replica is the leader.
func (w *Watchdog) lead(ctx context.Context, e *concurrency.Election) {
	st, err := Read(ctx, w.Etcd)
	if err != nil {
		st = &netbridgev1.WatchdogStatus{}
	}
	prev := st.GetLeader()
	st.Leader, st.Clouds = w.Checker.Instance, w.Clouds
	w.Checker.event(st, w.Checker.Now(), "leader", "", "", "%s leads the watchdog (before: %q)", w.Checker.Instance, prev)
	save := func(ctx context.Context) error {
		v, _ := proto.Marshal(st)
		resp, err := w.Etcd.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(e.Key()), "=", e.Rev())).
			Then(clientv3.OpPut(keys.WatchdogStatus, string(v))).Commit()
		if err != nil {
			return err
		}
		if !resp.Succeeded {
			return fmt.Errorf("watchdog: no longer the leader")
		}
		return nil
	}
	for {
		if err := save(ctx); err != nil {
			w.Log.Warn("watchdog: stop leading", "err", err)
			return
		}
		if err := w.Checker.Pass(ctx, w.Clouds, st, save); err != nil && ctx.Err() == nil {
			w.Log.Warn("watchdog pass", "err", err)
		}
		if err := save(ctx); err != nil {
			w.Log.Warn("watchdog: stop leading", "err", err)
			return
		}
		if poll.Sleep(ctx, w.Interval) != nil {
			return
		}
	}
}

// Read returns the watchdog's status as last written, with the election's current
// leader (empty when no replica campaigns).
func Read(ctx context.Context, c *clientv3.Client) (*netbridgev1.WatchdogStatus, error) {
	st := &netbridgev1.WatchdogStatus{}
	resp, err := c.Get(ctx, keys.WatchdogStatus)
	if err != nil {
		return nil, apierr.New(codes.Unavailable, "ETCD_UNAVAILABLE", "watchdog status: etcd: %v", err)
	}
	if len(resp.Kvs) > 0 {
		if err := proto.Unmarshal(resp.Kvs[0].Value, st); err != nil {
			return nil, apierr.Corrupt("watchdog status: %v", err)
		}
	}
	lead, err := c.Get(ctx, keys.WatchdogElection, clientv3.WithFirstCreate()...)
	if err != nil {
		return nil, apierr.New(codes.Unavailable, "ETCD_UNAVAILABLE", "watchdog leader: etcd: %v", err)
	}
	st.Leader = ""
	if len(lead.Kvs) > 0 {
		st.Leader = string(lead.Kvs[0].Value)
	}
	return st, nil
}
