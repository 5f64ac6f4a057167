// Package meter is the dev cloud's traffic meter: it sends requests at a steady rate
// to an address of the data plane (a load balancer's VIP, a server's stand-in) and
// counts what came back — answered, failed by kind, which server answered and when,
// latency — so a test or the demo can say how many client requests failed while
// something moved.
//
// The data plane lives in a network namespace (devcloud.Netns); Run must be called
// from inside it (hikkoshi-devcloud traffic re-executes itself there with
// `ip netns exec`). Every request is a new TCP connection from devcloud.ClientAddr, so
// a load balancer picks a member for each one, a drained member can be seen to get no
// new connection, and the PROXY header a member receives can be checked against the
// client's own address and port.
package meter

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Mode is what the meter speaks on each connection.
type Mode string

// The modes: one HTTP/1.1 GET (Connection: close), or a TCP connection whose first
// line (the stand-in's banner) is read.
const (
	ModeHTTP Mode = "http"
	ModeTCP  Mode = "tcp"
)

// Options says where and how fast to send.
type Options struct {
	Target  string        // host:port
	Source  string        // the local address to send from ("" lets the kernel choose)
	Mode    Mode          // ModeHTTP (default) or ModeTCP
	Path    string        // the HTTP path, "/" by default
	Rate    float64       // requests per second
	For     time.Duration // how long to send; 0: until ctx ends
	Timeout time.Duration // per request, 2 s by default
	// MaxInFlight bounds the requests open at once (1000 by default): past it a
	// request is counted as failed ("overload") instead of piling up.
	MaxInFlight int
}

// Failure kinds.
const (
	FailRefused     = "refused"     // connection refused (RST to the SYN)
	FailReset       = "reset"       // connection reset after it was accepted
	FailClosed      = "closed"      // closed without an answer (EOF)
	FailTimeout     = "timeout"     // no answer within the timeout
	FailUnreachable = "unreachable" // no route, host unreachable
	Fail5xx         = "5xx"         // an HTTP 5xx answer
	FailHTTPOther   = "http_other"  // another non-2xx HTTP answer
	FailOverload    = "overload"    // the meter itself had too many requests open
	FailOther       = "other"
)

// Server is what one answering server did.
type Server struct {
	Count int `json:"count"`
	// FirstSentUnixMs and LastSentUnixMs are when the first and the last request it
	// answered were sent (the connection's start).
	FirstSentUnixMs int64 `json:"first_sent_unix_ms"`
	LastSentUnixMs  int64 `json:"last_sent_unix_ms"`
}

// Report is what the meter saw.
type Report struct {
	Target      string             `json:"target"`
	Source      string             `json:"source,omitempty"`
	Mode        Mode               `json:"mode"`
	Rate        float64            `json:"rate"`
	StartUnixMs int64              `json:"start_unix_ms"`
	EndUnixMs   int64              `json:"end_unix_ms"`
	Sent        int                `json:"sent"`
	Answered    int                `json:"answered"`
	Failed      int                `json:"failed"`
	Failures    map[string]int     `json:"failures"`
	Servers     map[string]*Server `json:"servers"`
	// Addresses counts the answers by the address the answering server was
	// reached on: a moved server keeps its name, not its address.
	Addresses map[string]*Server `json:"addresses,omitempty"`
	// ProxyHeaders counts answers whose server said a PROXY header came;
	// ProxyClientMatched those whose header named this meter's own address and port.
	ProxyHeaders       int `json:"proxy_headers"`
	ProxyClientMatched int `json:"proxy_client_matched"`
	// FirstFailureUnixMs and LastFailureUnixMs bound the failures in time (0: none).
	FirstFailureUnixMs int64   `json:"first_failure_unix_ms,omitempty"`
	LastFailureUnixMs  int64   `json:"last_failure_unix_ms,omitempty"`
	P50Ms              float64 `json:"p50_ms"`
	P99Ms              float64 `json:"p99_ms"`
	MaxMs              float64 `json:"max_ms"`
	// Errors keeps a few failures' messages, for a person to read.
	Errors []string `json:"errors,omitempty"`
}

// answer is what a stand-in sends back (the fields the meter reads).
type answer struct {
	Server  string `json:"server"`
	Address string `json:"address"`
	Proxy   bool   `json:"proxy"`
	Client  string `json:"client"`
}

type result struct {
	sent    time.Time
	latency time.Duration
	fail    string
	err     error
	ans     answer
	local   string
}

// Run sends requests until opts.For has passed or ctx ends, waits for the requests
// still open (each within its timeout), and reports. Cancelling ctx stops sending
// early; the report still counts everything sent.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.Rate <= 0 {
		return nil, errors.New("meter: rate must be positive")
	}
	if _, _, err := net.SplitHostPort(opts.Target); err != nil {
		return nil, fmt.Errorf("meter: target %q: %w", opts.Target, err)
	}
	if opts.Mode == "" {
		opts.Mode = ModeHTTP
	}
	if opts.Mode != ModeHTTP && opts.Mode != ModeTCP {
		return nil, fmt.Errorf("meter: mode %q: want http or tcp", opts.Mode)
	}
	if opts.Path == "" {
		opts.Path = "/"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 1000
	}
	d := net.Dialer{Timeout: opts.Timeout}
	if opts.Source != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(opts.Source)}
	}

	sendCtx := ctx
	if opts.For > 0 {
		var cancel context.CancelFunc
		sendCtx, cancel = context.WithTimeout(ctx, opts.For)
		defer cancel()
	}
	rep := &Report{Target: opts.Target, Source: opts.Source, Mode: opts.Mode, Rate: opts.Rate,
		Failures: map[string]int{}, Servers: map[string]*Server{}}
	results := make(chan result, 1024)
	var mu sync.Mutex
	var lat []time.Duration
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for r := range results {
			mu.Lock()
			collect(rep, r, &lat)
			mu.Unlock()
		}
	}()

	var wg sync.WaitGroup
	inflight := make(chan struct{}, opts.MaxInFlight)
	interval := time.Duration(float64(time.Second) / opts.Rate)
	start := time.Now()
	rep.StartUnixMs = start.UnixMilli()
	for i := 0; ; i++ {
		next := start.Add(time.Duration(i) * interval)
		if opts.For > 0 && next.Sub(start) >= opts.For {
			break // the last request falls inside the duration: rate × duration sent
		}
		if w := time.Until(next); w > 0 {
			select {
			case <-sendCtx.Done():
			case <-time.After(w):
			}
		}
		if sendCtx.Err() != nil {
			break
		}
		sent := time.Now()
		select {
		case inflight <- struct{}{}:
		default:
			results <- result{sent: sent, fail: FailOverload, err: errors.New("too many requests open")}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-inflight }()
			results <- one(&d, opts, sent)
		}()
	}
	wg.Wait()
	close(results)
	<-collected
	rep.EndUnixMs = time.Now().UnixMilli()
	slices.Sort(lat)
	if n := len(lat); n > 0 {
		rep.P50Ms = ms(lat[n*50/100])
		rep.P99Ms = ms(lat[min(n-1, n*99/100)])
		rep.MaxMs = ms(lat[n-1])
	}
	return rep, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func collect(rep *Report, r result, lat *[]time.Duration) {
	rep.Sent++
	if r.fail != "" {
		rep.Failed++
		rep.Failures[r.fail]++
		t := r.sent.UnixMilli()
		if rep.FirstFailureUnixMs == 0 || t < rep.FirstFailureUnixMs {
			rep.FirstFailureUnixMs = t
		}
		rep.LastFailureUnixMs = max(rep.LastFailureUnixMs, t)
		if len(rep.Errors) < 5 && r.err != nil {
			rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v", r.fail, r.err))
		}
		return
	}
	rep.Answered++
	*lat = append(*lat, r.latency)
	name := r.ans.Server
	if name == "" {
		name = "(unnamed)"
	}
	s := rep.Servers[name]
	t := r.sent.UnixMilli()
	if s == nil {
		s = &Server{FirstSentUnixMs: t}
		rep.Servers[name] = s
	}
	s.Count++
	s.FirstSentUnixMs = min(s.FirstSentUnixMs, t)
	s.LastSentUnixMs = max(s.LastSentUnixMs, t)
	if r.ans.Address != "" {
		if rep.Addresses == nil {
			rep.Addresses = map[string]*Server{}
		}
		a := rep.Addresses[r.ans.Address]
		if a == nil {
			a = &Server{FirstSentUnixMs: t}
			rep.Addresses[r.ans.Address] = a
		}
		a.Count++
		a.FirstSentUnixMs = min(a.FirstSentUnixMs, t)
		a.LastSentUnixMs = max(a.LastSentUnixMs, t)
	}
	if r.ans.Proxy {
		rep.ProxyHeaders++
		if r.ans.Client == r.local {
			rep.ProxyClientMatched++
		}
	}
}

// one makes one request on a new connection.
func one(d *net.Dialer, opts Options, sent time.Time) result {
	r := result{sent: sent}
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", opts.Target)
	if err != nil {
		r.fail, r.err = classify(err), err
		return r
	}
	defer conn.Close()
	r.local = conn.LocalAddr().String()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	br := bufio.NewReader(conn)
	var body []byte
	if opts.Mode == ModeHTTP {
		host, _, _ := net.SplitHostPort(opts.Target)
		if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: hikkoshi-meter\r\nConnection: close\r\n\r\n", opts.Path, host); err != nil {
			r.fail, r.err = classify(err), err
			return r
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			r.fail, r.err = classify(err), err
			return r
		}
		body, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			r.fail, r.err = classify(err), err
			return r
		}
		switch {
		case resp.StatusCode >= 500:
			r.fail, r.err = Fail5xx, fmt.Errorf("HTTP %s", resp.Status)
			return r
		case resp.StatusCode >= 300:
			r.fail, r.err = FailHTTPOther, fmt.Errorf("HTTP %s", resp.Status)
			return r
		}
	} else {
		line, err := br.ReadBytes('\n')
		if err != nil {
			r.fail, r.err = classify(err), err
			return r
		}
		body = line
	}
	r.latency = time.Since(sent)
	_ = json.Unmarshal(body, &r.ans) // an answer that is not a stand-in's still counts as answered
	return r
}

// classify names a network error's kind.
func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return FailRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return FailReset
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return FailUnreachable
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return FailClosed
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return FailTimeout
	}
	return FailOther
}

// Format writes the report for a person.
func (r *Report) Format(w io.Writer) {
	dur := time.Duration(r.EndUnixMs-r.StartUnixMs) * time.Millisecond
	fmt.Fprintf(w, "target %s (%s) at %.0f/s for %s from %s\n", r.Target, r.Mode, r.Rate, dur.Round(100*time.Millisecond), orDash(r.Source))
	fmt.Fprintf(w, "sent %d  answered %d  failed %d", r.Sent, r.Answered, r.Failed)
	if r.Failed > 0 {
		var kinds []string
		for k, n := range r.Failures {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		}
		sort.Strings(kinds)
		fmt.Fprintf(w, " (%s)", strings.Join(kinds, ", "))
	}
	fmt.Fprintf(w, "\nlatency p50 %.1f ms  p99 %.1f ms  max %.1f ms\n", r.P50Ms, r.P99Ms, r.MaxMs)
	names := make([]string, 0, len(r.Servers))
	for n := range r.Servers {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return r.Servers[names[i]].FirstSentUnixMs < r.Servers[names[j]].FirstSentUnixMs })
	for _, n := range names {
		s := r.Servers[n]
		fmt.Fprintf(w, "  %-16s %6d answers  from +%.1fs to +%.1fs\n", n, s.Count,
			float64(s.FirstSentUnixMs-r.StartUnixMs)/1000, float64(s.LastSentUnixMs-r.StartUnixMs)/1000)
	}
	if r.ProxyHeaders > 0 {
		fmt.Fprintf(w, "PROXY headers %d, naming this client's own address and port %d\n", r.ProxyHeaders, r.ProxyClientMatched)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "  e.g. %s\n", e)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
