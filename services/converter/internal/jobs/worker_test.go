package jobs

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/platform/etcdtest"
)

// countingExec is an Executor that counts the jobs running at once per cloud.
type countingExec struct {
	mu      sync.Mutex
	running map[string]int
	max     map[string]int
	ran     int
	hold    time.Duration
}

func (e *countingExec) Run(ctx context.Context, j *converterv1.Job, save func(context.Context, *converterv1.Job) error) error {
	e.mu.Lock()
	for _, c := range jobClouds(j) {
		e.running[c]++
		e.max[c] = max(e.max[c], e.running[c])
	}
	e.ran++
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		for _, c := range jobClouds(j) {
			e.running[c]--
		}
		e.mu.Unlock()
	}()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(e.hold):
	}
	return nil
}

func (e *countingExec) Cleanup(context.Context, *converterv1.Job) error { return nil }

func (e *countingExec) Decommission(context.Context, *converterv1.Job) (*converterv1.Decommission, error) {
	return &converterv1.Decommission{}, nil
}

// TestCloudLimitAcrossWorkers runs two workers with room for three jobs each
// against a limit of two jobs at once in cloud "new": never more than two run there,
// a job held back says why while it waits, and every job ends SUCCEEDED.
func TestCloudLimitAcrossWorkers(t *testing.T) {
	c := etcdtest.Start(t).Client(t)
	store := NewStore(c)
	exec := &countingExec{running: map[string]int{}, max: map[string]int{}, hold: 300 * time.Millisecond}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for i, name := range []string{"w1", "w2"} {
		sess, err := concurrency.NewSession(c, concurrency.WithTTL(5))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sess.Close() })
		w := &Worker{
			Store: store, Etcd: c, Exec: exec, Instance: name, Session: func() *concurrency.Session { return sess },
			Concurrency: 3, CloudLimits: map[string]int{"new": 2}, Rescan: time.Duration(100+50*i) * time.Millisecond,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		}
		wg.Add(1)
		go func() { defer wg.Done(); w.Run(ctx) }()
	}
	var names []string
	for range 6 {
		j, err := store.Create(t.Context(), &converterv1.Job{
			Source:      &converterv1.V2VSource{Cloud: "old", ServerId: "s"},
			Destination: &converterv1.V2VDestination{Cloud: "new"},
		}, "", "")
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, j.GetName())
	}
	sawWaiting := ""
	deadline := time.Now().Add(30 * time.Second)
	for done := 0; done < len(names); {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d jobs ended in time", done, len(names))
		}
		done = 0
		for _, n := range names {
			id, _ := ID(n)
			j, _, err := store.Get(t.Context(), id)
			if err != nil {
				t.Fatal(err)
			}
			if Terminal(j.GetState()) {
				if j.GetState() != converterv1.JobState_JOB_STATE_SUCCEEDED {
					t.Fatalf("%s: %s %s", n, j.GetState(), j.GetError())
				}
				done++
			}
			if j.GetWaiting() != "" {
				sawWaiting = j.GetWaiting()
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	exec.mu.Lock()
	defer exec.mu.Unlock()
	if exec.max["new"] != 2 || exec.ran != len(names) {
		t.Fatalf("at most %d jobs ran at once in cloud new (want the limit, 2); %d runs for %d jobs", exec.max["new"], exec.ran, len(names))
	}
	if sawWaiting == "" {
		t.Fatalf("no queued job said why it waited")
	}
	left, err := c.Get(t.Context(), "/hikkoshi/converter/slots/", clientv3.WithPrefix())
	if err != nil || left.Count != 0 {
		t.Fatalf("%v slot keys left after every job ended (%v)", left.Count, err)
	}
	t.Logf("max at once in new: %d; waiting said %q", exec.max["new"], sawWaiting)
}

func TestParseCloudLimits(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]int
		bad  bool
	}{
		{in: "", want: map[string]int{}},
		{in: "old=2,new=4", want: map[string]int{"old": 2, "new": 4}},
		{in: " old=1 ", want: map[string]int{"old": 1}},
		{in: "old", bad: true},
		{in: "old=0", bad: true},
		{in: "=2", bad: true},
		{in: "old=x", bad: true},
	} {
		got, err := ParseCloudLimits(tc.in)
		if (err != nil) != tc.bad {
			t.Fatalf("%q: err %v", tc.in, err)
		}
		if !tc.bad && len(got) != len(tc.want) {
			t.Fatalf("%q: %v, want %v", tc.in, got, tc.want)
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Fatalf("%q: %v, want %v", tc.in, got, tc.want)
			}
		}
	}
}
