package haproxyimport

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/hikkoshi/hikkoshi/services/lbaas/haproxycfg"
)

// ledger writes one entry for every section line and directive of the
// configuration, in the order of the files.
func (m *mapper) ledger() {
	for _, d := range m.cfg.Loose {
		m.plan.Ledger = append(m.plan.Ledger, Entry{Where: d.Pos.String(), Directive: scrub(d.String()),
			Why: "a message haproxy prints when it starts: nothing to map"})
	}
	for _, s := range m.cfg.Sections {
		title := strings.TrimSpace(string(s.Kind) + " " + s.Name)
		e := Entry{Where: s.Pos.String(), Directive: title, Fields: m.sections[s], Header: true}
		switch {
		case len(e.Fields) > 0, s.Kind == haproxycfg.KindGlobal, s.Kind == haproxycfg.KindDefaults:
		case s.IsProxy():
			e.Why = m.unmappedProxy(s)
		default:
			e.Why = fmt.Sprintf("a %s section: Octavia has nothing like it", s.Kind)
		}
		m.plan.Ledger = append(m.plan.Ledger, e)
		for _, d := range s.Directives {
			e := Entry{Where: d.Pos.String(), Section: title, Directive: redact(d), Fields: m.used[d], Why: m.why[d], Lossy: m.lossy[d]}
			switch {
			case len(e.Fields) > 0 || e.Why != "":
			case s.IsProxy() && len(m.sections[s]) == 0:
				e.Why = fmt.Sprintf("%s is not mapped", title)
			default:
				e.Why = reason(s, d)
			}
			e.Why = scrub(e.Why)
			m.plan.Ledger = append(m.plan.Ledger, e)
		}
	}
	m.plan.Complete = len(m.plan.Unaccepted()) == 0
}

func (m *mapper) unmappedProxy(s *haproxycfg.Section) string {
	switch {
	case s.Lookup("stats enable") != nil || s.Lookup("stats uri") != nil:
		return "a statistics page: Octavia has its own (the load balancer's stats API, PROMETHEUS listeners)"
	case s.Kind == haproxycfg.KindBackend && m.named(s.Name):
		return "the rules that send to it could not be mapped (see them)"
	case s.Kind == haproxycfg.KindBackend:
		return "no frontend sends to it"
	}
	return "no listener came of it (see its lines)"
}

// named reports whether a frontend names the backend (default_backend, use_backend).
func (m *mapper) named(backend string) bool {
	for _, s := range m.cfg.Proxies() {
		if name, _ := s.DefaultBackend(); name == backend {
			return true
		}
		rules, _ := s.UseBackends()
		for _, r := range rules {
			if r.Backend == backend {
				return true
			}
		}
	}
	return false
}

// reason says why a directive nothing mapped is left over.
func reason(s *haproxycfg.Section, d *haproxycfg.Directive) string {
	if s.Kind == haproxycfg.KindGlobal {
		return "a process-wide setting of the old haproxy: the Octavia deployment's amphorae have their own"
	}
	switch {
	case !s.IsProxy() && s.Kind != haproxycfg.KindDefaults:
		return fmt.Sprintf("in a %s section: Octavia has nothing like it", s.Kind)
	case d.Name == "log" || d.Name == "log-format" || d.Name == "capture" || d.Name == "log-tag" ||
		d.Name == "option" && len(d.Args) > 0 && strings.Contains(d.Args[0], "log"):
		return "logging: the Octavia deployment's (its amphorae's log offload), not a load balancer's"
	case d.Name == "retries" || d.Name == "option" && len(d.Args) > 0 && d.Args[0] == "redispatch":
		return "retries and redispatch: the amphora's haproxy has its own"
	case d.Name == "stats":
		return "statistics: Octavia's stats API and PROMETHEUS listeners"
	case strings.HasPrefix(d.Name, "errorfile") || strings.HasPrefix(d.Name, "errorloc"):
		return "error pages: Octavia serves its own"
	case d.Name == "http-request" || d.Name == "http-response" || d.Name == "tcp-request" || d.Name == "tcp-response":
		return "Octavia has no such rule: only its insert headers, redirects, rejects and pool switching"
	case d.Name == "compression":
		return "Octavia does not compress"
	case d.Name == "timeout":
		return fmt.Sprintf("timeout %s: Octavia has the client, member connect, member data and TCP inspect timeouts only (a listener's, from its frontend and default backend)", strings.Join(d.Args, " "))
	case d.Name == "maxconn" && s.Kind == haproxycfg.KindBackend:
		return "a backend's maxconn: Octavia limits connections per listener only"
	case d.Name == "acl":
		return "no rule that Octavia can express uses this ACL"
	case d.Name == "option" && len(d.Args) > 0 && d.Args[0] == "forwardfor":
		return "X-Forwarded-For is a listener's insert header in Octavia: a backend's own setting, apart from its listener's, cannot be kept"
	case d.Name == "option":
		return fmt.Sprintf("option %s: Octavia has no such setting", strings.Join(d.Args, " "))
	case d.Name == "mode" || d.Name == "balance" || d.Name == "default-server" || d.Name == "cookie" || d.Name == "maxconn" || d.Name == "default_backend":
		return "no listener or pool took it"
	}
	return "not mapped: Octavia has no such setting"
}

// redact writes a directive back with its secrets (userlist passwords, stats auth
// credentials, a CA key's pass phrase) replaced: the plan is printed and stored.
func redact(d *haproxycfg.Directive) string {
	c := *d
	c.Args = slices.Clone(d.Args)
	for i := 0; i < len(c.Args); i++ {
		switch c.Args[i] {
		case "password", "insecure-password", "ca-sign-pass":
			if i+1 < len(c.Args) {
				c.Args[i+1] = "(redacted)"
				i++
			}
		}
	}
	if c.Name == "stats" && len(c.Args) == 2 && c.Args[0] == "auth" {
		if user, _, ok := strings.Cut(c.Args[1], ":"); ok {
			c.Args[1] = user + ":(redacted)"
		}
	}
	return scrub(c.String())
}

// secretHeader finds the value of a header that carries a credential: in a
// header line ("Authorization: Basic …" of a check request) and after a rule's
// header name ("set-header X-Api-Key "…"", "hdr X-Auth-Token …").
var (
	secretName      = `((?:proxy-)?authorization|x-api-key|x-auth-token|[a-z0-9-]*(?:token|secret|passw(?:or)?d|apikey|api-key|credential)[a-z0-9-]*)`
	secretHeader    = regexp.MustCompile(`(?i)` + secretName + `(\s*:\s*)("[^"]*"|[^"\\\r\n]+)`)
	secretHeaderArg = regexp.MustCompile(`(?i)((?:set-header|add-header|hdr|replace-header|set-var\([^)]*\))\s+)` + secretName + `(\s+)("[^"]*"|\S+)`)
)

// scrub replaces the values of credential headers: the plan is printed and stored.
func scrub(s string) string {
	s = secretHeader.ReplaceAllString(s, "${1}${2}(redacted)")
	return secretHeaderArg.ReplaceAllString(s, "${1}${2}${3}(redacted)")
}
