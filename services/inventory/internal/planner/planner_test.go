package planner

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
)

func wl(name, display, role string, stateful bool) *Workload {
	return &Workload{Name: "workloads/" + name, DisplayName: display, Role: role, Stateful: stateful, Etag: "7"}
}

func waves(p *inventoryv1.Plan) map[string]int32 {
	out := map[string]int32{}
	for _, a := range p.GetAssignments() {
		out[a.GetWorkload()[len("workloads/"):]] = a.GetWave()
	}
	return out
}

// TestStatelessFirstDependantsThenStateful is the operators' rule: web first, the API
// (declared to depend on web) after it, stateful roles last (the cache before the
// database that depends on it); the API does not wait for its database.
func TestStatelessFirstDependantsThenStateful(t *testing.T) {
	ws := []*Workload{
		wl("web-1", "web-1", "", false), wl("web-2", "web-2", "", false),
		wl("api-1", "api-1", "api", false), wl("db-1", "db-1", "", false),
		wl("db-phys", "db02.shop.example", "db", true), wl("cache-1", "cache-1", "cache", true),
		wl("mystery", "box-17", "", false),
		{Name: "workloads/gone", DisplayName: "web-9", Vanished: true},
		{Name: "workloads/moving", DisplayName: "web-0", Role: "web", Wave: 1, State: inventoryv1.WorkloadState_WORKLOAD_STATE_CONVERTING},
	}
	p, err := Propose(ws, &inventoryv1.Plan{
		Rules: []*inventoryv1.RoleRule{
			{NamePattern: `^web-[0-9]+$`, Role: "web"},
			{NamePattern: `^db-`, Role: "db", Stateful: true},
		},
		Dependencies: []*inventoryv1.RoleDependency{{Role: "api", DependsOn: []string{"web", "db"}}, {Role: "db", DependsOn: []string{"cache"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := waves(p)
	want := map[string]int32{"web-1": 1, "web-2": 1, "api-1": 2, "cache-1": 3, "db-1": 4, "db-phys": 4, "moving": 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s in wave %d, want %d (plan %v)", k, got[k], v, p.GetAssignments())
		}
	}
	if len(got) != len(want) {
		t.Errorf("assigned %v, want %v", got, want)
	}
	if len(p.GetUnassigned()) != 1 || p.GetUnassigned()[0].GetWorkload() != "workloads/mystery" {
		t.Errorf("unassigned %v, want mystery", p.GetUnassigned())
	}
	if len(p.GetWaves()) != 4 || !p.GetWaves()[3].GetStateful() || p.GetWaves()[0].GetStateful() {
		t.Errorf("waves %v", p.GetWaves())
	}
}

func TestPinsAndErrors(t *testing.T) {
	ws := []*Workload{wl("web-1", "web-1", "web", false), wl("api-1", "api-1", "api", false)}
	p, err := Propose(ws, &inventoryv1.Plan{Pins: map[string]int32{"workloads/api-1": 1}, Dependencies: []*inventoryv1.RoleDependency{{Role: "api", DependsOn: []string{"web"}}}})
	if err != nil || waves(p)["api-1"] != 1 {
		t.Fatalf("pin: %v %v", waves(p), err)
	}
	_, err = Propose(ws, &inventoryv1.Plan{Dependencies: []*inventoryv1.RoleDependency{
		{Role: "api", DependsOn: []string{"web"}}, {Role: "web", DependsOn: []string{"api"}}}})
	if status.Code(err) != codes.InvalidArgument || apierr.FieldViolations(err)["plan.dependencies"] == "" {
		t.Fatalf("cycle: %v", err)
	}
	_, err = Propose(ws, &inventoryv1.Plan{Rules: []*inventoryv1.RoleRule{{NamePattern: "(", Role: "Web"}}, Pins: map[string]int32{"web-1": 0}})
	fv := apierr.FieldViolations(err)
	if fv["plan.rules[0].name_pattern"] == "" || fv["plan.rules[0].role"] == "" || fv["plan.pins"] == "" {
		t.Fatalf("bad rule and pin: %v", fv)
	}
	_, err = Propose(ws, &inventoryv1.Plan{Pins: map[string]int32{"workloads/nope": 2}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("pin of an unknown workload: %v", err)
	}
}

func server(id, name, status string) *Workload {
	return &Workload{Name: "workloads/" + id, Role: "web", Etag: "1",
		Facts: &inventoryv1.Facts{Kind: &inventoryv1.Facts_Instance{Instance: &inventoryv1.InstanceFacts{Name: name, Status: status}}}}
}

// TestServersInErrorAndStopped: a server in ERROR is left out of the waves, with the
// reason, unless the plan says include_error_servers; a stopped one is placed, and
// marked to move cold (not started at the destination unless start_stopped_servers).
// Assignments and waves name workloads by their servers' names.
func TestServersInErrorAndStopped(t *testing.T) {
	ws := []*Workload{server("i-1", "web-1", "ACTIVE"), server("i-2", "web-2", "ERROR"), server("i-3", "web-3", "SHUTOFF")}
	p, err := Propose(ws, &inventoryv1.Plan{})
	if err != nil {
		t.Fatal(err)
	}
	if u := p.GetUnassigned(); len(u) != 1 || u[0].GetDisplayName() != "web-2" || u[0].GetServerStatus() != "ERROR" {
		t.Fatalf("unassigned %v, want web-2 (ERROR)", u)
	}
	byName := map[string]*inventoryv1.Assignment{}
	for _, a := range p.GetAssignments() {
		byName[a.GetDisplayName()] = a
	}
	if a := byName["web-3"]; a == nil || !a.GetCold() || a.GetWave() != 1 {
		t.Fatalf("web-3 (SHUTOFF): %v, want wave 1, cold", a)
	}
	if a := byName["web-1"]; a == nil || a.GetCold() {
		t.Fatalf("web-1 (ACTIVE): %v", a)
	}
	if w := p.GetWaves(); len(w) != 1 || len(w[0].GetDisplayNames()) != 2 || w[0].GetDisplayNames()[0] != "web-1" {
		t.Fatalf("waves %v: want wave 1 with web-1 and web-3 by name", w)
	}

	p, err = Propose(ws, &inventoryv1.Plan{IncludeErrorServers: true, StartStoppedServers: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.GetUnassigned()) != 0 || len(p.GetAssignments()) != 3 || !p.GetIncludeErrorServers() {
		t.Fatalf("with include_error_servers: unassigned %v, assignments %v", p.GetUnassigned(), p.GetAssignments())
	}
	for _, a := range p.GetAssignments() {
		if a.GetCold() {
			t.Fatalf("%s cold with start_stopped_servers", a.GetDisplayName())
		}
	}
}

// TestRuleLimits: a plan's rules are bounded before anything is compiled — their
// number, each pattern's size, and its compiled size (nested repeats); each refusal
// names the field and the limit (issue 16, finding 5: 192 KB of rules took 16 s and
// 1.6 GB).
func TestRuleLimits(t *testing.T) {
	many := make([]*inventoryv1.RoleRule, MaxRules+1)
	for i := range many {
		many[i] = &inventoryv1.RoleRule{NamePattern: strings.Repeat("(a{100}){100}", 30), Role: "web"}
	}
	_, err := Check(&inventoryv1.Plan{Rules: many})
	if fv := apierr.FieldViolations(err); status.Code(err) != codes.InvalidArgument || !strings.Contains(fv["plan.rules"], "at most") {
		t.Fatalf("%d rules: %v", len(many), err)
	}
	_, err = Check(&inventoryv1.Plan{Rules: []*inventoryv1.RoleRule{
		{NamePattern: strings.Repeat("a", MaxPatternBytes+1), Role: "web"},
		{NamePattern: strings.Repeat("[a-z]{999}", 20), Role: "web"}, // 200 bytes, 20,000 instructions
		{NamePattern: "^web-[0-9]+$", Role: "web"},
	}})
	fv := apierr.FieldViolations(err)
	if !strings.Contains(fv["plan.rules[0].name_pattern"], "at most") || !strings.Contains(fv["plan.rules[1].name_pattern"], "too complex") || fv["plan.rules[2].name_pattern"] != "" {
		t.Fatalf("long, nested and plain patterns: %v", fv)
	}
}
