package meter

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The meter against servers on loopback: it counts answers by server, and each kind
// of failure by its kind.
func TestRunCountsAnswersAndFailures(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := n.Add(1)
		switch {
		case i%10 == 0:
			http.Error(w, "boom", http.StatusBadGateway)
		case i%10 == 5:
			hj, _ := w.(http.Hijacker)
			c, _, _ := hj.Hijack()
			c.Close() // closed without an answer
		default:
			name := "a"
			if i%2 == 0 {
				name = "b"
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"server": name, "proxy": true, "client": r.RemoteAddr})
		}
	}))
	defer srv.Close()
	rep, err := Run(t.Context(), Options{Target: strings.TrimPrefix(srv.URL, "http://"), Rate: 200, For: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent < 90 || rep.Sent > 100 {
		t.Errorf("sent %d in 0.5 s at 200/s", rep.Sent)
	}
	if rep.Answered+rep.Failed != rep.Sent {
		t.Errorf("answered %d + failed %d != sent %d", rep.Answered, rep.Failed, rep.Sent)
	}
	if rep.Failures[Fail5xx] == 0 || rep.Failures[FailClosed] == 0 {
		t.Errorf("failures %v: want 5xx and closed", rep.Failures)
	}
	if rep.Servers["a"] == nil || rep.Servers["b"] == nil || rep.Servers["a"].Count+rep.Servers["b"].Count != rep.Answered {
		t.Errorf("servers %v", rep.Servers)
	}
	// The "PROXY client" here is the peer the server saw: this meter's own address.
	if rep.ProxyHeaders != rep.Answered || rep.ProxyClientMatched != rep.Answered {
		t.Errorf("proxy headers %d matched %d, answered %d", rep.ProxyHeaders, rep.ProxyClientMatched, rep.Answered)
	}
	if rep.P50Ms <= 0 || rep.P99Ms < rep.P50Ms {
		t.Errorf("latency p50 %v p99 %v", rep.P50Ms, rep.P99Ms)
	}
}

func TestRunRefusedAndTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	rep, err := Run(t.Context(), Options{Target: addr, Rate: 100, For: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failures[FailRefused] != rep.Sent || rep.Sent == 0 {
		t.Errorf("failures %v of %d sent: want all refused", rep.Failures, rep.Sent)
	}

	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "{\"server\":\"db\"}\n")
			c.Close()
		}
	}()
	rep, err = Run(t.Context(), Options{Target: tl.Addr().String(), Mode: ModeTCP, Rate: 100, For: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed != 0 || rep.Servers["db"] == nil || rep.Servers["db"].Count != rep.Sent {
		t.Errorf("tcp: %+v", rep)
	}
}

func TestRunRefusesBadOptions(t *testing.T) {
	for _, o := range []Options{{Target: "127.0.0.1:1"}, {Target: "nohostport", Rate: 1}, {Target: "127.0.0.1:1", Rate: 1, Mode: "udp"}} {
		if _, err := Run(t.Context(), o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}
