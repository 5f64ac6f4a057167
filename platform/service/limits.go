package service

import (
	"context"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"

	"github.com/hikkoshi/hikkoshi/platform/apierr"
)

// Limits every service's gRPC server keeps (flags in Config.RegisterFlags).
const (
	DefaultMaxStreamsPerClient = 64
	// DefaultMaxConnStreams is HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS: a client
	// opening more on one connection waits for one to end.
	DefaultMaxConnStreams = 128
	DefaultMaxRecvBytes   = 4 << 20
	DefaultMaxSendBytes   = 16 << 20
)

// serverLimits are the gRPC server options of cfg's limits: message sizes both
// ways, streams per connection, and keepalive enforced (a client pinging more
// often than every 10 s is sent GOAWAY; an idle connection is probed every 2 min).
func serverLimits(cfg Config) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.MaxRecvBytes),
		grpc.MaxSendMsgSize(cfg.MaxSendBytes),
		grpc.MaxConcurrentStreams(DefaultMaxConnStreams),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second}),
	}
}

// streamLimiter caps the streams (watches) one client holds open at once: a client
// is its address's host, so many connections from one host share the cap.
type streamLimiter struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

func newStreamLimiter(max int) *streamLimiter { return &streamLimiter{max: max, n: map[string]int{}} }

// acquire counts one more stream of ctx's client, or refuses it with
// RESOURCE_EXHAUSTED naming the limit.
func (l *streamLimiter) acquire(ctx context.Context, method string) (func(), error) {
	client := "unknown"
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		client = p.Addr.String()
		if h, _, err := net.SplitHostPort(client); err == nil {
			client = h
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[client] >= l.max {
		return nil, apierr.New(codes.ResourceExhausted, "TOO_MANY_STREAMS",
			"%s: this client (%s) has %d streams open, the most one client may hold (--max-streams-per-client): close some first", method, client, l.max)
	}
	l.n[client]++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.n[client]--; l.n[client] <= 0 {
			delete(l.n, client)
		}
	}, nil
}

func (l *streamLimiter) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if infrastructure(info.FullMethod) {
		return h(srv, ss)
	}
	release, err := l.acquire(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	defer release()
	return h(srv, ss)
}
