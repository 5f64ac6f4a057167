package octavia

import (
	"fmt"
	"maps"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// Spec declares a whole load balancer: its VIP, listeners, and each listener's default
// pool with members and a health monitor. Create builds it in one call when the
// provider supports Octavia's fully populated create, serially otherwise.
type Spec struct {
	Name        string
	Description string
	// VIP: a subnet (the usual), or a network; VIPAddress picks a fixed address.
	VIPSubnetID  string
	VIPNetworkID string
	VIPAddress   string
	Provider     string   // "" for the cloud's default provider
	Tags         []string // the client adds its owner tag
	Listeners    []ListenerSpec
	// Pools are pools that listeners share or that L7 policies send to, each
	// named uniquely: a listener's DefaultPool or a policy's RedirectPool names one.
	Pools []PoolSpec
}

// ListenerSpec is one listener and its default pool.
type ListenerSpec struct {
	Name     string
	Protocol string // TCP, HTTP, HTTPS, TERMINATED_HTTPS, UDP, SCTP
	Port     int
	// DefaultTLSContainerRef is required for TERMINATED_HTTPS (a Barbican secret).
	DefaultTLSContainerRef string
	ConnectionLimit        *int
	AllowedCIDRs           []string
	// Pool is the listener's own default pool; DefaultPool instead names one of
	// Spec.Pools (give one or neither).
	Pool        *PoolSpec
	DefaultPool string
	// Timeouts in milliseconds (nil: Octavia's defaults, 50000, 5000, 50000, 0).
	TimeoutClientData    *int
	TimeoutMemberConnect *int
	TimeoutMemberData    *int
	TimeoutTCPInspect    *int
	// InsertHeaders are Octavia's header switches ({"X-Forwarded-For": "true"}).
	InsertHeaders map[string]string
	// ALPNProtocols a TERMINATED_HTTPS listener offers (h2, http/1.1, http/1.0;
	// API 2.20).
	ALPNProtocols []string
	// L7Policies are tried in order (HTTP and TERMINATED_HTTPS listeners only).
	L7Policies []L7PolicySpec
}

// L7PolicySpec is one rule of an HTTP listener: when all its rules match, the
// request is rejected, redirected to a URL or a prefix, or sent to a pool of
// Spec.Pools (RedirectPool, by name).
type L7PolicySpec struct {
	Name             string
	Action           string // REJECT, REDIRECT_TO_URL, REDIRECT_PREFIX, REDIRECT_TO_POOL
	RedirectPool     string
	RedirectURL      string
	RedirectPrefix   string
	RedirectHTTPCode int // 301, 302 (Octavia's default), 303, 307, 308
	Rules            []L7RuleSpec
}

// L7RuleSpec is one comparison of a request.
type L7RuleSpec struct {
	Type        string // HOST_NAME, PATH, FILE_TYPE, HEADER, COOKIE
	CompareType string // EQUAL_TO, STARTS_WITH, ENDS_WITH, CONTAINS, REGEX
	Key         string // the header's or cookie's name
	Value       string
	Invert      bool
}

// PersistenceSpec is a pool's session persistence.
type PersistenceSpec struct {
	Type       string // SOURCE_IP, HTTP_COOKIE, APP_COOKIE
	CookieName string // APP_COOKIE's
}

// PoolSpec is a pool: its protocol towards the members (PROXY and PROXYV2 send the
// PROXY protocol header, so members see the client's address).
type PoolSpec struct {
	Name     string
	Protocol string // HTTP, HTTPS, TCP, UDP, SCTP, PROXY, PROXYV2
	LBMethod string // ROUND_ROBIN (default), LEAST_CONNECTIONS, SOURCE_IP, SOURCE_IP_PORT
	Members  []MemberSpec
	Monitor  *MonitorSpec
	// Persistence keeps a client on one member (nil: none).
	Persistence *PersistenceSpec
}

// MemberSpec is one backend.
type MemberSpec struct {
	Name     string
	Address  string
	Port     int
	Weight   *int   // 0..256; 0 drains the member; nil means Octavia's default, 1
	SubnetID string // "" for the VIP's subnet
	Backup   bool
	// Disabled members (admin_state_up false) get no traffic.
	Disabled bool
	// MonitorAddress and MonitorPort are where the monitor probes, when not the
	// member's own address and port.
	MonitorAddress string
	MonitorPort    *int
}

// MonitorSpec is a pool's health monitor.
type MonitorSpec struct {
	Type           string // HTTP, HTTPS, PING, TCP, TLS-HELLO, UDP-CONNECT, SCTP
	Delay          int    // seconds between probes
	Timeout        int    // seconds; must not exceed Delay
	MaxRetries     int    // 1..10
	MaxRetriesDown int    // 1..10; 0 for Octavia's default, 3
	HTTPMethod     string
	URLPath        string
	ExpectedCodes  string
	HTTPVersion    string // "1.0" or "1.1" (Octavia's default, "1.0")
	DomainName     string // the Host header of an HTTP/1.1 probe
}

// Protocols a listener may have, and for each the pool protocols Octavia accepts
// behind it (octavia/common/constants.py VALID_LISTENER_POOL_PROTOCOL_MAP, and the
// api-ref's "Protocol Combinations (Listener/Pool)").
var validPoolProtocols = map[string][]string{
	"TCP":              {"HTTP", "HTTPS", "PROXY", "PROXYV2", "TCP"},
	"HTTP":             {"HTTP", "PROXY", "PROXYV2"},
	"HTTPS":            {"HTTPS", "PROXY", "PROXYV2", "TCP"},
	"TERMINATED_HTTPS": {"HTTP", "PROXY", "PROXYV2"},
	"UDP":              {"UDP"},
	"SCTP":             {"SCTP"},
}

var (
	lbMethods       = []string{"ROUND_ROBIN", "LEAST_CONNECTIONS", "SOURCE_IP", "SOURCE_IP_PORT"}
	monitorTypes    = []string{"HTTP", "HTTPS", "PING", "TCP", "TLS-HELLO", "UDP-CONNECT", "SCTP"}
	udpMonitorTypes = []string{"UDP-CONNECT", "SCTP", "TCP", "HTTP"}
)

// MinVersionFor returns the Octavia API version a pool protocol needs (the zero
// Version when every v2 API has it).
func MinVersionFor(poolProtocol string) Version {
	switch poolProtocol {
	case "PROXYV2":
		return Version{2, 22}
	case "SCTP":
		return Version{2, 23}
	}
	return Version{}
}

// Violation names one field of a request and what is wrong with it.
type Violation struct {
	Field       string // a path such as listeners[0].pool.protocol
	Description string // a sentence a person can act on
}

// InvalidSpecError is a malformed spec: nothing was sent to Octavia.
type InvalidSpecError struct{ Violations []Violation }

func (e *InvalidSpecError) Error() string {
	return "invalid load balancer spec: " + joinViolations(e.Violations)
}

// UnsupportedError is a well-formed spec that Octavia would refuse: a listener/pool
// protocol pair it does not allow, or a feature newer than its API. Nothing was sent.
type UnsupportedError struct{ Violations []Violation }

func (e *UnsupportedError) Error() string {
	return "Octavia would refuse this: " + joinViolations(e.Violations)
}

func joinViolations(vs []Violation) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = v.Field + ": " + v.Description
	}
	return strings.Join(parts, "; ")
}

// Validate checks spec without calling Octavia. It returns an *InvalidSpecError for a
// malformed spec, else an *UnsupportedError for what Octavia's rules forbid, else nil.
// Octavia's API version is checked by Client.Check.
func Validate(spec Spec) error {
	var bad, unsupported []Violation
	add := func(field, format string, a ...any) { bad = append(bad, Violation{field, fmt.Sprintf(format, a...)}) }
	if spec.VIPSubnetID == "" && spec.VIPNetworkID == "" {
		add("vip_subnet_id", "required: give the subnet (or vip_network_id, the network) the VIP is allocated from")
	}
	if spec.VIPAddress != "" && net.ParseIP(spec.VIPAddress) == nil {
		add("vip_address", "%q is not an IP address", spec.VIPAddress)
	}
	if len(spec.Name) > 255 {
		add("name", "at most 255 characters")
	}
	for i, t := range spec.Tags {
		if t == "" || len(t) > 255 {
			add(fmt.Sprintf("tags[%d]", i), "a tag is 1 to 255 characters")
		}
	}
	ports := map[string]int{}
	poolNames := map[string]string{} // name → the field of the pool that has it
	checkPool := func(pf string, p *PoolSpec) {
		if p.Name == "" {
			add(pf+".name", "required: Octavia's single-call create needs every pool named")
		} else if at, dup := poolNames[p.Name]; dup {
			add(pf+".name", "%q is already the name of %s: pool names must be unique", p.Name, at)
		} else {
			poolNames[p.Name] = pf
		}
		if _, ok := validPoolProtocols[p.Protocol]; !ok && !slices.Contains([]string{"PROXY", "PROXYV2"}, p.Protocol) {
			add(pf+".protocol", "%q is not a pool protocol: use one of HTTP, HTTPS, TCP, UDP, SCTP, PROXY, PROXYV2", p.Protocol)
		}
		if p.LBMethod != "" && !slices.Contains(lbMethods, p.LBMethod) {
			add(pf+".lb_method", "%q: use one of %s", p.LBMethod, strings.Join(lbMethods, ", "))
		}
		members := map[string]int{}
		for j, m := range p.Members {
			mf := fmt.Sprintf("%s.members[%d]", pf, j)
			bad = append(bad, MemberViolations(mf, m)...)
			key := fmt.Sprintf("%s:%d", m.Address, m.Port)
			if k, dup := members[key]; dup {
				add(mf, "%s is already members[%d] of this pool", key, k)
			}
			members[key] = j
		}
		if mon := p.Monitor; mon != nil {
			validateMonitor(pf+".monitor", *mon, p.Protocol, add, &unsupported)
		}
		if sp := p.Persistence; sp != nil {
			switch {
			case !slices.Contains([]string{"SOURCE_IP", "HTTP_COOKIE", "APP_COOKIE"}, sp.Type):
				add(pf+".persistence.type", "%q: use SOURCE_IP, HTTP_COOKIE or APP_COOKIE", sp.Type)
			case sp.Type == "APP_COOKIE" && !headerName.MatchString(sp.CookieName):
				add(pf+".persistence.cookie_name", "%q: APP_COOKIE needs the application's cookie name (letters, digits and !#$%%&'*+-.^_`|~)", sp.CookieName)
			case sp.Type != "APP_COOKIE" && sp.CookieName != "":
				add(pf+".persistence.cookie_name", "only APP_COOKIE takes a cookie name (%s sets its own)", sp.Type)
			}
		}
	}
	for i := range spec.Pools {
		checkPool(fmt.Sprintf("pools[%d]", i), &spec.Pools[i])
	}
	shared := func(name string) *PoolSpec {
		for i := range spec.Pools {
			if spec.Pools[i].Name == name {
				return &spec.Pools[i]
			}
		}
		return nil
	}
	behind := func(field, listenerProtocol string, known bool, allowed []string, p *PoolSpec) {
		if known && p != nil && !slices.Contains(allowed, p.Protocol) {
			unsupported = append(unsupported, Violation{field, fmt.Sprintf(
				"a %s listener cannot use a %s pool: Octavia allows %s behind %s", listenerProtocol, p.Protocol, strings.Join(allowed, ", "), listenerProtocol)})
		}
	}
	for i, l := range spec.Listeners {
		lf := fmt.Sprintf("listeners[%d]", i)
		allowed, known := validPoolProtocols[l.Protocol]
		if !known {
			add(lf+".protocol", "%q is not a listener protocol: use one of TCP, HTTP, HTTPS, TERMINATED_HTTPS, UDP, SCTP", l.Protocol)
		}
		if l.Port < 1 || l.Port > 65535 {
			add(lf+".port", "%d is not a port: use 1 to 65535", l.Port)
		} else {
			key := fmt.Sprintf("%s/%d", transport(l.Protocol), l.Port)
			if j, dup := ports[key]; dup {
				add(lf+".port", "listeners[%d] already listens on %s port %d", j, transport(l.Protocol), l.Port)
			}
			ports[key] = i
		}
		if l.Protocol == "TERMINATED_HTTPS" && l.DefaultTLSContainerRef == "" {
			add(lf+".default_tls_container_ref", "required for TERMINATED_HTTPS: the Barbican container holding the certificate")
		}
		if l.ConnectionLimit != nil && *l.ConnectionLimit < -1 {
			add(lf+".connection_limit", "%d: use -1 (unlimited) or more", *l.ConnectionLimit)
		}
		for j, c := range l.AllowedCIDRs {
			if _, _, err := net.ParseCIDR(c); err != nil {
				add(fmt.Sprintf("%s.allowed_cidrs[%d]", lf, j), "%q is not a CIDR", c)
			}
		}
		for name, v := range map[string]*int{"timeout_client_data": l.TimeoutClientData, "timeout_member_connect": l.TimeoutMemberConnect,
			"timeout_member_data": l.TimeoutMemberData, "timeout_tcp_inspect": l.TimeoutTCPInspect} {
			if v != nil && (*v < 0 || *v > MaxTimeout) {
				add(lf+"."+name, "%d ms: use 0 to %d (24 days)", *v, MaxTimeout)
			}
		}
		http := l.Protocol == "HTTP" || l.Protocol == "TERMINATED_HTTPS"
		for j, a := range l.ALPNProtocols {
			switch {
			case !slices.Contains([]string{"h2", "http/1.1", "http/1.0"}, a):
				add(fmt.Sprintf("%s.alpn_protocols[%d]", lf, j), "%q: use h2, http/1.1 or http/1.0", a)
			case l.Protocol != "TERMINATED_HTTPS" && known:
				unsupported = append(unsupported, Violation{lf + ".alpn_protocols", "only a TERMINATED_HTTPS listener negotiates ALPN"})
			}
		}
		for _, h := range slices.Sorted(maps.Keys(l.InsertHeaders)) {
			switch {
			case !slices.Contains(insertHeaders, h):
				add(lf+".insert_headers["+h+"]", "not a header Octavia inserts: use %s", strings.Join(insertHeaders, ", "))
			case !http && known:
				unsupported = append(unsupported, Violation{lf + ".insert_headers", fmt.Sprintf("a %s listener inserts no headers: only HTTP and TERMINATED_HTTPS do", l.Protocol)})
			}
		}
		switch {
		case l.Pool != nil && l.DefaultPool != "":
			add(lf+".default_pool", "give the listener's own pool or default_pool (a pool of pools), not both")
		case l.Pool != nil:
			checkPool(lf+".pool", l.Pool)
			behind(lf+".pool.protocol", l.Protocol, known, allowed, l.Pool)
		case l.DefaultPool != "":
			p := shared(l.DefaultPool)
			if p == nil {
				add(lf+".default_pool", "%q is not a pool of pools", l.DefaultPool)
			}
			behind(lf+".default_pool", l.Protocol, known, allowed, p)
		}
		if len(l.L7Policies) > 0 && known && !http {
			unsupported = append(unsupported, Violation{lf + ".l7_policies", fmt.Sprintf("a %s listener has no L7 policies: only HTTP and TERMINATED_HTTPS have", l.Protocol)})
		}
		for j, pol := range l.L7Policies {
			validatePolicy(fmt.Sprintf("%s.l7_policies[%d]", lf, j), pol, add, func(field, name string) {
				p := shared(name)
				if p == nil {
					add(field, "%q is not a pool of pools", name)
				}
				behind(field, l.Protocol, known, allowed, p)
			})
		}
	}
	if len(bad) > 0 {
		return &InvalidSpecError{bad}
	}
	if len(unsupported) > 0 {
		return &UnsupportedError{unsupported}
	}
	return nil
}

// MaxTimeout is the longest listener timeout Octavia takes, in milliseconds.
const MaxTimeout = 24 * 24 * 60 * 60 * 1000

// insertHeaders are the headers Octavia inserts (octavia_lib SUPPORTED_HTTP_HEADERS).
var insertHeaders = []string{"X-Forwarded-For", "X-Forwarded-Port", "X-Forwarded-Proto"}

var (
	// headerName and the value patterns are Octavia's own checks of L7 rules
	// (octavia/common/constants.py, RFC 7230 and 6265).
	headerName   = regexp.MustCompile(`\A[a-zA-Z0-9!#$%&'*+\-.^_` + "`" + `|~]+\z`)
	headerValue  = regexp.MustCompile(`\A[a-zA-Z0-9!"#$%&'()*+,\-./:;<=>?@\[\]^_` + "`" + `{|}~\\]+\z`)
	quotedHeader = regexp.MustCompile(`\A"[a-zA-Z0-9 \t!"#$%&'()*+,\-./:;<=>?@\[\]^_` + "`" + `{|}~\\]*"\z`)
	cookieValue  = regexp.MustCompile(`\A[a-zA-Z0-9!#$%&'()*+\-./:<=>?@\[\]^_` + "`" + `{|}~]+\z`)
)

var (
	l7Actions    = []string{"REJECT", "REDIRECT_TO_URL", "REDIRECT_PREFIX", "REDIRECT_TO_POOL"}
	l7Codes      = []int{301, 302, 303, 307, 308}
	compareTypes = []string{"EQUAL_TO", "STARTS_WITH", "ENDS_WITH", "CONTAINS", "REGEX"}
)

// validatePolicy checks one L7 policy as Octavia's API does; pool checks that a
// REDIRECT_TO_POOL's pool exists and may be behind the listener.
func validatePolicy(f string, p L7PolicySpec, add func(string, string, ...any), pool func(field, name string)) {
	if !slices.Contains(l7Actions, p.Action) {
		add(f+".action", "%q: use one of %s", p.Action, strings.Join(l7Actions, ", "))
		return
	}
	switch p.Action {
	case "REDIRECT_TO_POOL":
		pool(f+".redirect_pool", p.RedirectPool)
	case "REDIRECT_TO_URL":
		if !absoluteURL(p.RedirectURL) {
			add(f+".redirect_url", "%q: an absolute http or https URL with a host", p.RedirectURL)
		}
	case "REDIRECT_PREFIX":
		if !absoluteURL(p.RedirectPrefix) {
			add(f+".redirect_prefix", "%q: an absolute http or https URL with a host", p.RedirectPrefix)
		}
	}
	if p.RedirectHTTPCode != 0 {
		switch {
		case p.Action != "REDIRECT_TO_URL" && p.Action != "REDIRECT_PREFIX":
			add(f+".redirect_http_code", "only a redirect to a URL or a prefix has a code")
		case !slices.Contains(l7Codes, p.RedirectHTTPCode):
			add(f+".redirect_http_code", "%d: use 301, 302, 303, 307 or 308", p.RedirectHTTPCode)
		}
	}
	if len(p.Rules) == 0 {
		add(f+".rules", "a policy without rules never matches: give at least one")
	}
	if len(p.Rules) > MaxRulesPerPolicy {
		add(f+".rules", "%d rules: Octavia takes at most %d a policy", len(p.Rules), MaxRulesPerPolicy)
	}
	for i, r := range p.Rules {
		rf := fmt.Sprintf("%s.rules[%d]", f, i)
		if !slices.Contains(compareTypes, r.CompareType) {
			add(rf+".compare_type", "%q: use one of %s", r.CompareType, strings.Join(compareTypes, ", "))
			continue
		}
		value := func(re ...*regexp.Regexp) {
			if r.CompareType == "REGEX" {
				if _, err := regexp.Compile(r.Value); err != nil || r.Value == "" {
					add(rf+".value", "%q is not a regular expression", r.Value)
				}
				return
			}
			for _, x := range re {
				if x.MatchString(r.Value) {
					return
				}
			}
			add(rf+".value", "%q: not a value Octavia takes for %s (no spaces unless quoted, printable ASCII)", r.Value, r.Type)
		}
		switch r.Type {
		case "HOST_NAME", "PATH":
			value(headerValue, quotedHeader)
		case "FILE_TYPE":
			if r.CompareType != "EQUAL_TO" && r.CompareType != "REGEX" {
				add(rf+".compare_type", "FILE_TYPE compares EQUAL_TO or REGEX")
			}
			value(headerValue, quotedHeader)
		case "HEADER", "COOKIE":
			if !headerName.MatchString(r.Key) {
				add(rf+".key", "%q: the %s's name (letters, digits and !#$%%&'*+-.^_`|~)", r.Key, strings.ToLower(r.Type))
			}
			if r.Type == "HEADER" {
				value(headerValue, quotedHeader)
			} else {
				value(cookieValue)
			}
		default:
			add(rf+".type", "%q: use HOST_NAME, PATH, FILE_TYPE, HEADER or COOKIE", r.Type)
		}
	}
}

// MaxRulesPerPolicy is Octavia's limit (MAX_L7RULES_PER_L7POLICY).
const MaxRulesPerPolicy = 50

// absoluteURL reports whether Octavia takes u as a redirect target.
func absoluteURL(u string) bool {
	p, err := url.Parse(u)
	return err == nil && (p.Scheme == "http" || p.Scheme == "https") && p.Host != ""
}

// MemberViolations checks one member without calling Octavia; field is its path
// (listeners[0].pool.members[1], say).
func MemberViolations(field string, m MemberSpec) []Violation {
	var out []Violation
	if net.ParseIP(m.Address) == nil {
		out = append(out, Violation{field + ".address", fmt.Sprintf("%q is not an IP address", m.Address)})
	}
	if m.Port < 1 || m.Port > 65535 {
		out = append(out, Violation{field + ".port", fmt.Sprintf("%d is not a port: use 1 to 65535", m.Port)})
	}
	if m.Weight != nil && (*m.Weight < 0 || *m.Weight > 256) {
		out = append(out, Violation{field + ".weight", fmt.Sprintf("%d: use 0 (drained) to 256", *m.Weight)})
	}
	if m.MonitorAddress != "" && net.ParseIP(m.MonitorAddress) == nil {
		out = append(out, Violation{field + ".monitor_address", fmt.Sprintf("%q is not an IP address", m.MonitorAddress)})
	}
	if m.MonitorPort != nil && (*m.MonitorPort < 1 || *m.MonitorPort > 65535) {
		out = append(out, Violation{field + ".monitor_port", fmt.Sprintf("%d is not a port: use 1 to 65535", *m.MonitorPort)})
	}
	return out
}

func validateMonitor(f string, m MonitorSpec, poolProtocol string, add func(string, string, ...any), unsupported *[]Violation) {
	if !slices.Contains(monitorTypes, m.Type) {
		add(f+".type", "%q: use one of %s", m.Type, strings.Join(monitorTypes, ", "))
		return
	}
	if m.Delay < 1 {
		add(f+".delay", "%d: the seconds between probes, at least 1", m.Delay)
	}
	if m.Timeout < 1 || (m.Delay >= 1 && m.Timeout > m.Delay) {
		add(f+".timeout", "%d: at least 1 and at most the delay (%d)", m.Timeout, m.Delay)
	}
	if m.MaxRetries < 1 || m.MaxRetries > 10 {
		add(f+".max_retries", "%d: use 1 to 10", m.MaxRetries)
	}
	if m.MaxRetriesDown != 0 && (m.MaxRetriesDown < 1 || m.MaxRetriesDown > 10) {
		add(f+".max_retries_down", "%d: use 1 to 10 (or leave unset)", m.MaxRetriesDown)
	}
	if m.URLPath != "" && !strings.HasPrefix(m.URLPath, "/") {
		add(f+".url_path", "%q: a path starts with /", m.URLPath)
	}
	if m.HTTPVersion != "" && m.HTTPVersion != "1.0" && m.HTTPVersion != "1.1" {
		add(f+".http_version", "%q: use 1.0 or 1.1", m.HTTPVersion)
	}
	if m.DomainName != "" && m.HTTPVersion != "1.1" {
		add(f+".domain_name", "a Host header goes with http_version 1.1")
	}
	udp := poolProtocol == "UDP" || poolProtocol == "SCTP"
	switch {
	case udp && !slices.Contains(udpMonitorTypes, m.Type):
		*unsupported = append(*unsupported, Violation{f + ".type", fmt.Sprintf(
			"a %s pool takes a %s monitor, not %s", poolProtocol, strings.Join(udpMonitorTypes, ", "), m.Type)})
	case !udp && (m.Type == "UDP-CONNECT" || m.Type == "SCTP"):
		*unsupported = append(*unsupported, Violation{f + ".type", fmt.Sprintf(
			"a %s monitor is only for UDP and SCTP pools; this pool is %s", m.Type, poolProtocol)})
	}
}

// transport is the L4 protocol a listener protocol occupies its port with.
func transport(listenerProtocol string) string {
	switch listenerProtocol {
	case "UDP":
		return "UDP"
	case "SCTP":
		return "SCTP"
	}
	return "TCP"
}

// needs returns the highest API version spec's features require, and the field
// that requires it.
func needs(spec Spec) (Version, string) {
	var v Version
	field := ""
	for i, l := range spec.Listeners {
		if len(l.ALPNProtocols) > 0 && (Version{2, 20}).After(v) {
			v, field = Version{2, 20}, fmt.Sprintf("listeners[%d].alpn_protocols", i)
		}
		if l.Protocol == "SCTP" && (Version{2, 23}).After(v) {
			v, field = Version{2, 23}, fmt.Sprintf("listeners[%d].protocol", i)
		}
		if l.Pool != nil {
			if need := MinVersionFor(l.Pool.Protocol); need.After(v) {
				v, field = need, fmt.Sprintf("listeners[%d].pool.protocol", i)
			}
		}
	}
	for i, p := range spec.Pools {
		if need := MinVersionFor(p.Protocol); need.After(v) {
			v, field = need, fmt.Sprintf("pools[%d].protocol", i)
		}
	}
	return v, field
}
