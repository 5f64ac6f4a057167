package haproxyimport

import (
	"fmt"
	"strings"
)

// Plan is what an haproxy configuration becomes in Octavia, and what of it does
// not: the load balancers to make and the ledger of every directive.
type Plan struct {
	LoadBalancers []*LoadBalancer `json:"load_balancers"`
	Ledger        []Entry         `json:"ledger"`
	// Complete is true when every entry of the ledger is mapped, or left over
	// and accepted by the operator (Accept).
	Complete bool `json:"complete"`
}

// Leftovers are the ledger's entries that were not mapped, or mapped with a loss,
// accepted or not.
func (p *Plan) Leftovers() []Entry {
	var out []Entry
	for _, e := range p.Ledger {
		if e.leftover() {
			out = append(out, e)
		}
	}
	return out
}

// Unaccepted are the leftovers the operator has not accepted.
func (p *Plan) Unaccepted() []Entry {
	var out []Entry
	for _, e := range p.Leftovers() {
		if !e.Accepted {
			out = append(out, e)
		}
	}
	return out
}

// Accept marks the leftovers at wheres (file:line, as the ledger says them) as
// accepted: what they do is lost in Octavia, knowingly. A where that names no
// leftover is an error that names it — a mistyped line must not pass for an
// acceptance — and nothing is marked then.
func (p *Plan) Accept(wheres []string) error {
	left := map[string]bool{}
	for _, e := range p.Ledger {
		if e.leftover() {
			left[e.Where] = true
		}
	}
	var bad []string
	for _, w := range wheres {
		if !left[w] {
			bad = append(bad, w)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%s: no leftover of the plan is there (give FILE:LINE of a line the ledger lists as left over or lossy)", strings.Join(bad, ", "))
	}
	accepted := map[string]bool{}
	for _, w := range wheres {
		accepted[w] = true
	}
	for i := range p.Ledger {
		if accepted[p.Ledger[i].Where] && p.Ledger[i].leftover() {
			p.Ledger[i].Accepted = true
		}
	}
	p.Complete = len(p.Unaccepted()) == 0
	return nil
}

func (e Entry) leftover() bool { return e.Lossy || !e.Mapped() && !(e.Header && e.Why == "") }

// Entry is one directive of the input and what became of it.
type Entry struct {
	// Where is file:line; Section the section it is in ("frontend www").
	Where   string `json:"where"`
	Section string `json:"section,omitempty"`
	// Directive is the line as haproxy reads it.
	Directive string `json:"directive"`
	// Fields are the Octavia fields it became ("loadbalancers[web].listeners[HTTP:80].timeout_client_data");
	// none when it is left over.
	Fields []string `json:"fields,omitempty"`
	// Why says why it is left over, or something an operator should know of how it
	// was mapped.
	Why string `json:"why,omitempty"`
	// Lossy is true when the directive was mapped but Octavia does not keep all
	// of it (Why says what): a leftover until the operator accepts it.
	Lossy bool `json:"lossy,omitempty"`
	// Header is true for a section's own line; global's and defaults' are neither
	// mapped nor left over (their directives are).
	Header bool `json:"header,omitempty"`
	// Accepted is true for a leftover the operator accepted to lose (Plan.Accept).
	Accepted bool `json:"accepted,omitempty"`
}

// Mapped reports whether the directive became something in Octavia.
func (e Entry) Mapped() bool { return len(e.Fields) > 0 }

// LoadBalancer is one Octavia load balancer: the frontends of the configuration
// that listen on one address.
type LoadBalancer struct {
	Name string `json:"name"`
	// VIPAddress is the address the frontends bind ("" when they bind every
	// address: Neutron chooses one).
	VIPAddress string      `json:"vip_address,omitempty"`
	Listeners  []*Listener `json:"listeners"`
	Pools      []*Pool     `json:"pools"`
}

// Listener is one protocol and port of a load balancer.
type Listener struct {
	Name     string `json:"name"`
	Protocol string `json:"protocol"` // TCP, HTTP, TERMINATED_HTTPS
	Port     int    `json:"port"`
	// ConnectionLimit is maxconn (nil: Octavia's default, no limit).
	ConnectionLimit *int `json:"connection_limit,omitempty"`
	// Timeouts in milliseconds (nil: Octavia's defaults, 50000/5000/50000/0).
	TimeoutClientData    *int `json:"timeout_client_data,omitempty"`
	TimeoutMemberConnect *int `json:"timeout_member_connect,omitempty"`
	TimeoutMemberData    *int `json:"timeout_member_data,omitempty"`
	TimeoutTCPInspect    *int `json:"timeout_tcp_inspect,omitempty"`
	// InsertHeaders are Octavia's header switches ("X-Forwarded-For": "true").
	InsertHeaders map[string]string `json:"insert_headers,omitempty"`
	// Certificate is the PEM file a TERMINATED_HTTPS listener served: it must be
	// stored in Barbican and its container named at apply.
	Certificate  string      `json:"certificate,omitempty"`
	ALPN         []string    `json:"alpn_protocols,omitempty"`
	DefaultPool  string      `json:"default_pool,omitempty"`
	L7Policies   []*L7Policy `json:"l7policies,omitempty"`
	AllowedCIDRs []string    `json:"allowed_cidrs,omitempty"`
}

// Pool is a backend: a pool of members with its algorithm, protocol towards the
// members, monitor and persistence.
type Pool struct {
	Name               string              `json:"name"`
	Protocol           string              `json:"protocol"` // TCP, HTTP, HTTPS, PROXY, PROXYV2
	LBMethod           string              `json:"lb_algorithm"`
	SessionPersistence *SessionPersistence `json:"session_persistence,omitempty"`
	Members            []*Member           `json:"members"`
	Monitor            *Monitor            `json:"healthmonitor,omitempty"`
}

// SessionPersistence is a pool's stickiness.
type SessionPersistence struct {
	Type       string `json:"type"` // SOURCE_IP, HTTP_COOKIE, APP_COOKIE
	CookieName string `json:"cookie_name,omitempty"`
}

// Member is one server.
type Member struct {
	Name           string `json:"name"`
	Address        string `json:"address"`
	Port           int    `json:"protocol_port"`
	Weight         *int   `json:"weight,omitempty"`
	Backup         bool   `json:"backup,omitempty"`
	AdminStateUp   bool   `json:"admin_state_up"`
	MonitorAddress string `json:"monitor_address,omitempty"`
	MonitorPort    int    `json:"monitor_port,omitempty"`
}

// Monitor is a pool's health monitor.
type Monitor struct {
	Type           string `json:"type"` // TCP, HTTP, HTTPS, TLS-HELLO
	Delay          int    `json:"delay"`
	Timeout        int    `json:"timeout"`
	MaxRetries     int    `json:"max_retries"`
	MaxRetriesDown int    `json:"max_retries_down"`
	HTTPMethod     string `json:"http_method,omitempty"`
	URLPath        string `json:"url_path,omitempty"`
	HTTPVersion    string `json:"http_version,omitempty"`
	DomainName     string `json:"domain_name,omitempty"`
	ExpectedCodes  string `json:"expected_codes,omitempty"`
}

// L7Policy is one switching, redirect or reject rule of a listener; its rules are
// ANDed, the policies tried in order.
type L7Policy struct {
	Name             string    `json:"name"`
	Action           string    `json:"action"` // REDIRECT_TO_POOL, REDIRECT_TO_URL, REDIRECT_PREFIX, REJECT
	RedirectPool     string    `json:"redirect_pool,omitempty"`
	RedirectURL      string    `json:"redirect_url,omitempty"`
	RedirectPrefix   string    `json:"redirect_prefix,omitempty"`
	RedirectHTTPCode int       `json:"redirect_http_code,omitempty"`
	Position         int       `json:"position"`
	Rules            []*L7Rule `json:"rules"`
}

// L7Rule is one comparison of a request.
type L7Rule struct {
	Type        string `json:"type"`         // HOST_NAME, PATH, HEADER, COOKIE
	CompareType string `json:"compare_type"` // EQUAL_TO, STARTS_WITH, ENDS_WITH, CONTAINS, REGEX
	Key         string `json:"key,omitempty"`
	Value       string `json:"value"`
	Invert      bool   `json:"invert,omitempty"`
}
