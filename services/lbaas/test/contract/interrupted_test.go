package contract

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/listeners"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/loadbalancers"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/pools"

	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

// TestRetryAfterAnInterruptedCreateBuildsTheWholeTree: a create of a request_id that
// was cut off part way (the Octavia API restarted between the member and the monitor,
// and the clean-up failed too) left an ACTIVE load balancer tagged with the request,
// with its listener, pool and member but no health monitor. The retry with the same
// request_id must not hand that one out as the load balancer asked for: it deletes it
// and builds the whole tree.
func TestRetryAfterAnInterruptedCreateBuildsTheWholeTree(t *testing.T) {
	f := newFixture(t)
	p := start(t, f.env, f.owner)
	f.cleanup(t, p)
	ctx := t.Context()
	lc, err := devcloud.Open(t, "old").LoadBalancer()
	if err != nil {
		t.Fatal(err)
	}
	const rid = "ctest-interrupted-1"
	spec := f.proxyLB(f.owner+"-interrupted", "TCP", 80, "PROXYV2")
	// What the interrupted create left: everything but the monitor, with the tags the
	// service puts on its creates, built object by object as a serial create does
	// (each after the load balancer is ACTIVE again).
	left, err := loadbalancers.Create(ctx, lc, loadbalancers.CreateOpts{
		Name: spec.GetDisplayName(), VipSubnetID: f.subnetID, Tags: []string{f.owner, "hikkoshi-request:" + rid},
	}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = loadbalancers.Delete(context.Background(), lc, left.ID, loadbalancers.DeleteOpts{Cascade: true}).ExtractErr()
	})
	active := func() {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(300 * time.Millisecond) {
			lb, err := loadbalancers.Get(ctx, lc, left.ID).Extract()
			if err == nil && lb.ProvisioningStatus == "ACTIVE" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the partial load balancer is not ACTIVE: %v %v", lb, err)
			}
		}
	}
	active()
	l, err := listeners.Create(ctx, lc, listeners.CreateOpts{LoadbalancerID: left.ID, Protocol: listeners.ProtocolTCP, ProtocolPort: 80}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	active()
	pl, err := pools.Create(ctx, lc, pools.CreateOpts{ListenerID: l.ID, LBMethod: pools.LBMethodRoundRobin, Protocol: pools.ProtocolPROXYV2}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	active()
	if _, err := pools.CreateMember(ctx, lc, pl.ID, pools.CreateMemberOpts{Address: "10.101.0.21", ProtocolPort: 8080}).Extract(); err != nil {
		t.Fatal(err)
	}
	active()

	resp, err := p.client.CreateLoadBalancer(ctx, &lbaasv1.CreateLoadBalancerRequest{RequestId: rid, LoadBalancer: spec})
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	lb := resp.GetLoadBalancer()
	pool := lb.GetListeners()[0].GetPool()
	if lb.GetId() == left.ID || lb.GetCreateMode() == "taken-over" {
		t.Fatalf("the retry took over the partial load balancer %s (mode %s)", left.ID, lb.GetCreateMode())
	}
	if pool.GetHealthMonitor().GetType() != "TCP" || len(pool.GetMembers()) != 2 || len(pending(lb)) != 0 {
		t.Fatalf("the retry's tree is not whole: monitor %v, %d members, pending %v", pool.GetHealthMonitor(), len(pool.GetMembers()), pending(lb))
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
		got, err := loadbalancers.Get(ctx, lc, left.ID).Extract()
		if gophercloud.ResponseCodeIs(err, http.StatusNotFound) || err == nil && got.ProvisioningStatus == "DELETED" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the partial load balancer %s is still there: %v %v", left.ID, got, err)
		}
	}
	again, err := p.client.CreateLoadBalancer(ctx, &lbaasv1.CreateLoadBalancerRequest{RequestId: rid, LoadBalancer: spec})
	if err != nil || again.GetLoadBalancer().GetId() != lb.GetId() {
		t.Fatalf("a second retry: %v, %v; want the rebuilt %s", again.GetLoadBalancer().GetId(), err, lb.GetId())
	}
	t.Logf("partial %s deleted; rebuilt %s (%s) whole", left.ID, lb.GetId(), lb.GetCreateMode())
}
