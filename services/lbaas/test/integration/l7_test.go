package integration

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hikkoshi/hikkoshi/services/lbaas/octavia"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

// TestL7TreeAgainstOctavia: a load balancer with shared pools, L7 policies
// (pool switching by host, a reject by path, a redirect by host), session
// persistence, listener timeouts and insert headers — the shape an imported
// haproxy configuration takes — is built by the real Octavia (serially in the end:
// the dev cloud's single-call creates are left PENDING_CREATE, see the README, and
// the client rebuilds them object by object, each policy and then its rules), comes
// up ACTIVE with its haproxy running on the data plane (Octavia's own templates
// render it), and reads back whole (Missing finds nothing).
func TestL7TreeAgainstOctavia(t *testing.T) {
	devcloud.Require(t)
	c := devcloud.Open(t, "old")
	sc := must(c.LoadBalancer())(t)
	nc := must(c.Network())(t)
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	sub := must(devcloud.FindSubnet(ctx, nc, devcloud.VLANSubnet))(t)
	ms := func(n int) *int { return &n }
	owner := fmt.Sprintf("itest-l7-%d", time.Now().UnixNano())
	opts := []octavia.Option{octavia.WithOwnerTag(owner), octavia.WithTimeout(4 * time.Minute)}
	oc := octavia.New(sc, opts...)
	spec := octavia.Spec{
		Name: owner, VIPSubnetID: sub.ID,
		Pools: []octavia.PoolSpec{
			{Name: "app", Protocol: "PROXY", LBMethod: "ROUND_ROBIN", Persistence: &octavia.PersistenceSpec{Type: "HTTP_COOKIE"},
				Members: []octavia.MemberSpec{{Address: "10.101.0.21", Port: 8080}, {Address: "10.101.0.22", Port: 8080, Disabled: true}},
				Monitor: &octavia.MonitorSpec{Type: "HTTP", Delay: 5, Timeout: 3, MaxRetries: 2, HTTPMethod: "GET", URLPath: "/", ExpectedCodes: "200-399", HTTPVersion: "1.1", DomainName: "app.example"}},
			{Name: "api", Protocol: "PROXY", LBMethod: "SOURCE_IP", Persistence: &octavia.PersistenceSpec{Type: "SOURCE_IP"},
				Members: []octavia.MemberSpec{{Address: "10.101.0.31", Port: 8080, MonitorPort: ms(8080)}},
				Monitor: &octavia.MonitorSpec{Type: "TCP", Delay: 5, Timeout: 3, MaxRetries: 2}},
		},
		Listeners: []octavia.ListenerSpec{
			{Name: "www", Protocol: "HTTP", Port: 80, DefaultPool: "app",
				TimeoutClientData: ms(30000), TimeoutMemberConnect: ms(4000), TimeoutMemberData: ms(60000),
				InsertHeaders: map[string]string{"X-Forwarded-For": "true", "X-Forwarded-Port": "true"},
				L7Policies: []octavia.L7PolicySpec{
					{Name: "api", Action: "REDIRECT_TO_POOL", RedirectPool: "api", Rules: []octavia.L7RuleSpec{{Type: "HOST_NAME", CompareType: "EQUAL_TO", Value: "api.example"}}},
					{Name: "admin", Action: "REJECT", Rules: []octavia.L7RuleSpec{
						{Type: "PATH", CompareType: "STARTS_WITH", Value: "/admin"}, {Type: "HEADER", CompareType: "EQUAL_TO", Key: "X-Office", Value: "yes", Invert: true}}},
					{Name: "old", Action: "REDIRECT_PREFIX", RedirectPrefix: "https://www.example", RedirectHTTPCode: 301,
						Rules: []octavia.L7RuleSpec{{Type: "HOST_NAME", CompareType: "EQUAL_TO", Value: "old.example"}}},
				}},
			{Name: "internal", Protocol: "HTTP", Port: 8081, DefaultPool: "api"},
		},
	}
	if err := octavia.Validate(spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer ccancel()
		list, _ := oc.ListOwned(cctx, owner)
		for _, lb := range list {
			_ = oc.Delete(cctx, lb.ID)
		}
	})
	created, tree, err := oc.CreateReady(ctx, spec, nil)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if created.Mode != octavia.Serial && created.Mode != octavia.SerialAfterStuck {
		t.Fatalf("created %v", created.Mode)
	}
	if missing := octavia.Missing(tree, spec); len(missing) > 0 {
		t.Fatalf("the tree lacks %v", missing)
	}
	www := tree.Listeners[slices.IndexFunc(tree.Listeners, func(l octavia.ListenerTree) bool { return l.Listener.ProtocolPort == 80 })]
	if www.Listener.TimeoutMemberData != 60000 || www.Listener.InsertHeaders["X-Forwarded-Port"] != "true" {
		t.Fatalf("listener www: %+v", www.Listener)
	}
	if len(www.Policies) != 3 || www.Policies[2].RedirectHttpCode != 301 || len(www.Policies[1].Rules) != 2 {
		t.Fatalf("listener www's policies %+v", www.Policies)
	}
	api := tree.Pool("api")
	if api == nil || api.Pool.Persistence.Type != "SOURCE_IP" || len(api.Pool.Listeners) == 0 {
		t.Fatalf("pool api: %+v", api)
	}
	app := tree.Pool("app")
	if app == nil || app.Monitor == nil || app.Monitor.DomainName != "app.example" || len(app.Members) != 2 {
		t.Fatalf("pool app: %+v", app)
	}
	t.Logf("%s: %d listeners, %d pools, %d policies on www, ACTIVE", created.Mode, len(tree.Listeners), len(tree.Pools), len(www.Policies))
}

// must fails the test on an error.
func must[T any](v T, err error) func(testing.TB) T {
	return func(tb testing.TB) T {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
		return v
	}
}
