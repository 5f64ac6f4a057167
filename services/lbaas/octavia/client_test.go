package octavia

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	th "github.com/gophercloud/gophercloud/v2/testhelper"
	fake "github.com/gophercloud/gophercloud/v2/testhelper/client"
)

// fakeOctavia plays Octavia's part for the client's error paths: a scripted
// sequence of provisioning statuses for load balancer "lb1", and scripted answers
// for the calls that change it. Integration tests use the dev cloud's real Octavia.
type fakeOctavia struct {
	t       *testing.T
	mu      sync.Mutex
	version string   // the CURRENT version GET / offers
	status  []string // provisioning statuses GET returns, in order; the last repeats
	answers map[string][]int
	calls   map[string]int
	bodies  map[string][]string
	// childStatus is the provisioning status of listeners, pools and members until
	// the load balancer is deleted once ("" for ACTIVE).
	childStatus string
}

func newFake(t *testing.T) (*fakeOctavia, *Client) {
	t.Helper()
	server := th.SetupHTTP()
	t.Cleanup(server.Teardown)
	f := &fakeOctavia{t: t, version: "v2.26", status: []string{"ACTIVE"}, answers: map[string][]int{}, calls: map[string]int{}, bodies: map[string][]string{}}
	server.Mux.HandleFunc("/", f.serve)
	sc := fake.ServiceClient(server)
	sc.ResourceBase = sc.Endpoint + "v2.0/"
	return f, New(sc, WithBackoff(Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond, Factor: 2}))
}

// answer scripts the status codes of the next calls to "METHOD path-suffix".
func (f *fakeOctavia) answer(call string, codes ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answers[call] = append(f.answers[call], codes...)
}

func (f *fakeOctavia) count(call string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[call]
}

func (f *fakeOctavia) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}

func (f *fakeOctavia) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	path := strings.TrimPrefix(r.URL.Path, "/v2.0/lbaas")
	call := r.Method + " " + path
	f.calls[call]++
	body, _ := io.ReadAll(r.Body)
	f.bodies[call] = append(f.bodies[call], string(body))
	code := 0
	if q := f.answers[call]; len(q) > 0 {
		code, f.answers[call] = q[0], q[1:]
	}
	status := f.status[0]
	if r.Method == http.MethodGet && strings.HasPrefix(path, "/loadbalancers/lb1") && len(f.status) > 1 {
		f.status = f.status[1:]
	}
	version := f.version
	if r.Method == http.MethodDelete && path == "/loadbalancers/lb1" && code == 0 {
		f.status = []string{"PENDING_DELETE", "GONE"}
		f.childStatus = ""
	}
	if r.Method == http.MethodPost && path == "/loadbalancers" && code == 0 && f.status[0] == "GONE" {
		f.status = []string{"ACTIVE"} // created again after a delete
	}
	child := f.childStatus
	if child == "" {
		child = "ACTIVE"
	}
	f.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	if code != 0 && code >= 300 {
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"faultcode": "Client", "faultstring": "scripted %d", "debuginfo": null}`, code)
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/":
		fmt.Fprintf(w, `{"versions": [{"id": "v2.0", "status": "SUPPORTED"}, {"id": %q, "status": "CURRENT"}]}`, version)
	case r.Method == http.MethodGet && path == "/loadbalancers/lb1":
		if status == "GONE" {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"faultstring": "Load Balancer lb1 not found."}`)
			return
		}
		fmt.Fprintf(w, `{"loadbalancer": {"id": "lb1", "name": "web", "provisioning_status": %q, "operating_status": "ONLINE"}}`, status)
	case r.Method == http.MethodPost && path == "/loadbalancers":
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"loadbalancer": {"id": "lb1", "name": "web", "provisioning_status": "PENDING_CREATE"}}`)
	case r.Method == http.MethodPost && path == "/listeners":
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"listener": {"id": "l1", "protocol": "TCP", "protocol_port": 80}}`)
	case r.Method == http.MethodPost && path == "/pools":
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"pool": {"id": "p1", "protocol": "PROXY"}}`)
	case r.Method == http.MethodPost && path == "/pools/p1/members":
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"member": {"id": "m1", "address": "10.0.0.1", "protocol_port": 80}}`)
	case r.Method == http.MethodPost && path == "/healthmonitors":
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, `{"healthmonitor": {"id": "hm1", "type": "TCP"}}`)
	case r.Method == http.MethodPut && path == "/pools/p1/members/m1":
		fmt.Fprint(w, `{"member": {"id": "m1", "address": "10.0.0.1", "protocol_port": 80, "weight": 0}}`)
	case r.Method == http.MethodGet && path == "/listeners":
		fmt.Fprintf(w, `{"listeners": [{"id": "l1", "protocol": "TCP", "protocol_port": 80, "default_pool_id": "p1", "provisioning_status": %q}]}`, child)
	case r.Method == http.MethodGet && path == "/pools":
		fmt.Fprintf(w, `{"pools": [{"id": "p1", "protocol": "PROXY", "provisioning_status": %q}]}`, child)
	case r.Method == http.MethodGet && path == "/pools/p1/members":
		fmt.Fprintf(w, `{"members": [{"id": "m1", "address": "10.0.0.1", "protocol_port": 80, "provisioning_status": %q}]}`, child)
	case r.Method == http.MethodDelete:
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"faultstring": "fake Octavia has no %s"}`, call)
	}
}

func proxySpec(poolProtocol string) Spec {
	return Spec{Name: "web", VIPSubnetID: "sub1", Listeners: []ListenerSpec{{
		Name: "tcp-80", Protocol: "TCP", Port: 80,
		Pool: &PoolSpec{Name: "web", Protocol: poolProtocol, Members: []MemberSpec{{Address: "10.0.0.1", Port: 80}},
			Monitor: &MonitorSpec{Type: "TCP", Delay: 5, Timeout: 3, MaxRetries: 3}},
	}}}
}

func TestMemberChangeWaitsOut409WhilePendingUpdate(t *testing.T) {
	f, c := newFake(t)
	// Another client's change holds the load balancer in PENDING_UPDATE: the first
	// POST gets 409, the client waits for ACTIVE and sends it again.
	f.status = []string{"ACTIVE", "PENDING_UPDATE", "PENDING_UPDATE", "ACTIVE"}
	f.answer("POST /pools/p1/members", http.StatusConflict)
	m, err := c.AddMember(t.Context(), "lb1", "p1", MemberSpec{Address: "10.0.0.1", Port: 80})
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != "m1" || f.count("POST /pools/p1/members") != 2 {
		t.Fatalf("member %+v after %d POSTs, want m1 after 2", m, f.count("POST /pools/p1/members"))
	}
}

func TestReal409ConflictIsNotRetriedForever(t *testing.T) {
	f, c := newFake(t)
	// The load balancer is ACTIVE and Octavia still says 409 (a duplicate member):
	// one retry, then a ConflictError.
	f.answer("POST /pools/p1/members", http.StatusConflict, http.StatusConflict, http.StatusConflict)
	_, err := c.AddMember(t.Context(), "lb1", "p1", MemberSpec{Address: "10.0.0.1", Port: 80})
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Status != "ACTIVE" {
		t.Fatalf("err = %v, want a ConflictError on an ACTIVE load balancer", err)
	}
	if n := f.count("POST /pools/p1/members"); n != 2 {
		t.Fatalf("%d POSTs, want 2", n)
	}
}

func TestErrorStatusIsFinal(t *testing.T) {
	f, c := newFake(t)
	f.status = []string{"PENDING_UPDATE", "ERROR", "ACTIVE"}
	_, err := c.WaitActive(t.Context(), "lb1", nil)
	var se *StatusError
	if !errors.As(err, &se) || se.Status != "ERROR" || !strings.Contains(err.Error(), "cascade") {
		t.Fatalf("err = %v, want a StatusError ERROR saying to delete with cascade", err)
	}
	if n := f.count("GET /loadbalancers/lb1"); n != 2 {
		t.Fatalf("%d GETs: the wait went on past ERROR", n)
	}
	// A change to a load balancer in ERROR is not sent at all.
	f.status = []string{"ERROR"}
	_, err = c.SetMemberWeight(t.Context(), "lb1", "p1", "m1", 5)
	if !errors.As(err, &se) || f.count("PUT /pools/p1/members/m1") != 0 {
		t.Fatalf("err = %v after %d PUTs, want StatusError and no PUT", err, f.count("PUT /pools/p1/members/m1"))
	}
}

func Test503IsRetried(t *testing.T) {
	f, c := newFake(t)
	f.answer("POST /loadbalancers", http.StatusServiceUnavailable, http.StatusServiceUnavailable)
	got, err := c.Create(t.Context(), proxySpec("PROXY"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Mode != SingleCall || f.count("POST /loadbalancers") != 3 {
		t.Fatalf("mode %s after %d POSTs, want single-call after 3", got.Mode, f.count("POST /loadbalancers"))
	}
}

func TestWaitTimesOutWithLastStatus(t *testing.T) {
	f, c := newFake(t)
	f.status = []string{"PENDING_CREATE"}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := c.WaitActive(ctx, "lb1", nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "still PENDING_CREATE") {
		t.Fatalf("err = %v, want a deadline error naming PENDING_CREATE", err)
	}
}

func Test409UntilDeadlineIsAConflictError(t *testing.T) {
	f, c := newFake(t)
	f.status = []string{"PENDING_UPDATE"}
	f.answer("PUT /pools/p1/members/m1", http.StatusConflict)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	// The wait for ACTIVE before the change already times out; either way the caller
	// learns the load balancer stayed PENDING_UPDATE.
	_, err := c.DrainMember(ctx, "lb1", "p1", "m1")
	if err == nil || !strings.Contains(err.Error(), "PENDING_UPDATE") {
		t.Fatalf("err = %v, want one naming PENDING_UPDATE", err)
	}
}

func TestUDPWithProxyPoolRefusedBeforeAnyCall(t *testing.T) {
	f, c := newFake(t)
	spec := proxySpec("PROXY")
	spec.Listeners[0].Protocol = "UDP"
	spec.Listeners[0].Pool.Monitor = nil
	_, err := c.Create(t.Context(), spec)
	var ue *UnsupportedError
	if !errors.As(err, &ue) || ue.Violations[0].Field != "listeners[0].pool.protocol" {
		t.Fatalf("err = %v, want UnsupportedError on listeners[0].pool.protocol", err)
	}
	if !strings.Contains(err.Error(), "a UDP listener cannot use a PROXY pool") {
		t.Fatalf("message %q does not say why", err)
	}
	if n := f.total(); n != 0 {
		t.Fatalf("%d API calls, want none", n)
	}
}

func TestProxyV2NeedsAPI222(t *testing.T) {
	f, c := newFake(t)
	f.version = "v2.21"
	_, err := c.Create(t.Context(), proxySpec("PROXYV2"))
	var ue *UnsupportedError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "needs Octavia API 2.22 or newer; this Octavia offers 2.21") {
		t.Fatalf("err = %v, want an UnsupportedError naming 2.22 and 2.21", err)
	}
	if f.count("POST /loadbalancers") != 0 {
		t.Fatal("a create was sent")
	}
	// PROXY (v1) needs nothing newer.
	if _, err := c.Create(t.Context(), proxySpec("PROXY")); err != nil {
		t.Fatal(err)
	}
}

func TestFallsBackToSerialWhenProviderRefusesSingleCall(t *testing.T) {
	f, c := newFake(t)
	f.answer("POST /loadbalancers", http.StatusNotImplemented)
	got, err := c.Create(t.Context(), proxySpec("PROXY"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Mode != Serial {
		t.Fatalf("mode %s, want serial", got.Mode)
	}
	for _, call := range []string{"POST /loadbalancers", "POST /listeners", "POST /pools", "POST /pools/p1/members", "POST /healthmonitors"} {
		if f.count(call) == 0 {
			t.Errorf("no %s", call)
		}
	}
	// The serial create's load balancer carries no listeners, and the owner tag.
	var first struct {
		LB struct {
			Listeners []any    `json:"listeners"`
			Tags      []string `json:"tags"`
		} `json:"loadbalancer"`
	}
	if err := json.Unmarshal([]byte(f.bodies["POST /loadbalancers"][1]), &first); err != nil {
		t.Fatal(err)
	}
	if len(first.LB.Listeners) != 0 || strings.Join(first.LB.Tags, ",") != DefaultOwnerTag {
		t.Fatalf("serial body %s", f.bodies["POST /loadbalancers"][1])
	}
}

func TestSerialFailureDeletesWhatItCreated(t *testing.T) {
	f, c := newFake(t)
	c = New(c.sc, WithSerialCreate(), WithBackoff(c.backoff))
	f.answer("POST /pools", http.StatusBadRequest)
	_, err := c.Create(t.Context(), proxySpec("PROXY"))
	if err == nil || !strings.Contains(err.Error(), "create listeners[0].pool") {
		t.Fatalf("err = %v, want the pool step named", err)
	}
	if f.count("DELETE /loadbalancers/lb1") != 1 {
		t.Fatal("the half-built load balancer was not deleted")
	}
	if f.status[0] != "GONE" {
		t.Fatal("the delete was not waited on")
	}
}

func TestValidateNamesFields(t *testing.T) {
	w := -1
	spec := Spec{Listeners: []ListenerSpec{{
		Protocol: "TCP", Port: 70000,
		Pool: &PoolSpec{Protocol: "PROXY", Members: []MemberSpec{{Address: "10.0.0", Port: 80, Weight: &w}},
			Monitor: &MonitorSpec{Type: "TCP", Delay: 2, Timeout: 5, MaxRetries: 3}},
	}, {Protocol: "TERMINATED_HTTPS", Port: 443}}}
	err := Validate(spec)
	var ie *InvalidSpecError
	if !errors.As(err, &ie) {
		t.Fatalf("err = %v, want InvalidSpecError", err)
	}
	want := []string{"vip_subnet_id", "listeners[0].port", "listeners[0].pool.name", "listeners[0].pool.members[0].address",
		"listeners[0].pool.members[0].weight", "listeners[0].pool.monitor.timeout", "listeners[1].default_tls_container_ref"}
	var got []string
	for _, v := range ie.Violations {
		got = append(got, v.Field)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("fields %v\nwant   %v", got, want)
	}
}

func TestProtocolPairs(t *testing.T) {
	for listener, allowed := range validPoolProtocols {
		for _, pool := range []string{"HTTP", "HTTPS", "TCP", "UDP", "SCTP", "PROXY", "PROXYV2"} {
			spec := proxySpec(pool)
			spec.Listeners[0].Protocol = listener
			spec.Listeners[0].DefaultTLSContainerRef = "ref"
			spec.Listeners[0].Pool.Monitor = nil
			err := Validate(spec)
			ok := false
			for _, a := range allowed {
				ok = ok || a == pool
			}
			var ue *UnsupportedError
			if ok != (err == nil) || (!ok && !errors.As(err, &ue)) {
				t.Errorf("%s listener, %s pool: err = %v, allowed %v", listener, pool, err, ok)
			}
		}
	}
}

func TestWatchReportsChangesUntilSettled(t *testing.T) {
	f, c := newFake(t)
	f.status = []string{"PENDING_CREATE", "PENDING_CREATE", "PENDING_UPDATE", "ACTIVE", "PENDING_DELETE"}
	var seen []string
	err := c.Watch(t.Context(), "lb1", func(lb *LoadBalancer) error {
		seen = append(seen, lb.ProvisioningStatus)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(seen, ","); got != "PENDING_CREATE,PENDING_UPDATE,ACTIVE" {
		t.Fatalf("watch saw %s: want each change once, ending at ACTIVE", got)
	}
	f.status = []string{"PENDING_DELETE", "GONE"}
	seen = nil
	if err := c.Watch(t.Context(), "lb1", func(lb *LoadBalancer) error {
		seen = append(seen, lb.ProvisioningStatus)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(seen, ","); got != "PENDING_DELETE,DELETED" {
		t.Fatalf("watch saw %s: want PENDING_DELETE,DELETED", got)
	}
}

func TestStuckChildrenAreRebuiltSerially(t *testing.T) {
	f, c := newFake(t)
	f.childStatus = "PENDING_CREATE" // the single-call create's children never leave PENDING_CREATE
	created, tree, err := c.CreateReady(t.Context(), proxySpec("PROXY"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if created.Mode != SerialAfterStuck || f.count("DELETE /loadbalancers/lb1") != 1 || len(tree.Pending()) != 0 {
		t.Fatalf("mode %s, %d deletes, pending %v: want a rebuild after one cascade delete", created.Mode, f.count("DELETE /loadbalancers/lb1"), tree.Pending())
	}
	if !c.serial {
		t.Fatal("the client did not switch to serial creates")
	}
}

func TestStuckParentInASerialCreateIsRebuilt(t *testing.T) {
	f, c := newFake(t)
	c.serial = true
	// The provider leaves the new listener PENDING_CREATE under an ACTIVE load
	// balancer (seen in the dev cloud's Octavia: its pool then answered 409
	// "immutable" to every member): no child is sent to it, the load balancer is
	// deleted (cascade) and built again.
	f.childStatus = "PENDING_CREATE"
	created, tree, err := c.CreateReady(t.Context(), proxySpec("PROXY"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if created.Mode != SerialAfterStuck || f.count("DELETE /loadbalancers/lb1") != 1 || len(tree.Pending()) != 0 {
		t.Fatalf("mode %s, %d deletes, pending %v: want a rebuild after one cascade delete", created.Mode, f.count("DELETE /loadbalancers/lb1"), tree.Pending())
	}
	if n := f.count("POST /pools"); n != 1 {
		t.Fatalf("%d pool creates: want none under the stuck listener, one after the rebuild", n)
	}
}
