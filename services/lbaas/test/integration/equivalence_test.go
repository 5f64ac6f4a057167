package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/hikkoshi/hikkoshi/services/lbaas/octavia"
	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

// equivalenceCfg is the old haproxy.cfg of TestImportAnswersAsTheOriginal. VIP is
// the one word that differs between the copy haproxy runs and the copy imported.
// Its servers are four stand-ins, each answering on 80 and 8080: web-1
// (10.101.0.125), web-2 (.126), app-1 (.127) and app-2 (.128); an answer names its
// backend server as stand-in:port.
const equivalenceCfg = `defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend shop
    bind VIP:80
    acl api hdr(host) -i api.example
    acl static path_beg /static/
    acl cart hdr(host) -i cart.example
    use_backend api if api
    use_backend static if static
    use_backend cart if cart
    default_backend web

backend web
    balance roundrobin
    option httpchk GET /
    server web-1 10.101.0.125:8080 check send-proxy
    server web-2 10.101.0.126:8080 check send-proxy

backend api
    option httpchk GET /
    server api-1 10.101.0.127:8080 check send-proxy

backend static
    option httpchk GET /
    server static-1 10.101.0.128:8080 check send-proxy

backend cart
    balance roundrobin
    cookie SRV insert indirect nocache
    option httpchk GET /
    server cart-1 10.101.0.127:80 check send-proxy cookie s1
    server cart-2 10.101.0.128:80 check send-proxy cookie s2
`

// TestImportAnswersAsTheOriginal: an old haproxy.cfg (host and path ACLs, a round
// robin default backend, a backend sticky by an inserted cookie, servers that need
// the PROXY header and are checked with GET /) runs in haproxy itself on the data
// plane at 10.101.0.124, and the same file, bound to 10.101.0.123, is imported with
// hikkoshi-lb import --apply into the dev cloud's Octavia (whose haproxy answers on
// the same data plane). The same requests — hosts, paths, with and without cookies
// — go to both through the bastion, and the two are compared answer by answer: the
// backend server that answers (the same one where a rule picks a one-server
// backend; the same set over several requests where a backend balances), the PROXY
// header, X-Forwarded-For, the path the server saw, the cookies set; and a client's
// cookie sticks to the server it named on both sides (the values differ: haproxy's
// is the server's cookie, Octavia's the member's ID).
func TestImportAnswersAsTheOriginal(t *testing.T) {
	devcloud.Require(t)
	if !devcloud.NetnsUp() {
		t.Skip("the dev cloud's data plane is not up")
	}
	const importedVIP, originalVIP = "10.101.0.123", "10.101.0.124"
	owner := fmt.Sprintf("itest-equiv-%d", time.Now().UnixNano())
	name := owner
	standins := map[string]string{"10.101.0.125": "web-1", "10.101.0.126": "web-2", "10.101.0.127": "app-1", "10.101.0.128": "app-2"}
	proxy := map[string]string{devcloud.MetaProxyProtocol: "required"}
	for _, ip := range slices.Sorted(maps.Keys(standins)) {
		devcloud.BootStandin(t, owner+"-"+standins[ip], ip, proxy)
	}

	importedCfg := strings.ReplaceAll(equivalenceCfg, "bind VIP:80", "bind "+importedVIP+":80")
	originalCfg := strings.ReplaceAll(equivalenceCfg, "bind VIP:80", "bind "+originalVIP+":80")
	if d := differingLines(importedCfg, originalCfg); len(d) != 1 {
		t.Fatalf("the two copies differ in %v, want the bind line only", d)
	}
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(importedCfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// Accepted knowingly: the servers' cookie values (s1, s2), which Octavia does
	// not keep: its cookie holds the member's ID. The rest must map whole.
	var accepted []string
	for i, line := range strings.Split(importedCfg, "\n") {
		if strings.Contains(line, "server ") && strings.Contains(line, " cookie ") {
			accepted = append(accepted, fmt.Sprintf("%s:%d", cfg, i+1))
		}
	}
	args := []string{"import", cfg, "--name", name, "--apply", "--vip-subnet", devcloud.VLANSubnet}
	for _, a := range accepted {
		args = append(args, "--accept", a)
	}
	t.Cleanup(func() { // leave nothing behind even when a step failed
		for _, l := range owned(t, owner) {
			if _, stderr, err := lb(t, owner, "delete", l.ID, "--wait"); err != nil {
				t.Errorf("delete %s: %v\n%s", l.ID, err, stderr)
			}
		}
	})
	start := time.Now()
	out, stderr, err := lbWithin(t, 7*time.Minute, owner, args...)
	if err != nil {
		t.Fatalf("import --apply: %v\n%s%s", err, out, stderr)
	}
	t.Logf("imported in %v:\n%s%s", time.Since(start).Round(100*time.Millisecond), out, stderr)
	haproxy := devcloud.RunHAProxy(t, originalCfg, originalVIP)

	// The imported members, once Octavia's health monitors find them ONLINE (the
	// data plane's haproxy checks them): their IDs are the cookie's values.
	members := onlineMembers(t, owner, name, 2*time.Minute)
	idOf := map[string]string{} // member ID → stand-in:port
	for _, m := range members {
		idOf[m.ID] = fmt.Sprintf("%s:%d", standins[m.Address], m.ProtocolPort)
	}

	proxyURL, _ := url.Parse(devcloud.Bastion)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	sent := map[string]int{}
	ask := func(addr, host, path, cookie string) eqAnswer {
		sent[addr]++
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := client.Do(req)
		if err != nil {
			return eqAnswer{err: err.Error()}
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		a := eqAnswer{status: resp.StatusCode}
		if err != nil {
			a.err = err.Error()
			return a
		}
		for _, c := range resp.Cookies() {
			if c.Name == "SRV" {
				a.cookie = c.Value
			}
		}
		for _, h := range resp.Header.Values("Set-Cookie") {
			if v, ok := strings.CutPrefix(h, "SRV="); ok {
				_, attrs, _ := strings.Cut(v, ";")
				cc := resp.Header.Get("Cache-Control")
				if cc == "" {
					cc = "none"
				}
				a.form = "Set-Cookie: SRV=…;" + attrs + ", Cache-Control " + cc
			}
		}
		var body struct {
			Server, Address, Path string
			Proxy                 bool
			XFF                   *string `json:"xff"`
		}
		if err := json.Unmarshal(b, &body); err != nil {
			a.err = fmt.Sprintf("not a stand-in's answer: %q", b)
			return a
		}
		_, port, _ := strings.Cut(body.Address, ":")
		a.server, a.proxy, a.path, a.xff = strings.TrimPrefix(body.Server, owner+"-")+":"+port, body.Proxy, body.Path, body.XFF != nil
		return a
	}
	sides := []*eqSide{
		{label: "original " + originalVIP, addr: originalVIP, named: map[string]string{"s1": "app-1:80", "s2": "app-2:80"}, own: map[string][]eqAnswer{}},
		{label: "imported " + importedVIP, addr: importedVIP, named: idOf, own: map[string][]eqAnswer{}},
	}
	probe := func(s *eqSide, host, path, cookie string, n int) []eqAnswer {
		var as []eqAnswer
		for range n {
			as = append(as, ask(s.addr, host, path, cookie))
		}
		return as
	}

	// Both answer every kind of request before anything is compared (Octavia's
	// members are ONLINE already; the original's checks start with it).
	for _, s := range sides {
		deadline := time.Now().Add(time.Minute)
		for {
			var bad []eqAnswer
			for _, q := range []struct{ host, path string }{{"www.example", "/"}, {"api.example", "/"}, {"www.example", "/static/"}, {"cart.example", "/"}} {
				if a := ask(s.addr, q.host, q.path, ""); !a.ok(q.path) {
					bad = append(bad, a)
				}
			}
			if len(bad) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not answering after a minute: %s\n%s", s.label, summary(bad), haproxy.Output())
			}
			time.Sleep(500 * time.Millisecond)
		}
	}

	var table strings.Builder
	tw := tabwriter.NewWriter(&table, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "request\t%s\t%s\tverdict\n", sides[0].label, sides[1].label)
	var failures []string
	row := func(req string, a, b string, problems []string) {
		verdict := "same"
		if len(problems) > 0 {
			verdict = "DIFFERENT: " + strings.Join(problems, "; ")
			failures = append(failures, req+": "+strings.Join(problems, "; "))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", req, a, b, verdict)
	}

	// The sticky backend: a first request without a cookie gets one from each side,
	// naming the server that answered; replayed, it sticks to that server.
	const replays = 4
	cart := []string{"app-1:80", "app-2:80"}
	var firsts, sticks, forms [2][]string
	var problems []string
	for i, s := range sides {
		for _, a := range probe(s, "cart.example", "/", "", 2) {
			firsts[i] = append(firsts[i], fmt.Sprintf("%s SRV=%s", a.server, short(a.cookie)))
			forms[i] = append(forms[i], a.form)
			switch {
			case !a.ok("/"):
				problems = append(problems, fmt.Sprintf("%s: %s", s.label, a))
				continue
			case a.cookie == "":
				problems = append(problems, s.label+": no cookie set by "+a.server)
				continue
			case s.named[a.cookie] != a.server:
				problems = append(problems, fmt.Sprintf("%s: cookie %s names %q, answered by %s", s.label, short(a.cookie), s.named[a.cookie], a.server))
			}
			s.order = append(s.order, a.cookie)
			s.own[a.cookie] = []eqAnswer{a}
		}
	}
	if f0, f1 := firstServers(sides[0]), firstServers(sides[1]); !slices.Equal(f0, f1) || !slices.Equal(f0, cart) {
		problems = append(problems, fmt.Sprintf("first answers from %v and %v, want %v on both", f0, f1, cart))
	}
	row("cart.example / no cookie ×2", strings.Join(firsts[0], ", "), strings.Join(firsts[1], ", "), problems)
	// The cookie's attributes and the nocache header, as the two set it.
	problems = nil
	f0, f1 := slices.Compact(slices.Sorted(slices.Values(forms[0]))), slices.Compact(slices.Sorted(slices.Values(forms[1])))
	if !slices.Equal(f0, f1) || len(f0) != 1 {
		problems = append(problems, fmt.Sprintf("%q vs %q", f0, f1))
	}
	row("  the cookie set", strings.Join(f0, " | "), strings.Join(f1, " | "), problems)
	problems = nil
	for i, s := range sides {
		for _, c := range s.order {
			first := s.own[c][0].server
			as := probe(s, "cart.example", "/", "SRV="+c, replays)
			s.own[c] = append(s.own[c], as...)
			sticks[i] = append(sticks[i], fmt.Sprintf("%s→%s", short(c), summary(as)))
			for _, a := range as {
				if !a.ok("/") || a.server != first || a.cookie != "" {
					problems = append(problems, fmt.Sprintf("%s: cookie %s of %s: %s", s.label, short(c), first, a))
				}
			}
		}
	}
	row(fmt.Sprintf("cart.example / own cookie ×%d each", replays), strings.Join(sticks[0], ", "), strings.Join(sticks[1], ", "), problems)

	web := []string{"web-1:8080", "web-2:8080"}
	rows := []struct {
		host, path string
		cookie     string // "own": the side's first cookie from the cart backend
		n          int
		want       []string
		setCookie  bool
	}{
		{"www.example", "/", "", 4, web, false},
		{"api.example", "/", "", 3, []string{"app-1:8080"}, false},
		{"API.Example", "/v1/items", "", 3, []string{"app-1:8080"}, false},         // -i
		{"api.example", "/static/x.css", "", 3, []string{"app-1:8080"}, false},     // the api rule comes first
		{"www.example", "/static/app.js", "", 3, []string{"app-2:8080"}, false},    // path_beg
		{"cart.example", "/static/logo.png", "", 3, []string{"app-2:8080"}, false}, // static before cart
		{"www.example", "/Static/app.js", "", 4, web, false},                       // paths compare with case
		{"www.example", "/static", "", 4, web, false},                              // the prefix is /static/
		{"api.example:80", "/", "", 4, web, false},                                 // hdr(host) holds the port
		{"www.example", "/", "own", 4, web, false},                                 // web has no persistence
		{"cart.example", "/", "SRV=bogus", 2, cart, true},                          // an unknown cookie: balanced, a new one
	}
	for _, r := range rows {
		var got [2][]eqAnswer
		for i, s := range sides {
			cookie := r.cookie
			if cookie == "own" && len(s.order) > 0 {
				cookie = "SRV=" + s.order[0]
			}
			got[i] = probe(s, r.host, r.path, cookie, r.n)
		}
		problems = compareAnswers(sides, got, r.path, r.want, r.setCookie)
		req := fmt.Sprintf("%s %s ×%d", r.host, r.path, r.n)
		switch r.cookie {
		case "":
		case "own":
			req += " its cart cookie"
		default:
			req += " cookie " + r.cookie
		}
		row(req, summary(got[0]), summary(got[1]), problems)
	}
	tw.Flush()
	t.Logf("%d and %d requests (the wait included), compared:\n%s", sent[originalVIP], sent[importedVIP], table.String())

	// What the ledger's accepted lines lose, shown: a cookie of the original's is
	// not one of the imported load balancer's (and the other way round); the
	// client gets a new cookie at its first request and sticks from then on.
	var loss strings.Builder
	for i, s := range sides {
		other := sides[1-i]
		if len(other.order) == 0 {
			continue
		}
		a := ask(s.addr, "cart.example", "/", "SRV="+other.order[0])
		fmt.Fprintf(&loss, "  %s's cookie SRV=%s (%s) at the %s: %s\n", strings.Fields(other.label)[0], short(other.order[0]),
			other.own[other.order[0]][0].server, strings.Fields(s.label)[0], a)
		if !a.ok("/") || !slices.Contains(cart, a.server) || a.cookie == "" {
			failures = append(failures, fmt.Sprintf("%s with the %s's cookie: %s, want a cart server and a new cookie", s.label, strings.Fields(other.label)[0], a))
		}
	}
	t.Logf("known loss (accepted: %s): a cookie of the other side is not recognized (a recognized one is not set again: indirect); the server is round robin's pick:\n%s",
		strings.Join(accepted, ", "), loss.String())
	for _, f := range failures {
		t.Error(f)
	}
}

// eqSide is one of the two load balancers compared.
type eqSide struct {
	label, addr string
	// named is the server each cookie value names: haproxy's server cookies, or
	// Octavia's member IDs.
	named map[string]string
	// order are the cookies the side set, in the order it set them; own the answers
	// each got (its first, then its replays).
	order []string
	own   map[string][]eqAnswer
}

func firstServers(s *eqSide) []string {
	var out []string
	for _, c := range s.order {
		out = append(out, s.own[c][0].server)
	}
	slices.Sort(out)
	return out
}

// eqAnswer is what a stand-in answered through a load balancer: the backend server
// (stand-in:port), whether a PROXY header and an X-Forwarded-For header came, the
// path it saw, and the SRV cookie the load balancer set.
type eqAnswer struct {
	status      int
	server      string
	proxy, xff  bool
	path        string
	cookie, err string
	// form is the Set-Cookie header with the value left out, and Cache-Control.
	form string
}

func (a eqAnswer) ok(path string) bool {
	return a.err == "" && a.status == http.StatusOK && a.path == path
}

func (a eqAnswer) String() string {
	if a.err != "" {
		return fmt.Sprintf("HTTP %d %s", a.status, a.err)
	}
	s := fmt.Sprintf("HTTP %d %s path %s PROXY %t XFF %t", a.status, a.server, a.path, a.proxy, a.xff)
	if a.cookie != "" {
		s += " Set-Cookie SRV=" + short(a.cookie)
	}
	return s
}

// compareAnswers compares two sides' answers to the same requests: every answer
// 200 with the path asked; the same backend servers answering (want); the PROXY
// header on every answer, no X-Forwarded-For (the configuration adds none), and a
// cookie set on each answer or none (setCookie), on both sides alike.
func compareAnswers(sides []*eqSide, got [2][]eqAnswer, path string, want []string, setCookie bool) []string {
	var problems []string
	for i, as := range got {
		for _, a := range as {
			if !a.ok(path) {
				problems = append(problems, fmt.Sprintf("%s: %s", sides[i].label, a))
			}
		}
	}
	s0, s1 := servers(got[0]), servers(got[1])
	if !slices.Equal(s0, s1) {
		problems = append(problems, fmt.Sprintf("servers %v vs %v", s0, s1))
	} else if !slices.Equal(s0, want) {
		problems = append(problems, fmt.Sprintf("servers %v on both, the configuration says %v", s0, want))
	}
	flags := func(as []eqAnswer) string {
		var f []string
		for _, a := range as {
			f = append(f, fmt.Sprintf("PROXY %t XFF %t cookie %t", a.proxy, a.xff, a.cookie != ""))
		}
		return strings.Join(slices.Compact(slices.Sorted(slices.Values(f))), ", ")
	}
	wantFlags := fmt.Sprintf("PROXY true XFF false cookie %t", setCookie)
	if f0, f1 := flags(got[0]), flags(got[1]); f0 != f1 {
		problems = append(problems, fmt.Sprintf("%s vs %s", f0, f1))
	} else if f0 != wantFlags {
		problems = append(problems, fmt.Sprintf("%s on both, want %s", f0, wantFlags))
	}
	return problems
}

// servers returns the distinct servers that answered, sorted.
func servers(as []eqAnswer) []string {
	var out []string
	for _, a := range as {
		if a.server != "" {
			out = append(out, a.server)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// summary says who answered how often, and the headers' flags when they are the
// same on every answer.
func summary(as []eqAnswer) string {
	n := map[string]int{}
	var errs []string
	for _, a := range as {
		switch {
		case a.err != "" || a.status != http.StatusOK:
			errs = append(errs, a.String())
		default:
			n[a.server]++
		}
	}
	var parts []string
	for _, s := range slices.Sorted(maps.Keys(n)) {
		parts = append(parts, fmt.Sprintf("%s×%d", s, n[s]))
	}
	parts = append(parts, errs...)
	if len(as) > 0 && len(errs) == 0 {
		all := func(f func(eqAnswer) bool) bool {
			return !slices.ContainsFunc(as, func(a eqAnswer) bool { return !f(a) })
		}
		switch {
		case all(func(a eqAnswer) bool { return a.proxy }):
			parts = append(parts, "PROXY")
		case all(func(a eqAnswer) bool { return !a.proxy }):
			parts = append(parts, "no PROXY")
		}
		if all(func(a eqAnswer) bool { return a.xff }) {
			parts = append(parts, "XFF")
		}
		if all(func(a eqAnswer) bool { return a.cookie != "" }) {
			parts = append(parts, "Set-Cookie")
		}
	}
	return strings.Join(parts, " ")
}

// short shortens a member ID used as a cookie value for the table.
func short(cookie string) string {
	if len(cookie) > 8 {
		return cookie[:8] + "…"
	}
	return cookie
}

// differingLines returns the line numbers where a and b differ.
func differingLines(a, b string) []int {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []int
	for i := range max(len(la), len(lb)) {
		if i >= len(la) || i >= len(lb) || la[i] != lb[i] {
			out = append(out, i+1)
		}
	}
	return out
}

// onlineMembers waits until every member of load balancer name is ONLINE (its
// health monitor's checks pass on the data plane) and returns them.
func onlineMembers(t *testing.T, owner, name string, within time.Duration) []octavia.Member {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		out, stderr, err := lb(t, owner, "show", name, "-o", "json")
		if err != nil {
			t.Fatalf("show: %v\n%s", err, stderr)
		}
		var tree octavia.Tree
		if err := json.Unmarshal([]byte(out), &tree); err != nil {
			t.Fatalf("show -o json: %v\n%s", err, out)
		}
		var all []octavia.Member
		var not []string
		for _, p := range tree.Pools {
			for _, m := range p.Members {
				all = append(all, m)
				if m.OperatingStatus != "ONLINE" {
					not = append(not, fmt.Sprintf("%s %s:%d %s", m.Name, m.Address, m.ProtocolPort, m.OperatingStatus))
				}
			}
		}
		if len(all) > 0 && len(not) == 0 {
			return all
		}
		if time.Now().After(deadline) {
			t.Fatalf("members not ONLINE after %v: %v", within, not)
		}
		time.Sleep(time.Second)
	}
}
