package cmd

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
)

// syncBuffer is a bytes.Buffer the bar's render goroutine and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestBarViewShowsBytesRateAndETA: the terminal view of a watched job draws the
// step, the verified bytes of the total, the worker's rate and ETA, and ends at
// 100% when the job succeeds.
func TestBarViewShowsBytesRateAndETA(t *testing.T) {
	var out syncBuffer
	v := newBarView(&out)
	job := func(state converterv1.JobState, step converterv1.JobStep, done int64) *converterv1.Job {
		return &converterv1.Job{Name: "jobs/j1", State: state, Step: step, Progress: &converterv1.CopyProgress{
			TotalBytes: 8 << 20, DoneBytes: done, BytesPerSecond: 2 << 20, EtaSeconds: (8<<20 - done) / (2 << 20)}}
	}
	v.update(&converterv1.Job{Name: "jobs/j1", State: converterv1.JobState_JOB_STATE_RUNNING, Step: converterv1.JobStep_JOB_STEP_SNAPSHOT})
	v.update(job(converterv1.JobState_JOB_STATE_RUNNING, converterv1.JobStep_JOB_STEP_COPY, 2<<20))
	time.Sleep(400 * time.Millisecond) // a refresh or two
	mid := out.String()
	v.done(job(converterv1.JobState_JOB_STATE_SUCCEEDED, converterv1.JobStep_JOB_STEP_DONE, 8<<20))
	end := out.String()
	for _, want := range []string{"jobs/j1", "running", "copy", "25% 2.0 MiB / 8.0 MiB", "2.0 MiB/s", "ETA 3s"} {
		if !strings.Contains(mid, want) {
			t.Fatalf("while copying: no %q in %q", want, mid)
		}
	}
	for _, want := range []string{"succeeded", "100% 8.0 MiB / 8.0 MiB"} {
		if !strings.Contains(end, want) {
			t.Fatalf("at the end: no %q in %q", want, end)
		}
	}
}

func TestJobLineAndBytes(t *testing.T) {
	j := &converterv1.Job{Name: "jobs/j1", State: converterv1.JobState_JOB_STATE_RUNNING, Step: converterv1.JobStep_JOB_STEP_COPY,
		Progress: &converterv1.CopyProgress{TotalBytes: 3 << 30, DoneBytes: 1 << 30, BytesPerSecond: 100 << 20, EtaSeconds: 20}}
	if got, want := jobLine(j), "jobs/j1 running copy 33% 1.0 GiB/3.0 GiB 100.0 MiB/s ETA 20s"; got != want {
		t.Fatalf("jobLine: %q, want %q", got, want)
	}
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 5 << 40: "5.0 TiB"} {
		if got := bytesIEC(n); got != want {
			t.Fatalf("bytesIEC(%d) = %q, want %q", n, got, want)
		}
	}
}
