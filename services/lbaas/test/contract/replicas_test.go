package contract

import (
	"sync"
	"testing"

	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
)

// TestTwoReplicasConflictingMemberUpdates: two lbaas processes on one etcd get
// conflicting member updates for one load balancer at the same moment: one drains
// web-1, adds web-3 and sets web-2's weight to 7; the other sets web-2's weight to 5
// and adds web-4. Both succeed in turn (web-2 ends with the weight of the one that ran
// last), and neither process ever met Octavia's 409: the etcd lock made the second
// wait instead of colliding.
func TestTwoReplicasConflictingMemberUpdates(t *testing.T) {
	f := newFixture(t)
	a := start(t, f.env, f.owner)
	b := start(t, f.env, f.owner)
	f.cleanup(t, a)
	ctx := t.Context()
	created, err := a.client.CreateLoadBalancer(ctx, &lbaasv1.CreateLoadBalancerRequest{LoadBalancer: f.proxyLB(f.owner+"-race", "TCP", 80, "PROXY")})
	if err != nil {
		t.Fatal(err)
	}
	name := created.GetLoadBalancer().GetName()
	conflicts := a.octaviaCalls(t, "409") + b.octaviaCalls(t, "409")

	ref := func(addr string) *lbaasv1.MemberRef { return &lbaasv1.MemberRef{Address: addr, Port: 8080} }
	reqs := []*lbaasv1.UpdateLoadBalancerRequest{
		{Name: name, MemberChanges: []*lbaasv1.MemberChange{
			{Change: &lbaasv1.MemberChange_Drain{Drain: ref("10.101.0.21")}},
			{Change: &lbaasv1.MemberChange_Add{Add: &lbaasv1.Member{Address: "10.101.0.23", Port: 8080, Weight: weight(3)}}},
			{Change: &lbaasv1.MemberChange_SetWeight{SetWeight: &lbaasv1.SetWeight{Member: ref("10.101.0.22"), Weight: 7}}},
		}},
		{Name: name, MemberChanges: []*lbaasv1.MemberChange{
			{Change: &lbaasv1.MemberChange_SetWeight{SetWeight: &lbaasv1.SetWeight{Member: ref("10.101.0.22"), Weight: 5}}},
			{Change: &lbaasv1.MemberChange_Add{Add: &lbaasv1.Member{Address: "10.101.0.24", Port: 8080}}},
		}},
	}
	results := make([][]string, 2)
	errs := make([]error, 2)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, p := range []*proc{a, b} {
		wg.Go(func() {
			<-start
			resp, err := p.client.UpdateLoadBalancer(ctx, reqs[i])
			results[i], errs[i] = resp.GetResults(), err
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v (no caller may see a conflict)", i, err)
		}
		t.Logf("replica %d: %q", i, results[i])
	}
	got, err := b.client.GetLoadBalancer(ctx, &lbaasv1.GetLoadBalancerRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	// The lock makes each update whole: web-2 has the weight of one of them, never
	// a mix of steps.
	m := members(got.GetLoadBalancer())
	want := map[string]int32{"10.101.0.21:8080": 0, "10.101.0.22:8080": m["10.101.0.22:8080"], "10.101.0.23:8080": 3, "10.101.0.24:8080": 1}
	if w := m["10.101.0.22:8080"]; (w != 5 && w != 7) || !equalMaps(m, want) || len(pending(got.GetLoadBalancer())) != 0 {
		t.Fatalf("members %v pending %v, want %v with web-2 at 5 or 7", m, pending(got.GetLoadBalancer()), want)
	}
	if n := a.octaviaCalls(t, "409") + b.octaviaCalls(t, "409") - conflicts; n != 0 {
		t.Fatalf("Octavia answered 409 %d times during the updates: the replicas collided", n)
	}
}
