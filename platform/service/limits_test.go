package service

import (
	"context"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

func from(addr string) context.Context {
	a, _ := net.ResolveTCPAddr("tcp", addr)
	return peer.NewContext(context.Background(), &peer.Peer{Addr: a})
}

// TestStreamsPerClientAreCapped: one client host holds at most max streams open,
// whatever its connections' ports; the next is RESOURCE_EXHAUSTED naming the limit;
// another host is not held back; a stream that ends frees its place.
func TestStreamsPerClientAreCapped(t *testing.T) {
	l := newStreamLimiter(3)
	var releases []func()
	for i := range 3 {
		r, err := l.acquire(from("127.0.0.1:"+string(rune('1'+i))+"000"), "/hikkoshi.inventory.v1.InventoryService/WatchWorkloads")
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		releases = append(releases, r)
	}
	_, err := l.acquire(from("127.0.0.1:5000"), "/hikkoshi.inventory.v1.InventoryService/WatchWorkloads")
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--max-streams-per-client") || !strings.Contains(err.Error(), "WatchWorkloads") {
		t.Fatalf("the 4th stream of one host: %v", err)
	}
	if _, err := l.acquire(from("127.0.0.2:5000"), "/x/Watch"); err != nil {
		t.Fatalf("another host: %v", err)
	}
	releases[0]()
	if _, err := l.acquire(from("127.0.0.1:6000"), "/x/Watch"); err != nil {
		t.Fatalf("after one ended: %v", err)
	}
	if err := (&Config{Service: "x", Listen: "127.0.0.1:1", EtcdEndpoints: []string{"e"}, LeaseTTL: DefaultLeaseTTL, Instance: "i",
		LogFormat: "json", LogLevel: "info"}).Validate(); err == nil || !strings.Contains(err.Error(), "--max-streams-per-client") {
		t.Fatalf("a zero limit: %v", err)
	}
}
