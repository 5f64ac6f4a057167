package contract

import (
	"context"
	"fmt"
	"testing"
	"time"

	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud/meter"
)

// TestDataPlaneThroughLbaas drives the dev cloud's data plane (tilt/devcloud/dataplane)
// through load balancers built by lbaas, with the traffic meter as the client: the
// PROXY v2 header reaches the servers with the client's own address; a pool without
// PROXY in front of a server that requires it fails every request while its health
// check stays green (what users meet in real life); a drain under steady traffic
// fails nothing and sends no new connection to the drained server; a server stopped
// without a drain fails requests, and the meter counts them.
func TestDataPlaneThroughLbaas(t *testing.T) {
	f := newFixture(t)
	meterBin, cleanup, err := servicetest.Build("github.com/hikkoshi/hikkoshi/tilt/devcloud/cmd/hikkoshi-devcloud")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	p := start(t, f.env, f.owner)
	f.cleanup(t, p)
	req := map[string]string{devcloud.MetaProxyProtocol: "required"}
	a := devcloud.BootStandin(t, f.owner+"-web-a", "10.101.0.121", req)
	b := devcloud.BootStandin(t, f.owner+"-web-b", "10.101.0.122", req)
	ctx := t.Context()

	lb := &lbaasv1.LoadBalancer{
		DisplayName: f.owner + "-dp", Vip: &lbaasv1.Vip{SubnetId: f.subnetID},
		Listeners: []*lbaasv1.Listener{{Protocol: "TCP", Port: 80, Pool: &lbaasv1.Pool{
			DisplayName: f.owner + "-dp-pool", Protocol: "PROXYV2",
			Members: []*lbaasv1.Member{
				{DisplayName: a.Name, Address: a.IP, Port: 8080},
				{DisplayName: b.Name, Address: b.IP, Port: 8080},
			},
			HealthMonitor: &lbaasv1.HealthMonitor{Type: "TCP", DelaySeconds: 1, TimeoutSeconds: 1, MaxRetries: 1},
		}}},
	}
	resp, err := p.client.CreateLoadBalancer(ctx, &lbaasv1.CreateLoadBalancerRequest{LoadBalancer: lb})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	name := resp.GetLoadBalancer().GetName()
	vip := resp.GetLoadBalancer().GetVip().GetAddress()
	if vip == "" || vip == "198.51.100.1" {
		t.Fatalf("VIP %q: want an address of its own on the VLAN subnet", vip)
	}
	target := vip + ":80"
	t.Logf("load balancer %s: VIP %s", name, vip)
	// Octavia reports member health as haproxy sees it (the data plane's heartbeat).
	waitMembers(t, p, name, map[string]string{a.IP: "ONLINE", b.IP: "ONLINE"})

	r := devcloud.Meter(t, meterBin, "--addr", target, "--rate", "20", "--for", "3s")
	t.Logf("PROXYV2 pool: %s", summary(r))
	if r.Failed != 0 || r.Answered == 0 {
		t.Fatalf("PROXYV2 pool: %d of %d failed: %v %v", r.Failed, r.Sent, r.Failures, r.Errors)
	}
	if r.ProxyClientMatched != r.Answered {
		t.Fatalf("PROXYV2 pool: %d of %d answers name the meter's own address and port", r.ProxyClientMatched, r.Answered)
	}
	if r.Servers[a.Name] == nil || r.Servers[b.Name] == nil {
		t.Fatalf("PROXYV2 pool: answered by %v, want both servers", r.Servers)
	}

	t.Run("a TCP pool in front of a server that requires PROXY", func(t *testing.T) {
		plain := &lbaasv1.LoadBalancer{
			DisplayName: f.owner + "-plain", Vip: &lbaasv1.Vip{SubnetId: f.subnetID},
			Listeners: []*lbaasv1.Listener{{Protocol: "TCP", Port: 80, Pool: &lbaasv1.Pool{
				DisplayName: f.owner + "-plain-pool", Protocol: "TCP",
				Members:       []*lbaasv1.Member{{DisplayName: a.Name, Address: a.IP, Port: 8080}},
				HealthMonitor: &lbaasv1.HealthMonitor{Type: "TCP", DelaySeconds: 1, TimeoutSeconds: 1, MaxRetries: 1},
			}}},
		}
		resp, err := p.client.CreateLoadBalancer(ctx, &lbaasv1.CreateLoadBalancerRequest{LoadBalancer: plain})
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		// The TCP check only connects: it passes, and the member looks healthy.
		waitMembers(t, p, resp.GetLoadBalancer().GetName(), map[string]string{a.IP: "ONLINE"})
		r := devcloud.Meter(t, meterBin, "--addr", resp.GetLoadBalancer().GetVip().GetAddress()+":80", "--rate", "10", "--for", "2s")
		t.Logf("TCP pool: %s", summary(r))
		if r.Answered != 0 || r.Failed == 0 {
			t.Fatalf("TCP pool to a PROXY-requiring server: %d answered, %d failed; want every request refused", r.Answered, r.Failed)
		}
	})

	t.Run("drain under steady traffic", func(t *testing.T) {
		m := devcloud.StartMeter(t, meterBin, "--addr", target, "--rate", "50")
		time.Sleep(2 * time.Second)
		if _, err := p.client.UpdateLoadBalancer(ctx, &lbaasv1.UpdateLoadBalancerRequest{Name: name, MemberChanges: []*lbaasv1.MemberChange{
			{Change: &lbaasv1.MemberChange_Drain{Drain: &lbaasv1.MemberRef{Address: a.IP, Port: 8080}}},
		}}); err != nil {
			t.Fatalf("drain: %v", err)
		}
		drained := time.Now().UnixMilli() // the drain is ACTIVE: haproxy has reloaded with weight 0
		time.Sleep(3 * time.Second)
		r := m.Stop(t)
		t.Logf("drain: %s; drain ACTIVE at +%.1fs", summary(r), float64(drained-r.StartUnixMs)/1000)
		if r.Failed != 0 {
			t.Fatalf("drain: %d of %d requests failed: %v %v", r.Failed, r.Sent, r.Failures, r.Errors)
		}
		if s := r.Servers[a.Name]; s == nil || s.LastSentUnixMs >= drained {
			t.Fatalf("drain: the drained server answered a request sent after the drain was ACTIVE: %+v (drained at %d)", s, drained)
		}
		if s := r.Servers[b.Name]; s == nil || s.LastSentUnixMs < drained {
			t.Fatalf("drain: the other server took no request after the drain: %+v", s)
		}
		waitMembers(t, p, name, map[string]string{a.IP: "DRAINING", b.IP: "ONLINE"})
	})

	t.Run("a server stopped without a drain", func(t *testing.T) {
		m := devcloud.StartMeter(t, meterBin, "--addr", target, "--rate", "50", "--timeout", "1s")
		time.Sleep(time.Second)
		b.Stop(t)
		time.Sleep(3 * time.Second)
		r := m.Stop(t)
		t.Logf("stop without drain: %s", summary(r))
		if r.Failed == 0 {
			t.Fatalf("stop without drain: no request failed (%d sent): the meter is blind", r.Sent)
		}
		waitMembers(t, p, name, map[string]string{b.IP: "ERROR"})
	})
}

// waitMembers waits until each member address has the operating status wanted in
// Octavia (as lbaas reads it).
func waitMembers(t *testing.T, p *proc, name string, want map[string]string) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	var got map[string]string
	for time.Now().Before(deadline) {
		resp, err := p.client.GetLoadBalancer(context.Background(), &lbaasv1.GetLoadBalancerRequest{Name: name})
		if err != nil {
			t.Fatalf("get %s: %v", name, err)
		}
		got = map[string]string{}
		for _, m := range resp.GetLoadBalancer().GetListeners()[0].GetPool().GetMembers() {
			got[m.GetAddress()] = m.GetStatus().GetOperatingStatus()
		}
		ok := true
		for ip, st := range want {
			ok = ok && got[ip] == st
		}
		if ok {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("members of %s: %v, want %v", name, got, want)
}

func summary(r *meter.Report) string {
	s := fmt.Sprintf("sent %d answered %d failed %d %v, p50 %.1f ms p99 %.1f ms", r.Sent, r.Answered, r.Failed, r.Failures, r.P50Ms, r.P99Ms)
	for n, sv := range r.Servers {
		s += fmt.Sprintf("; %s %d", n, sv.Count)
	}
	return s
}
