package haproxyimport

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hikkoshi/hikkoshi/services/lbaas/haproxycfg"
)

// Options shape a mapping.
type Options struct {
	// Name names the load balancers: Name alone for one, Name-ADDRESS for each of
	// several ("haproxy" when empty).
	Name string
	// Addresses rewrite backend server addresses (an old address → the address
	// the server has after its move: netbridge's moves, or the operator's), and
	// their check addresses with them. The ledger says each rewrite.
	Addresses map[string]string
	// Names name members by their address after Addresses (an address → the
	// inventory workload that holds it) instead of by haproxy's server name.
	Names map[string]string
}

// hostnameRE is a host name Octavia takes as a monitor's domain_name.
var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

// MaxPoliciesPerRule caps how many L7 policies one use_backend line may become (an
// ACL with several values is one policy per value, and the values of ANDed ACLs
// multiply).
const MaxPoliciesPerRule = 16

// Map maps a configuration onto Octavia. It fails only where the configuration
// itself is wrong (haproxycfg's Check, a bind or server line it cannot read); what
// Octavia cannot do is in the plan's ledger.
func Map(c *haproxycfg.Config, opts Options) (*Plan, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	if opts.Name == "" {
		opts.Name = "haproxy"
	}
	m := &mapper{cfg: c, opts: opts, used: map[*haproxycfg.Directive][]string{}, why: map[*haproxycfg.Directive]string{},
		lbs: map[string]*LoadBalancer{}, sections: map[*haproxycfg.Section][]string{}, lossy: map[*haproxycfg.Directive]bool{}}
	// One load balancer an address the frontends bind: named first, so that the
	// ledger's fields carry the final names.
	var vips []string
	for _, s := range c.Proxies() {
		binds, err := s.Binds()
		if err != nil {
			return nil, err
		}
		for _, b := range binds {
			for _, a := range b.Addresses {
				if h := vipOf(a); a.IsIP() && !slices.Contains(vips, h) {
					vips = append(vips, h)
				}
			}
		}
	}
	for _, v := range vips {
		name := opts.Name
		if len(vips) > 1 {
			name += "-" + lbSuffix(v)
		}
		lb := &LoadBalancer{Name: name, VIPAddress: v}
		m.lbs[v] = lb
		m.order = append(m.order, lb)
	}
	for _, s := range c.Proxies() {
		if s.Kind == haproxycfg.KindBackend {
			continue
		}
		if err := m.frontend(s); err != nil {
			return nil, err
		}
	}
	for _, lb := range m.order {
		if len(lb.Listeners) > 0 {
			m.plan.LoadBalancers = append(m.plan.LoadBalancers, lb)
		}
	}
	m.ledger()
	return &m.plan, nil
}

// vipOf is the VIP a bind address asks for: "" for every address (*, 0.0.0.0,
// ::), which Neutron then chooses.
func vipOf(a haproxycfg.Address) string {
	if a.Host == "0.0.0.0" || a.Host == "::" {
		return ""
	}
	return a.Host
}

func lbSuffix(vip string) string {
	if vip == "" {
		return "any"
	}
	return strings.NewReplacer(".", "-", ":", "-").Replace(vip)
}

type mapper struct {
	cfg   *haproxycfg.Config
	opts  Options
	plan  Plan
	lbs   map[string]*LoadBalancer // by VIP address
	order []*LoadBalancer
	used  map[*haproxycfg.Directive][]string
	why   map[*haproxycfg.Directive]string
	// sections are what each section's own line became.
	sections map[*haproxycfg.Section][]string
	lossy    map[*haproxycfg.Directive]bool
}

// use records that d became field. A note, if given, says what of d Octavia does
// not keep: the entry is then lossy, for the operator to accept.
func (m *mapper) use(d *haproxycfg.Directive, field, note string) {
	m.info(d, field, note)
	if d != nil && note != "" {
		m.lossy[d] = true
	}
}

// info records that d became field, with a note that loses nothing.
func (m *mapper) info(d *haproxycfg.Directive, field, note string) {
	if d == nil {
		return
	}
	if !slices.Contains(m.used[d], field) {
		m.used[d] = append(m.used[d], field)
	}
	if note != "" && !strings.Contains(m.why[d], note) {
		m.why[d] = strings.TrimPrefix(m.why[d]+"; "+note, "; ")
	}
}

// leave records why d is left over (the first reason given stays).
func (m *mapper) leave(d *haproxycfg.Directive, why string) {
	if d != nil && m.why[d] == "" {
		m.why[d] = why
	}
}

// frontend maps a frontend's or listen's binds to listeners.
func (m *mapper) frontend(s *haproxycfg.Section) error {
	binds, err := s.Binds()
	if err != nil {
		return err
	}
	if len(binds) == 0 {
		// A listen without a bind is a backend only; a frontend without one serves
		// nothing (its lines are left over).
		return nil
	}
	if on, d := s.Lookup("stats enable"), s.Lookup("stats uri"); (on != nil || d != nil) && len(s.All("server")) == 0 && s.Lookup("default_backend") == nil {
		// A statistics page only: Octavia has its own.
		return nil
	}
	mode, modeD := s.Mode()
	for _, b := range binds {
		for _, a := range b.Addresses {
			if !a.IsIP() {
				m.leave(b.Directive, fmt.Sprintf("bind %s: an Octavia listener listens on the VIP's IP and a port, not on a %s socket", b.Args[0], a.Family))
				continue
			}
			if a.Last != a.First {
				m.leave(b.Directive, fmt.Sprintf("bind on the port range %d-%d: an Octavia listener has one port", a.First, a.Last))
				continue
			}
			lb := m.lbs[vipOf(a)]
			if err := m.listener(s, lb, b, a, mode, modeD); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *mapper) listener(s *haproxycfg.Section, lb *LoadBalancer, b haproxycfg.Bind, a haproxycfg.Address, mode string, modeD *haproxycfg.Directive) error {
	l := &Listener{Name: fmt.Sprintf("%s-%d", s.Name, a.First), Port: a.First}
	for _, o := range lb.Listeners {
		if o.Port == l.Port {
			m.leave(b.Directive, fmt.Sprintf("port %d of %s is already listener %s: one listener a port", l.Port, vipName(lb), o.Name))
			return nil
		}
	}
	at := fmt.Sprintf("loadbalancers[%s].listeners[%s]", lb.Name, l.Name)
	m.use(b.Directive, at, "")
	m.section(s, at)
	switch mode {
	case "http":
		l.Protocol = "HTTP"
	case "tcp":
		l.Protocol = "TCP"
	default:
		m.leave(modeD, fmt.Sprintf("mode %s: Octavia listeners are TCP or HTTP (and TERMINATED_HTTPS)", mode))
		return nil
	}
	m.use(modeD, at+".protocol", "")
	if b.Params.Has("ssl") {
		crt, _ := b.Params.Get("crt")
		if l.Protocol != "HTTP" || crt == "" {
			m.leave(b.Directive, "TLS on a TCP listener (or without crt): Octavia terminates TLS on HTTP listeners only (TERMINATED_HTTPS); a TCP listener passes it through to the members")
			return nil
		}
		l.Protocol, l.Certificate = "TERMINATED_HTTPS", crt
		m.use(b.Directive, at+".protocol", "TERMINATED_HTTPS: store "+crt+" in Barbican and give its container at apply (default_tls_container_ref)")
		if alpn, ok := b.Params.Get("alpn"); ok {
			l.ALPN = strings.Split(alpn, ",")
			m.use(b.Directive, at+".alpn_protocols", "")
		}
	}
	for _, p := range b.Params {
		switch p.Name {
		case "ssl", "crt", "alpn", "v4v6":
		default:
			m.use(b.Directive, at, fmt.Sprintf("bind parameter %q not kept: Octavia listeners have no such setting", p.Name))
		}
	}
	if n, d := intOf(s.Lookup("maxconn")); d != nil {
		l.ConnectionLimit = &n
		m.use(d, at+".connection_limit", "")
	}
	m.timeout(s, "client", &l.TimeoutClientData, at+".timeout_client_data")
	for _, d := range s.All("tcp-request") {
		if len(d.Args) == 2 && d.Args[0] == "inspect-delay" {
			if v, err := haproxycfg.ParseTime(d.Args[1]); err == nil {
				ms := int(v / time.Millisecond)
				l.TimeoutTCPInspect = &ms
				m.use(d, at+".timeout_tcp_inspect", "")
			}
		}
	}
	// The pool: the listen's own, or the default backend.
	var def *haproxycfg.Section
	if s.Kind == haproxycfg.KindListen && len(s.All("server")) > 0 {
		def = s
	} else if name, d := s.DefaultBackend(); name != "" {
		def = m.cfg.Proxy(haproxycfg.KindBackend, name)
		m.use(d, at+".default_pool", "")
	}
	if def != nil {
		p, err := m.pool(lb, def, l)
		if err != nil {
			return err
		}
		if p != nil {
			l.DefaultPool = p.Name
			m.timeout(def, "connect", &l.TimeoutMemberConnect, at+".timeout_member_connect")
			m.timeout(def, "server", &l.TimeoutMemberData, at+".timeout_member_data")
		}
	}
	if l.Protocol != "TCP" {
		m.headers(s, def, l, at)
	}
	if err := m.policies(s, lb, l, at); err != nil {
		return err
	}
	lb.Listeners = append(lb.Listeners, l)
	return nil
}

func vipName(lb *LoadBalancer) string {
	if lb.VIPAddress == "" {
		return "the VIP"
	}
	return lb.VIPAddress
}

func intOf(d *haproxycfg.Directive) (int, *haproxycfg.Directive) {
	if d == nil || len(d.Args) != 1 {
		return 0, nil
	}
	n, err := strconv.Atoi(d.Args[0])
	if err != nil || n < 0 {
		return 0, nil
	}
	return n, d
}

func (m *mapper) timeout(s *haproxycfg.Section, name string, into **int, field string) {
	v, d, err := s.Timeout(name)
	if d == nil || err != nil {
		return
	}
	ms := int(v / time.Millisecond)
	if *into != nil && **into != ms {
		m.use(d, field, fmt.Sprintf("the listener already has %d ms from another line", **into))
		return
	}
	*into = &ms
	m.use(d, field, "")
}

// headers maps option forwardfor and the X-Forwarded-Port/Proto header rules to
// the listener's insert headers.
func (m *mapper) headers(s, def *haproxycfg.Section, l *Listener, at string) {
	set := func(h string) {
		if l.InsertHeaders == nil {
			l.InsertHeaders = map[string]string{}
		}
		l.InsertHeaders[h] = "true"
	}
	for _, sec := range []*haproxycfg.Section{s, def} {
		if sec == nil {
			continue
		}
		if on, d := sec.Option("forwardfor"); on {
			set("X-Forwarded-For")
			note := ""
			if len(d.Args) > 1 {
				note = fmt.Sprintf("option forwardfor's %s not kept: Octavia adds the plain header", strings.Join(d.Args[1:], " "))
			}
			m.use(d, at+".insert_headers.X-Forwarded-For", note)
		} else if d != nil {
			m.info(d, at+".insert_headers", "X-Forwarded-For off")
		}
		for _, d := range sec.All("http-request") {
			if len(d.Args) >= 3 && d.Args[0] == "set-header" {
				switch {
				case strings.EqualFold(d.Args[1], "X-Forwarded-Port") && d.Args[2] == "%[dst_port]" && len(d.Args) == 3:
					set("X-Forwarded-Port")
					m.use(d, at+".insert_headers.X-Forwarded-Port", "")
				case strings.EqualFold(d.Args[1], "X-Forwarded-Proto"):
					set("X-Forwarded-Proto")
					same := len(d.Args) == 3 && (d.Args[2] == "http" && l.Protocol == "HTTP" || d.Args[2] == "https" && l.Protocol == "TERMINATED_HTTPS")
					note := ""
					if !same {
						note = "Octavia writes http or https by the listener's protocol, whatever the line said"
					}
					m.use(d, at+".insert_headers.X-Forwarded-Proto", note)
				}
			}
		}
	}
}

// pool maps a backend (or a listen's own servers) into the load balancer's pool of
// that name, made once per load balancer.
func (m *mapper) pool(lb *LoadBalancer, s *haproxycfg.Section, l *Listener) (*Pool, error) {
	for _, p := range lb.Pools {
		if p.Name == s.Name {
			if !compatible(l.Protocol, p.Protocol) {
				return nil, fmt.Errorf("%s: pool %s (%s) cannot be behind listener %s (%s) in Octavia", s.Pos, p.Name, p.Protocol, l.Name, l.Protocol)
			}
			return p, nil
		}
	}
	at := fmt.Sprintf("loadbalancers[%s].pools[%s]", lb.Name, s.Name)
	servers, err := s.Servers()
	if err != nil {
		return nil, err
	}
	mode, modeD := s.Mode()
	p := &Pool{Name: s.Name, Protocol: map[string]string{"tcp": "TCP", "http": "HTTP"}[mode]}
	if p.Protocol == "" {
		m.leave(modeD, fmt.Sprintf("mode %s: Octavia pools are TCP or HTTP", mode))
		return nil, nil
	}
	m.use(modeD, at+".protocol", "")
	// The PROXY protocol: every server must send the same.
	proxy := func(sv haproxycfg.Server) string {
		switch {
		case sv.Params.Has("send-proxy-v2"):
			return "PROXYV2"
		case sv.Params.Has("send-proxy"):
			return "PROXY"
		}
		return ""
	}
	if len(servers) > 0 {
		want := proxy(servers[0])
		if want != "" {
			p.Protocol = want
		}
		for _, sv := range servers[1:] {
			if proxy(sv) != want {
				return nil, fmt.Errorf("%s: server %s sends %q and server %s %q: an Octavia pool sends the PROXY protocol to all its members or none; split the backend",
					sv.Pos, servers[0].Name, orNone(want), sv.Name, orNone(proxy(sv)))
			}
		}
	}
	if !compatible(l.Protocol, p.Protocol) {
		return nil, fmt.Errorf("%s: backend %s (%s) cannot be behind listener %s (%s) in Octavia", s.Pos, s.Name, p.Protocol, l.Name, l.Protocol)
	}
	alg, args, balD := s.Balance()
	switch alg {
	case "roundrobin", "static-rr":
		p.LBMethod = "ROUND_ROBIN"
	case "leastconn":
		p.LBMethod = "LEAST_CONNECTIONS"
	case "source":
		p.LBMethod = "SOURCE_IP"
	default:
		p.LBMethod = "ROUND_ROBIN"
		m.use(balD, at+".lb_algorithm", fmt.Sprintf("balance %s: Octavia balances round robin, by least connections or by source IP (the pool is ROUND_ROBIN)", alg))
	}
	if len(args) > 0 {
		m.use(balD, at+".lb_algorithm", fmt.Sprintf("the arguments %s have no Octavia setting", strings.Join(args, " ")))
	}
	m.use(balD, at+".lb_algorithm", "")
	m.persistence(s, p, servers, at)
	mon := m.monitor(s, p, servers, at)
	for _, sv := range servers {
		mem, err := m.member(sv, p, mon != nil, l, at)
		if err != nil {
			return nil, err
		}
		p.Members = append(p.Members, mem)
	}
	if d := s.Lookup("default-server"); d != nil {
		m.use(d, at+".members", "")
	}
	m.section(s, at)
	lb.Pools = append(lb.Pools, p)
	return p, nil
}

func orNone(s string) string {
	if s == "" {
		return "no PROXY header"
	}
	return s
}

// section records that a section's own line became field.
func (m *mapper) section(s *haproxycfg.Section, field string) {
	if !slices.Contains(m.sections[s], field) {
		m.sections[s] = append(m.sections[s], field)
	}
}

var validPoolProtocols = map[string][]string{
	"TCP":              {"HTTP", "HTTPS", "PROXY", "PROXYV2", "TCP"},
	"HTTP":             {"HTTP", "PROXY", "PROXYV2"},
	"TERMINATED_HTTPS": {"HTTP", "PROXY", "PROXYV2"},
}

func compatible(listener, pool string) bool {
	return slices.Contains(validPoolProtocols[listener], pool)
}

// member maps a server line of the pool at field path poolAt (the member's own path
// is poolAt.members[NAME]).
func (m *mapper) member(sv haproxycfg.Server, p *Pool, monitored bool, l *Listener, poolAt string) (*Member, error) {
	at := poolAt + ".members[" + sv.Name + "]"
	mem := &Member{Name: sv.Name, Address: sv.Address.Host, Port: sv.Address.First, AdminStateUp: true}
	if !sv.Address.IsIP() || mem.Address == "" {
		m.leave(sv.Directive, fmt.Sprintf("server %s: an Octavia member is an IP address and a port", sv.Name))
		return mem, nil
	}
	if mem.Port == 0 {
		// haproxy then connects to the port the client reached.
		mem.Port = l.Port
		m.info(sv.Directive, at, fmt.Sprintf("no port: the listener's, %d (haproxy connects to the port the client reached)", l.Port))
	}
	m.use(sv.Directive, at, "")
	if to, ok := m.opts.Addresses[mem.Address]; ok {
		m.info(sv.Directive, at+".address", fmt.Sprintf("address %s rewritten to %s (moved)", mem.Address, to))
		mem.Address = to
	}
	if n, ok := m.opts.Names[mem.Address]; ok && n != sv.Name {
		mem.Name = n
		m.info(sv.Directive, at, fmt.Sprintf("named %s, the workload at %s (haproxy's server %s)", n, mem.Address, sv.Name))
	}
	for _, prm := range sv.Params {
		f := at
		switch prm.Name {
		case "check", "inter", "fall", "rise", "fastinter", "downinter":
			if !monitored {
				continue
			}
			f = poolAt + ".healthmonitor"
		case "weight":
			w, err := strconv.Atoi(prm.Value)
			if err != nil || w < 0 || w > 256 {
				return nil, fmt.Errorf("%s: server %s weight %q: give 0 to 256", sv.Pos, sv.Name, prm.Value)
			}
			mem.Weight = &w
			f = at + ".weight"
		case "backup":
			mem.Backup, f = true, at+".backup"
		case "disabled":
			mem.AdminStateUp, f = false, at+".admin_state_up"
		case "enabled":
			mem.AdminStateUp, f = true, at+".admin_state_up"
		case "port":
			n, err := strconv.Atoi(prm.Value)
			if err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("%s: server %s port %q: give 1 to 65535", sv.Pos, sv.Name, prm.Value)
			}
			mem.MonitorPort, f = n, at+".monitor_port"
		case "addr":
			mem.MonitorAddress, f = prm.Value, at+".monitor_address"
			if to, ok := m.opts.Addresses[prm.Value]; ok {
				mem.MonitorAddress = to
				m.info(sv.Directive, f, fmt.Sprintf("check address %s rewritten to %s (moved)", prm.Value, to))
			}
		case "send-proxy", "send-proxy-v2":
			f = poolAt + ".protocol"
		case "cookie":
			if p.SessionPersistence != nil && p.SessionPersistence.Type == "HTTP_COOKIE" {
				f = poolAt + ".session_persistence"
				m.use(sv.Directive, f, fmt.Sprintf("cookie value %s not kept: Octavia's cookie holds the member's ID", prm.Value))
				continue
			}
			m.leave(sv.Directive, fmt.Sprintf("server %s cookie %s: no cookie insert in the backend", sv.Name, prm.Value))
			continue
		default:
			m.use(sv.Directive, at, fmt.Sprintf("server parameter %q not kept: Octavia members have no such setting", prm.Name))
			continue
		}
		m.use(sv.Directive, f, "")
	}
	return mem, nil
}

// monitor maps the checks of a backend's servers (those with "check") to a health
// monitor: its kind from the backend's options, its timing from the servers'.
func (m *mapper) monitor(s *haproxycfg.Section, p *Pool, servers []haproxycfg.Server, at string) *Monitor {
	var checked []haproxycfg.Server
	for _, sv := range servers {
		if sv.Params.Has("check") {
			checked = append(checked, sv)
		}
	}
	if len(checked) == 0 {
		return nil
	}
	at += ".healthmonitor"
	mon := &Monitor{Type: "TCP", Delay: 2, Timeout: 2, MaxRetries: 2, MaxRetriesDown: 3} // haproxy: inter 2s, rise 2, fall 3
	if len(checked) < len(servers) {
		for _, sv := range servers {
			if !sv.Params.Has("check") {
				m.use(sv.Directive, at, "not checked in haproxy, monitored in Octavia (a monitor is a pool's)")
			}
		}
	}
	sec := func(v string) (int, bool) {
		d, err := haproxycfg.ParseTime(v)
		if err != nil {
			return 0, false
		}
		return max(1, int((d+time.Second-1)/time.Second)), true
	}
	first := checked[0].Params
	if v, ok := first.Get("inter"); ok {
		if n, ok := sec(v); ok {
			mon.Delay = n
		}
	}
	if v, ok := first.Get("rise"); ok {
		if n, err := strconv.Atoi(v); err == nil {
			mon.MaxRetries = min(max(n, 1), 10)
		}
	}
	if v, ok := first.Get("fall"); ok {
		if n, err := strconv.Atoi(v); err == nil {
			mon.MaxRetriesDown = min(max(n, 1), 10)
		}
	}
	if v, d, err := s.Timeout("check"); d != nil && err == nil {
		mon.Timeout = max(1, int((v+time.Second-1)/time.Second))
		m.use(d, at+".timeout", "")
	} else if v, d, err := s.Timeout("connect"); d != nil && err == nil {
		// haproxy's check timeout is "timeout connect" when "timeout check" is not set.
		mon.Timeout = max(1, int((v+time.Second-1)/time.Second))
	}
	mon.Timeout = min(mon.Timeout, mon.Delay)
	if on, d := s.Option("httpchk"); on {
		mon.Type, mon.HTTPMethod, mon.URLPath = "HTTP", "OPTIONS", "/"
		args := d.Args[1:]
		switch len(args) {
		case 1:
			mon.URLPath = args[0]
		case 2, 3:
			mon.HTTPMethod, mon.URLPath = args[0], args[1]
		}
		if len(args) == 3 {
			hdrs := strings.Split(args[2], "\r\n")
			mon.HTTPVersion = strings.TrimPrefix(hdrs[0], "HTTP/")
			var dropped []string
			for _, h := range hdrs[1:] {
				name, val, _ := strings.Cut(h, ":")
				name, val = strings.TrimSpace(name), strings.TrimSpace(val)
				switch {
				case name == "" && val == "":
				case strings.EqualFold(name, "Host") && hostnameRE.MatchString(val) && mon.DomainName == "":
					mon.DomainName = val
				default:
					dropped = append(dropped, name) // never its value: it may be a credential
				}
			}
			if len(dropped) > 0 {
				m.use(d, at, fmt.Sprintf("check request header(s) %s not kept: Octavia's monitor sends a Host header only (a valid host name)", strings.Join(dropped, ", ")))
			}
		}
		m.use(d, at+".type", "")
		for _, hc := range s.All("http-check") {
			switch {
			case len(hc.Args) == 3 && hc.Args[0] == "expect" && hc.Args[1] == "status":
				mon.ExpectedCodes = hc.Args[2]
				m.use(hc, at+".expected_codes", "")
			case len(hc.Args) == 3 && hc.Args[0] == "expect" && hc.Args[1] == "rstatus" && expectedCodes(hc.Args[2]) != "":
				mon.ExpectedCodes = expectedCodes(hc.Args[2])
				m.use(hc, at+".expected_codes", "")
			default:
				m.leave(hc, "http-check "+strings.Join(hc.Args, " ")+": Octavia's HTTP monitor checks one request's status code only")
			}
		}
		if mon.ExpectedCodes == "" {
			mon.ExpectedCodes = "200-399" // haproxy's default: 2xx and 3xx
		}
		if checked[0].Params.Has("check-ssl") {
			mon.Type = "HTTPS"
		}
	} else if on, d := s.Option("ssl-hello-chk"); on {
		mon.Type = "TLS-HELLO"
		m.use(d, at+".type", "")
	} else if on, d := s.Option("tcp-check"); on {
		m.use(d, at+".type", "")
		for _, tc := range s.All("tcp-check") {
			m.leave(tc, "tcp-check "+strings.Join(tc.Args, " ")+": Octavia's TCP monitor only connects")
		}
	}
	// The timing of the other checked servers must agree with the first's.
	for _, sv := range checked[1:] {
		for _, k := range []string{"inter", "rise", "fall"} {
			a, _ := first.Get(k)
			b, _ := sv.Params.Get(k)
			if a != b {
				m.use(sv.Directive, at, fmt.Sprintf("%s %s differs from server %s's %s: the monitor is the pool's, with the first server's", k, b, checked[0].Name, a))
			}
		}
	}
	p.Monitor = mon
	return mon
}

// expectedCodes turns the rstatus regexes Octavia writes back into its codes
// ("^2" style ranges are not): "200|201" → "200,201", "^(200|204)$" too.
func expectedCodes(re string) string {
	re = strings.TrimSuffix(strings.TrimPrefix(re, "^"), "$")
	re = strings.TrimSuffix(strings.TrimPrefix(re, "("), ")")
	parts := strings.Split(re, "|")
	for _, p := range parts {
		if n, err := strconv.Atoi(p); err != nil || n < 100 || n > 599 {
			return ""
		}
	}
	return strings.Join(parts, ",")
}

// persistence maps stickiness: "cookie NAME insert" (HTTP_COOKIE), "cookie NAME
// rewrite|prefix" or "stick match/on req.cook(NAME)" (APP_COOKIE), "stick on src"
// with an ip stick-table (SOURCE_IP).
func (m *mapper) persistence(s *haproxycfg.Section, p *Pool, servers []haproxycfg.Server, at string) {
	at += ".session_persistence"
	if d := s.Lookup("cookie"); d != nil && len(d.Args) >= 1 {
		switch {
		case slices.Contains(d.Args[1:], "insert"):
			p.SessionPersistence = &SessionPersistence{Type: "HTTP_COOKIE"}
			note := ""
			if d.Args[0] != "SRV" {
				note = fmt.Sprintf("the cookie becomes SRV (was %s), its values the members' IDs: clients' current cookies stop sticking once", d.Args[0])
			}
			m.use(d, at, note)
		case slices.Contains(d.Args[1:], "rewrite") || slices.Contains(d.Args[1:], "prefix"):
			p.SessionPersistence = &SessionPersistence{Type: "APP_COOKIE", CookieName: d.Args[0]}
			m.use(d, at, "Octavia learns the application's cookie from responses (stick store-response) instead of rewriting it")
		default:
			m.leave(d, "cookie "+strings.Join(d.Args, " ")+": Octavia inserts its own cookie (insert) or follows the application's (rewrite, prefix)")
		}
	}
	for _, d := range s.All("stick") {
		if len(d.Args) < 2 {
			continue
		}
		switch {
		case (d.Args[0] == "on") && d.Args[1] == "src" && len(d.Args) == 2 && p.SessionPersistence == nil:
			p.SessionPersistence = &SessionPersistence{Type: "SOURCE_IP"}
			m.use(d, at, "")
			for _, t := range s.All("stick-table") {
				m.use(t, at, "the table's size and expiry are Octavia's (its amphora's stick table)")
			}
		case (d.Args[0] == "on" || d.Args[0] == "match") && strings.HasPrefix(d.Args[1], "req.cook(") && p.SessionPersistence == nil:
			name := strings.TrimSuffix(strings.TrimPrefix(d.Args[1], "req.cook("), ")")
			p.SessionPersistence = &SessionPersistence{Type: "APP_COOKIE", CookieName: name}
			m.use(d, at, "")
			for _, t := range s.All("stick-table") {
				m.use(t, at, "the table's size and expiry are Octavia's")
			}
		case d.Args[0] == "store-response" && p.SessionPersistence != nil && p.SessionPersistence.Type == "APP_COOKIE":
			m.use(d, at, "")
		default:
			m.leave(d, "stick "+strings.Join(d.Args, " ")+": Octavia sticks by source IP or by one cookie")
		}
	}
}

// policies maps a frontend's use_backend, redirect and http-request deny lines to
// L7 policies, in the order haproxy evaluates them (deny, then redirect, then
// use_backend).
func (m *mapper) policies(s *haproxycfg.Section, lb *LoadBalancer, l *Listener, at string) error {
	acls, err := s.ACLs()
	if err != nil {
		return err
	}
	byName := map[string]haproxycfg.ACL{}
	for _, a := range acls {
		byName[a.Name] = a
	}
	add := func(d *haproxycfg.Directive, base L7Policy, cond *haproxycfg.Condition) {
		if l.Protocol == "TCP" {
			m.leave(d, "L7 policies need an HTTP listener: this frontend is mode tcp")
			return
		}
		sets, why := m.ruleSets(cond, byName)
		if why != "" {
			m.leave(d, why)
			return
		}
		for _, rules := range sets {
			p := base
			p.Position = len(l.L7Policies) + 1
			p.Name = fmt.Sprintf("%s-%d", l.Name, p.Position)
			p.Rules = rules
			l.L7Policies = append(l.L7Policies, &p)
			m.use(d, fmt.Sprintf("%s.l7policies[%d]", at, p.Position), "")
		}
		for _, name := range conditionACLs(cond) {
			if a, ok := byName[name]; ok {
				m.use(a.Directive, at+".l7policies", "")
			}
		}
	}
	for _, d := range s.All("http-request") {
		if len(d.Args) >= 1 && d.Args[0] == "deny" {
			cond, err := condition(d.Args[1:])
			if err != nil || len(d.Args) > 1 && cond == nil {
				m.leave(d, "http-request deny with options: Octavia's REJECT answers 403 only")
				continue
			}
			add(d, L7Policy{Action: "REJECT"}, cond)
		}
	}
	for _, d := range s.All("redirect") {
		if len(d.Args) < 2 {
			continue
		}
		kind, target, rest := d.Args[0], d.Args[1], d.Args[2:]
		base := L7Policy{}
		if len(rest) >= 2 && rest[0] == "code" {
			code, _ := strconv.Atoi(rest[1])
			base.RedirectHTTPCode, rest = code, rest[2:]
		}
		cond, err := condition(rest)
		if err != nil {
			m.leave(d, "redirect: "+err.Error())
			continue
		}
		if (kind == "location" || kind == "prefix") && !absoluteURL(target) {
			m.leave(d, fmt.Sprintf("redirect %s %s: Octavia redirects to an absolute http(s) URL with a host only", kind, target))
			continue
		}
		switch kind {
		case "location":
			base.Action, base.RedirectURL = "REDIRECT_TO_URL", target
		case "prefix":
			base.Action, base.RedirectPrefix = "REDIRECT_PREFIX", target
		case "scheme":
			if target == "https" && l.Protocol == "TERMINATED_HTTPS" && cond != nil && strings.Join(conditionACLs(cond), " ") == "!{ ssl_fc }" {
				note := ""
				if base.RedirectHTTPCode != 0 && base.RedirectHTTPCode != 302 {
					note = fmt.Sprintf("code %d becomes 302", base.RedirectHTTPCode)
				}
				m.info(d, at+".protocol", "a TERMINATED_HTTPS listener redirects plain HTTP to HTTPS itself")
				m.use(d, at+".protocol", note)
				continue
			}
			m.leave(d, "redirect scheme: Octavia redirects to a fixed URL or prefix only")
			continue
		default:
			m.leave(d, "redirect "+kind+": not an Octavia redirect")
			continue
		}
		if len(rest) > 0 && cond == nil {
			m.leave(d, "redirect options "+strings.Join(rest, " ")+": Octavia's redirects have none")
			continue
		}
		add(d, base, cond)
	}
	rules, err := s.UseBackends()
	if err != nil {
		return err
	}
	for _, r := range rules {
		be := m.cfg.Proxy(haproxycfg.KindBackend, r.Backend)
		if be == nil {
			m.leave(r.Directive, "use_backend "+r.Backend+": the name is made at run time")
			continue
		}
		if l.Protocol == "TCP" {
			m.leave(r.Directive, "use_backend: L7 policies need an HTTP listener; this frontend is mode tcp")
			continue
		}
		if r.Condition == nil {
			m.leave(r.Directive, "use_backend without a condition: make it default_backend")
			continue
		}
		if _, why := m.ruleSets(r.Condition, byName); why != "" {
			m.leave(r.Directive, why)
			continue
		}
		p, err := m.pool(lb, be, l)
		if err != nil {
			return err
		}
		if p == nil {
			m.leave(r.Directive, "use_backend "+r.Backend+": the backend is not mapped")
			continue
		}
		add(r.Directive, L7Policy{Action: "REDIRECT_TO_POOL", RedirectPool: p.Name}, r.Condition)
		// Octavia's member timeouts are the listener's: a backend reached by a
		// rule with other timeouts than the listener's loses them.
		for _, t := range []struct {
			name string
			have *int
		}{{"connect", l.TimeoutMemberConnect}, {"server", l.TimeoutMemberData}} {
			v, d, err := be.Timeout(t.name)
			if d == nil || err != nil {
				continue
			}
			if ms := int(v / time.Millisecond); t.have == nil || *t.have != ms {
				have := "Octavia's default"
				if t.have != nil {
					have = fmt.Sprintf("%d ms", *t.have)
				}
				m.use(d, at+".l7policies", fmt.Sprintf("requests that listener %s sends to pool %s get the listener's timeout %s (%s), not %d ms", l.Name, p.Name, t.name, have, ms))
			}
		}
	}
	return nil
}

// absoluteURL reports whether Octavia takes u as a redirect: http or https, with a
// host.
func absoluteURL(u string) bool {
	p, err := url.Parse(u)
	return err == nil && (p.Scheme == "http" || p.Scheme == "https") && p.Host != ""
}

func condition(ws []string) (*haproxycfg.Condition, error) {
	if len(ws) == 0 {
		return nil, nil
	}
	if ws[0] != "if" && ws[0] != "unless" {
		return nil, fmt.Errorf("%q where if or unless goes", ws[0])
	}
	c, err := haproxycfg.ParseCondition(ws[0] == "unless", ws[1:])
	return &c, err
}

func conditionACLs(c *haproxycfg.Condition) []string {
	if c == nil {
		return nil
	}
	var out []string
	for _, t := range c.Or {
		out = append(out, t...)
	}
	return out
}

// ruleSets turns a condition into the rule lists of one or more policies (an OR
// is several policies; an ACL with several values is one policy per value), or
// says why it cannot.
func (m *mapper) ruleSets(c *haproxycfg.Condition, acls map[string]haproxycfg.ACL) ([][]*L7Rule, string) {
	if c == nil {
		// Unconditional: a rule every request matches.
		return [][]*L7Rule{{{Type: "PATH", CompareType: "STARTS_WITH", Value: "/"}}}, ""
	}
	if c.Unless {
		if len(c.Or) != 1 || len(c.Or[0]) != 1 {
			return nil, "unless with several ACLs: Octavia's rules are ANDed and each may be inverted, not the whole"
		}
	}
	var out [][]*L7Rule
	for _, term := range c.Or {
		sets := [][]*L7Rule{{}}
		for _, ref := range term {
			invert := strings.HasPrefix(ref, "!")
			name := strings.TrimPrefix(ref, "!")
			var a haproxycfg.ACL
			if strings.HasPrefix(name, "{") {
				ws := strings.Fields(strings.TrimSuffix(strings.TrimPrefix(name, "{"), "}"))
				if len(ws) == 0 {
					return nil, "an empty anonymous ACL"
				}
				a = haproxycfg.ACL{Criterion: ws[0]}
				rest := ws[1:]
				for len(rest) > 0 && strings.HasPrefix(rest[0], "-") {
					f := rest[0]
					rest = rest[1:]
					if f == "-m" && len(rest) > 0 {
						f += " " + rest[0]
						rest = rest[1:]
					}
					a.Flags = append(a.Flags, f)
				}
				a.Values = rest
			} else {
				var ok bool
				if a, ok = acls[name]; !ok {
					return nil, fmt.Sprintf("ACL %s is haproxy's own: Octavia has no rule for it", name)
				}
			}
			if c.Unless {
				invert = !invert
			}
			rules, why := aclRules(a, invert)
			if why != "" {
				return nil, why
			}
			var next [][]*L7Rule
			for _, set := range sets {
				for _, r := range rules {
					next = append(next, append(slices.Clone(set), r))
				}
			}
			sets = next
		}
		out = append(out, sets...)
	}
	if len(out) > MaxPoliciesPerRule {
		return nil, fmt.Sprintf("the condition makes %d L7 policies (more than %d): write it with fewer values, or as a regex", len(out), MaxPoliciesPerRule)
	}
	return out, ""
}

// aclRules maps one ACL to rules, one a value (haproxy ORs an ACL's values: the
// caller makes a policy of each), or says why it cannot. A negated ACL of several
// values (none of them may match) would need the inverted rules ANDed in one
// policy; it is refused rather than ORed.
func aclRules(a haproxycfg.ACL, invert bool) ([]*L7Rule, string) {
	crit := a.Criterion
	typ, key := "", ""
	fetch, suffix := crit, ""
	for _, sfx := range []string{"_beg", "_end", "_sub", "_reg", "_dom", "_dir", "_len", "_cnt", "_str"} {
		if strings.HasSuffix(crit, sfx) {
			fetch, suffix = strings.TrimSuffix(crit, sfx), sfx
		}
	}
	// hdr_beg(host) and the like: the suffix sits before the parenthesis.
	if i := strings.Index(crit, "("); i > 0 {
		base, arg := crit[:i], strings.TrimSuffix(crit[i+1:], ")")
		fetch, suffix = base, ""
		for _, sfx := range []string{"_beg", "_end", "_sub", "_reg", "_dom", "_dir", "_len", "_cnt"} {
			if strings.HasSuffix(base, sfx) {
				fetch, suffix = strings.TrimSuffix(base, sfx), sfx
			}
		}
		key = arg
	}
	fetch = strings.TrimPrefix(fetch, "req.")
	caseless := slices.Contains(a.Flags, "-i")
	cmp := map[string]string{"": "EQUAL_TO", "_beg": "STARTS_WITH", "_end": "ENDS_WITH", "_sub": "CONTAINS", "_reg": "REGEX", "_str": "EQUAL_TO"}[suffix]
	for _, f := range a.Flags {
		switch f {
		case "-i":
		case "-m str":
			cmp = "EQUAL_TO"
		case "-m beg":
			cmp = "STARTS_WITH"
		case "-m end":
			cmp = "ENDS_WITH"
		case "-m sub":
			cmp = "CONTAINS"
		case "-m reg":
			cmp = "REGEX"
		default:
			return nil, fmt.Sprintf("ACL %s: flag %s has no Octavia rule", a.Name, f)
		}
	}
	if cmp == "" {
		return nil, fmt.Sprintf("ACL %s: %s matching has no Octavia rule", orAnon(a.Name), crit)
	}
	switch {
	case (fetch == "hdr" || fetch == "hdr_val") && strings.EqualFold(key, "host"):
		typ, key = "HOST_NAME", "" // Octavia compares host names without case, as haproxy's -i
	case fetch == "hdr" || fetch == "fhdr":
		typ = "HEADER"
		if caseless {
			return nil, fmt.Sprintf("ACL %s: -i on a header: Octavia compares header values with case", orAnon(a.Name))
		}
	case fetch == "path":
		typ = "PATH"
		if caseless {
			return nil, fmt.Sprintf("ACL %s: -i on a path: Octavia compares paths with case", orAnon(a.Name))
		}
	case fetch == "cook":
		typ = "COOKIE"
		if caseless {
			return nil, fmt.Sprintf("ACL %s: -i on a cookie: Octavia compares cookies with case", orAnon(a.Name))
		}
	default:
		return nil, fmt.Sprintf("ACL %s: %s has no Octavia rule (host, path, header and cookie have)", orAnon(a.Name), crit)
	}
	if len(a.Values) == 0 {
		return nil, fmt.Sprintf("ACL %s: no value to compare", orAnon(a.Name))
	}
	if invert && len(a.Values) > 1 {
		return nil, fmt.Sprintf("ACL %s negated with %d values: Octavia would need one policy matching none of them", orAnon(a.Name), len(a.Values))
	}
	var out []*L7Rule
	for _, v := range a.Values {
		out = append(out, &L7Rule{Type: typ, CompareType: cmp, Key: key, Value: v, Invert: invert})
	}
	return out, ""
}

func orAnon(name string) string {
	if name == "" {
		return "(anonymous)"
	}
	return name
}
