// Package console is the migration's live web console, served by the inventory on
// its own port (read-only): the waves with each workload's state, the wave runs
// with each workload's step, the conversion jobs with bytes, rate and ETA, the
// bridges and the addresses moved over them, the load balancers with their members'
// health, and the services registered in etcd.
//
// The page is one self-contained file set embedded in the binary (no CDN, no build
// step). It opens one server-sent-events stream (/api/events) and redraws from each
// snapshot it gets; the snapshots are fed by the services' Watch streams
// (workloads, runs, jobs; each running job's own WatchJob for its bytes) and, for
// what has no Watch (bridges, load balancers), by a List every few seconds.
package console

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/platform/pagetoken"
)

//go:embed web
var web embed.FS

// Sources are the console's clients: the services it shows, through their
// generated clients, and etcd for the registry.
type Sources struct {
	Inventory inventoryv1.InventoryServiceClient
	Runs      inventoryv1.WaveRunServiceClient
	Converter converterv1.ConverterServiceClient
	Netbridge netbridgev1.NetbridgeServiceClient
	LBaaS     lbaasv1.LoadBalancerServiceClient
	Etcd      *clientv3.Client
	Log       *slog.Logger
	// Poll is how often what has no Watch stream is listed again (default 3 s);
	// runs and jobs are listed three times as often, to open their Watch streams
	// soon after they start.
	Poll time.Duration
}

// Console keeps the latest view of everything and sends it to the browsers.
type Console struct {
	src Sources

	mu        sync.Mutex
	workloads map[string]*inventoryv1.Workload
	runs      map[string]*inventoryv1.Run
	jobs      map[string]*converterv1.Job
	bridges   []*netbridgev1.Bridge
	lbs       []*lbaasv1.LoadBalancer
	services  map[string]json.RawMessage
	errs      map[string]string
	watching  map[string]bool // runs and jobs with a Watch stream open
	seq       int64
	subs      map[chan struct{}]struct{}
}

// New is a console over src; Run feeds it.
func New(src Sources) *Console {
	if src.Poll <= 0 {
		src.Poll = 3 * time.Second
	}
	if src.Log == nil {
		src.Log = slog.New(slog.DiscardHandler)
	}
	return &Console{src: src, workloads: map[string]*inventoryv1.Workload{}, runs: map[string]*inventoryv1.Run{},
		jobs: map[string]*converterv1.Job{}, services: map[string]json.RawMessage{}, errs: map[string]string{},
		watching: map[string]bool{}, subs: map[chan struct{}]struct{}{}}
}

// changed bumps the snapshot's sequence and wakes the event streams; call with
// c.mu held.
func (c *Console) changed() {
	c.seq++
	for ch := range c.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// setErr records (or clears, err nil) the last error of a source.
func (c *Console) setErr(source string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if c.errs[source] != msg {
		if msg == "" {
			delete(c.errs, source)
			c.src.Log.Info("console: source back", "source", source)
		} else {
			c.errs[source] = msg
			c.src.Log.Warn("console: source failing", "source", source, "err", msg)
		}
		c.changed()
	}
}

// Run feeds the console until ctx ends.
func (c *Console) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, f := range []func(context.Context){c.feedWorkloads, c.feedRuns, c.feedJobs, c.feedBridges, c.feedLBs, c.feedServices} {
		wg.Go(func() { f(ctx) })
	}
	wg.Wait()
}

// retry runs f again 2 s after each return until ctx ends, recording its errors
// under source.
func (c *Console) retry(ctx context.Context, source string, f func(context.Context) error) {
	for ctx.Err() == nil {
		err := f(ctx)
		if ctx.Err() != nil {
			return
		}
		c.setErr(source, err)
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

// poll runs f every interval.
func (c *Console) poll(ctx context.Context, source string, interval time.Duration, f func(context.Context) error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := f(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		c.setErr(source, err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Console) feedWorkloads(ctx context.Context) {
	c.retry(ctx, "inventory", func(ctx context.Context) error {
		stream, err := c.src.Inventory.WatchWorkloads(ctx, &inventoryv1.WatchWorkloadsRequest{IncludeExisting: true})
		if err != nil {
			return err
		}
		c.mu.Lock()
		clear(c.workloads)
		c.mu.Unlock()
		for {
			m, err := stream.Recv()
			if err != nil {
				return err
			}
			c.setErr("inventory", nil)
			w := m.GetWorkload()
			if w == nil {
				continue
			}
			c.mu.Lock()
			if m.GetType() == inventoryv1.WatchEventType_WATCH_EVENT_TYPE_DELETED {
				delete(c.workloads, w.GetName())
			} else {
				c.workloads[w.GetName()] = w
			}
			c.changed()
			c.mu.Unlock()
		}
	})
}

func runEnded(r *inventoryv1.Run) bool {
	switch r.GetState() {
	case inventoryv1.RunState_RUN_STATE_ABORTED, inventoryv1.RunState_RUN_STATE_DONE:
		return true
	}
	return false
}

func jobEnded(j *converterv1.Job) bool {
	switch j.GetState() {
	case converterv1.JobState_JOB_STATE_QUEUED, converterv1.JobState_JOB_STATE_RUNNING:
		return false
	}
	return true
}

// feedRuns lists the runs and follows each one not ended with its WatchRun.
func (c *Console) feedRuns(ctx context.Context) {
	c.poll(ctx, "runs", c.src.Poll/3, func(lctx context.Context) error {
		all, err := pagetoken.Collect(func(token string) ([]*inventoryv1.Run, string, error) {
			r, err := c.src.Runs.ListRuns(lctx, &inventoryv1.ListRunsRequest{PageSize: 200, PageToken: token})
			return r.GetRuns(), r.GetNextPageToken(), err
		})
		if err != nil {
			return err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, r := range all {
			if old := c.runs[r.GetName()]; old == nil || !proto.Equal(old, r) && !c.watching[r.GetName()] {
				c.runs[r.GetName()] = r
				c.changed()
			}
			if !runEnded(r) && !c.watching[r.GetName()] {
				c.watching[r.GetName()] = true
				go c.watchRun(ctx, r.GetName())
			}
		}
		return nil
	})
}

func (c *Console) watchRun(ctx context.Context, name string) {
	defer func() {
		c.mu.Lock()
		delete(c.watching, name)
		c.mu.Unlock()
	}()
	stream, err := c.src.Runs.WatchRun(ctx, &inventoryv1.WatchRunRequest{Name: name})
	if err != nil {
		return
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return // ended (EOF) or broken: the next list starts another
		}
		c.mu.Lock()
		c.runs[name] = m.GetRun()
		c.changed()
		c.mu.Unlock()
	}
}

// feedJobs lists the jobs and follows each one not ended with its WatchJob: its
// bytes, rate and ETA as the worker reports them.
func (c *Console) feedJobs(ctx context.Context) {
	c.poll(ctx, "converter", c.src.Poll/3, func(lctx context.Context) error {
		all, err := pagetoken.Collect(func(token string) ([]*converterv1.Job, string, error) {
			r, err := c.src.Converter.ListJobs(lctx, &converterv1.ListJobsRequest{PageSize: 500, PageToken: token})
			return r.GetJobs(), r.GetNextPageToken(), err
		})
		if err != nil {
			return err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		seen := map[string]bool{}
		for _, j := range all {
			seen[j.GetName()] = true
			if c.watching[j.GetName()] {
				continue
			}
			if old := c.jobs[j.GetName()]; old == nil || !proto.Equal(old, j) {
				c.jobs[j.GetName()] = j
				c.changed()
			}
			if !jobEnded(j) {
				c.watching[j.GetName()] = true
				go c.watchJob(ctx, j.GetName())
			}
		}
		for n := range c.jobs {
			if !seen[n] && !c.watching[n] {
				delete(c.jobs, n)
				c.changed()
			}
		}
		return nil
	})
}

func (c *Console) watchJob(ctx context.Context, name string) {
	defer func() {
		c.mu.Lock()
		delete(c.watching, name)
		c.mu.Unlock()
	}()
	stream, err := c.src.Converter.WatchJob(ctx, &converterv1.WatchJobRequest{Name: name})
	if err != nil {
		return
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return
		}
		c.mu.Lock()
		c.jobs[name] = m.GetJob()
		c.changed()
		c.mu.Unlock()
	}
}

func (c *Console) feedBridges(ctx context.Context) {
	c.poll(ctx, "netbridge", c.src.Poll, func(ctx context.Context) error {
		all, err := pagetoken.Collect(func(token string) ([]*netbridgev1.Bridge, string, error) {
			r, err := c.src.Netbridge.ListBridges(ctx, &netbridgev1.ListBridgesRequest{PageSize: 200, PageToken: token})
			return r.GetBridges(), r.GetNextPageToken(), err
		})
		if err != nil {
			return err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if !slices.EqualFunc(all, c.bridges, func(a, b *netbridgev1.Bridge) bool { return proto.Equal(a, b) }) {
			c.bridges = all
			c.changed()
		}
		return nil
	})
}

func (c *Console) feedLBs(ctx context.Context) {
	c.poll(ctx, "lbaas", c.src.Poll, func(ctx context.Context) error {
		all, err := pagetoken.Collect(func(token string) ([]*lbaasv1.LoadBalancer, string, error) {
			r, err := c.src.LBaaS.ListLoadBalancers(ctx, &lbaasv1.ListLoadBalancersRequest{PageSize: 200, PageToken: token})
			return r.GetLoadBalancers(), r.GetNextPageToken(), err
		})
		if err != nil {
			return err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if !slices.EqualFunc(all, c.lbs, func(a, b *lbaasv1.LoadBalancer) bool { return proto.Equal(a, b) }) {
			c.lbs = all
			c.changed()
		}
		return nil
	})
}

// feedServices follows the registry: each live instance's registration.
func (c *Console) feedServices(ctx context.Context) {
	c.retry(ctx, "etcd", func(ctx context.Context) error {
		resp, err := c.src.Etcd.Get(ctx, keys.ServicesPrefix, clientv3.WithPrefix())
		if err != nil {
			return err
		}
		c.mu.Lock()
		clear(c.services)
		for _, kv := range resp.Kvs {
			if json.Valid(kv.Value) {
				c.services[string(kv.Key)] = kv.Value
			}
		}
		c.changed()
		c.mu.Unlock()
		c.setErr("etcd", nil)
		wch := c.src.Etcd.Watch(clientv3.WithRequireLeader(ctx), keys.ServicesPrefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
		for wr := range wch {
			if err := wr.Err(); err != nil {
				return err
			}
			c.mu.Lock()
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypeDelete {
					delete(c.services, string(ev.Kv.Key))
				} else if json.Valid(ev.Kv.Value) {
					c.services[string(ev.Kv.Key)] = ev.Kv.Value
				}
			}
			c.changed()
			c.mu.Unlock()
		}
		return errors.New("registry watch ended")
	})
}

// snapshot is everything, as the page reads it (the API's JSON of each message).
func (c *Console) snapshot() ([]byte, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	msgs := func(n int, at func(int) proto.Message) []json.RawMessage {
		out := make([]json.RawMessage, 0, n)
		for i := range n {
			b, err := protojson.Marshal(at(i))
			if err == nil {
				out = append(out, b)
			}
		}
		return out
	}
	sorted := func(keys []string) []string { slices.Sort(keys); return keys }
	wl := sorted(mapKeys(c.workloads))
	rn := sorted(mapKeys(c.runs))
	jb := sorted(mapKeys(c.jobs))
	svcKeys := sorted(mapKeys(c.services))
	svcs := make([]json.RawMessage, 0, len(svcKeys))
	for _, k := range svcKeys {
		svcs = append(svcs, c.services[k])
	}
	b, _ := json.Marshal(map[string]any{
		"seq":           c.seq,
		"time":          time.Now().UTC().Format(time.RFC3339),
		"workloads":     msgs(len(wl), func(i int) proto.Message { return c.workloads[wl[i]] }),
		"runs":          msgs(len(rn), func(i int) proto.Message { return c.runs[rn[i]] }),
		"jobs":          msgs(len(jb), func(i int) proto.Message { return c.jobs[jb[i]] }),
		"bridges":       msgs(len(c.bridges), func(i int) proto.Message { return c.bridges[i] }),
		"loadBalancers": msgs(len(c.lbs), func(i int) proto.Message { return c.lbs[i] }),
		"services":      svcs,
		"errors":        c.errs,
	})
	return b, c.seq
}

func mapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Handler serves the page (/), the snapshot (/api/snapshot) and the event stream
// (/api/events: a "snapshot" event at once and after each change, at most 4 a
// second).
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(web, "web")
	mux.Handle("GET /", http.FileServerFS(static))
	mux.HandleFunc("GET /api/snapshot", func(w http.ResponseWriter, _ *http.Request) {
		b, _ := c.snapshot()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("GET /api/events", c.events)
	return securityHeaders(mux)
}

func (c *Console) events(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	ch := make(chan struct{}, 1)
	c.mu.Lock()
	c.subs[ch] = struct{}{}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.subs, ch)
		c.mu.Unlock()
	}()
	send := func() error {
		b, seq := c.snapshot()
		if _, err := fmt.Fprintf(w, "id: %d\nevent: snapshot\ndata: %s\n\n", seq, b); err != nil {
			return err
		}
		flusher.Flush()
		return nil
	}
	if send() != nil {
		return
	}
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-ch:
			if send() != nil {
				return
			}
			// Coalesce a burst of changes: at most 4 snapshots a second.
			select {
			case <-r.Context().Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
		case <-keepalive.C:
			if _, err := io.WriteString(w, ": keepalive\n\n"); err != nil {
				return
			}
			flusher.Flush()
		}
	}
}

// securityHeaders: the page loads nothing from anywhere else, and no other site
// may frame it.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		if strings.HasPrefix(r.URL.Path, "/api/") {
			w.Header().Set("Cache-Control", "no-store")
		}
		h.ServeHTTP(w, r)
	})
}
