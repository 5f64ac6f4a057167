package lbsvc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/grpc/codes"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/services/lbaas/haproxycfg"
	"github.com/hikkoshi/hikkoshi/services/lbaas/haproxyimport"
)

// Limits of an import's source and plan. Real configurations are a few KiB;
// the limits keep a hostile one from costing the service more than a moment.
const (
	MaxImportFiles      = 64
	MaxImportFileBytes  = 1 << 20
	MaxImportBytes      = 2 << 20 // all files together
	MaxImportMapEntries = 10000   // moved_addresses, member_names
	MaxImportAccept     = 1000
	MaxImportEnv        = 256
	MaxImportLBs        = 50
	MaxImportMembers    = 5000
	maxNameLen          = 255
)

// Reasons of an import.
const (
	// ReasonPlanIncomplete: an apply of a plan with leftovers not accepted.
	ReasonPlanIncomplete = "PLAN_INCOMPLETE"
	// ReasonDependency: another Hikkoshi service an import asked could not answer.
	ReasonDependency = "DEPENDENCY_UNAVAILABLE"
	// ReasonNotOwned: a load balancer of the plan's name that the service did not make.
	ReasonNotOwned = "LOAD_BALANCER_NOT_OWNED"
)

// lookupTimeout bounds what an import asks the inventory and netbridge.
const lookupTimeout = 30 * time.Second

var (
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
	whereRE   = regexp.MustCompile(`^[^:]+:[1-9][0-9]{0,8}$`)
)

// Others are the other Hikkoshi services an import asks where servers went
// (ImportSource.resolve_moves, names_from_inventory). A nil client makes those
// options FAILED_PRECONDITION.
type Others struct {
	Inventory inventoryv1.InventoryServiceClient
	Runs      inventoryv1.WaveRunServiceClient
	Netbridge netbridgev1.NetbridgeServiceClient
}

// ValidatePlanImport checks a PlanImport request without reading anything.
func ValidatePlanImport(r *lbaasv1.PlanImportRequest) error {
	var v apierr.Violations
	validateSource(&v, "source", r.GetSource())
	return v.Err()
}

// ValidateApplyImport checks an ApplyImport request without calling Octavia.
func ValidateApplyImport(r *lbaasv1.ApplyImportRequest) error {
	var v apierr.Violations
	validateSource(&v, "source", r.GetSource())
	if !r.GetDryRun() {
		v.RequestID("request_id", r.GetRequestId())
	}
	if s := r.GetVipSubnetId(); !apierr.IsUUID(s) {
		v.Add("vip_subnet_id", "%q is not a subnet ID: give the Neutron ID (a UUID) of the subnet the VIPs are made on", s)
	}
	for f, ref := range r.GetCertificates() {
		p := fmt.Sprintf("certificates[%q]", f)
		switch {
		case f == "" || len(f) > 4096:
			v.Add(p, "give the certificate file's name as the configuration names it (crt FILE)")
		case ref == "" || len(ref) > 255 || strings.ContainsAny(ref, " \t\r\n"):
			v.Add(p, "give the Barbican container's reference (its URL) that holds %s", f)
		}
	}
	return v.Err()
}

func validateSource(v *apierr.Violations, path string, src *lbaasv1.ImportSource) {
	if src == nil {
		v.Add(path, "required: the haproxy configuration's files")
		return
	}
	files := src.GetFiles()
	switch {
	case len(files) == 0:
		v.Add(path+".files", "give at least one file: the haproxy configuration to import")
	case len(files) > MaxImportFiles:
		v.Add(path+".files", "%d files: give at most %d (one configuration)", len(files), MaxImportFiles)
	}
	seen, total := map[string]bool{}, 0
	for i, f := range files {
		total += len(f.GetContent())
		p := fmt.Sprintf("%s.files[%d]", path, i)
		n := f.GetName()
		switch {
		case n == "":
			v.Add(p+".name", "required: the file's name, as errors and the ledger cite it (haproxy.cfg)")
		case len(n) > maxNameLen || strings.ContainsAny(n, ":\x00\r\n"):
			v.Add(p+".name", "give a file name of at most %d characters without ':' or line breaks (the ledger cites FILE:LINE)", maxNameLen)
		case seen[n]:
			v.Add(p+".name", "%q is named twice: give each file its own name", n)
		}
		seen[n] = true
		if len(f.GetContent()) > MaxImportFileBytes {
			v.Add(p+".content", "%d bytes: an haproxy configuration file of at most %d bytes is imported", len(f.GetContent()), MaxImportFileBytes)
		}
	}
	if total > MaxImportBytes {
		v.Add(path+".files", "%d bytes in all: an import of at most %d bytes is taken", total, MaxImportBytes)
	}
	for _, c := range []struct {
		field  string
		n, max int
	}{{"env", len(src.GetEnv()), MaxImportEnv}, {"moved_addresses", len(src.GetMovedAddresses()), MaxImportMapEntries},
		{"member_names", len(src.GetMemberNames()), MaxImportMapEntries}, {"accept", len(src.GetAccept()), MaxImportAccept}} {
		if c.n > c.max {
			v.Add(path+"."+c.field, "%d entries: give at most %d", c.n, c.max)
		}
	}
	for k, val := range src.GetEnv() {
		if !envNameRE.MatchString(k) {
			v.Add(fmt.Sprintf("%s.env[%q]", path, k), "not a variable name: letters, digits and '_', not starting with a digit")
		} else if len(val) > 4096 {
			v.Add(fmt.Sprintf("%s.env[%q]", path, k), "a value of at most 4096 bytes")
		}
	}
	if len(src.GetDisplayName()) > maxNameLen-40 {
		v.Add(path+".display_name", "at most %d characters (the load balancers are named NAME-ADDRESS)", maxNameLen-40)
	}
	for old, to := range src.GetMovedAddresses() {
		if net.ParseIP(old) == nil || net.ParseIP(to) == nil {
			v.Add(fmt.Sprintf("%s.moved_addresses[%q]", path, old), "give OLD_ADDRESS → NEW_ADDRESS, two IP addresses (%q)", to)
		}
	}
	for addr, name := range src.GetMemberNames() {
		if net.ParseIP(addr) == nil || name == "" || len(name) > maxNameLen || strings.IndexFunc(name, unicode.IsControl) >= 0 {
			v.Add(fmt.Sprintf("%s.member_names[%q]", path, addr), "give ADDRESS → NAME: an IP address and a name of 1 to %d characters", maxNameLen)
		}
	}
	for i, w := range src.GetAccept() {
		if !whereRE.MatchString(w) || len(w) > maxNameLen+12 {
			v.Add(fmt.Sprintf("%s.accept[%d]", path, i), "%q: give FILE:LINE of a leftover as the ledger cites it (haproxy.cfg:42)", w)
		}
	}
}

// planned is a plan with what the other services said.
type planned struct {
	plan      *haproxyimport.Plan
	rewritten map[string]string // old → new address, those the plan holds
	named     map[string]string // address → workloads/{id} or "member_names"
	viaBridge map[string]string // address → bridges/{id}
}

// PlanImport implements LoadBalancerService.
func (s *Server) PlanImport(ctx context.Context, req *lbaasv1.PlanImportRequest) (*lbaasv1.PlanImportResponse, error) {
	p, err := s.planImport(ctx, req.GetSource())
	if err != nil {
		return nil, err
	}
	return &lbaasv1.PlanImportResponse{Plan: p.proto()}, nil
}

// planImport parses the source, asks the other services what it says to ask, maps
// the configuration and marks the accepted leftovers.
func (s *Server) planImport(ctx context.Context, src *lbaasv1.ImportSource) (*planned, error) {
	files := make([]haproxycfg.File, len(src.GetFiles()))
	for i, f := range src.GetFiles() {
		files[i] = haproxycfg.File{Name: f.GetName(), Data: []byte(f.GetContent())}
	}
	env := src.GetEnv()
	c, err := haproxycfg.Parse(haproxycfg.Options{Env: func(n string) (string, bool) {
		v, ok := env[n]
		return v, ok
	}}, files...)
	if err != nil {
		return nil, configError(src, err)
	}
	if err := c.Check(); err != nil {
		return nil, configError(src, err)
	}
	if err := printable(c); err != nil {
		return nil, configError(src, err)
	}
	out := &planned{rewritten: map[string]string{}, named: map[string]string{}, viaBridge: map[string]string{}}
	servers := serverAddresses(c)
	moves, runNames := map[string]string{}, map[string]named{}
	if src.GetResolveMoves() {
		if moves, runNames, err = s.runMoves(ctx, servers); err != nil {
			return nil, err
		}
		if out.viaBridge, err = s.bridgeMoves(ctx, servers); err != nil {
			return nil, err
		}
	}
	for old, to := range src.GetMovedAddresses() {
		moves[old] = to
	}
	for old, to := range moves {
		if servers[old] {
			out.rewritten[old] = to
		}
	}
	names := map[string]string{}
	if src.GetNamesFromInventory() {
		after := map[string]bool{}
		for a := range servers {
			if to, ok := moves[a]; ok {
				a = to
			}
			after[a] = true
		}
		found, err := s.workloadNames(ctx, after)
		if err != nil {
			return nil, err
		}
		for a, n := range runNames { // a replacement the inventory does not list yet
			if _, ok := found[a]; !ok && after[a] {
				found[a] = n
			}
		}
		for a, n := range found {
			names[a], out.named[a] = n.display, n.workload
		}
	}
	for a, n := range src.GetMemberNames() {
		names[a], out.named[a] = n, "member_names"
	}
	p, err := haproxyimport.Map(c, haproxyimport.Options{Name: src.GetDisplayName(), Addresses: moves, Names: names})
	if err != nil {
		return nil, configError(src, err)
	}
	if err := p.Accept(src.GetAccept()); err != nil {
		return nil, apierr.InvalidArgument("source.accept", "%v", err)
	}
	members := map[string]bool{}
	for _, lb := range p.LoadBalancers {
		for _, pl := range lb.Pools {
			for _, m := range pl.Members {
				members[m.Address] = true
			}
		}
	}
	if len(p.LoadBalancers) > MaxImportLBs || len(members) > MaxImportMembers {
		return nil, apierr.InvalidArgument("source.files", "the configuration becomes %d load balancers with %d member addresses: an import makes at most %d and %d (split it)",
			len(p.LoadBalancers), len(members), MaxImportLBs, MaxImportMembers)
	}
	for a := range out.named { // only the members the plan has
		if !members[a] {
			delete(out.named, a)
		}
	}
	scrubEnv(p, env)
	out.plan = p
	return out, nil
}

// scrubEnv writes "$NAME" in the ledger where a variable's value was put: a value
// given through env may be a secret (a header's token), and the ledger is shown and
// stored. Values shorter than 4 bytes (a port, a weight) are left as they are.
func scrubEnv(p *haproxyimport.Plan, env map[string]string) {
	names := make([]string, 0, len(env))
	for n, v := range env {
		if len(v) >= 4 {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return
	}
	sort.Slice(names, func(i, j int) bool { return len(env[names[i]]) > len(env[names[j]]) }) // longest first
	pairs := make([]string, 0, 2*len(names))
	for _, n := range names {
		pairs = append(pairs, env[n], "$"+n)
	}
	r := strings.NewReplacer(pairs...)
	for i := range p.Ledger {
		p.Ledger[i].Directive, p.Ledger[i].Why = r.Replace(p.Ledger[i].Directive), r.Replace(p.Ledger[i].Why)
	}
}

// printable refuses a configuration whose words are not UTF-8 (haproxy's \xHH
// escapes can write any byte) or whose names hold control characters: the plan
// is returned as protobuf strings and its names go to Octavia.
func printable(c *haproxycfg.Config) error {
	bad := func(pos haproxycfg.Pos, what string) error {
		return fmt.Errorf("%s: %s: write it in UTF-8 without control characters", pos, what)
	}
	for _, d := range c.Loose {
		if !utf8.ValidString(d.String()) {
			return bad(d.Pos, "a word is not UTF-8")
		}
	}
	for _, s := range c.Sections {
		if !utf8.ValidString(s.Name) || strings.IndexFunc(s.Name, unicode.IsControl) >= 0 {
			return bad(s.Pos, "the section's name")
		}
		for _, a := range s.Args {
			if !utf8.ValidString(a) {
				return bad(s.Pos, "a word is not UTF-8")
			}
		}
		for _, d := range s.Directives {
			for i, a := range d.Args {
				if !utf8.ValidString(a) {
					return bad(d.Pos, "a word is not UTF-8")
				}
				if d.Name == "server" && i == 0 && strings.IndexFunc(a, unicode.IsControl) >= 0 {
					return bad(d.Pos, "the server's name")
				}
			}
		}
	}
	return nil
}

// configError is INVALID_ARGUMENT on the file the error names (FILE:LINE: …).
func configError(src *lbaasv1.ImportSource, err error) error {
	msg := err.Error()
	var se *haproxycfg.Error
	if errors.As(err, &se) {
		msg = se.Error()
	}
	field, best := "source.files", -1
	for i, f := range src.GetFiles() {
		if strings.HasPrefix(msg, f.GetName()+":") && len(f.GetName()) > best {
			field, best = fmt.Sprintf("source.files[%d].content", i), len(f.GetName())
		}
	}
	return apierr.InvalidArgument(field, "%s: fix the configuration (haproxy -c -f would refuse it too, or it is not haproxy's)", strings.TrimPrefix(msg, "haproxyimport: "))
}

// serverAddresses are the addresses the configuration's servers are at and
// checked at.
func serverAddresses(c *haproxycfg.Config) map[string]bool {
	out := map[string]bool{}
	for _, s := range c.Proxies() {
		servers, err := s.Servers()
		if err != nil {
			continue // Map says it
		}
		for _, sv := range servers {
			if sv.Address.IsIP() {
				out[sv.Address.Host] = true
			}
			if a, ok := sv.Params.Get("addr"); ok && net.ParseIP(a) != nil {
				out[a] = true
			}
		}
	}
	return out
}

type named struct{ display, workload string }

func dependency(what string, err error) error {
	return apierr.New(codes.Unavailable, ReasonDependency,
		"%s: %v: retry when it answers, or plan without it (give moved_addresses and member_names yourself)", what, err)
}

// runMoves returns, for the given addresses, where the inventory's wave runs moved
// them: a workload whose run is done and whose replacement has another address.
// The newest run wins. It also names each replacement's address by its workload.
func (s *Server) runMoves(ctx context.Context, addrs map[string]bool) (map[string]string, map[string]named, error) {
	if s.others.Runs == nil {
		return nil, nil, apierr.New(codes.FailedPrecondition, ReasonDependency,
			"resolve_moves: this lbaas instance has no inventory to ask (it runs without the service registry): give moved_addresses")
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	moves, names := map[string]string{}, map[string]named{}
	token := ""
	for {
		resp, err := s.others.Runs.ListRuns(ctx, &inventoryv1.ListRunsRequest{PageSize: 500, PageToken: token})
		if err != nil {
			return nil, nil, dependency("resolve_moves: the inventory's wave runs (ListRuns)", err)
		}
		for _, r := range resp.GetRuns() { // newest first
			for _, w := range r.GetWorkloads() {
				from, to := w.GetSourceAddress(), w.GetNewAddress()
				if w.GetStep() != inventoryv1.RunStep_RUN_STEP_DONE || from == "" || to == "" || from == to || !addrs[from] {
					continue
				}
				if _, ok := moves[from]; !ok {
					moves[from] = to
					names[to] = named{w.GetDisplayName(), w.GetWorkload()}
				}
			}
		}
		if token = resp.GetNextPageToken(); token == "" {
			return moves, names, nil
		}
	}
}

// bridgeMoves returns which of the addresses netbridge moved across a bridge.
func (s *Server) bridgeMoves(ctx context.Context, addrs map[string]bool) (map[string]string, error) {
	if s.others.Netbridge == nil {
		return nil, apierr.New(codes.FailedPrecondition, ReasonDependency,
			"resolve_moves: this lbaas instance has no netbridge to ask (it runs without the service registry): give moved_addresses")
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	out := map[string]string{}
	token := ""
	for {
		resp, err := s.others.Netbridge.ListBridges(ctx, &netbridgev1.ListBridgesRequest{PageSize: 500, PageToken: token})
		if err != nil {
			return nil, dependency("resolve_moves: netbridge's bridges (ListBridges)", err)
		}
		for _, b := range resp.GetBridges() {
			for _, m := range b.GetMoved() {
				if addrs[m.GetIpAddress()] {
					out[m.GetIpAddress()] = b.GetName()
				}
			}
		}
		if token = resp.GetNextPageToken(); token == "" {
			return out, nil
		}
	}
}

// workloadNames finds the inventory's workloads at the given addresses: an
// instance's ports' addresses, a physical server's registered and collected ones.
// A workload that is still there wins over one a sync no longer finds; of two
// alike, the first by name.
func (s *Server) workloadNames(ctx context.Context, addrs map[string]bool) (map[string]named, error) {
	if s.others.Inventory == nil {
		return nil, apierr.New(codes.FailedPrecondition, ReasonDependency,
			"names_from_inventory: this lbaas instance has no inventory to ask (it runs without the service registry): give member_names")
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	type cand struct {
		named
		vanished bool
	}
	found := map[string][]cand{}
	token := ""
	for {
		resp, err := s.others.Inventory.ListWorkloads(ctx, &inventoryv1.ListWorkloadsRequest{PageSize: 1000, PageToken: token})
		if err != nil {
			return nil, dependency("names_from_inventory: the inventory's workloads (ListWorkloads)", err)
		}
		for _, w := range resp.GetWorkloads() {
			for _, a := range workloadAddresses(w) {
				if addrs[a] {
					found[a] = append(found[a], cand{named{w.GetDisplayName(), w.GetName()}, w.GetVanished()})
				}
			}
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	out := map[string]named{}
	for a, cs := range found {
		sort.SliceStable(cs, func(i, j int) bool {
			if cs[i].vanished != cs[j].vanished {
				return !cs[i].vanished
			}
			return cs[i].workload < cs[j].workload
		})
		if cs[0].display != "" {
			out[a] = cs[0].named
		}
	}
	return out, nil
}

func workloadAddresses(w *inventoryv1.Workload) []string {
	var out []string
	for _, p := range w.GetFacts().GetInstance().GetPorts() {
		for _, ip := range p.GetFixedIps() {
			out = append(out, ip.GetIpAddress())
		}
	}
	out = append(out, w.GetPhysical().GetAddresses()...)
	for _, n := range w.GetFacts().GetPhysical().GetNics() {
		for _, a := range n.GetAddresses() {
			a, _, _ = strings.Cut(a, "/")
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// proto is the plan as the API returns it.
func (p *planned) proto() *lbaasv1.ImportPlan {
	out := &lbaasv1.ImportPlan{
		Complete: p.plan.Complete, Leftovers: int32(len(p.plan.Leftovers())), Unaccepted: int32(len(p.plan.Unaccepted())),
		Rewritten: p.rewritten, Named: p.named, MovedViaBridge: p.viaBridge,
	}
	for _, e := range p.plan.Ledger {
		out.Ledger = append(out.Ledger, &lbaasv1.LedgerEntry{Where: e.Where, Section: e.Section, Directive: e.Directive,
			Fields: e.Fields, Why: e.Why, Lossy: e.Lossy, Header: e.Header, Accepted: e.Accepted})
	}
	for _, lb := range p.plan.LoadBalancers {
		l := &lbaasv1.ImportedLoadBalancer{DisplayName: lb.Name, VipAddress: lb.VIPAddress}
		for _, ls := range lb.Listeners {
			il := &lbaasv1.ImportedListener{DisplayName: ls.Name, Protocol: ls.Protocol, Port: int32(ls.Port),
				ConnectionLimit: i32(ls.ConnectionLimit), TimeoutClientDataMs: i32(ls.TimeoutClientData),
				TimeoutMemberConnectMs: i32(ls.TimeoutMemberConnect), TimeoutMemberDataMs: i32(ls.TimeoutMemberData),
				TimeoutTcpInspectMs: i32(ls.TimeoutTCPInspect), InsertHeaders: ls.InsertHeaders, CertificateFile: ls.Certificate,
				AlpnProtocols: ls.ALPN, DefaultPool: ls.DefaultPool, AllowedCidrs: ls.AllowedCIDRs}
			for _, pol := range ls.L7Policies {
				ip := &lbaasv1.ImportedL7Policy{DisplayName: pol.Name, Action: pol.Action, RedirectPool: pol.RedirectPool,
					RedirectUrl: pol.RedirectURL, RedirectPrefix: pol.RedirectPrefix, RedirectHttpCode: int32(pol.RedirectHTTPCode),
					Position: int32(pol.Position)}
				for _, r := range pol.Rules {
					ip.Rules = append(ip.Rules, &lbaasv1.ImportedL7Rule{Type: r.Type, CompareType: r.CompareType, Key: r.Key, Value: r.Value, Invert: r.Invert})
				}
				il.L7Policies = append(il.L7Policies, ip)
			}
			l.Listeners = append(l.Listeners, il)
		}
		for _, pl := range lb.Pools {
			ip := &lbaasv1.ImportedPool{DisplayName: pl.Name, Protocol: pl.Protocol, LbMethod: pl.LBMethod}
			if sp := pl.SessionPersistence; sp != nil {
				ip.SessionPersistence = &lbaasv1.ImportedSessionPersistence{Type: sp.Type, CookieName: sp.CookieName}
			}
			for _, m := range pl.Members {
				ip.Members = append(ip.Members, &lbaasv1.ImportedMember{DisplayName: m.Name, Address: m.Address, Port: int32(m.Port),
					Weight: i32(m.Weight), Backup: m.Backup, AdminStateUp: m.AdminStateUp, MonitorAddress: m.MonitorAddress,
					MonitorPort: int32(m.MonitorPort)})
			}
			if m := pl.Monitor; m != nil {
				ip.HealthMonitor = &lbaasv1.ImportedHealthMonitor{Type: m.Type, DelaySeconds: int32(m.Delay), TimeoutSeconds: int32(m.Timeout),
					MaxRetries: int32(m.MaxRetries), MaxRetriesDown: int32(m.MaxRetriesDown), HttpMethod: m.HTTPMethod, UrlPath: m.URLPath,
					HttpVersion: m.HTTPVersion, DomainName: m.DomainName, ExpectedCodes: m.ExpectedCodes}
			}
			l.Pools = append(l.Pools, ip)
		}
		out.LoadBalancers = append(out.LoadBalancers, l)
	}
	return out
}

func i32(p *int) *int32 {
	if p == nil {
		return nil
	}
	v := int32(*p)
	return &v
}
