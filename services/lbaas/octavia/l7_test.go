package octavia

import (
	"encoding/json"
	"strings"
	"testing"
)

func l7Spec() Spec {
	return Spec{
		Name: "shop", VIPSubnetID: "sub",
		Pools: []PoolSpec{
			{Name: "app", Protocol: "HTTP", Persistence: &PersistenceSpec{Type: "APP_COOKIE", CookieName: "JSESSIONID"},
				Members: []MemberSpec{{Address: "10.0.0.2", Port: 80, Disabled: true}}},
			{Name: "api", Protocol: "PROXY"},
		},
		Listeners: []ListenerSpec{{Name: "www", Protocol: "HTTP", Port: 80, DefaultPool: "app",
			L7Policies: []L7PolicySpec{{Action: "REDIRECT_TO_POOL", RedirectPool: "api",
				Rules: []L7RuleSpec{{Type: "PATH", CompareType: "STARTS_WITH", Value: "/api"}}}}}},
	}
}

// TestGraphCreateNamesSharedPools: a single-call create puts Spec.Pools at the top
// and names them from the listener (default_pool) and the policy (redirect_pool),
// as Octavia's graph create resolves them.
func TestGraphCreateNamesSharedPools(t *testing.T) {
	c := New(nil, WithOwnerTag("o"))
	m, err := c.fullyPopulated(l7Spec()).ToLoadBalancerCreateMap()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(m)
	var body struct {
		LB struct {
			Pools []struct {
				Name        string `json:"name"`
				Persistence struct {
					Type       string `json:"type"`
					CookieName string `json:"cookie_name"`
				} `json:"session_persistence"`
				Members []struct {
					AdminStateUp *bool `json:"admin_state_up"`
				} `json:"members"`
			} `json:"pools"`
			Listeners []struct {
				DefaultPool map[string]any `json:"default_pool"`
				L7Policies  []struct {
					Action       string         `json:"action"`
					Position     int            `json:"position"`
					RedirectPool map[string]any `json:"redirect_pool"`
					Rules        []any          `json:"rules"`
				} `json:"l7policies"`
			} `json:"listeners"`
		} `json:"loadbalancer"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatal(err)
	}
	lb := body.LB
	if len(lb.Pools) != 2 || lb.Pools[0].Name != "app" || lb.Pools[0].Persistence.CookieName != "JSESSIONID" ||
		lb.Pools[0].Members[0].AdminStateUp == nil || *lb.Pools[0].Members[0].AdminStateUp {
		t.Fatalf("pools %s", b)
	}
	l := lb.Listeners[0]
	if len(l.DefaultPool) != 1 || l.DefaultPool["name"] != "app" || len(l.L7Policies) != 1 || l.L7Policies[0].Position != 1 ||
		l.L7Policies[0].RedirectPool["name"] != "api" || len(l.L7Policies[0].Rules) != 1 {
		t.Fatalf("listener %s", b)
	}
}

// TestValidateL7: each mistake in a pool reference, a policy or a rule is named by
// its field before anything is sent; what Octavia's rules forbid is UnsupportedError.
func TestValidateL7(t *testing.T) {
	if err := Validate(l7Spec()); err != nil {
		t.Fatalf("a good spec: %v", err)
	}
	for _, tt := range []struct {
		name, field string
		change      func(*Spec)
	}{
		{"default pool missing", "listeners[0].default_pool", func(s *Spec) { s.Listeners[0].DefaultPool = "nope" }},
		{"both pools", "listeners[0].default_pool", func(s *Spec) { s.Listeners[0].Pool = &PoolSpec{Name: "x", Protocol: "HTTP"} }},
		{"duplicate name", "pools[1].name", func(s *Spec) { s.Pools[1].Name = "app" }},
		{"redirect pool missing", "listeners[0].l7_policies[0].redirect_pool", func(s *Spec) { s.Listeners[0].L7Policies[0].RedirectPool = "gone" }},
		{"relative URL", "listeners[0].l7_policies[0].redirect_url", func(s *Spec) {
			s.Listeners[0].L7Policies[0] = L7PolicySpec{Action: "REDIRECT_TO_URL", RedirectURL: "/new", Rules: s.Listeners[0].L7Policies[0].Rules}
		}},
		{"code", "listeners[0].l7_policies[0].redirect_http_code", func(s *Spec) { s.Listeners[0].L7Policies[0].RedirectHTTPCode = 301 }},
		{"no rules", "listeners[0].l7_policies[0].rules", func(s *Spec) { s.Listeners[0].L7Policies[0].Rules = nil }},
		{"space in a value", "listeners[0].l7_policies[0].rules[0].value", func(s *Spec) { s.Listeners[0].L7Policies[0].Rules[0].Value = "/a b" }},
		{"header without key", "listeners[0].l7_policies[0].rules[0].key", func(s *Spec) {
			s.Listeners[0].L7Policies[0].Rules[0] = L7RuleSpec{Type: "HEADER", CompareType: "EQUAL_TO", Value: "x"}
		}},
		{"bad regex", "listeners[0].l7_policies[0].rules[0].value", func(s *Spec) {
			s.Listeners[0].L7Policies[0].Rules[0] = L7RuleSpec{Type: "PATH", CompareType: "REGEX", Value: "(("}
		}},
		{"file type starts", "listeners[0].l7_policies[0].rules[0].compare_type", func(s *Spec) {
			s.Listeners[0].L7Policies[0].Rules[0] = L7RuleSpec{Type: "FILE_TYPE", CompareType: "STARTS_WITH", Value: "png"}
		}},
		{"persistence", "pools[0].persistence.cookie_name", func(s *Spec) { s.Pools[0].Persistence.CookieName = "" }},
		{"timeout", "listeners[0].timeout_member_data", func(s *Spec) { n := -1; s.Listeners[0].TimeoutMemberData = &n }},
		{"header", "listeners[0].insert_headers[X-Real-IP]", func(s *Spec) { s.Listeners[0].InsertHeaders = map[string]string{"X-Real-IP": "true"} }},
		{"monitor host", "pools[0].monitor.domain_name", func(s *Spec) {
			s.Pools[0].Monitor = &MonitorSpec{Type: "HTTP", Delay: 5, Timeout: 3, MaxRetries: 2, DomainName: "a.example"}
		}},
	} {
		s := l7Spec()
		tt.change(&s)
		err := Validate(s)
		if err == nil || !strings.Contains(err.Error(), tt.field+":") {
			t.Errorf("%s: %v, want a violation of %s", tt.name, err, tt.field)
		}
	}
	s := l7Spec()
	s.Listeners[0].Protocol = "TCP"
	var unsupported *UnsupportedError
	if err := Validate(s); err == nil || !strings.Contains(err.Error(), "l7_policies: a TCP listener has no L7 policies") || !asUnsupported(err, &unsupported) {
		t.Errorf("L7 on TCP: %v", err)
	}
}

func asUnsupported(err error, target **UnsupportedError) bool {
	u, ok := err.(*UnsupportedError)
	*target = u
	return ok
}
