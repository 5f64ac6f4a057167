package haproxyimport

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hikkoshi/hikkoshi/services/lbaas/haproxycfg"
)

var update = flag.Bool("update", false, "write the plans the corpus expects from what Map returns now (review the diff!)")

// corpus are real shapes of haproxy configuration, each with the plan it is
// expected to become (testdata/NAME.plan.json: the load balancers and the whole
// ledger, leftovers and their reasons included).
var corpus = []string{
	"../haproxycfg/testdata/l4-proxy.cfg",
	"../haproxycfg/testdata/l7-acl.cfg",
	"../haproxycfg/testdata/listen.cfg",
	"testdata/shared-backends.cfg",
	"testdata/redirects-cookies.cfg",
	"testdata/tcp-sni.cfg",
}

// TestCorpus maps each configuration of the corpus and compares the plan with the
// one expected, byte for byte (go test -update writes them anew).
func TestCorpus(t *testing.T) {
	for _, path := range corpus {
		name := strings.TrimSuffix(filepath.Base(path), ".cfg")
		t.Run(name, func(t *testing.T) {
			c, err := haproxycfg.ReadFiles(haproxycfg.Options{}, path)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Map(c, Options{Name: name})
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.MarshalIndent(p, "", "  ")
			got = append(got, '\n')
			want := filepath.Join("testdata", name+".plan.json")
			if *update {
				if err := os.WriteFile(want, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			w, err := os.ReadFile(want)
			if err != nil {
				t.Fatalf("%v (go test -update writes it)", err)
			}
			if !bytes.Equal(got, w) {
				t.Fatalf("plan of %s differs from %s (go test -update, then review the diff):\n%s", path, want, got)
			}
		})
	}
}

func mapText(t *testing.T, cfg string) (*Plan, error) {
	t.Helper()
	c, err := haproxycfg.Parse(haproxycfg.Options{}, haproxycfg.File{Name: "x.cfg", Data: []byte(cfg)})
	if err != nil {
		t.Fatal(err)
	}
	return Map(c, Options{})
}

// TestCompleteWhenNothingIsLeft: a configuration Octavia can express whole is a
// complete plan; one line more that it cannot makes it incomplete, with that line
// (file:line, why) its only leftover.
func TestCompleteWhenNothingIsLeft(t *testing.T) {
	cfg := `defaults
  mode http
  timeout client 30s
  timeout connect 5s
  timeout server 30s
frontend f
  bind 10.0.0.1:80
  default_backend b
backend b
  balance leastconn
  server a 10.0.0.2:8080 check weight 10
`
	p, err := mapText(t, cfg)
	if err != nil || !p.Complete {
		t.Fatalf("plan complete %v, leftovers %+v (%v)", p.Complete, p.Leftovers(), err)
	}
	lb := p.LoadBalancers[0]
	if lb.Name != "haproxy" || lb.VIPAddress != "10.0.0.1" || lb.Listeners[0].DefaultPool != "b" || lb.Pools[0].LBMethod != "LEAST_CONNECTIONS" ||
		*lb.Pools[0].Members[0].Weight != 10 || lb.Pools[0].Monitor.Type != "TCP" {
		t.Fatalf("plan %+v", lb)
	}
	p, _ = mapText(t, cfg+"  option http-buffer-request\n")
	if l := p.Leftovers(); p.Complete || len(l) != 1 || l[0].Where != "x.cfg:12" || !strings.Contains(l[0].Why, "Octavia has no such setting") {
		t.Fatalf("leftovers %+v", l)
	}
	// The operator accepts that line, one by one: a line that is no leftover (a
	// mapped one, one past the end) is refused, naming it, and marks nothing.
	if err := p.Accept([]string{"x.cfg:12", "x.cfg:8", "x.cfg:99"}); err == nil || !strings.Contains(err.Error(), "x.cfg:8, x.cfg:99: no leftover") || p.Complete {
		t.Fatalf("accepting lines that are no leftovers: %v (complete %v)", err, p.Complete)
	}
	if err := p.Accept([]string{"x.cfg:12"}); err != nil || !p.Complete || len(p.Unaccepted()) != 0 || !p.Leftovers()[0].Accepted {
		t.Fatalf("accepted: %v, complete %v, unaccepted %+v", err, p.Complete, p.Unaccepted())
	}
}

// TestRulesBecomePolicies: ORed conditions and an ACL's several values are one
// policy each; ANDed ACLs are one policy's rules, their values multiplied; a
// negated ACL is an inverted rule; too many policies, or a negated ACL of several
// values, are left over with the reason.
func TestRulesBecomePolicies(t *testing.T) {
	p, err := mapText(t, `defaults
  mode http
frontend f
  bind :80
  acl host hdr(host) -i a.example b.example
  acl img path_end .png .jpg .gif
  acl admin path_beg /admin
  acl beta req.cook(beta) -m str on
  use_backend b if host img !admin || beta
  default_backend b
backend b
  server s 10.0.0.2:80
`)
	if err != nil {
		t.Fatal(err)
	}
	pols := p.LoadBalancers[0].Listeners[0].L7Policies
	if len(pols) != 2*3+1 {
		t.Fatalf("%d policies, want 7 (2 hosts × 3 extensions, and the cookie)", len(pols))
	}
	first := pols[0].Rules
	if len(first) != 3 || first[0].Type != "HOST_NAME" || first[0].Value != "a.example" || first[1].Type != "PATH" ||
		first[1].CompareType != "ENDS_WITH" || first[1].Value != ".png" || !first[2].Invert || first[2].CompareType != "STARTS_WITH" {
		t.Fatalf("first policy's rules %+v %+v %+v", first[0], first[1], first[2])
	}
	if last := pols[6]; len(last.Rules) != 1 || last.Rules[0].Type != "COOKIE" || last.Rules[0].Key != "beta" || last.Position != 7 {
		t.Fatalf("last policy %+v", last)
	}
	for i, pol := range pols {
		if pol.Position != i+1 || pol.Action != "REDIRECT_TO_POOL" || pol.RedirectPool != "b" {
			t.Fatalf("policy %d: %+v", i, pol)
		}
	}

	p, _ = mapText(t, `frontend f
  mode http
  bind :80
  acl many path_beg /a /b /c /d /e
  acl more hdr(x-a) 1 2 3 4
  acl two path /x /y
  use_backend b if many more
  use_backend b if !two
  default_backend b
backend b
  mode http
  server s 10.0.0.2:80
`)
	why := map[string]string{}
	for _, e := range p.Leftovers() {
		why[e.Where] = e.Why
	}
	if !strings.Contains(why["x.cfg:7"], "makes 20 L7 policies") || !strings.Contains(why["x.cfg:8"], "negated with 2 values") {
		t.Fatalf("leftovers %v", why)
	}
}

// TestMixedProxyProtocolIsRefused: servers of one backend that differ in the
// PROXY protocol cannot be one Octavia pool: Map says where.
func TestMixedProxyProtocolIsRefused(t *testing.T) {
	_, err := mapText(t, `frontend f
  bind 10.0.0.1:80
  default_backend b
backend b
  server a 10.0.0.2:80 send-proxy
  server c 10.0.0.3:80
`)
	if err == nil || !strings.Contains(err.Error(), "x.cfg:6: server a sends \"PROXY\" and server c \"no PROXY header\"") {
		t.Fatalf("%v", err)
	}
}

// TestSecretsAreRedacted: a plan is printed and kept: passwords in userlists and
// stats auth credentials never appear in it.
func TestSecretsAreRedacted(t *testing.T) {
	p, err := mapText(t, `userlist ops
  user admin password $6$salt$hashhash
  user viewer insecure-password hunter2
listen stats
  bind 10.0.0.1:8404
  mode http
  stats enable
  stats auth admin:s3cret
`)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(p)
	for _, secret := range []string{"hashhash", "hunter2", "s3cret"} {
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("the plan holds %q: %s", secret, b)
		}
	}
	if !bytes.Contains(b, []byte("admin:(redacted)")) {
		t.Errorf("stats auth not shown redacted: %s", b)
	}
}

// TestCorpusBecomesValidSpecs: every plan of the corpus becomes octavia specs that
// octavia.Validate accepts (what the mapping writes, Octavia's API takes), once the
// VIPs' subnet and the certificates' containers are given; without a certificate's
// container the plan says which file.
func TestCorpusBecomesValidSpecs(t *testing.T) {
	for _, path := range corpus {
		c, err := haproxycfg.ReadFiles(haproxycfg.Options{}, path)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Map(c, Options{Name: "x"})
		if err != nil {
			t.Fatal(err)
		}
		specs, err := p.Specs(Where{VIPSubnetID: "subnet", Certificates: map[string]string{"/etc/haproxy/certs/web.pem": "https://barbican.example/v1/containers/c"}})
		if err != nil || len(specs) != len(p.LoadBalancers) {
			t.Errorf("%s: %d specs, %v", path, len(specs), err)
		}
		if strings.Contains(path, "listen.cfg") {
			if _, err := p.Specs(Where{VIPSubnetID: "subnet"}); err == nil || !strings.Contains(err.Error(), "/etc/haproxy/certs/web.pem") {
				t.Errorf("without the certificate's container: %v", err)
			}
		}
	}
}

// TestMovedMembers: servers whose addresses moved become members at their new
// addresses (check addresses too), named as the workloads holding them where
// known; the ledger says each rewrite, and a plan stays complete for it.
func TestMovedMembers(t *testing.T) {
	c, err := haproxycfg.Parse(haproxycfg.Options{}, haproxycfg.File{Name: "x.cfg", Data: []byte(`defaults
  mode http
  timeout client 30s
  timeout connect 5s
  timeout server 30s
frontend f
  bind 10.0.0.1:80
  default_backend b
backend b
  server web1 10.0.0.2:8080 check addr 10.0.0.2 port 9000
  server web2 10.0.0.3:8080 check
  server web3 10.0.0.4:8080 check
`)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Map(c, Options{
		Addresses: map[string]string{"10.0.0.2": "10.1.0.12", "10.0.0.3": "10.1.0.13"},
		Names:     map[string]string{"10.1.0.12": "web-1", "10.0.0.4": "web-3"},
	})
	if err != nil || !p.Complete {
		t.Fatalf("plan complete %v, leftovers %+v (%v)", p.Complete, p.Leftovers(), err)
	}
	ms := p.LoadBalancers[0].Pools[0].Members
	want := []Member{
		{Name: "web-1", Address: "10.1.0.12", Port: 8080, AdminStateUp: true, MonitorAddress: "10.1.0.12", MonitorPort: 9000},
		{Name: "web2", Address: "10.1.0.13", Port: 8080, AdminStateUp: true},
		{Name: "web-3", Address: "10.0.0.4", Port: 8080, AdminStateUp: true},
	}
	for i, m := range ms {
		if *m != want[i] {
			t.Errorf("member %d: %+v, want %+v", i, *m, want[i])
		}
	}
	var why []string
	for _, e := range p.Ledger {
		if strings.Contains(e.Directive, "server web1") {
			why = append(why, e.Why)
		}
	}
	if len(why) != 1 || !strings.Contains(why[0], "address 10.0.0.2 rewritten to 10.1.0.12") || !strings.Contains(why[0], "check address 10.0.0.2 rewritten") ||
		!strings.Contains(why[0], "named web-1") {
		t.Fatalf("the ledger of server web1: %q", why)
	}
}

// TestCredentialHeadersAreRedacted: a credential in a check request's headers or a
// header rule never reaches the plan; the check's Host becomes the monitor's
// domain name only when it is a host name, and the headers dropped are named,
// never shown.
func TestCredentialHeadersAreRedacted(t *testing.T) {
	p, err := mapText(t, `backend web
  mode http
  option httpchk GET /health HTTP/1.1\r\nHost:\ www.example\r\nAuthorization:\ Basic\ c2VjcmV0MQ==
  http-check send hdr X-Auth-Token tok-secret-2
  http-request set-header X-Api-Key "key-secret-3"
  server web-1 10.0.0.1:80 check
frontend f
  mode http
  bind 10.0.0.9:80
  default_backend web
backend odd
  mode http
  option httpchk GET / HTTP/1.1\r\nHost:\ bad\ host\r\nX:\ y
  server o 10.0.0.2:80 check
`)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(p)
	for _, secret := range []string{"c2VjcmV0MQ", "tok-secret-2", "key-secret-3"} {
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("the plan holds %q: %s", secret, b)
		}
	}
	mon := p.LoadBalancers[0].Pools[0].Monitor
	if mon == nil || mon.DomainName != "www.example" || mon.HTTPVersion != "1.1" {
		t.Fatalf("monitor %+v", mon)
	}
	var saidDropped bool
	for _, e := range p.Ledger {
		if strings.Contains(e.Why, "check request header(s) Authorization not kept") && e.Lossy {
			saidDropped = true
		}
	}
	if !saidDropped {
		t.Errorf("the ledger does not say the Authorization header is dropped: %s", b)
	}
}
