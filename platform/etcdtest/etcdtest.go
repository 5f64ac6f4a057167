// Package etcdtest starts a real etcd server (embedded, on loopback, free ports) for a
// test and stops it when the test ends.
package etcdtest

import (
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hikkoshi/hikkoshi/platform/etcdembed"
)

// Server is an etcd server started for one test.
type Server struct {
	*etcdembed.Server
}

// Start starts an etcd server with its data in a temporary directory; it is closed
// when t and its subtests end.
func Start(tb testing.TB) *Server {
	tb.Helper()
	srv, err := etcdembed.Start(tb.Context(), tb.TempDir(),
		etcdembed.WithClientURL("http://127.0.0.1:0"),
		etcdembed.WithPeerURL("http://127.0.0.1:0"),
		etcdembed.WithLogLevel("panic"), // its shutdown logs "errors" that are not
	)
	if err != nil {
		tb.Fatalf("etcdtest.Start: %v", err)
	}
	tb.Cleanup(srv.Close)
	return &Server{Server: srv}
}

// Client returns a client of the server, closed when the test ends.
func (s *Server) Client(tb testing.TB) *clientv3.Client {
	tb.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: s.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		tb.Fatalf("etcdtest: client: %v", err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}
