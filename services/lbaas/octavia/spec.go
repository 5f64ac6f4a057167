package octavia

import (
	"fmt"
	"net"
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
	Pool                   *PoolSpec
}

// PoolSpec is a pool: its protocol towards the members (PROXY and PROXYV2 send the
// PROXY protocol header, so members see the client's address).
type PoolSpec struct {
	Name     string
	Protocol string // HTTP, HTTPS, TCP, UDP, SCTP, PROXY, PROXYV2
	LBMethod string // ROUND_ROBIN (default), LEAST_CONNECTIONS, SOURCE_IP, SOURCE_IP_PORT
	Members  []MemberSpec
	Monitor  *MonitorSpec
}

// MemberSpec is one backend.
type MemberSpec struct {
	Name     string
	Address  string
	Port     int
	Weight   *int   // 0..256; 0 drains the member; nil means Octavia's default, 1
	SubnetID string // "" for the VIP's subnet
	Backup   bool
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
	poolNames := map[string]int{}
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
		if l.Pool == nil {
			continue
		}
		p := l.Pool
		pf := lf + ".pool"
		if p.Name == "" {
			add(pf+".name", "required: Octavia's single-call create needs every pool named")
		} else if j, dup := poolNames[p.Name]; dup {
			add(pf+".name", "%q is already the name of listeners[%d].pool: pool names must be unique", p.Name, j)
		} else {
			poolNames[p.Name] = i
		}
		if _, ok := validPoolProtocols[p.Protocol]; !ok && !slices.Contains([]string{"PROXY", "PROXYV2"}, p.Protocol) {
			add(pf+".protocol", "%q is not a pool protocol: use one of HTTP, HTTPS, TCP, UDP, SCTP, PROXY, PROXYV2", p.Protocol)
		} else if known && !slices.Contains(allowed, p.Protocol) {
			unsupported = append(unsupported, Violation{pf + ".protocol", fmt.Sprintf(
				"a %s listener cannot use a %s pool: Octavia allows %s behind %s", l.Protocol, p.Protocol, strings.Join(allowed, ", "), l.Protocol)})
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
	}
	if len(bad) > 0 {
		return &InvalidSpecError{bad}
	}
	if len(unsupported) > 0 {
		return &UnsupportedError{unsupported}
	}
	return nil
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
		if l.Protocol == "SCTP" && (Version{2, 23}).After(v) {
			v, field = Version{2, 23}, fmt.Sprintf("listeners[%d].protocol", i)
		}
		if l.Pool != nil {
			if need := MinVersionFor(l.Pool.Protocol); need.After(v) {
				v, field = need, fmt.Sprintf("listeners[%d].pool.protocol", i)
			}
		}
	}
	return v, field
}
