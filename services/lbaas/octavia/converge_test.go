package octavia

import (
	"errors"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/l7policies"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/listeners"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/monitors"
	"github.com/gophercloud/gophercloud/v2/openstack/loadbalancer/v2/pools"
)

// built is a load balancer as Show reads it: HTTP:80 to pool web (two members, a
// TCP monitor every 2 s), a policy sending api.example to pool api.
func built() *Tree {
	web := &PoolTree{Pool: pools.Pool{ID: "p-web", Name: "web", Protocol: "PROXY", LBMethod: "ROUND_ROBIN"},
		Members: []Member{{ID: "m1", Address: "10.0.0.2", ProtocolPort: 8080, Weight: 1, AdminStateUp: true},
			{ID: "m2", Address: "10.0.0.3", ProtocolPort: 8080, Weight: 1, AdminStateUp: true}},
		Monitor: &monitors.Monitor{ID: "hm", Type: "TCP", Delay: 2, Timeout: 2, MaxRetries: 2, MaxRetriesDown: 3}}
	api := &PoolTree{Pool: pools.Pool{ID: "p-api", Name: "api", Protocol: "PROXY", LBMethod: "ROUND_ROBIN"},
		Members: []Member{{ID: "m3", Address: "10.0.0.4", ProtocolPort: 8080, Weight: 1, AdminStateUp: true}}}
	return &Tree{LoadBalancer: LoadBalancer{ID: "lb"}, Pools: []*PoolTree{web, api},
		Listeners: []ListenerTree{{Listener: listeners.Listener{ID: "l1", Protocol: "HTTP", ProtocolPort: 80, ConnLimit: -1, DefaultPoolID: "p-web"}, Pool: web,
			Policies: []l7policies.L7Policy{{ID: "pol", Action: "REDIRECT_TO_POOL", RedirectPoolID: "p-api", Position: 1, AdminStateUp: true,
				Rules: []l7policies.Rule{{RuleType: "HOST_NAME", CompareType: "EQUAL_TO", Value: "api.example"}}}}}}}
}

func spec(web, api PoolSpec, host string) Spec {
	return Spec{Name: "shop", VIPSubnetID: "s", Pools: []PoolSpec{web, api}, Listeners: []ListenerSpec{{Protocol: "HTTP", Port: 80, DefaultPool: "web",
		L7Policies: []L7PolicySpec{{Action: "REDIRECT_TO_POOL", RedirectPool: "api", Rules: []L7RuleSpec{{Type: "HOST_NAME", CompareType: "EQUAL_TO", Value: host}}}}}}}
}

var (
	webSpec = PoolSpec{Name: "web", Protocol: "PROXY", Members: []MemberSpec{{Address: "10.0.0.2", Port: 8080}, {Address: "10.0.0.3", Port: 8080}},
		Monitor: &MonitorSpec{Type: "TCP", Delay: 2, Timeout: 2, MaxRetries: 2}}
	apiSpec = PoolSpec{Name: "api", Protocol: "PROXY", Members: []MemberSpec{{Address: "10.0.0.4", Port: 8080}}}
)

func planned(t *testing.T, tr *Tree, s Spec) []string {
	t.Helper()
	if err := Validate(s); err != nil {
		t.Fatal(err)
	}
	ch, err := (&Client{}).plan(tr, s)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range ch {
		out = append(out, c.String())
	}
	return out
}

// TestConvergePlansOnlyWhatDiffers: the built tree and its own spec: nothing; a
// changed spec: each difference once, pools' first, the rebuild's delete last.
func TestConvergePlansOnlyWhatDiffers(t *testing.T) {
	if got := planned(t, built(), spec(webSpec, apiSpec, "api.example")); len(got) != 0 {
		t.Fatalf("the tree's own spec plans %q", got)
	}
	web := webSpec
	w := 5
	web.LBMethod, web.Members = "LEAST_CONNECTIONS", []MemberSpec{{Address: "10.0.0.2", Port: 8080, Weight: &w}, {Address: "10.0.0.9", Port: 8080}}
	web.Monitor = &MonitorSpec{Type: "TCP", Delay: 3, Timeout: 2, MaxRetries: 2}
	api := apiSpec
	api.Protocol = "PROXYV2"
	got := planned(t, built(), spec(web, api, "api2.example"))
	want := []string{
		"pools[web]: lb_algorithm ROUND_ROBIN → LEAST_CONNECTIONS",
		"pools[web].members[10.0.0.2:8080]: weight 1 → 5",
		"pools[web].members[10.0.0.9:8080]: add",
		"pools[web].members[10.0.0.3:8080]: remove",
		"pools[web].healthmonitor: delay 2 → 3",
		"pools[api]: rebuild: protocol PROXY → PROXYV2 (a new pool beside it, its users moved to it, then it is deleted)",
		"listeners[HTTP:80].l7_policies: replace 1 policies with 1 (the new ones first, then the old ones deleted)",
		"pools[api]: delete the pool the rebuild replaced; the new one takes its name",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("planned:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A policy that sends to a rebuilt pool is replaced though its host is the same.
	if got := planned(t, built(), spec(webSpec, api, "api.example")); len(got) != 3 || !strings.Contains(got[1], "l7_policies: replace") {
		t.Fatalf("a rebuild alone: %q", got)
	}
}

// TestConvergeMovesAListener: a listener the spec lacks is deleted before the one
// it adds is made (with its policies); a listener's own pool is refused.
func TestConvergeMovesAListener(t *testing.T) {
	s := spec(webSpec, apiSpec, "api.example")
	s.Listeners[0].Port = 8080
	got := planned(t, built(), s)
	want := []string{"listeners[HTTP:80]: delete (not in the spec)", "listeners[HTTP:8080]: create → web, 1 policies"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("a moved listener:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	s.Listeners[0].Pool = &apiSpec
	s.Listeners[0].DefaultPool = ""
	var u *UnsupportedError
	if _, err := (&Client{}).plan(built(), s); !errors.As(err, &u) || !strings.Contains(err.Error(), "a listener's own pool is not converged") {
		t.Fatalf("a listener's own pool: %v", err)
	}
}

// TestConvergeEndsARebuildItFinds: a rebuild an earlier converge left half done
// (its pool made; the old one still there, or already deleted) is taken up, not
// begun again; a policy left disabled by a failed run is replaced; two pools of
// one name are refused.
func TestConvergeEndsARebuildItFinds(t *testing.T) {
	api := apiSpec
	api.Protocol = "PROXYV2"
	half := func(oldGone bool) *Tree {
		tr := built()
		rb := &PoolTree{Pool: pools.Pool{ID: "p-api2", Name: "api" + rebuiltSuffix, Protocol: "PROXYV2", LBMethod: "ROUND_ROBIN"},
			Members: []Member{{ID: "m4", Address: "10.0.0.4", ProtocolPort: 8080, Weight: 1, AdminStateUp: true}}}
		tr.Pools = append(tr.Pools, rb)
		if oldGone {
			tr.Pools = []*PoolTree{tr.Pools[0], rb}
			tr.Listeners[0].Policies[0].RedirectPoolID = "p-api2"
		}
		return tr
	}
	got := planned(t, half(false), spec(webSpec, api, "api.example"))
	if len(got) != 2 || !strings.Contains(got[0], "l7_policies: replace") || !strings.Contains(got[1], "pools[api]: delete the pool the rebuild replaced") {
		t.Fatalf("a rebuild with its old pool still there: %q", got)
	}
	got = planned(t, half(true), spec(webSpec, api, "api.example"))
	if len(got) != 2 || !strings.Contains(got[1], "pools[api]: the rebuilt pool takes its name") {
		t.Fatalf("a rebuild whose old pool is gone: %q", got)
	}
	tr := built()
	tr.Listeners[0].Policies[0].AdminStateUp = false
	if got := planned(t, tr, spec(webSpec, apiSpec, "api.example")); len(got) != 1 || !strings.Contains(got[0], "l7_policies: replace") {
		t.Fatalf("a disabled policy: %q", got)
	}
	tr = built()
	tr.Pools = append(tr.Pools, &PoolTree{Pool: pools.Pool{ID: "p-web2", Name: "web", Protocol: "PROXY"}})
	var u *UnsupportedError
	if _, err := (&Client{}).plan(tr, spec(webSpec, apiSpec, "api.example")); !errors.As(err, &u) || !strings.Contains(err.Error(), "2 pools are named web") {
		t.Fatalf("two pools named web: %v", err)
	}
}

// TestConvergeListenerAndMonitorSettings: a listener's name and allowed CIDRs
// (and cleared again), its ALPN and certificate when the spec gives them, and a
// monitor's HTTP version and domain name are converged; what the spec leaves out
// is left as Octavia has it.
func TestConvergeListenerAndMonitorSettings(t *testing.T) {
	tr := built()
	tr.Listeners[0].Listener.Name = "shop-http"
	tr.Listeners[0].Listener.AllowedCIDRs = []string{"10.0.0.0/8", "192.0.2.0/24"}
	tr.Pools[0].Monitor = &monitors.Monitor{ID: "hm", Type: "HTTP", Delay: 2, Timeout: 2, MaxRetries: 2, MaxRetriesDown: 3,
		HTTPMethod: "GET", URLPath: "/", ExpectedCodes: "200", HTTPVersion: "1.0"}
	web := webSpec
	web.Monitor = &MonitorSpec{Type: "HTTP", Delay: 2, Timeout: 2, MaxRetries: 2, HTTPMethod: "GET", URLPath: "/", ExpectedCodes: "200"}
	s := spec(web, apiSpec, "api.example")
	s.Listeners[0].Name = "shop-http"
	s.Listeners[0].AllowedCIDRs = []string{"192.0.2.7/24", "10.0.0.0/8"}
	if got := planned(t, tr, s); len(got) != 0 {
		t.Fatalf("the same settings (CIDRs in another order and form, no HTTP version said) plan %q", got)
	}
	s.Listeners[0].AllowedCIDRs = nil
	if got := planned(t, tr, s); len(got) != 0 {
		t.Fatalf("no CIDRs said (as they are) plans %q", got)
	}
	s.Listeners[0].Name = "shop-www"
	s.Listeners[0].AllowedCIDRs = []string{}
	web.Monitor.HTTPVersion, web.Monitor.DomainName = "1.1", "www.example"
	s.Pools[0] = web
	want := []string{
		"pools[web].healthmonitor: http_version 1.0 → 1.1, domain_name none → www.example",
		"listeners[HTTP:80]: name shop-http → shop-www, allowed_cidrs [10.0.0.0/8 192.0.2.0/24] → []",
	}
	if got := planned(t, tr, s); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("planned:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
