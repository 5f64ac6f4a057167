package haproxycfg

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Mode is a proxy's mode in effect ("tcp" when nothing says: haproxy's default).
func (s *Section) Mode() (string, *Directive) {
	d := s.Lookup("mode")
	if d == nil || len(d.Args) == 0 {
		return "tcp", d
	}
	return d.Args[0], d
}

// Balance is a backend's algorithm in effect and its arguments ("roundrobin" when
// nothing says: haproxy's default).
func (s *Section) Balance() (string, []string, *Directive) {
	d := s.Lookup("balance")
	if d == nil || len(d.Args) == 0 {
		return "roundrobin", nil, d
	}
	return d.Args[0], d.Args[1:], d
}

// Timeout is the value of "timeout name" in effect, and whether one is set.
func (s *Section) Timeout(name string) (time.Duration, *Directive, error) {
	d := s.Lookup("timeout " + name)
	if d == nil {
		return 0, nil, nil
	}
	if len(d.Args) != 2 {
		return 0, d, &Error{Pos: d.Pos, Msg: fmt.Sprintf("timeout %s needs one value", name)}
	}
	v, err := ParseTime(d.Args[1])
	if err != nil {
		return 0, d, &Error{Pos: d.Pos, Msg: fmt.Sprintf("timeout %s: %v", name, err)}
	}
	return v, d, nil
}

// ParseTime reads an haproxy time ("5s", "100ms", "1m", "2h", "1d", "250us";
// milliseconds without a unit).
func ParseTime(v string) (time.Duration, error) {
	num := strings.TrimRightFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	unit := v[len(num):]
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a time (a number and us, ms, s, m, h or d)", v)
	}
	mult, ok := map[string]time.Duration{"": time.Millisecond, "us": time.Microsecond, "ms": time.Millisecond,
		"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[unit]
	if !ok {
		return 0, fmt.Errorf("%q: unit %q is not one of us, ms, s, m, h, d", v, unit)
	}
	if n > int64(1<<62)/int64(mult) {
		return 0, fmt.Errorf("%q is too long", v)
	}
	return time.Duration(n) * mult, nil
}

// Address is where a bind listens or a server is: an IP or a host name (empty for
// every address), ports (First to Last; 0 when none is written), or a socket
// path for the families haproxy has beside IP.
type Address struct {
	// Family is "ipv4", "ipv6", "unix", "abns", "fd", "sockpair", … as written
	// ("ipv4@", "unix@"), "unix" for a path, and "" for an IP, host or "*".
	Family      string
	Host        string
	First, Last int
	Path        string
}

// IsIP reports whether the address is an IP (or every address) with a port, as
// Octavia's listeners and members are.
func (a Address) IsIP() bool {
	return (a.Family == "" || a.Family == "ipv4" || a.Family == "ipv6") && a.Path == ""
}

// ParseAddress reads an haproxy address: "[family@]host:port[-port]", "*:80",
// ":443", "[::1]:80", "10.0.0.1" (no port), "/run/x.sock", "unix@/run/x.sock".
func ParseAddress(v string) (Address, error) {
	var a Address
	if fam, rest, ok := strings.Cut(v, "@"); ok {
		a.Family, v = fam, rest
		switch fam {
		case "ipv4", "ipv6", "udp", "udp4", "udp6", "tcp", "tcp4", "tcp6", "quic4", "quic6":
		default:
			a.Path = v
			return a, nil
		}
	}
	if strings.HasPrefix(v, "/") {
		a.Family, a.Path = "unix", v
		return a, nil
	}
	host, port := v, ""
	switch {
	case strings.HasPrefix(v, "["):
		end := strings.Index(v, "]")
		if end < 0 {
			return a, fmt.Errorf("%q: an IPv6 address in [ ] has no ]", v)
		}
		host, port = v[1:end], strings.TrimPrefix(v[end+1:], ":")
	case strings.Count(v, ":") == 1:
		host, port, _ = strings.Cut(v, ":")
	case strings.Count(v, ":") > 1:
		// An IPv6 address with its port after the last colon ("::1:80") is how
		// haproxy reads it; one with no port needs brackets or no colon at the end.
		i := strings.LastIndex(v, ":")
		host, port = v[:i], v[i+1:]
	}
	if host == "*" {
		host = ""
	}
	if host != "" {
		if ip, err := netip.ParseAddr(host); err == nil {
			host = ip.String()
		}
	}
	a.Host = host
	if port != "" {
		lo, hi, _ := strings.Cut(port, "-")
		var err error
		if a.First, err = portNumber(lo); err != nil {
			return a, fmt.Errorf("%q: %w", v, err)
		}
		a.Last = a.First
		if hi != "" {
			if a.Last, err = portNumber(hi); err != nil || a.Last < a.First {
				return a, fmt.Errorf("%q: the port range %s is not low-high", v, port)
			}
		}
	}
	return a, nil
}

func portNumber(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q is not 1 to 65535", s)
	}
	return n, nil
}

// Params are a bind or server line's keywords after its address: each with its
// value ("" for a flag), in order.
type Params []Param

// Param is one keyword of a bind or server line.
type Param struct {
	Name, Value string
	HasValue    bool
}

// Has reports whether the flag or keyword is there.
func (ps Params) Has(name string) bool {
	for _, p := range ps {
		if p.Name == name {
			return true
		}
	}
	return false
}

// Get returns the value of the last such keyword.
func (ps Params) Get(name string) (string, bool) {
	v, ok := "", false
	for _, p := range ps {
		if p.Name == name && p.HasValue {
			v, ok = p.Value, true
		}
	}
	return v, ok
}

// valued are the bind and server keywords that take a value (from haproxy's
// configuration manual, sections 5.1 and 5.2); any other keyword is a flag.
var valued = map[string]bool{
	// bind
	"accept-netscaler-cip": true, "alpn": true, "backlog": true, "ca-file": true, "ca-ignore-err": true,
	"ca-sign-file": true, "ca-sign-pass": true, "ca-verify-file": true, "ciphers": true, "ciphersuites": true,
	"client-sigalgs": true, "crl-file": true, "crt": true, "crt-ignore-err": true, "crt-list": true,
	"curves": true, "ecdhe": true, "gid": true, "group": true, "id": true, "interface": true, "level": true,
	"maxconn": true, "mode": true, "mss": true, "name": true, "namespace": true, "nice": true, "npn": true,
	"process": true, "proto": true, "severity-output": true, "shards": true, "sigalgs": true,
	"ssl-max-ver": true, "ssl-min-ver": true, "tcp-ut": true, "thread": true, "tls-ticket-keys": true,
	"uid": true, "user": true, "verify": true, "label": true, "idle-ping": true, "guid-prefix": true,
	"quic-cc-algo": true, "quic-socket": true, "default-crt": true, "nbconn": true, "cc": true,
	// server
	"addr": true, "agent-addr": true, "agent-inter": true, "agent-port": true, "agent-send": true,
	"check-alpn": true, "check-proto": true, "check-sni": true, "cookie": true,
	"downinter": true, "error-limit": true, "fall": true, "fastinter": true, "init-addr": true,
	"init-state": true, "inter": true, "log-proto": true, "max-reuse": true, "maxqueue": true,
	"minconn": true, "observe": true, "on-error": true, "on-marked-down": true, "on-marked-up": true,
	"pool-conn-name": true, "pool-low-conn": true, "pool-max-conn": true, "pool-purge-delay": true,
	"port": true, "proxy-v2-options": true, "redir": true, "resolve-net": true, "resolve-opts": true,
	"resolve-prefer": true, "resolvers": true, "rise": true, "set-proxy-v2-tlv-fmt": true, "slowstart": true,
	"sni": true, "socks4": true, "source": true, "track": true, "weight": true, "hash-key": true,
	"usesrc": true, "ws": true, "tcp-md5sig": true, "check-pool-conn-name": true, "shard": true,
}

func parseParams(ws []string, d *Directive) (Params, error) {
	var ps Params
	for i := 0; i < len(ws); i++ {
		p := Param{Name: ws[i]}
		if valued[ws[i]] {
			if i+1 >= len(ws) {
				return nil, &Error{Pos: d.Pos, Msg: fmt.Sprintf("%s: %q needs a value", d.Name, ws[i])}
			}
			p.Value, p.HasValue = ws[i+1], true
			i++
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// Bind is one bind line: its addresses (a comma-separated list) and parameters.
type Bind struct {
	*Directive
	Addresses []Address
	Params    Params
}

// Binds returns a frontend's or listen's bind lines (with an old-style listen's
// address as the first).
func (s *Section) Binds() ([]Bind, error) {
	var out []Bind
	if s.Kind == KindListen && len(s.Args) == 1 {
		b, err := bindOf(&Directive{Pos: s.Pos, Name: "bind", Args: s.Args})
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	for _, d := range s.All("bind") {
		b, err := bindOf(d)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

func bindOf(d *Directive) (Bind, error) {
	b := Bind{Directive: d}
	if len(d.Args) == 0 {
		return b, &Error{Pos: d.Pos, Msg: "bind needs an address"}
	}
	for _, one := range strings.Split(d.Args[0], ",") {
		a, err := ParseAddress(one)
		if err != nil {
			return b, &Error{Pos: d.Pos, Msg: "bind: " + err.Error()}
		}
		if a.IsIP() && a.First == 0 {
			return b, &Error{Pos: d.Pos, Msg: fmt.Sprintf("bind %s: give the port (ADDRESS:PORT)", one)}
		}
		b.Addresses = append(b.Addresses, a)
	}
	var err error
	b.Params, err = parseParams(d.Args[1:], d)
	return b, err
}

// Server is one server line, with the proxy's default-server parameters first.
type Server struct {
	*Directive
	Name    string
	Address Address
	// Params are default-server's parameters in effect, then the line's own: a
	// keyword's last value wins (Params.Get).
	Params Params
	// Own are the line's own parameters only.
	Own Params
}

// Servers returns a backend's or listen's server lines.
func (s *Section) Servers() ([]Server, error) {
	var defaults Params
	if d := s.Lookup("default-server"); d != nil {
		var err error
		if defaults, err = parseParams(d.Args, d); err != nil {
			return nil, err
		}
	}
	var out []Server
	for _, d := range s.All("server") {
		if len(d.Args) < 2 {
			return nil, &Error{Pos: d.Pos, Msg: "server needs a name and an address"}
		}
		a, err := ParseAddress(d.Args[1])
		if err != nil {
			return nil, &Error{Pos: d.Pos, Msg: "server " + d.Args[0] + ": " + err.Error()}
		}
		own, err := parseParams(d.Args[2:], d)
		if err != nil {
			return nil, err
		}
		out = append(out, Server{Directive: d, Name: d.Args[0], Address: a, Own: own,
			Params: append(append(Params{}, defaults...), own...)})
	}
	return out, nil
}

// ACL is one acl line: a name, a criterion (fetch and converters, "path_beg",
// "hdr(host),lower"), flags ("-i", "-m beg", …) and values.
type ACL struct {
	*Directive
	Name, Criterion string
	Flags           []string
	Values          []string
}

// ACLs returns the section's acl lines.
func (s *Section) ACLs() ([]ACL, error) {
	var out []ACL
	for _, d := range s.All("acl") {
		if len(d.Args) < 2 {
			return nil, &Error{Pos: d.Pos, Msg: "acl needs a name and a criterion"}
		}
		a := ACL{Directive: d, Name: d.Args[0], Criterion: d.Args[1]}
		rest := d.Args[2:]
		for len(rest) > 0 && strings.HasPrefix(rest[0], "-") && rest[0] != "-" {
			f := rest[0]
			rest = rest[1:]
			if f == "--" {
				break
			}
			if (f == "-m" || f == "-f" || f == "-M") && len(rest) > 0 {
				f += " " + rest[0]
				rest = rest[1:]
			}
			a.Flags = append(a.Flags, f)
		}
		a.Values = rest
		out = append(out, a)
	}
	return out, nil
}

// Condition is an "if"/"unless" condition: its terms, ORed ("||" or "or"), each
// term ANDed ACL names ("!" negating one; "{ ... }" an anonymous ACL, kept as
// written).
type Condition struct {
	Unless bool
	Or     [][]string
}

// ParseCondition reads the words after "if" or "unless".
func ParseCondition(unless bool, ws []string) (Condition, error) {
	c := Condition{Unless: unless}
	term := []string{}
	for i := 0; i < len(ws); i++ {
		switch w := ws[i]; w {
		case "||", "or":
			if len(term) == 0 {
				return c, fmt.Errorf("%q with nothing before it", w)
			}
			c.Or, term = append(c.Or, term), []string{}
		case "{":
			end := i + 1
			for end < len(ws) && ws[end] != "}" {
				end++
			}
			if end == len(ws) {
				return c, fmt.Errorf("an anonymous ACL's { has no }")
			}
			term = append(term, "{ "+strings.Join(ws[i+1:end], " ")+" }")
			i = end
		default:
			term = append(term, w)
		}
	}
	if len(term) == 0 {
		return c, fmt.Errorf("the condition is empty")
	}
	c.Or = append(c.Or, term)
	return c, nil
}

// Rule is a backend switching rule (use_backend): a backend and a condition.
type Rule struct {
	*Directive
	Backend   string
	Condition *Condition
}

// UseBackends returns a frontend's or listen's use_backend rules, in order.
func (s *Section) UseBackends() ([]Rule, error) {
	var out []Rule
	for _, d := range s.All("use_backend") {
		if len(d.Args) == 0 {
			return nil, &Error{Pos: d.Pos, Msg: "use_backend needs a backend"}
		}
		r := Rule{Directive: d, Backend: d.Args[0]}
		if len(d.Args) > 1 {
			if d.Args[1] != "if" && d.Args[1] != "unless" {
				return nil, &Error{Pos: d.Pos, Msg: fmt.Sprintf("use_backend %s: %q where if or unless goes", d.Args[0], d.Args[1])}
			}
			c, err := ParseCondition(d.Args[1] == "unless", d.Args[2:])
			if err != nil {
				return nil, &Error{Pos: d.Pos, Msg: "use_backend " + d.Args[0] + ": " + err.Error()}
			}
			r.Condition = &c
		}
		out = append(out, r)
	}
	return out, nil
}

// DefaultBackend is the backend a frontend sends to when no rule matches ("" for
// none), from the section or its defaults.
func (s *Section) DefaultBackend() (string, *Directive) {
	d := s.Lookup("default_backend")
	if d == nil || len(d.Args) == 0 {
		return "", d
	}
	return d.Args[0], d
}
