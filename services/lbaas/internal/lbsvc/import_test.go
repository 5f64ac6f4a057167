package lbsvc

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
)

const shopCfg = `defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend shop
    bind 10.101.0.147:80
    acl api hdr(host) -i api.example
    use_backend api if api
    default_backend web

backend web
    server web-1 10.0.0.1:8080 check send-proxy
    server web-2 10.0.0.2:8080 check send-proxy

backend api
    server api-1 10.0.0.3:8080 check send-proxy addr 10.0.0.1 port 9000
`

func source(files ...string) *lbaasv1.ImportSource {
	src := &lbaasv1.ImportSource{DisplayName: "shop"}
	for i := 0; i < len(files); i += 2 {
		src.Files = append(src.Files, &lbaasv1.ConfigFile{Name: files[i], Content: files[i+1]})
	}
	return src
}

// TestValidateImport: each bad field is named with a sentence to act on.
func TestValidateImport(t *testing.T) {
	if err := ValidatePlanImport(&lbaasv1.PlanImportRequest{Source: source("haproxy.cfg", shopCfg)}); err != nil {
		t.Fatalf("a valid plan request: %v", err)
	}
	ok := &lbaasv1.ApplyImportRequest{Source: source("haproxy.cfg", shopCfg), VipSubnetId: "0d4e1a9c-4b1e-4f0a-9d35-0c3c1a0e2f11", RequestId: "imp-1"}
	if err := ValidateApplyImport(ok); err != nil {
		t.Fatalf("a valid apply request: %v", err)
	}
	big := strings.Repeat("#", MaxImportFileBytes+1)
	for name, c := range map[string]struct {
		req   any
		field string
	}{
		"no source":         {&lbaasv1.PlanImportRequest{}, "source"},
		"no files":          {&lbaasv1.PlanImportRequest{Source: &lbaasv1.ImportSource{}}, "source.files"},
		"unnamed file":      {&lbaasv1.PlanImportRequest{Source: source("", shopCfg)}, "source.files[0].name"},
		"colon in name":     {&lbaasv1.PlanImportRequest{Source: source("a:b", shopCfg)}, "source.files[0].name"},
		"same name twice":   {&lbaasv1.PlanImportRequest{Source: source("a", shopCfg, "a", "")}, "source.files[1].name"},
		"too large":         {&lbaasv1.PlanImportRequest{Source: source("a", big)}, "source.files[0].content"},
		"bad env name":      {&lbaasv1.PlanImportRequest{Source: withSource(func(s *lbaasv1.ImportSource) { s.Env = map[string]string{"1X": "v"} })}, `source.env["1X"]`},
		"moved not an IP":   {&lbaasv1.PlanImportRequest{Source: withSource(func(s *lbaasv1.ImportSource) { s.MovedAddresses = map[string]string{"10.0.0.1": "web-1"} })}, `source.moved_addresses["10.0.0.1"]`},
		"member name empty": {&lbaasv1.PlanImportRequest{Source: withSource(func(s *lbaasv1.ImportSource) { s.MemberNames = map[string]string{"10.0.0.1": ""} })}, `source.member_names["10.0.0.1"]`},
		"accept not a line": {&lbaasv1.PlanImportRequest{Source: withSource(func(s *lbaasv1.ImportSource) { s.Accept = []string{"haproxy.cfg"} })}, "source.accept[0]"},
		"subnet a name":     {&lbaasv1.ApplyImportRequest{Source: source("a", shopCfg), VipSubnetId: "old-vlan-101-v4"}, "vip_subnet_id"},
		"bad request_id":    {&lbaasv1.ApplyImportRequest{Source: source("a", shopCfg), VipSubnetId: ok.VipSubnetId, RequestId: "a b"}, "request_id"},
		"certificate ref":   {&lbaasv1.ApplyImportRequest{Source: source("a", shopCfg), VipSubnetId: ok.VipSubnetId, Certificates: map[string]string{"/etc/ssl/shop.pem": ""}}, `certificates["/etc/ssl/shop.pem"]`},
	} {
		var err error
		switch r := c.req.(type) {
		case *lbaasv1.PlanImportRequest:
			err = ValidatePlanImport(r)
		case *lbaasv1.ApplyImportRequest:
			err = ValidateApplyImport(r)
		}
		if status.Code(err) != codes.InvalidArgument || apierr.FieldViolations(err)[c.field] == "" {
			t.Errorf("%s: %v %v, want INVALID_ARGUMENT on %s", name, err, apierr.FieldViolations(err), c.field)
		}
	}
}

func withSource(f func(*lbaasv1.ImportSource)) *lbaasv1.ImportSource {
	s := source("haproxy.cfg", shopCfg)
	f(s)
	return s
}

// TestPlanImportRefusesBadConfigurations: what haproxy would refuse is
// INVALID_ARGUMENT on the file at fault, with its line.
func TestPlanImportRefusesBadConfigurations(t *testing.T) {
	s := &Server{}
	for name, c := range map[string]struct {
		files       []string
		field, want string
	}{
		"syntax error":       {[]string{"a.cfg", "global\n", "b.cfg", "frontend x\n  bind :80\n  default_backend \"web\n"}, "source.files[1].content", "b.cfg:3"},
		"unknown section":    {[]string{"a.cfg", "frontdoor x\n"}, "source.files[0].content", "a.cfg:1"},
		"backend not there":  {[]string{"a.cfg", "frontend x\n  mode http\n  bind 10.0.0.9:80\n  default_backend web\n"}, "source.files[0].content", "a.cfg:4"},
		"server without ip":  {[]string{"a.cfg", "listen x\n  bind 10.0.0.9:80\n  server a\n"}, "source.files[0].content", "a.cfg:3"},
		"not haproxy at all": {[]string{"a.cfg", "{\"json\": true}\n"}, "source.files[0].content", "a.cfg:1"},
	} {
		_, err := s.planImport(t.Context(), source(c.files...))
		fv := apierr.FieldViolations(err)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(fv[c.field], c.want) {
			t.Errorf("%s: %v %v, want INVALID_ARGUMENT on %s naming %s", name, err, fv, c.field, c.want)
		}
	}
}

type fakeRuns struct {
	inventoryv1.WaveRunServiceClient
	runs []*inventoryv1.Run
	err  error
}

func (f *fakeRuns) ListRuns(_ context.Context, in *inventoryv1.ListRunsRequest, _ ...grpc.CallOption) (*inventoryv1.ListRunsResponse, error) {
	if f.err != nil {
		return nil, f.err
	}
	// Two pages, to be read whole.
	if in.GetPageToken() == "" && len(f.runs) > 1 {
		return &inventoryv1.ListRunsResponse{Runs: f.runs[:1], NextPageToken: "2"}, nil
	}
	if in.GetPageToken() == "2" {
		return &inventoryv1.ListRunsResponse{Runs: f.runs[1:]}, nil
	}
	return &inventoryv1.ListRunsResponse{Runs: f.runs}, nil
}

type fakeInventory struct {
	inventoryv1.InventoryServiceClient
	workloads []*inventoryv1.Workload
}

func (f *fakeInventory) ListWorkloads(context.Context, *inventoryv1.ListWorkloadsRequest, ...grpc.CallOption) (*inventoryv1.ListWorkloadsResponse, error) {
	return &inventoryv1.ListWorkloadsResponse{Workloads: f.workloads}, nil
}

type fakeBridges struct {
	netbridgev1.NetbridgeServiceClient
	bridges []*netbridgev1.Bridge
}

func (f *fakeBridges) ListBridges(context.Context, *netbridgev1.ListBridgesRequest, ...grpc.CallOption) (*netbridgev1.ListBridgesResponse, error) {
	return &netbridgev1.ListBridgesResponse{Bridges: f.bridges}, nil
}

func instance(name, id string, ips ...string) *inventoryv1.Workload {
	p := &inventoryv1.PortFacts{}
	for _, ip := range ips {
		p.FixedIps = append(p.FixedIps, &inventoryv1.FixedIP{IpAddress: ip})
	}
	return &inventoryv1.Workload{Name: "workloads/" + id, DisplayName: name,
		Facts: &inventoryv1.Facts{Kind: &inventoryv1.Facts_Instance{Instance: &inventoryv1.InstanceFacts{Ports: []*inventoryv1.PortFacts{p}}}}}
}

// TestPlanImportAsksWhereServersWent: with resolve_moves and names_from_inventory
// the plan's members are where the wave runs and netbridge put them and named by
// their workloads; what the operator gives wins.
func TestPlanImportAsksWhereServersWent(t *testing.T) {
	runs := &fakeRuns{runs: []*inventoryv1.Run{
		{Workloads: []*inventoryv1.RunWorkload{ // newest: web-1 replaced at 10.0.1.1
			{Workload: "workloads/w1", DisplayName: "web-1", Step: inventoryv1.RunStep_RUN_STEP_DONE, SourceAddress: "10.0.0.1", NewAddress: "10.0.1.1"},
			{Workload: "workloads/w9", DisplayName: "web-9", Step: inventoryv1.RunStep_RUN_STEP_CONVERT, SourceAddress: "10.0.0.2", NewAddress: "10.0.1.9"},
		}},
		{Workloads: []*inventoryv1.RunWorkload{ // older: web-1's earlier move, superseded
			{Workload: "workloads/w1", DisplayName: "web-1", Step: inventoryv1.RunStep_RUN_STEP_DONE, SourceAddress: "10.0.0.1", NewAddress: "10.0.2.1"},
		}},
	}}
	inv := &fakeInventory{workloads: []*inventoryv1.Workload{
		instance("db-old", "w3old", "10.0.0.3"), // vanished: the live one wins
		instance("api-1", "w3", "10.0.0.3", "10.0.0.30"),
		instance("web-2", "w2", "10.0.0.2"),
	}}
	inv.workloads[0].Vanished = true
	nb := &fakeBridges{bridges: []*netbridgev1.Bridge{{Name: "bridges/b1", Moved: []*netbridgev1.MovedAddress{{IpAddress: "10.0.0.2"}, {IpAddress: "10.9.9.9"}}}}}
	s := &Server{others: Others{Inventory: inv, Runs: runs, Netbridge: nb}}

	src := source("haproxy.cfg", shopCfg)
	src.ResolveMoves, src.NamesFromInventory = true, true
	resp, err := s.PlanImport(t.Context(), &lbaasv1.PlanImportRequest{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	p := resp.GetPlan()
	members := map[string]string{}
	var checkAt string
	for _, pl := range p.GetLoadBalancers()[0].GetPools() {
		for _, m := range pl.GetMembers() {
			members[m.GetAddress()] = m.GetDisplayName()
			if m.GetMonitorAddress() != "" {
				checkAt = m.GetMonitorAddress()
			}
		}
	}
	want := map[string]string{"10.0.1.1": "web-1", "10.0.0.2": "web-2", "10.0.0.3": "api-1"}
	if len(members) != len(want) {
		t.Fatalf("members %v, want %v", members, want)
	}
	for a, n := range want {
		if members[a] != n {
			t.Errorf("member at %s is %q, want %q (members %v)", a, members[a], n, members)
		}
	}
	if checkAt != "10.0.1.1" {
		t.Errorf("api-1's check address (addr 10.0.0.1) is %q, want it moved with web-1 to 10.0.1.1", checkAt)
	}
	if got := p.GetRewritten(); len(got) != 1 || got["10.0.0.1"] != "10.0.1.1" {
		t.Errorf("rewritten %v", got)
	}
	if got := p.GetMovedViaBridge(); len(got) != 1 || got["10.0.0.2"] != "bridges/b1" {
		t.Errorf("moved_via_bridge %v", got)
	}
	if got := p.GetNamed(); got["10.0.1.1"] != "workloads/w1" || got["10.0.0.3"] != "workloads/w3" || got["10.0.0.2"] != "workloads/w2" {
		t.Errorf("named %v", got)
	}
	var said bool
	for _, e := range p.GetLedger() {
		if strings.Contains(e.GetWhy(), "rewritten to 10.0.1.1 (moved)") {
			said = true
		}
	}
	if !said {
		t.Error("the ledger does not say web-1's address was rewritten")
	}

	// What the operator gives wins over what the services say.
	src.MovedAddresses = map[string]string{"10.0.0.1": "10.0.5.1"}
	src.MemberNames = map[string]string{"10.0.0.3": "api-primary"}
	resp, err = s.PlanImport(t.Context(), &lbaasv1.PlanImportRequest{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, pl := range resp.GetPlan().GetLoadBalancers()[0].GetPools() {
		for _, m := range pl.GetMembers() {
			got[m.GetAddress()] = m.GetDisplayName()
		}
	}
	if got["10.0.5.1"] != "web-1" || got["10.0.0.3"] != "api-primary" || resp.GetPlan().GetNamed()["10.0.0.3"] != "member_names" {
		t.Errorf("with the operator's moves and names: members %v, named %v", got, resp.GetPlan().GetNamed())
	}
}

// TestPlanImportWithoutTheOtherServices: a plan that needs the inventory or
// netbridge says so when they cannot answer, and a plan that does not, plans.
func TestPlanImportWithoutTheOtherServices(t *testing.T) {
	src := source("haproxy.cfg", shopCfg)
	if _, err := (&Server{}).PlanImport(t.Context(), &lbaasv1.PlanImportRequest{Source: src}); err != nil {
		t.Fatalf("a plan from the file alone: %v", err)
	}
	src.ResolveMoves = true
	_, err := (&Server{}).PlanImport(t.Context(), &lbaasv1.PlanImportRequest{Source: src})
	if status.Code(err) != codes.FailedPrecondition || apierr.Reason(err) != ReasonDependency {
		t.Errorf("no inventory: %v", err)
	}
	down := &Server{others: Others{Runs: &fakeRuns{err: status.Error(codes.Unavailable, "no inventory instance")}, Netbridge: &fakeBridges{}}}
	_, err = down.PlanImport(t.Context(), &lbaasv1.PlanImportRequest{Source: src})
	if status.Code(err) != codes.Unavailable || apierr.Reason(err) != ReasonDependency || !strings.Contains(err.Error(), "ListRuns") {
		t.Errorf("inventory down: %v", err)
	}
}

// TestApplyImportRefusesAnIncompletePlan: leftovers not accepted stop an apply
// before Octavia is asked anything, naming the first.
func TestApplyImportRefusesAnIncompletePlan(t *testing.T) {
	cfg := shopCfg + "\nbackend lua\n    http-request lua.auth\n    server l 10.0.0.9:80\n"
	_, err := (&Server{}).ApplyImport(t.Context(), &lbaasv1.ApplyImportRequest{Source: source("haproxy.cfg", cfg), VipSubnetId: "0d4e1a9c-4b1e-4f0a-9d35-0c3c1a0e2f11"})
	if status.Code(err) != codes.FailedPrecondition || apierr.Reason(err) != ReasonPlanIncomplete || !strings.Contains(err.Error(), "haproxy.cfg:") {
		t.Fatalf("%v", err)
	}
	if errors.Is(err, context.Canceled) {
		t.Fatal("unreachable")
	}
}

// TestPlanImportKeepsSecretsOut: a value given through env is written back as
// "$NAME" in the ledger; a word haproxy's \x escape made that is not UTF-8 is
// refused by file and line (the plan is protobuf strings, its names go to Octavia).
func TestPlanImportKeepsSecretsOut(t *testing.T) {
	src := source("haproxy.cfg", shopCfg+"    http-request set-header X-Custom \"$TOKEN\"\n")
	src.Env = map[string]string{"TOKEN": "abcd-secret-9", "P": "80"}
	resp, err := (&Server{}).PlanImport(t.Context(), &lbaasv1.PlanImportRequest{Source: src})
	if err != nil {
		t.Fatal(err)
	}
	var shown bool
	for _, e := range resp.GetPlan().GetLedger() {
		if strings.Contains(e.GetDirective()+e.GetWhy(), "abcd-secret-9") {
			t.Fatalf("the ledger shows the variable's value: %v", e)
		}
		shown = shown || strings.Contains(e.GetDirective(), "$TOKEN")
	}
	if !shown {
		t.Error("the ledger does not say $TOKEN where its value was")
	}
	_, err = (&Server{}).PlanImport(t.Context(), &lbaasv1.PlanImportRequest{Source: source("haproxy.cfg",
		strings.Replace(shopCfg, "server web-2 10.0.0.2:8080", `server "web-\xff" 10.0.0.2:8080`, 1))})
	if fv := apierr.FieldViolations(err); status.Code(err) != codes.InvalidArgument || !strings.Contains(fv["source.files[0].content"], "haproxy.cfg:15") {
		t.Fatalf("a server name that is not UTF-8: %v %v", err, fv)
	}
}

// TestApplyImportNamesTheMissingCertificate: a TLS bind whose certificate has no
// Barbican container is INVALID_ARGUMENT on certificates, before Octavia is asked.
func TestApplyImportNamesTheMissingCertificate(t *testing.T) {
	cfg := "frontend www\n    mode http\n    bind 10.0.0.9:443 ssl crt /etc/ssl/shop.pem\n    default_backend web\n" +
		"backend web\n    mode http\n    server web-1 10.0.0.1:80\n"
	_, err := (&Server{}).ApplyImport(t.Context(), &lbaasv1.ApplyImportRequest{Source: source("haproxy.cfg", cfg),
		VipSubnetId: "0d4e1a9c-4b1e-4f0a-9d35-0c3c1a0e2f11", AcceptLeftovers: true})
	if fv := apierr.FieldViolations(err); status.Code(err) != codes.InvalidArgument || !strings.Contains(fv["certificates"], "/etc/ssl/shop.pem") {
		t.Fatalf("%v %v", err, fv)
	}
}
