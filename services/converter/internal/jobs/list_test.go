package jobs

import (
	"log/slog"
	"slices"
	"testing"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/platform/etcdtest"
	"github.com/hikkoshi/hikkoshi/platform/store"
)

// TestListJobsPagesInEtcd: ListJobs pages newest first, with a state filter, over
// more jobs than one etcd read returns; every job comes once, and a small page
// reads only the batch it needs.
func TestListJobsPagesInEtcd(t *testing.T) {
	c := etcdtest.Start(t).Client(t)
	jobs := NewStore(c)
	srv := &Server{store: jobs, etcd: c, log: slog.New(slog.DiscardHandler)}
	ctx := t.Context()
	var all, failed []string
	for i := range store.DefaultBatch + 37 {
		j, err := jobs.Create(ctx, &converterv1.Job{P2VSource: &converterv1.P2VSource{DiskPath: "/d", InspectOnly: true}}, "", "")
		if err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			id, _ := ID(j.GetName())
			if _, err := jobs.Update(ctx, id, func(cur *converterv1.Job) (bool, error) {
				cur.State = converterv1.JobState_JOB_STATE_FAILED
				return true, nil
			}); err != nil {
				t.Fatal(err)
			}
			failed = append(failed, j.GetName())
		}
		all = append(all, j.GetName())
	}
	// Newest first is by name: a job ID begins with its creation time.
	slices.Sort(all)
	slices.Reverse(all)
	slices.Sort(failed)
	slices.Reverse(failed)
	for _, c := range []struct {
		state converterv1.JobState
		size  int32
		want  []string
	}{{0, 7, all}, {0, 500, all}, {converterv1.JobState_JOB_STATE_FAILED, 5, failed}} {
		var got []string
		token := ""
		for {
			resp, err := srv.ListJobs(ctx, &converterv1.ListJobsRequest{PageSize: c.size, PageToken: token, State: c.state})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.GetJobs()) > int(c.size) {
				t.Fatalf("a page of %d, asked %d", len(resp.GetJobs()), c.size)
			}
			for _, j := range resp.GetJobs() {
				got = append(got, j.GetName())
			}
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
		}
		if !slices.Equal(got, c.want) {
			t.Fatalf("state %s, pages of %d: %d jobs, want %d (newest first, each once)", c.state, c.size, len(got), len(c.want))
		}
	}
}
