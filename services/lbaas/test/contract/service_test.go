package contract

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
)

// TestCreateGetWatchListDelete builds each must-have combination through the service,
// reads it back, watches it (settled at once), lists it by owner tag and deletes it;
// nothing is left behind.
func TestCreateGetWatchListDelete(t *testing.T) {
	f := newFixture(t)
	p := start(t, f.env, f.owner)
	f.cleanup(t, p)
	for _, c := range []struct {
		name, listener string
		port           int32
		pool           string
	}{
		{"tcp-proxy", "TCP", 80, "PROXY"},
		{"tcp-proxyv2", "TCP", 81, "PROXYV2"},
		{"http-proxy", "HTTP", 8080, "PROXY"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := t.Context()
			want := f.proxyLB(f.owner+"-"+c.name, c.listener, c.port, c.pool)
			resp, err := p.client.CreateLoadBalancer(ctx, &lbaasv1.CreateLoadBalancerRequest{LoadBalancer: want})
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			lb := resp.GetLoadBalancer()
			if left := pending(lb); len(left) != 0 {
				t.Fatalf("created, but not ACTIVE: %v", left)
			}
			t.Logf("%s: %s built %s", c.name, lb.GetName(), lb.GetCreateMode())
			l := lb.GetListeners()
			if len(l) != 1 || l[0].GetProtocol() != c.listener || l[0].GetPort() != c.port {
				t.Fatalf("listeners %v, want one %s:%d", l, c.listener, c.port)
			}
			pool := l[0].GetPool()
			if pool.GetProtocol() != c.pool || len(pool.GetMembers()) != 2 || pool.GetHealthMonitor().GetType() != "TCP" {
				t.Fatalf("pool %v, want %s with 2 members and a TCP monitor", pool, c.pool)
			}
			if !slices.Contains(lb.GetTags(), f.owner) {
				t.Fatalf("tags %v lack the owner tag", lb.GetTags())
			}

			got, err := p.client.GetLoadBalancer(ctx, &lbaasv1.GetLoadBalancerRequest{Name: lb.GetName()})
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			if g, w := got.GetLoadBalancer(), withoutMode(lb); !proto.Equal(withoutTimes(g), withoutTimes(w)) {
				t.Fatalf("get returned\n%v\nwant\n%v", g, w)
			}

			msgs := watch(t, p, lb.GetName(), false)
			if len(msgs) != 1 || !msgs[0].GetSettled() || msgs[0].GetLoadBalancer().GetStatus().GetProvisioningStatus() != "ACTIVE" {
				t.Fatalf("watch of a settled load balancer: %v, want one settled ACTIVE message", msgs)
			}

			list, err := p.client.ListLoadBalancers(ctx, &lbaasv1.ListLoadBalancersRequest{})
			if err != nil {
				t.Fatalf("list: %v", err)
			}
			if !slices.ContainsFunc(list.GetLoadBalancers(), func(x *lbaasv1.LoadBalancer) bool { return x.GetId() == lb.GetId() }) {
				t.Fatalf("list by owner tag lacks %s", lb.GetName())
			}

			if _, err := p.client.DeleteLoadBalancer(ctx, &lbaasv1.DeleteLoadBalancerRequest{Name: lb.GetName()}); err != nil {
				t.Fatalf("delete: %v", err)
			}
			_, err = p.client.GetLoadBalancer(ctx, &lbaasv1.GetLoadBalancerRequest{Name: lb.GetName()})
			servicetest.WantCode(t, err, codes.NotFound)
		})
	}
	list, err := p.client.ListLoadBalancers(t.Context(), &lbaasv1.ListLoadBalancersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.GetLoadBalancers()); n != 0 {
		t.Fatalf("%d load balancers left with the owner tag after cascade deletes", n)
	}
}

func withoutMode(lb *lbaasv1.LoadBalancer) *lbaasv1.LoadBalancer {
	c := proto.CloneOf(lb)
	c.CreateMode = ""
	return c
}

// withoutTimes drops what changes between two reads of a settled load balancer: its
// times, and the operating statuses, which the dev cloud's data plane keeps current
// from haproxy's health checks (a member without a server goes ONLINE → ERROR).
func withoutTimes(lb *lbaasv1.LoadBalancer) *lbaasv1.LoadBalancer {
	c := proto.CloneOf(lb)
	c.UpdateTime, c.CreateTime = nil, nil
	clear := func(st *lbaasv1.Status) {
		if st != nil {
			st.OperatingStatus = ""
		}
	}
	clear(c.GetStatus())
	for _, l := range c.GetListeners() {
		clear(l.GetStatus())
		if p := l.GetPool(); p != nil {
			clear(p.GetStatus())
			for _, m := range p.GetMembers() {
				clear(m.GetStatus())
			}
			clear(p.GetHealthMonitor().GetStatus())
		}
	}
	return c
}

// watch collects a WatchLoadBalancer stream until it ends.
func watch(t *testing.T, p *proc, name string, waitForChange bool) []*lbaasv1.WatchLoadBalancerResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	stream, err := p.client.WatchLoadBalancer(ctx, &lbaasv1.WatchLoadBalancerRequest{Name: name, WaitForChange: waitForChange})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	var out []*lbaasv1.WatchLoadBalancerResponse
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("watch after %d messages: %v", len(out), err)
		}
		out = append(out, m)
	}
}

// TestRefusedBeforeAnyCall: bad requests are refused with the field path and a
// sentence, and the service sends nothing to Octavia for them.
func TestRefusedBeforeAnyCall(t *testing.T) {
	f := newFixture(t)
	p := start(t, f.env, f.owner)
	ctx := t.Context()
	before := p.octaviaCalls(t, "")

	udp := f.proxyLB(f.owner+"-udp", "UDP", 53, "PROXY")
	udp.Listeners[0].Pool.HealthMonitor = nil
	_, err := p.client.CreateLoadBalancer(ctx, &lbaasv1.CreateLoadBalancerRequest{LoadBalancer: udp})
	servicetest.WantCode(t, err, codes.FailedPrecondition)
	fv := apierr.FieldViolations(err)
	if d := fv["load_balancer.listeners[0].pool.protocol"]; !strings.Contains(d, "a UDP listener cannot use a PROXY pool") {
		t.Fatalf("UDP+PROXY: violations %v", fv)
	}

	noVIP := f.proxyLB(f.owner+"-novip", "TCP", 80, "PROXY")
	noVIP.Vip = nil
	noVIP.Listeners[0].Pool.Members[1].Port = 0
	noVIP.Listeners[0].Pool.HealthMonitor.TimeoutSeconds = 9
	_, err = p.client.CreateLoadBalancer(ctx, &lbaasv1.CreateLoadBalancerRequest{LoadBalancer: noVIP, RequestId: "not a request id"})
	servicetest.WantCode(t, err, codes.InvalidArgument)
	fv = apierr.FieldViolations(err)
	for _, path := range []string{
		"request_id", "load_balancer.vip.subnet_id", "load_balancer.listeners[0].pool.members[1].port",
		"load_balancer.listeners[0].pool.health_monitor.timeout_seconds",
	} {
		if fv[path] == "" {
			t.Errorf("no violation for %s in %v", path, fv)
		}
	}

	_, err = p.client.GetLoadBalancer(ctx, &lbaasv1.GetLoadBalancerRequest{Name: "web"})
	servicetest.WantCode(t, err, codes.InvalidArgument)
	_, err = p.client.UpdateLoadBalancer(ctx, &lbaasv1.UpdateLoadBalancerRequest{
		Name: "loadBalancers/00000000-0000-0000-0000-000000000000",
		MemberChanges: []*lbaasv1.MemberChange{
			{Change: &lbaasv1.MemberChange_Drain{Drain: &lbaasv1.MemberRef{Address: "web-1"}}},
			{},
		},
	})
	servicetest.WantCode(t, err, codes.InvalidArgument)
	fv = apierr.FieldViolations(err)
	if fv["member_changes[0].drain.address"] == "" || fv["member_changes[0].drain.port"] == "" || fv["member_changes[1]"] == "" {
		t.Fatalf("update violations %v", fv)
	}
	if after := p.octaviaCalls(t, ""); after != before {
		t.Fatalf("%d Octavia calls for refused requests, want 0", after-before)
	}

	// Well-formed, but nothing by that name: NOT_FOUND from Octavia.
	_, err = p.client.GetLoadBalancer(ctx, &lbaasv1.GetLoadBalancerRequest{Name: "loadBalancers/00000000-0000-0000-0000-000000000000"})
	servicetest.WantCode(t, err, codes.NotFound)
	_, err = p.client.DeleteLoadBalancer(ctx, &lbaasv1.DeleteLoadBalancerRequest{Name: "loadBalancers/00000000-0000-0000-0000-000000000000"})
	servicetest.WantCode(t, err, codes.NotFound)
	if _, err = p.client.DeleteLoadBalancer(ctx, &lbaasv1.DeleteLoadBalancerRequest{
		Name: "loadBalancers/00000000-0000-0000-0000-000000000000", AllowMissing: true,
	}); err != nil {
		t.Fatalf("delete with allow_missing: %v", err)
	}
}

// TestRequestIDMakesOneLoadBalancer: the same create sent three times at once, and
// once more later, makes one load balancer; the same request_id with another spec
// is refused.
func TestRequestIDMakesOneLoadBalancer(t *testing.T) {
	f := newFixture(t)
	p := start(t, f.env, f.owner)
	f.cleanup(t, p)
	req := &lbaasv1.CreateLoadBalancerRequest{LoadBalancer: f.proxyLB(f.owner+"-idem", "TCP", 80, "PROXYV2"), RequestId: f.owner}
	ids := make([]string, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			resp, err := p.client.CreateLoadBalancer(t.Context(), req)
			ids[i], errs[i] = resp.GetLoadBalancer().GetId(), err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	again, err := p.client.CreateLoadBalancer(t.Context(), req)
	if err != nil {
		t.Fatalf("repeat: %v", err)
	}
	ids = append(ids, again.GetLoadBalancer().GetId())
	if ids[0] == "" || slices.ContainsFunc(ids, func(id string) bool { return id != ids[0] }) {
		t.Fatalf("IDs %v: want one load balancer", ids)
	}
	list, err := p.client.ListLoadBalancers(t.Context(), &lbaasv1.ListLoadBalancersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.GetLoadBalancers()); n != 1 {
		t.Fatalf("%d load balancers with the owner tag, want 1", n)
	}

	other := proto.CloneOf(req)
	other.LoadBalancer.Listeners[0].Port = 81
	_, err = p.client.CreateLoadBalancer(t.Context(), other)
	servicetest.WantCode(t, err, codes.InvalidArgument)
	if r := apierr.Reason(err); r != "REQUEST_ID_REUSED" {
		t.Fatalf("reason %q, want REQUEST_ID_REUSED", r)
	}

	if _, err := p.client.DeleteLoadBalancer(t.Context(), &lbaasv1.DeleteLoadBalancerRequest{Name: again.GetLoadBalancer().GetName()}); err != nil {
		t.Fatal(err)
	}
	_, err = p.client.CreateLoadBalancer(t.Context(), req)
	servicetest.WantCode(t, err, codes.NotFound)
	if r := apierr.Reason(err); r != "REQUEST_LOAD_BALANCER_DELETED" {
		t.Fatalf("create after delete: reason %q (%v)", r, err)
	}
}

// TestUpdateMovesARoleAndWatchFollows drains web-1, adds web-3 and removes web-1 in
// one update while a watch waits for the change; a repeat of the update changes
// nothing; a change naming a missing member is NOT_FOUND with its field.
func TestUpdateMovesARoleAndWatchFollows(t *testing.T) {
	f := newFixture(t)
	p := start(t, f.env, f.owner)
	f.cleanup(t, p)
	ctx := t.Context()
	created, err := p.client.CreateLoadBalancer(ctx, &lbaasv1.CreateLoadBalancerRequest{LoadBalancer: f.proxyLB(f.owner+"-move", "TCP", 80, "PROXYV2")})
	if err != nil {
		t.Fatal(err)
	}
	name := created.GetLoadBalancer().GetName()

	var msgs []*lbaasv1.WatchLoadBalancerResponse
	watched := make(chan struct{})
	go func() { defer close(watched); msgs = watch(t, p, name, true) }()
	time.Sleep(500 * time.Millisecond) // the watch has taken its first look

	req := &lbaasv1.UpdateLoadBalancerRequest{Name: name, MemberChanges: []*lbaasv1.MemberChange{
		{Change: &lbaasv1.MemberChange_Drain{Drain: &lbaasv1.MemberRef{Address: "10.101.0.21", Port: 8080}}},
		{Change: &lbaasv1.MemberChange_Add{Add: &lbaasv1.Member{DisplayName: "web-3", Address: "10.101.0.23", Port: 8080}}},
		{Change: &lbaasv1.MemberChange_Remove{Remove: &lbaasv1.MemberRef{Address: "10.101.0.21", Port: 8080}}},
	}}
	resp, err := p.client.UpdateLoadBalancer(ctx, req)
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	t.Logf("results: %q", resp.GetResults())
	want := map[string]int32{"10.101.0.22:8080": 1, "10.101.0.23:8080": 1}
	if got := members(resp.GetLoadBalancer()); !equalMaps(got, want) || len(pending(resp.GetLoadBalancer())) != 0 {
		t.Fatalf("members %v pending %v, want %v all ACTIVE", got, pending(resp.GetLoadBalancer()), want)
	}
	<-watched
	for _, m := range msgs {
		t.Logf("watch: %s settled=%v pending=%v members=%v", m.GetLoadBalancer().GetStatus().GetProvisioningStatus(),
			m.GetSettled(), pending(m.GetLoadBalancer()), members(m.GetLoadBalancer()))
	}
	if len(msgs) < 2 || !msgs[len(msgs)-1].GetSettled() || !equalMaps(members(msgs[len(msgs)-1].GetLoadBalancer()), want) {
		t.Fatalf("watch: %d messages: want the change and a settled end with members %v", len(msgs), want)
	}

	again, err := p.client.UpdateLoadBalancer(ctx, req)
	if err != nil {
		t.Fatalf("repeat: %v", err)
	}
	for _, r := range again.GetResults()[1:] {
		if !strings.HasPrefix(r, "unchanged") {
			t.Fatalf("repeat results %q: want add and remove unchanged", again.GetResults())
		}
	}

	_, err = p.client.UpdateLoadBalancer(ctx, &lbaasv1.UpdateLoadBalancerRequest{Name: name, MemberChanges: []*lbaasv1.MemberChange{
		{Change: &lbaasv1.MemberChange_SetWeight{SetWeight: &lbaasv1.SetWeight{Member: &lbaasv1.MemberRef{Address: "10.101.0.99", Port: 8080}, Weight: 5}}},
	}})
	servicetest.WantCode(t, err, codes.NotFound)
	if !strings.Contains(status.Convert(err).Message(), "member_changes[0].set_weight.member") {
		t.Fatalf("message %q lacks the field", status.Convert(err).Message())
	}
	_, err = p.client.UpdateLoadBalancer(ctx, &lbaasv1.UpdateLoadBalancerRequest{Name: name, MemberChanges: []*lbaasv1.MemberChange{
		{Pool: "no-such-pool", Change: &lbaasv1.MemberChange_Drain{Drain: &lbaasv1.MemberRef{Address: "10.101.0.22", Port: 8080}}},
	}})
	servicetest.WantCode(t, err, codes.NotFound)
}

func equalMaps(a, b map[string]int32) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
