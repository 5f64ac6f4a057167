package contract

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
)

// BenchmarkCreate20Concurrent creates 20 load balancers (TCP listener, PROXYV2 pool,
// 2 members, TCP monitor) at once through one lbaas process, each call returning when
// its tree is ACTIVE, and reports:
//
//	s/create       mean time of one CreateLoadBalancer call (caller's clock)
//	octavia-s/lb   mean of Octavia's own time: updated_at - created_at of the load
//	               balancer (whole seconds: Octavia's timestamps have no fraction)
//	overhead-x     the two as a ratio: what the service's waits and serial calls add
//	calls/lb       Octavia API calls per load balancer (Keystone's not counted)
//	s/batch        wall time of the 20
//
// The first create of a process learns whether single-call creates work here (in
// the dev cloud they leave children stuck, so it goes serial): that warm-up is not
// timed. Run with -benchtime 1x (one batch takes seconds).
func BenchmarkCreate20Concurrent(b *testing.B) {
	const n = 20
	f := newFixture(b)
	p := start(b, f.env, f.owner)
	f.cleanup(b, p)
	ctx := context.Background()
	create := func(name string) (*lbaasv1.LoadBalancer, time.Duration, error) {
		t0 := time.Now()
		resp, err := p.client.CreateLoadBalancer(ctx, &lbaasv1.CreateLoadBalancerRequest{LoadBalancer: f.proxyLB(name, "TCP", 80, "PROXYV2")})
		return resp.GetLoadBalancer(), time.Since(t0), err
	}
	remove := func(lbs []*lbaasv1.LoadBalancer) {
		var wg sync.WaitGroup
		for _, lb := range lbs {
			wg.Go(func() {
				if _, err := p.client.DeleteLoadBalancer(ctx, &lbaasv1.DeleteLoadBalancerRequest{Name: lb.GetName(), AllowMissing: true}); err != nil {
					b.Errorf("delete %s: %v", lb.GetName(), err)
				}
			})
		}
		wg.Wait()
	}
	warm, _, err := create(f.owner + "-warm")
	if err != nil {
		b.Fatal(err)
	}
	remove([]*lbaasv1.LoadBalancer{warm})

	var calls, batches int
	var wall, octavia, batch time.Duration
	modes := map[string]int{}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		before := p.octaviaCalls(b, "")
		lbs := make([]*lbaasv1.LoadBalancer, n)
		took := make([]time.Duration, n)
		errs := make([]error, n)
		t0 := time.Now()
		var wg sync.WaitGroup
		for j := range n {
			wg.Go(func() { lbs[j], took[j], errs[j] = create(fmt.Sprintf("%s-%d-%d", f.owner, i, j)) })
		}
		wg.Wait()
		batch += time.Since(t0)
		batches++
		b.StopTimer()
		calls += p.octaviaCalls(b, "") - before
		for j := range n {
			if errs[j] != nil {
				b.Fatalf("create %d: %v", j, errs[j])
			}
			wall += took[j]
			octavia += lbs[j].GetUpdateTime().AsTime().Sub(lbs[j].GetCreateTime().AsTime())
			modes[lbs[j].GetCreateMode()]++
		}
		remove(slices.DeleteFunc(lbs, func(lb *lbaasv1.LoadBalancer) bool { return lb == nil }))
		b.StartTimer()
	}
	total := float64(batches * n)
	b.ReportMetric(wall.Seconds()/total, "s/create")
	b.ReportMetric(octavia.Seconds()/total, "octavia-s/lb")
	if octavia > 0 {
		b.ReportMetric(wall.Seconds()/octavia.Seconds(), "overhead-x")
	}
	b.ReportMetric(float64(calls)/total, "calls/lb")
	b.ReportMetric(batch.Seconds()/float64(batches), "s/batch")
	b.ReportMetric(0, "ns/op") // one op is a batch of 20; the metrics above say it better
	b.Logf("create modes: %v", modes)
}
