package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hikkoshi/hikkoshi/tilt/devcloud/devcloud"
)

// TestImportApplyRoutesByHost: an old project's haproxy.cfg (host-switched
// backends, servers with send-proxy) is imported with hikkoshi-lb import --apply
// into the dev cloud's Octavia, and requests through the VIP on the data plane
// reach the backends the configuration names: api.example → api-1, any other host
// → web-1 and web-2 in turn, each with the PROXY header. A second apply is refused
// (the load balancer exists).
func TestImportApplyRoutesByHost(t *testing.T) {
	devcloud.Require(t)
	if !devcloud.NetnsUp() {
		t.Skip("the dev cloud's data plane is not up")
	}
	owner := fmt.Sprintf("itest-import-%d", time.Now().UnixNano())
	name := owner
	// The backends: stand-ins of the test's own that require the PROXY header (as
	// the estate's web and API servers do), on addresses tests keep for themselves.
	proxy := map[string]string{devcloud.MetaProxyProtocol: "required"}
	for _, s := range []struct{ name, ip string }{{"web-1", "10.101.0.148"}, {"web-2", "10.101.0.149"}, {"api-1", "10.101.0.140"}} {
		devcloud.BootStandin(t, owner+"-"+s.name, s.ip, proxy)
	}
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(`defaults
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
    balance roundrobin
    server web-1 10.101.0.148:8080 check send-proxy
    server web-2 10.101.0.149:8080 check send-proxy

backend api
    server api-1 10.101.0.140:8080 check send-proxy
`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _, _ = lb(t, owner, "delete", name, "--wait") })
	out, stderr, err := lb(t, owner, "import", cfg, "--name", name, "--apply", "--vip-subnet", devcloud.VLANSubnet)
	if err != nil {
		t.Fatalf("import --apply: %v\n%s%s", err, out, stderr)
	}
	proxyURL, _ := url.Parse(devcloud.Bastion)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL), DisableKeepAlives: true}}
	askAt := func(addr, host string) (string, bool) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET Host %s: %v", host, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var a struct {
			Server string `json:"server"`
			Proxy  bool   `json:"proxy"`
		}
		if err := json.Unmarshal(b, &a); err != nil {
			t.Fatalf("GET Host %s: %d %q", host, resp.StatusCode, b)
		}
		return a.Server, a.Proxy
	}
	ask := func(host string) (string, bool) { return askAt("10.101.0.147", host) }
	var web []string
	for range 4 {
		s, proxied := ask("www.example")
		if !proxied || !strings.HasPrefix(s, owner+"-web-") {
			t.Fatalf("www.example answered by %q (PROXY %t), want web-1 or web-2 through PROXY", s, proxied)
		}
		web = append(web, s)
		if s, proxied := ask("api.example"); s != owner+"-api-1" || !proxied {
			t.Fatalf("api.example answered by %q (PROXY %t), want api-1", s, proxied)
		}
	}
	if web[0] == web[1] {
		t.Fatalf("round robin: %v", web)
	}
	t.Logf("www.example → %v, api.example → api-1, all with the PROXY header", web)

	// The same import again changes nothing.
	apply := func(args ...string) string {
		t.Helper()
		out, stderr, err := lb(t, owner, append([]string{"import", cfg, "--name", name, "--vip-subnet", devcloud.VLANSubnet}, args...)...)
		if err != nil {
			t.Fatalf("import %v: %v\n%s%s", args, err, out, stderr)
		}
		return out
	}
	if out := apply("--apply"); !strings.Contains(out, "0 change(s)") {
		t.Fatalf("the same import applied again:\n%s", out)
	}
	// The configuration changes: web balances by connections, web-2 leaves, web-1
	// is checked every 3 s; api sends PROXY v2 (its pool is rebuilt) and answers
	// another host name; the frontend listens on 8080 too.
	if err := os.WriteFile(cfg, []byte(`defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend shop
    bind 10.101.0.147:80
    bind 10.101.0.147:8080
    acl api hdr(host) -i api2.example
    use_backend api if api
    default_backend web

backend web
    balance leastconn
    server web-1 10.101.0.148:8080 check inter 3s send-proxy

backend api
    server api-1 10.101.0.140:8080 check send-proxy-v2
`), 0o600); err != nil {
		t.Fatal(err)
	}
	diff := apply("--diff")
	for _, want := range []string{"pools[web]: lb_algorithm ROUND_ROBIN → LEAST_CONNECTIONS", "pools[web].members[10.101.0.149:8080]: remove",
		"pools[web].healthmonitor: delay 2 → 3", "pools[api]: rebuild: protocol PROXY → PROXYV2", "l7_policies: replace 1 policies with 1",
		"pools[api]: delete the pool the rebuild replaced", "listeners[HTTP:8080]: create → web, 1 policies"} {
		if !strings.Contains(diff, want) {
			t.Errorf("--diff lacks %q:\n%s", want, diff)
		}
	}
	if s, _ := ask("api.example"); s != owner+"-api-1" {
		t.Fatalf("--diff changed the load balancer: api.example answered by %q", s)
	}
	start := time.Now()
	apply("--apply")
	t.Logf("converged in %v:\n%s", time.Since(start).Round(100*time.Millisecond), diff)
	for range 3 {
		if s, proxied := ask("www.example"); s != owner+"-web-1" || !proxied {
			t.Fatalf("www.example answered by %q (PROXY %t), want web-1 alone", s, proxied)
		}
		if s, proxied := ask("api2.example"); s != owner+"-api-1" || !proxied {
			t.Fatalf("api2.example answered by %q (PROXY %t), want api-1", s, proxied)
		}
		if s, _ := ask("api.example"); s != owner+"-web-1" {
			t.Fatalf("api.example answered by %q, want the default pool's web-1", s)
		}
		if s, proxied := askAt("10.101.0.147:8080", "api2.example"); s != owner+"-api-1" || !proxied {
			t.Fatalf("the new listener: api2.example on :8080 answered by %q (PROXY %t), want api-1", s, proxied)
		}
	}
	if out := apply("--diff"); !strings.Contains(out, "0 change(s)") {
		t.Fatalf("after the converge, --diff still sees changes:\n%s", out)
	}
}
