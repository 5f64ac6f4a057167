package contract

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
	"github.com/hikkoshi/hikkoshi/platform/servicetest"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

var binary string

func TestMain(m *testing.M) {
	bin, cleanup := servicetest.MustBuild("github.com/hikkoshi/hikkoshi/services/lbaas/cmd/lbaas")
	binary = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// proc is a running lbaas process managing the dev cloud's old region.
type proc struct {
	*servicetest.Proc
	client      lbaasv1.LoadBalancerServiceClient
	metricsAddr string
	env         *servicetest.Env
}

// start runs lbaas against env's etcd and the dev cloud, with owner as its owner tag.
func start(t testing.TB, env *servicetest.Env, owner string, extra ...string) *proc {
	t.Helper()
	maddr := fmt.Sprintf("127.0.0.1:%d", servicetest.FreePort(t))
	args := append([]string{
		"--cloud", "old", "--clouds-yaml", devcloud.CloudsYAML(), "--owner-tag", owner,
		"--octavia-timeout", "3m", "--metrics-listen", maddr,
	}, extra...)
	p := env.Start(t, binary, "lbaas", args...)
	return &proc{Proc: p, client: lbaasv1.NewLoadBalancerServiceClient(p.Conn), metricsAddr: maddr, env: env}
}

// octaviaCalls sums hikkoshi_lbaas_octavia_requests_total over the label values
// that match (code "" matches every code).
func (p *proc) octaviaCalls(t testing.TB, code string) int {
	t.Helper()
	resp, err := p.env.HTTPClient(t, "viewer").Get(p.env.MetricsURL(p.metricsAddr))
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "hikkoshi_lbaas_octavia_requests_total{") || strings.Contains(line, `route="/v3/`) {
			continue // Keystone's calls are not Octavia's
		}
		if code != "" && !strings.Contains(line, `code="`+code+`"`) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		n += int(v)
	}
	return n
}

// fixture is what a test needs from the dev cloud.
type fixture struct {
	env      *servicetest.Env
	owner    string
	subnetID string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	devcloud.Require(t)
	c := devcloud.Open(t, "old")
	nc, err := c.Network()
	if err != nil {
		t.Fatal(err)
	}
	sub, err := devcloud.FindSubnet(t.Context(), nc, devcloud.VLANSubnet)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{env: servicetest.NewEnv(t), owner: fmt.Sprintf("ctest-%d", time.Now().UnixNano()), subnetID: sub.ID}
}

// cleanup deletes every load balancer with the fixture's owner tag when the test
// ends, even when it failed part way.
func (f *fixture) cleanup(t testing.TB, p *proc) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		list, err := p.client.ListLoadBalancers(ctx, &lbaasv1.ListLoadBalancersRequest{PageSize: 500})
		if err != nil {
			t.Errorf("cleanup list: %v", err)
			return
		}
		for _, lb := range list.GetLoadBalancers() {
			if _, err := p.client.DeleteLoadBalancer(ctx, &lbaasv1.DeleteLoadBalancerRequest{Name: lb.GetName(), AllowMissing: true}); err != nil {
				t.Errorf("cleanup delete %s: %v", lb.GetName(), err)
			}
		}
	})
}

func weight(w int32) *int32 { return &w }

// proxyLB is a load balancer with one listener and a pool of the given protocols, two
// members (10.101.0.21 and .22 on port 8080) and a TCP health monitor.
func (f *fixture) proxyLB(name, listener string, port int32, pool string) *lbaasv1.LoadBalancer {
	return &lbaasv1.LoadBalancer{
		DisplayName: name,
		Vip:         &lbaasv1.Vip{SubnetId: f.subnetID},
		Listeners: []*lbaasv1.Listener{{
			DisplayName: name + "-" + strings.ToLower(listener), Protocol: listener, Port: port,
			Pool: &lbaasv1.Pool{
				DisplayName: name + "-pool", Protocol: pool,
				Members: []*lbaasv1.Member{
					{DisplayName: "web-1", Address: "10.101.0.21", Port: 8080},
					{DisplayName: "web-2", Address: "10.101.0.22", Port: 8080},
				},
				HealthMonitor: &lbaasv1.HealthMonitor{Type: "TCP", DelaySeconds: 5, TimeoutSeconds: 3, MaxRetries: 3},
			},
		}},
	}
}

// pending lists the objects of a tree that are not ACTIVE.
func pending(lb *lbaasv1.LoadBalancer) []string {
	var out []string
	add := func(kind string, st *lbaasv1.Status) {
		if st.GetProvisioningStatus() != "ACTIVE" {
			out = append(out, kind+" "+st.GetProvisioningStatus())
		}
	}
	add("load balancer", lb.GetStatus())
	for _, l := range lb.GetListeners() {
		add("listener", l.GetStatus())
		if p := l.GetPool(); p != nil {
			add("pool", p.GetStatus())
			for _, m := range p.GetMembers() {
				add("member "+m.GetAddress(), m.GetStatus())
			}
			if hm := p.GetHealthMonitor(); hm != nil {
				add("monitor", hm.GetStatus())
			}
		}
	}
	return out
}

// members returns address:port → weight of the first pool.
func members(lb *lbaasv1.LoadBalancer) map[string]int32 {
	out := map[string]int32{}
	for _, m := range lb.GetListeners()[0].GetPool().GetMembers() {
		out[fmt.Sprintf("%s:%d", m.GetAddress(), m.GetPort())] = m.GetWeight()
	}
	return out
}
