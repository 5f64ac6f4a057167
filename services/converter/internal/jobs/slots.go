package jobs

import (
	"context"
	"fmt"
	"sort"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	"github.com/hikkoshi/hikkoshi/platform/keys"
)

// A cloud's job limit (--cloud-jobs) is a counting semaphore in etcd: slot keys
// keys.JobSlot(cloud, k) for k below the limit, each naming the job that holds it,
// written under the holding worker's lease. A worker takes a slot of every limited
// cloud a job touches (source and destination) before it claims the job, and gives
// them back when the job ends or is handed over; a worker that dies lets go with its
// lease. (etcd's concurrency package has mutexes and elections, no semaphore.)

// jobClouds returns the distinct clouds a job touches, sorted (a fixed order of
// acquisition).
func jobClouds(j *converterv1.Job) []string {
	cs := []string{j.GetSource().GetCloud()}
	if IsP2V(j) {
		cs[0] = j.GetP2VImage().GetCloud() // where it boots too, if it does
	}
	if d := j.GetDestination().GetCloud(); d != "" && d != cs[0] {
		cs = append(cs, d)
	}
	sort.Strings(cs)
	return cs
}

// takeSlots takes one slot of each limited cloud of j for job id under lease. When
// a cloud has none free it gives back what it took and says which cloud is full.
func (w *Worker) takeSlots(ctx context.Context, id string, j *converterv1.Job, lease clientv3.LeaseID) (held []string, waiting string, err error) {
	for _, cloud := range jobClouds(j) {
		limit, ok := w.CloudLimits[cloud]
		if !ok {
			continue
		}
		key := ""
		for k := range limit {
			sk := keys.JobSlot(cloud, k)
			resp, err := w.Etcd.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(sk), "=", 0)).
				Then(clientv3.OpPut(sk, id, clientv3.WithLease(lease))).Commit()
			if err != nil {
				w.giveSlots(ctx, id, held)
				return nil, "", err
			}
			if resp.Succeeded {
				key = sk
				break
			}
		}
		if key == "" {
			w.giveSlots(ctx, id, held)
			return nil, fmt.Sprintf("cloud %q runs its limit of %d job(s) at once (--cloud-jobs); waiting for one to end", cloud, limit), nil
		}
		held = append(held, key)
	}
	return held, "", nil
}

// giveSlots deletes the slot keys that job id holds.
func (w *Worker) giveSlots(ctx context.Context, id string, held []string) {
	for _, sk := range held {
		_, _ = w.Etcd.Txn(ctx).If(clientv3.Compare(clientv3.Value(sk), "=", id)).Then(clientv3.OpDelete(sk)).Commit()
	}
}

// ParseCloudLimits parses --cloud-jobs: "old=2,new=4".
func ParseCloudLimits(s string) (map[string]int, error) {
	out := map[string]int{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		name, n, ok := strings.Cut(strings.TrimSpace(part), "=")
		var limit int
		if _, err := fmt.Sscan(n, &limit); !ok || name == "" || err != nil || limit < 1 {
			return nil, fmt.Errorf("--cloud-jobs %q: write CLOUD=N with N ≥ 1, comma-separated (old=2,new=4)", part)
		}
		out[name] = limit
	}
	return out, nil
}
