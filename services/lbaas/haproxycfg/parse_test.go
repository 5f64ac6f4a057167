package haproxycfg

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func read(t *testing.T, name string) *Config {
	t.Helper()
	c, err := ReadFiles(Options{}, filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Check(); err != nil {
		t.Fatalf("check: %v", err)
	}
	return c
}

func TestWords(t *testing.T) {
	env := func(n string) (string, bool) {
		v, ok := map[string]string{"PORT": "8080", "HOST_1": "10.0.0.1"}[n]
		return v, ok
	}
	for _, tt := range []struct {
		in   string
		want []string
		err  string
	}{
		{in: "  server a 10.0.0.1:80   check # the first", want: []string{"server", "a", "10.0.0.1:80", "check"}},
		{in: `log-format %{+Q}o\ %t\ %s`, want: []string{"log-format", "%{+Q}o %t %s"}},
		{in: `log-format "%{+Q}o %t"' %s'\ %{-Q}r`, want: []string{"log-format", "%{+Q}o %t %s %{-Q}r"}},
		{in: `bind "${HOST_1}:$PORT"`, want: []string{"bind", "10.0.0.1:8080"}},
		{in: `bind '${HOST_1}:$PORT'`, want: []string{"bind", "${HOST_1}:$PORT"}},
		{in: `bind \$PORT`, want: []string{"bind", "$PORT"}},
		{in: `acl a path_beg \#x "" # not an argument`, want: []string{"acl", "a", "path_beg", "#x", ""}},
		{in: `http-request set-header X-A "a\"b" `, want: []string{"http-request", "set-header", "X-A", `a"b`}},
		{in: `errorfile 503 /x\x41\ty`, want: []string{"errorfile", "503", "/xA\ty"}},
		{in: `bind "$NOPE"`, err: "NOPE is not given"},
		{in: `bind "10.0.0.1`, err: "quote is not closed"},
		{in: `bind \x4`, err: "two hex digits"},
	} {
		got, err := words(tt.in, env)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%q: error %v, want %q", tt.in, err, tt.err)
		case tt.err == "" && err != nil:
			t.Errorf("%q: %v", tt.in, err)
		case tt.err == "" && !reflect.DeepEqual(got, tt.want):
			t.Errorf("%q: %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestContinuationAndPositions(t *testing.T) {
	c, err := Parse(Options{}, File{Name: "a.cfg", Data: []byte("frontend f\n  bind :80 \\\n     name web\n  default_backend b\r\n")},
		File{Name: "b.cfg", Data: []byte("\n\nbackend b\n  server s1 10.0.0.1:80 \\\\\n")})
	if err != nil {
		t.Fatal(err)
	}
	f := c.Proxy(KindFrontend, "f")
	binds, err := f.Binds()
	if err != nil || len(binds) != 1 || binds[0].Line != 2 {
		t.Fatalf("binds %+v %v", binds, err)
	}
	if v, _ := binds[0].Params.Get("name"); v != "web" {
		t.Fatalf("continued bind params %v", binds[0].Params)
	}
	if _, d := f.DefaultBackend(); d.Pos != (Pos{"a.cfg", 4}) {
		t.Fatalf("default_backend at %v, want a.cfg:4 (the continued line counts)", d.Pos)
	}
	b := c.Proxy(KindBackend, "b")
	sv, err := b.Servers()
	if err != nil || len(sv) != 1 || sv[0].Pos != (Pos{"b.cfg", 4}) || sv[0].Args[len(sv[0].Args)-1] != `\` {
		t.Fatalf("servers %+v %v: an escaped backslash at the end does not continue the line", sv, err)
	}
}

func TestL4ProxyProtocol(t *testing.T) {
	c := read(t, "l4-proxy.cfg")
	f := c.Proxy(KindFrontend, "pg_front")
	if m, d := f.Mode(); m != "tcp" || d.Pos.Line != 11 {
		t.Fatalf("mode %s from %v, want tcp from the defaults at line 11", m, d)
	}
	if v, d, _ := f.Timeout("client"); v != 50*time.Second || d.Line != 15 {
		t.Fatalf("timeout client %v", v)
	}
	binds, _ := f.Binds()
	if a := binds[0].Addresses[0]; a.Host != "10.101.0.200" || a.First != 5432 || !a.IsIP() {
		t.Fatalf("bind %+v", a)
	}
	b := c.Proxy(KindBackend, "pg_back")
	if alg, _, _ := b.Balance(); alg != "leastconn" {
		t.Fatalf("balance %s", alg)
	}
	sv, _ := b.Servers()
	if len(sv) != 2 || !sv[0].Params.Has("send-proxy-v2") || !sv[0].Params.Has("check") || sv[0].Own.Has("send-proxy-v2") {
		t.Fatalf("servers %+v: default-server's send-proxy-v2 applies, the line's own params apart", sv)
	}
	if w, _ := sv[1].Params.Get("weight"); w != "100" || !sv[1].Params.Has("backup") || sv[1].Address.First != 5432 {
		t.Fatalf("server pg-2 %+v", sv[1])
	}
	if v, _ := sv[0].Params.Get("inter"); v != "3s" {
		t.Fatalf("inter %q", v)
	}
	if on, d := b.Option("tcp-check"); !on || d.Line != 26 {
		t.Fatalf("option tcp-check %v %v", on, d)
	}
	if g := c.Sections[0]; g.Kind != KindGlobal || len(g.Directives) != 5 {
		t.Fatalf("global %+v", g)
	}
}

func TestL7ACLsAndStickiness(t *testing.T) {
	c := read(t, "l7-acl.cfg")
	f := c.Proxy(KindFrontend, "www")
	binds, _ := f.Binds()
	if len(binds) != 2 || binds[0].Addresses[0].Host != "" || binds[0].Addresses[0].First != 80 ||
		binds[1].Addresses[0].Host != "::" || binds[1].Addresses[0].First != 8080 || !binds[1].Params.Has("v4v6") {
		t.Fatalf("binds %+v %+v", binds[0].Addresses, binds[1])
	}
	acls, _ := f.ACLs()
	want := []struct{ name, crit, flags, values string }{
		{"host_api", "hdr(host)", "-i", "api.example.com"},
		{"is_static", "path_beg", "-i", "/static /images /css"},
		{"is_admin", "path_beg", "", "/admin"},
		{"from_office", "src", "", "192.0.2.0/24"},
	}
	for i, w := range want {
		a := acls[i]
		if a.Name != w.name || a.Criterion != w.crit || strings.Join(a.Flags, " ") != w.flags || strings.Join(a.Values, " ") != w.values {
			t.Errorf("acl %d: %+v, want %+v", i, a, w)
		}
	}
	rules, _ := f.UseBackends()
	if len(rules) != 2 || rules[0].Backend != "api" || fmt.Sprint(rules[0].Condition.Or) != "[[host_api]]" ||
		fmt.Sprint(rules[1].Condition.Or) != "[[is_static] [{ path_end .png .jpg }]]" {
		t.Fatalf("rules %+v %+v", rules[0].Condition, rules[1].Condition)
	}
	if on, _ := c.Proxy(KindBackend, "static").Option("forwardfor"); on {
		t.Fatal("no option forwardfor in the backend is undone")
	}
	if on, _ := c.Proxy(KindBackend, "app").Option("forwardfor"); !on {
		t.Fatal("option forwardfor from the defaults")
	}
	app := c.Proxy(KindBackend, "app")
	if _, d := app.Option("httpchk"); len(d.Args) != 4 || d.Args[3] != "HTTP/1.1\r\nHost: app.example.com" {
		t.Fatalf("httpchk %q", d.Args)
	}
	if v, _, err := app.Timeout("connect"); v != 5*time.Second || err != nil {
		t.Fatalf("timeout connect 5000 = %v %v", v, err)
	}
	sv, _ := app.Servers()
	if c, _ := sv[0].Params.Get("cookie"); c != "a1" || !sv[1].Params.Has("disabled") {
		t.Fatalf("servers %+v", sv)
	}
	api, _ := c.Proxy(KindBackend, "api").Servers()
	if a, _ := api[1].Params.Get("addr"); a != "10.101.1.32" {
		t.Fatalf("check addr %q", a)
	}
	if st := c.Proxy(KindBackend, "api").All("stick-table"); len(st) != 1 || st[0].Args[1] != "ip" {
		t.Fatalf("stick-table %v", st)
	}
	static, _ := c.Proxy(KindBackend, "static").Servers()
	if static[0].Address.Host != "10.101.0.41" || static[0].Address.First != 80 {
		t.Fatalf("quoted server address %+v", static[0].Address)
	}
}

func TestNamedDefaultsAndListen(t *testing.T) {
	c := read(t, "listen.cfg")
	redis := c.Proxy(KindListen, "redis")
	if m, _ := redis.Mode(); m != "tcp" {
		t.Fatalf("redis mode %s, want tcp (defaults tcp from base)", m)
	}
	if v, _, _ := redis.Timeout("connect"); v != 3*time.Second {
		t.Fatalf("redis timeout connect %v: from base through tcp", v)
	}
	binds, _ := redis.Binds()
	if len(binds) != 1 || len(binds[0].Addresses) != 2 || binds[0].Addresses[1].Host != "10.101.0.61" {
		t.Fatalf("redis binds %+v", binds)
	}
	stats := c.Proxy(KindListen, "stats")
	if m, _ := stats.Mode(); m != "tcp" {
		t.Fatalf("stats mode %s: a listen without from takes the last defaults (tcp)", m)
	}
	if b, _ := stats.Binds(); len(b) != 1 || b[0].Addresses[0].First != 8404 {
		t.Fatalf("old-style listen address: %+v", b)
	}
	web := c.Proxy(KindFrontend, "web")
	b, _ := web.Binds()
	if crt, _ := b[0].Params.Get("crt"); crt != "/etc/haproxy/certs/web.pem" || !b[0].Params.Has("ssl") {
		t.Fatalf("ssl bind %+v", b[0].Params)
	}
	if v, _, _ := c.Proxy(KindBackend, "web-back").Timeout("server"); v != time.Minute {
		t.Fatalf("overridden timeout server %v", v)
	}
	if c.Proxy(KindBackend, "redis") != redis || c.Proxy(KindFrontend, "redis") != redis {
		t.Fatal("a listen is a frontend and a backend")
	}
}

func TestErrorsNameFileAndLine(t *testing.T) {
	for _, tt := range []struct {
		name, cfg, want string
	}{
		{"outside", "maxconn 10\n", `x.cfg:1: "maxconn" outside a section`},
		{"unnamed", "frontend\n", "x.cfg:1: frontend needs a name"},
		{"dup", "backend b\nbackend b\n", "x.cfg:2: backend b: the name is taken by the backend at x.cfg:1"},
		{"from", "frontend f from nope\n", `x.cfg:1: frontend f: defaults section "nope" is not defined before it`},
		{"if", "global\n.if defined(X)\n.endif\n", "x.cfg:2: conditional blocks (.if)"},
		{"quote", "backend b\n  server a '10.0.0.1:80\n", "x.cfg:2: a ' quote is not closed"},
		{"extra", "backend b extra\n", `x.cfg:1: backend b: unexpected "extra"`},
	} {
		_, err := Parse(Options{}, File{Name: "x.cfg", Data: []byte(tt.cfg)})
		if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrSyntax) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	for _, tt := range []struct {
		name, cfg, want string
	}{
		{"backend", "frontend f\n  bind :80\n  default_backend gone\n", `x.cfg:3: frontend f names backend "gone", which is not defined`},
		{"acl", "frontend f\n  bind :80\n  use_backend b if nope\nbackend b\n", `x.cfg:3: use_backend b: ACL "nope" is not defined`},
		{"server", "backend b\n  server a 10.0.0.1:80\n  server a 10.0.0.2:80\n", `x.cfg:3: backend b: server "a" is already defined at x.cfg:2`},
		{"port", "frontend f\n  bind 10.0.0.1\n", "x.cfg:2: bind 10.0.0.1: give the port"},
		{"bad port", "backend b\n  server a 10.0.0.1:99999\n", `x.cfg:2: server a: "10.0.0.1:99999": port "99999"`},
	} {
		c, err := Parse(Options{}, File{Name: "x.cfg", Data: []byte(tt.cfg)})
		if err == nil {
			err = c.Check()
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]time.Duration{"5000": 5 * time.Second, "250us": 250 * time.Microsecond,
		"1m": time.Minute, "2h": 2 * time.Hour, "1d": 24 * time.Hour, "30s": 30 * time.Second} {
		if got, err := ParseTime(in); got != want || err != nil {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "s", "5x", "-1s", "99999999999999999d"} {
		if _, err := ParseTime(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
