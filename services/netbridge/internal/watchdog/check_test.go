package watchdog

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	th "github.com/gophercloud/gophercloud/v2/testhelper"
	fake "github.com/gophercloud/gophercloud/v2/testhelper/client"

	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
)

// fakeNeutron serves one HA router, its VRRP ports and its L3 agents, as Neutron
// does with agents (which the dev cloud has not: there, no HA router has a VRRP
// port, so this path is driven here).
type fakeNeutron struct {
	mu       sync.Mutex
	up       bool
	portUp   bool
	active   int
	toggles  []bool // admin_state_up values PUT, in order
	healFail bool
	listFail bool // GET /v2.0/routers answers 503
}

func (f *fakeNeutron) serve(t *testing.T) *gophercloud.ServiceClient {
	fs := th.SetupHTTP()
	t.Cleanup(fs.Teardown)
	fs.Mux.HandleFunc("/v2.0/routers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.listFail {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, `{"routers":[{"id":"r1","name":"edge","ha":true,"admin_state_up":%v},{"id":"r2","name":"legacy","ha":false,"admin_state_up":true}]}`, f.up)
	})
	fs.Mux.HandleFunc("/v2.0/routers/r1", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		var body struct {
			Router struct {
				Up bool `json:"admin_state_up"`
			} `json:"router"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.healFail {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		f.up = body.Router.Up
		f.toggles = append(f.toggles, body.Router.Up)
		fmt.Fprintf(w, `{"router":{"id":"r1","admin_state_up":%v}}`, f.up)
	})
	fs.Mux.HandleFunc("/v2.0/routers/r1/l3-agents", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		f.mu.Lock()
		defer f.mu.Unlock()
		states := []string{"standby", "standby"}
		for i := range min(f.active, 2) {
			states[i] = "active"
		}
		fmt.Fprintf(w, `{"agents":[{"id":"a1","alive":true,"ha_state":%q},{"id":"a2","alive":true,"ha_state":%q}]}`, states[0], states[1])
	})
	fs.Mux.HandleFunc("/v2.0/ports", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("device_owner") != "network:router_ha_interface" || r.URL.Query().Get("device_id") != "" {
			t.Errorf("ports listed with %s: want every VRRP port of the cloud in one listing", r.URL.RawQuery)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		st := "DOWN"
		if f.portUp {
			st = "ACTIVE"
		}
		fmt.Fprintf(w, `{"ports":[{"id":"p1","device_id":"r1","status":%q,"binding:host_id":"net-1"},{"id":"p2","device_id":"r1","status":"ACTIVE","binding:host_id":"net-2"},{"id":"p3","device_id":"r9","status":"DOWN","binding:host_id":"net-3"}]}`, st)
	})
	nc := fake.ServiceClient(fs)
	nc.ResourceBase = fs.Endpoint() + "v2.0/"
	return nc
}

func (f *fakeNeutron) puts() []bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]bool(nil), f.toggles...)
}

func kinds(st *netbridgev1.WatchdogStatus) []string {
	var out []string
	for _, e := range st.GetEvents() {
		out = append(out, e.GetKind())
	}
	return out
}

func checker(nc *gophercloud.ServiceClient, now *time.Time) *Checker {
	return &Checker{
		Neutron:  func(context.Context, string) (*gophercloud.ServiceClient, error) { return nc, nil },
		Policy:   Policy{Backoff: time.Minute, MaxBackoff: 30 * time.Minute, MaxHeals: 3, Window: time.Hour},
		Instance: "nb-1", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return *now },
	}
}

// TestHealsDownVRRPPortWithBackoffAndLimit: a DOWN VRRP port is detected and healed
// by disabling and enabling the router; while it stays broken the heals back off
// (1, 2 minutes) and stop at the limit (3 an hour); healthy again, it is reported
// recovered, and its heals stay counted until they leave the hour: broken again
// within it, it gets no new heal; after it, it does.
func TestHealsDownVRRPPortWithBackoffAndLimit(t *testing.T) {
	f := &fakeNeutron{up: true, active: 1}
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	c := checker(f.serve(t), &now)
	st := &netbridgev1.WatchdogStatus{}
	saves := 0
	save := func(context.Context) error { saves++; return nil }
	pass := func(at time.Duration) {
		t.Helper()
		now = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC).Add(at)
		if err := c.Pass(t.Context(), []string{"new"}, st, save); err != nil {
			t.Fatal(err)
		}
	}
	pass(0)
	if got := f.puts(); len(got) != 2 || got[0] || !got[1] {
		t.Fatalf("first pass PUT %v, want disable then enable", got)
	}
	h := st.GetRouters()[0]
	if len(st.GetRouters()) != 1 || h.GetHealthy() || h.GetVrrpPorts() != 2 || h.GetActiveAgents() != 1 || h.GetProblems()[0] != `VRRP port p1 on host "net-1" is DOWN` {
		t.Fatalf("router health %v", h)
	}
	pass(30 * time.Second) // backing off: the next heal is not before 1 minute
	pass(61 * time.Second) // second heal; next not before +2 minutes
	pass(2 * time.Minute)
	pass(3*time.Minute + 2*time.Second) // third heal
	pass(8 * time.Minute)               // the limit: gives up
	pass(20 * time.Minute)              // and stays quiet
	if n := len(f.puts()); n != 6 {
		t.Fatalf("%d PUTs, want 3 heals of 2", n)
	}
	if !st.GetRouters()[0].GetGaveUp() {
		t.Fatalf("not given up after 3 heals: %v", st.GetRouters()[0])
	}
	f.mu.Lock()
	f.portUp = true
	f.mu.Unlock()
	pass(21 * time.Minute)
	h = st.GetRouters()[0]
	if !h.GetHealthy() || h.GetGaveUp() || len(h.GetHealTimes()) != 3 {
		t.Fatalf("after recovery %v: healthy, not given up, the 3 heals still counted", h)
	}
	// Broken again within the hour (a flapping router): no fresh allowance of
	// heals; it gives up again at once.
	f.mu.Lock()
	f.portUp = false
	f.mu.Unlock()
	pass(22 * time.Minute)
	if n := len(f.puts()); n != 6 || !st.GetRouters()[0].GetGaveUp() {
		t.Fatalf("flapping within the window: %d PUTs (want the 6 of before), given up %v", n, st.GetRouters()[0].GetGaveUp())
	}
	// Given up, it stays quiet while broken, even once the first heals leave the
	// window; healthy again and then broken, an hour after the heals, it is healed.
	pass(61 * time.Minute)
	f.mu.Lock()
	f.portUp = true
	f.mu.Unlock()
	pass(62 * time.Minute)
	f.mu.Lock()
	f.portUp = false
	f.mu.Unlock()
	pass(64 * time.Minute)
	if n := len(f.puts()); n != 8 {
		t.Fatalf("after the window: %d PUTs, want a fourth heal (8)", n)
	}
	want := []string{"degraded", "healed", "healed", "healed", "gave_up", "recovered", "degraded", "gave_up", "recovered", "degraded", "healed"}
	if got := kinds(st); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	if saves != 4 {
		t.Fatalf("%d saves before heals, want one per heal (4)", saves)
	}
}

// TestNoActiveAgentAndSplitBrain: no active agent and two active agents are both
// problems.
func TestNoActiveAgentAndSplitBrain(t *testing.T) {
	for _, tc := range []struct {
		active int
		want   string
	}{{0, "no L3 agent is active for it (2 agent(s), 2 VRRP port(s))"}, {2, "2 L3 agents are active at once (split brain)"}} {
		f := &fakeNeutron{up: true, portUp: true, active: tc.active}
		now := time.Now()
		c := checker(f.serve(t), &now)
		st := &netbridgev1.WatchdogStatus{}
		if err := c.Pass(t.Context(), []string{"new"}, st, func(context.Context) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if p := st.GetRouters()[0].GetProblems(); len(p) != 1 || p[0] != tc.want {
			t.Fatalf("active=%d: problems %v", tc.active, p)
		}
	}
}

// TestFinishesAHealALeaderLeftHalfDone: the status says a heal was under way (the
// leader died between disabling and enabling the router): the next pass enables the
// router first, before anything else.
func TestFinishesAHealALeaderLeftHalfDone(t *testing.T) {
	f := &fakeNeutron{up: false, active: 1, portUp: true}
	now := time.Now()
	c := checker(f.serve(t), &now)
	st := &netbridgev1.WatchdogStatus{Routers: []*netbridgev1.RouterHealth{{Cloud: "new", RouterId: "r1", Healing: true}}}
	if err := c.Pass(t.Context(), []string{"new"}, st, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if got := f.puts(); len(got) != 1 || !got[0] || st.GetRouters()[0].GetHealing() {
		t.Fatalf("PUTs %v, healing %v: want the router enabled", got, st.GetRouters()[0].GetHealing())
	}
}

// TestKeepsHistoryWhenTheCloudCannotBeRead: a pass whose router listing fails keeps
// every router as it was known — its heal history and its gave-up mark — instead
// of dropping it (the next pass would take it for a new, healthy router: no
// "recovered", and a fresh allowance of heals).
func TestKeepsHistoryWhenTheCloudCannotBeRead(t *testing.T) {
	f := &fakeNeutron{up: true, active: 1}
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	c := checker(f.serve(t), &now)
	st := &netbridgev1.WatchdogStatus{}
	save := func(context.Context) error { return nil }
	if err := c.Pass(t.Context(), []string{"new"}, st, save); err != nil {
		t.Fatal(err)
	}
	before := st.GetRouters()[0]
	if len(before.GetHealTimes()) != 1 || before.GetHealthy() {
		t.Fatalf("first pass: %v", before)
	}
	f.mu.Lock()
	f.listFail = true
	f.mu.Unlock()
	now = now.Add(time.Minute)
	if err := c.Pass(t.Context(), []string{"new"}, st, save); err == nil {
		t.Fatal("a pass over a cloud that cannot be listed reported no error")
	}
	if len(st.GetRouters()) != 1 || len(st.GetRouters()[0].GetHealTimes()) != 1 || st.GetRouters()[0].GetRouterId() != "r1" {
		t.Fatalf("after a failed listing: %v", st.GetRouters())
	}
}
