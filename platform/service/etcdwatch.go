package service

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/hikkoshi/hikkoshi/platform/poll"
)

// tokenWatcher is the etcd client's Watcher made to outlive etcd's auth tokens.
//
// With password auth, etcd hands the client a token that lives --auth-token-ttl
// (5 min). The client renews it for unary calls, but a watch is created on a gRPC
// stream that carries the token it was opened with: once that token has expired,
// every new watch on the stream is cancelled with "invalid auth token" (etcd issues
// #12385, #11121), while the watches already open keep working. A service that
// creates watches all its life (a client's WatchJob, a re-registration) would lose
// them all five minutes after it started. tokenWatcher sees that cancel, lets a
// unary call renew the token, and watches again — on a new stream, opened with the
// new token — from the revision after the last event it passed on. The cancel itself
// is never passed on. Without auth it changes nothing.
type tokenWatcher struct {
	clientv3.Watcher
	c   *clientv3.Client
	gen atomic.Uint64
}

// renewPause is the pause before watching again after a renewal; a token that
// renews at once pays 20 ms.
var renewPause = poll.Backoff{Initial: 20 * time.Millisecond, Max: time.Second, Factor: 4}

// watchRenewTokens installs a tokenWatcher on c.
func watchRenewTokens(c *clientv3.Client) {
	c.Watcher = &tokenWatcher{Watcher: c.Watcher, c: c}
}

func (w *tokenWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	out := make(chan clientv3.WatchResponse)
	go func() {
		defer close(out)
		wctx, o := ctx, opts
		var next int64 // the revision to resume from, after the last event passed on
		// renewals counts renewals in a row that got nothing through: a token that
		// cannot be renewed is passed on as the watch's error after a few.
		for renewals := 0; ; renewals++ {
			expired := false
			for wr := range w.Watcher.Watch(wctx, key, o...) {
				if tokenExpired(wr.Err()) && renewals < 5 {
					expired = true
					break
				}
				renewals = 0
				if n := len(wr.Events); n > 0 {
					next = wr.Events[n-1].Kv.ModRevision + 1
				}
				select {
				case out <- wr:
				case <-ctx.Done():
					return
				}
			}
			if !expired || ctx.Err() != nil {
				return
			}
			// A unary call renews the client's token (its retry interceptor
			// authenticates again on an invalid token).
			if _, err := w.c.Get(ctx, key, clientv3.WithCountOnly()); err != nil && ctx.Err() != nil {
				return
			}
			if next != 0 {
				o = append(slices.Clone(opts), clientv3.WithRev(next))
			}
			// Watches are grouped on streams by their context's metadata: a new
			// value opens a new stream, with the token the client has now.
			wctx = metadata.AppendToOutgoingContext(ctx, "hikkoshi-watch-stream", strconv.FormatUint(w.gen.Add(1), 10))
			if poll.Sleep(ctx, renewPause.Pause(renewals)) != nil {
				return
			}
		}
	}()
	return out
}

// tokenExpired reports a watch cancelled for its stream's expired token. The
// cancel comes as a closing error whose text carries etcd's (not a typed error).
func tokenExpired(err error) bool {
	if err == nil {
		return false
	}
	return errors.Is(rpctypes.Error(err), rpctypes.ErrInvalidAuthToken) ||
		strings.Contains(err.Error(), rpctypes.ErrorDesc(rpctypes.ErrGRPCInvalidAuthToken))
}
