package contract

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	clientv3 "go.etcd.io/etcd/client/v3"

	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/services/lbaas/internal/lbsvc"
)

const importCfg = `defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend shop
    bind 10.101.0.129:80
    acl api hdr(host) -i api.example
    use_backend api if api
    default_backend web

backend web
    balance roundrobin
    option httpchk GET /health
    server web-1 10.101.0.21:8080 check send-proxy
    server web-2 10.101.0.22:8080 check send-proxy

backend api
    server api-1 10.101.0.31:8080 check send-proxy
`

// TestImportPlanAndApply: the service's import through gRPC against the dev
// cloud's Octavia. PlanImport maps the file and reads nothing; ApplyImport with a
// request_id builds the load balancer, a repeat returns the first result and
// another request under the same request_id is refused; a changed file is
// converged (dry run first: what would change, nothing changed); a load balancer
// of the name that another owner made is not touched; bad files are
// INVALID_ARGUMENT naming file and line.
func TestImportPlanAndApply(t *testing.T) {
	f := newFixture(t)
	p := start(t, f.env, f.owner)
	f.cleanup(t, p)
	ctx := t.Context()
	name := f.owner + "-shop"
	src := func(cfg string) *lbaasv1.ImportSource {
		return &lbaasv1.ImportSource{DisplayName: name, Files: []*lbaasv1.ConfigFile{{Name: "haproxy.cfg", Content: cfg}}}
	}

	plan, err := p.client.PlanImport(ctx, &lbaasv1.PlanImportRequest{Source: src(importCfg)})
	if err != nil {
		t.Fatal(err)
	}
	pl := plan.GetPlan()
	if !pl.GetComplete() || len(pl.GetLoadBalancers()) != 1 || pl.GetLoadBalancers()[0].GetVipAddress() != "10.101.0.129" ||
		len(pl.GetLoadBalancers()[0].GetPools()) != 2 || len(pl.GetLoadBalancers()[0].GetListeners()[0].GetL7Policies()) != 1 {
		t.Fatalf("plan: %v", pl)
	}
	t.Logf("plan: %d ledger lines, complete", len(pl.GetLedger()))

	// Bad files, each named with its line.
	for what, c := range map[string]struct{ cfg, want string }{
		"backend used, not defined": {strings.Replace(importCfg, "use_backend api", "use_backend apj", 1), "haproxy.cfg:10"},
		"not haproxy":               {"<html><body>hello</body></html>\n", "haproxy.cfg:1"},
	} {
		_, err := p.client.PlanImport(ctx, &lbaasv1.PlanImportRequest{Source: src(c.cfg)})
		if fv := apierr.FieldViolations(err); status.Code(err) != codes.InvalidArgument || !strings.Contains(fv["source.files[0].content"], c.want) {
			t.Errorf("%s: %v %v", what, err, fv)
		}
	}

	// Where servers went is asked of the inventory and netbridge: none runs here,
	// and the plan says so instead of planning without them.
	began := time.Now()
	asked := src(importCfg)
	asked.ResolveMoves = true
	_, err = p.client.PlanImport(ctx, &lbaasv1.PlanImportRequest{Source: asked})
	if status.Code(err) != codes.Unavailable || apierr.Reason(err) != lbsvc.ReasonDependency {
		t.Errorf("resolve_moves without an inventory: %v", err)
	}
	t.Logf("resolve_moves without an inventory (%.1f s): %v", time.Since(began).Seconds(), err)

	apply := func(cfg, rid string, dry bool) (*lbaasv1.ApplyImportResponse, error) {
		return p.client.ApplyImport(ctx, &lbaasv1.ApplyImportRequest{Source: src(cfg), VipSubnetId: f.subnetID, RequestId: rid, DryRun: dry})
	}
	dry, err := apply(importCfg, "", true)
	if err != nil {
		t.Fatal(err)
	}
	if a := dry.GetLoadBalancers(); len(a) != 1 || a[0].GetAction() != lbaasv1.ApplyAction_APPLY_ACTION_CREATE || a[0].GetName() != "" {
		t.Fatalf("dry run before anything is built: %v", a)
	}
	rid := strings.ReplaceAll(f.owner, "ctest-", "imp-")
	first, err := apply(importCfg, rid, false)
	if err != nil {
		t.Fatal(err)
	}
	made := first.GetLoadBalancers()
	if len(made) != 1 || made[0].GetAction() != lbaasv1.ApplyAction_APPLY_ACTION_CREATE || made[0].GetName() == "" {
		t.Fatalf("apply: %v", made)
	}
	t.Logf("built %s in %.1f s", made[0].GetName(), made[0].GetSeconds())
	got, err := p.client.GetLoadBalancer(ctx, &lbaasv1.GetLoadBalancerRequest{Name: made[0].GetName()})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetLoadBalancer().GetVip().GetAddress() != "10.101.0.129" || got.GetLoadBalancer().GetStatus().GetProvisioningStatus() != "ACTIVE" {
		t.Fatalf("the built load balancer: %v", got.GetLoadBalancer())
	}
	again, err := apply(importCfg, rid, false)
	if err != nil || again.GetLoadBalancers()[0].GetName() != made[0].GetName() || again.GetLoadBalancers()[0].GetSeconds() != made[0].GetSeconds() {
		t.Fatalf("the same request again: %v %v, want the first result", again.GetLoadBalancers(), err)
	}
	// The process dies after the create, before its record: the record is gone,
	// and the retry finds the load balancer by the request's tag — its create,
	// reported as such, nothing built twice.
	recs, err := f.env.Cli.Get(ctx, keys.Root+"lbaas/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range recs.Kvs {
		if strings.HasSuffix(string(kv.Key), "/import-requests/"+rid) {
			if _, err := f.env.Cli.Delete(ctx, string(kv.Key)); err != nil {
				t.Fatal(err)
			}
		}
	}
	retried, err := apply(importCfg, rid, false)
	if err != nil {
		t.Fatal(err)
	}
	if r := retried.GetLoadBalancers()[0]; r.GetName() != made[0].GetName() || r.GetAction() != lbaasv1.ApplyAction_APPLY_ACTION_CREATE || len(r.GetChanges()) != 0 {
		t.Fatalf("the retry after a lost record: %v, want %s found again as this request's create", r, made[0].GetName())
	}
	changed := strings.NewReplacer("balance roundrobin", "balance leastconn",
		"    server web-2 10.101.0.22:8080 check send-proxy\n", "",
		"server api-1 10.101.0.31:8080 check send-proxy", "server api-1 10.101.0.31:8080 check send-proxy-v2").Replace(importCfg)
	if _, err := apply(changed, rid, false); status.Code(err) != codes.InvalidArgument || apierr.Reason(err) != lbsvc.ReasonRequestReused {
		t.Fatalf("another request under the same request_id: %v", err)
	}
	// The same file applied without a request_id: nothing to change.
	if same, err := apply(importCfg, "", false); err != nil || same.GetLoadBalancers()[0].GetAction() != lbaasv1.ApplyAction_APPLY_ACTION_UNCHANGED {
		t.Fatalf("the same file again: %v %v", same.GetLoadBalancers(), err)
	}
	diff, err := apply(changed, "", true)
	if err != nil {
		t.Fatal(err)
	}
	d := diff.GetLoadBalancers()[0]
	text := strings.Join(d.GetChanges(), "\n")
	for _, want := range []string{"lb_algorithm ROUND_ROBIN → LEAST_CONNECTIONS", "members[10.101.0.22:8080]: remove", "PROXY → PROXYV2"} {
		if !strings.Contains(text, want) {
			t.Errorf("dry run of the changed file lacks %q:\n%s", want, text)
		}
	}
	if d.GetAction() != lbaasv1.ApplyAction_APPLY_ACTION_CONVERGE || d.GetName() != made[0].GetName() {
		t.Fatalf("dry run: %v", d)
	}
	conv, err := apply(changed, rid+"-2", false)
	if err != nil {
		t.Fatal(err)
	}
	c := conv.GetLoadBalancers()[0]
	if c.GetAction() != lbaasv1.ApplyAction_APPLY_ACTION_CONVERGE || c.GetName() != made[0].GetName() || len(c.GetChanges()) != len(d.GetChanges()) {
		t.Fatalf("converge: %v (dry run said %v)", c, d.GetChanges())
	}
	t.Logf("converged in %.1f s: %d change(s)\n  %s", c.GetSeconds(), len(c.GetChanges()), strings.Join(c.GetChanges(), "\n  "))
	if now, err := apply(changed, "", true); err != nil || now.GetLoadBalancers()[0].GetAction() != lbaasv1.ApplyAction_APPLY_ACTION_UNCHANGED {
		t.Fatalf("after the converge: %v %v", now.GetLoadBalancers(), err)
	}

	// A replica with another owner tag does not touch this owner's load balancer.
	other := start(t, f.env, f.owner+"-other")
	_, err = other.client.ApplyImport(ctx, &lbaasv1.ApplyImportRequest{Source: src(importCfg), VipSubnetId: f.subnetID, DryRun: true})
	if status.Code(err) != codes.FailedPrecondition || apierr.Reason(err) != lbsvc.ReasonNotOwned {
		t.Fatalf("another owner's load balancer of that name: %v", err)
	}
}
