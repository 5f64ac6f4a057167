package haproxycfg

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Pos is where something is written: a file and a line (from 1).
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d", p.File, p.Line) }

// Directive is one line of a section: its keyword and its arguments, as words.
type Directive struct {
	Pos
	// Name is the keyword ("bind", "server", "timeout", "option", …). A leading
	// "no" or "default" (as in "no option httplog") is kept in Prefix.
	Name   string
	Prefix string
	Args   []string
}

// Key says which earlier directive this one overrides in a proxy's settings: the
// keyword, and for timeout and option the first argument too ("timeout connect",
// "option httpchk"). "no option X" has the key of "option X".
func (d *Directive) Key() string {
	switch d.Name {
	case "timeout", "option", "http-check", "stats":
		if len(d.Args) > 0 {
			return d.Name + " " + d.Args[0]
		}
	}
	return d.Name
}

// String writes the directive back as a line (arguments quoted where needed).
func (d *Directive) String() string {
	parts := []string{}
	if d.Prefix != "" {
		parts = append(parts, d.Prefix)
	}
	parts = append(parts, d.Name)
	for _, a := range d.Args {
		parts = append(parts, quote(a))
	}
	return strings.Join(parts, " ")
}

func quote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\r\n#'\"\\$") {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "\r", `\r`, "\n", `\n`, "\t", `\t`).Replace(s) + `"`
}

// Kind is a section's keyword.
type Kind string

// The section keywords; any other known section (userlist, peers, resolvers, …)
// is kept with its own keyword.
const (
	KindGlobal   Kind = "global"
	KindDefaults Kind = "defaults"
	KindFrontend Kind = "frontend"
	KindBackend  Kind = "backend"
	KindListen   Kind = "listen"
)

// otherSections are the sections haproxy knows beside the proxies: read and kept
// whole, for a mapping to report.
var otherSections = map[string]bool{
	"userlist": true, "peers": true, "resolvers": true, "mailers": true, "program": true,
	"http-errors": true, "cache": true, "ring": true, "log-forward": true, "crt-store": true,
	"traces": true, "acme": true, "fcgi-app": true, "dynamic-update": true,
}

// Section is a section with its directives in order.
type Section struct {
	Pos
	Kind Kind
	// Name is the section's name ("" for global and an unnamed defaults).
	Name string
	// From names the defaults section a proxy or a defaults section takes its
	// settings from ("from NAME"; "" for the last unnamed one before it).
	From string
	// Args are a section line's other words (an old-style "listen NAME ADDR:PORT"
	// has its bind address here).
	Args       []string
	Directives []*Directive
	// Defaults is the defaults section this one inherits from (nil if none): for
	// a proxy, the one named by From, or the last defaults section before it.
	Defaults *Section
}

// IsProxy reports whether the section is a frontend, a backend or a listen.
func (s *Section) IsProxy() bool {
	return s.Kind == KindFrontend || s.Kind == KindBackend || s.Kind == KindListen
}

// Config is what a set of haproxy configuration files says, in order.
type Config struct {
	// Sections are every section, in the order of the files and of their lines.
	Sections []*Section
	// Loose are directives outside any section (.notice, .warning, …).
	Loose []*Directive
}

// Proxies returns the frontends, backends and listen sections, in order.
func (c *Config) Proxies() []*Section {
	var out []*Section
	for _, s := range c.Sections {
		if s.IsProxy() {
			out = append(out, s)
		}
	}
	return out
}

// Proxy returns the proxy of that kind and name (listen counts as both a frontend
// and a backend), or nil.
func (c *Config) Proxy(k Kind, name string) *Section {
	for _, s := range c.Sections {
		if s.Name == name && (s.Kind == k || s.Kind == KindListen && (k == KindFrontend || k == KindBackend)) {
			return s
		}
	}
	return nil
}

// File is a configuration file's name (as errors and positions cite it) and text.
type File struct {
	Name string
	Data []byte
}

// Options are how files are read.
type Options struct {
	// Env gives environment variables' values ("$NAME" in double quotes); nil
	// refuses any.
	Env func(name string) (string, bool)
}

// ErrSyntax is wrapped by every error Parse returns for what the files say.
var ErrSyntax = errors.New("haproxycfg: syntax")

// Error is a syntax error at a position.
type Error struct {
	Pos
	Msg string
}

func (e *Error) Error() string { return e.Pos.String() + ": " + e.Msg }

// Unwrap makes errors.Is(err, ErrSyntax) hold.
func (e *Error) Unwrap() error { return ErrSyntax }

// ReadFiles reads and parses files from disk, in the order given (as haproxy -f
// reads them: one configuration, sections continuing across files).
func ReadFiles(opts Options, paths ...string) (*Config, error) {
	var files []File
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("haproxycfg: %w", err)
		}
		files = append(files, File{Name: p, Data: b})
	}
	return Parse(opts, files...)
}

// Parse parses files in order into one configuration. Every error in them is
// reported (joined), each with its file and line.
func Parse(opts Options, files ...File) (*Config, error) {
	c := &Config{}
	var errs []error
	fail := func(p Pos, format string, args ...any) {
		errs = append(errs, &Error{Pos: p, Msg: fmt.Sprintf(format, args...)})
	}
	var cur *Section
	var lastDefaults *Section // the last unnamed or named defaults section read
	named := map[string]*Section{}
	proxies := map[string]*Section{} // "frontend NAME" and "backend NAME" (a listen is both)
	for _, f := range files {
		cur = nil // a section does not continue into the next file
		for _, l := range lines(string(f.Data)) {
			pos := Pos{File: f.Name, Line: l.num}
			ws, err := words(l.text, opts.Env)
			if err != nil {
				fail(pos, "%v", err)
				continue
			}
			if len(ws) == 0 {
				continue
			}
			kw := ws[0]
			switch {
			case kw == ".if" || kw == ".elif" || kw == ".else" || kw == ".endif":
				fail(pos, "conditional blocks (%s) depend on the machine haproxy starts on: resolve them first (keep the branch that runs there)", kw)
				continue
			case strings.HasPrefix(kw, "."):
				c.Loose = append(c.Loose, &Directive{Pos: pos, Name: kw, Args: ws[1:]})
				continue
			}
			if k, ok := sectionKind(kw); ok {
				s := &Section{Pos: pos, Kind: k}
				args := ws[1:]
				if k != KindGlobal && len(args) > 0 && args[0] != "from" {
					s.Name, args = args[0], args[1:]
				}
				if len(args) >= 2 && args[0] == "from" && (k == KindDefaults || s.IsProxy()) {
					s.From, args = args[1], args[2:]
				}
				s.Args = args
				switch {
				case s.IsProxy() && s.Name == "":
					fail(pos, "%s needs a name", k)
				case s.Kind == KindListen && len(args) > 1, s.IsProxy() && s.Kind != KindListen && len(args) > 0:
					fail(pos, "%s %s: unexpected %q (a %s line is: %s NAME [from DEFAULTS])", k, s.Name, strings.Join(args, " "), k, k)
				case k == KindGlobal && len(args) > 0:
					fail(pos, "global takes no name")
				}
				if k == KindDefaults || s.IsProxy() {
					switch {
					case s.From != "" && named[s.From] == nil:
						fail(pos, "%s %s: defaults section %q is not defined before it", k, s.Name, s.From)
					case s.From != "":
						s.Defaults = named[s.From]
					case s.IsProxy():
						s.Defaults = lastDefaults
					}
				}
				if s.IsProxy() {
					for _, kind := range proxyKeys(s) {
						if prev := proxies[kind]; prev != nil {
							fail(pos, "%s %s: the name is taken by the %s at %s", k, s.Name, prev.Kind, prev.Pos)
						}
						proxies[kind] = s
					}
				}
				if k == KindDefaults {
					if s.Name != "" {
						named[s.Name] = s
					}
					lastDefaults = s
				}
				c.Sections = append(c.Sections, s)
				cur = s
				continue
			}
			if cur == nil {
				fail(pos, "%q outside a section: every setting belongs in global, defaults, frontend, backend or listen", kw)
				continue
			}
			d := &Directive{Pos: pos, Name: kw, Args: ws[1:]}
			if (kw == "no" || kw == "default") && len(ws) > 1 {
				d.Prefix, d.Name, d.Args = kw, ws[1], ws[2:]
			}
			cur.Directives = append(cur.Directives, d)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

func sectionKind(kw string) (Kind, bool) {
	switch k := Kind(kw); k {
	case KindGlobal, KindDefaults, KindFrontend, KindBackend, KindListen:
		return k, true
	}
	if otherSections[kw] {
		return Kind(kw), true
	}
	return "", false
}

// proxyKeys are the names a proxy takes: a frontend's and a backend's are apart,
// a listen is both.
func proxyKeys(s *Section) []string {
	switch s.Kind {
	case KindFrontend:
		return []string{"frontend " + s.Name}
	case KindBackend:
		return []string{"backend " + s.Name}
	}
	return []string{"frontend " + s.Name, "backend " + s.Name}
}

// Lookup returns the directive in effect for key in the section (see
// Directive.Key): the section's own last one, else its defaults' (and theirs).
// A "no option X" in effect is returned too: its Prefix says so.
func (s *Section) Lookup(key string) *Directive {
	for sec := s; sec != nil; sec = sec.Defaults {
		for i := len(sec.Directives) - 1; i >= 0; i-- {
			if sec.Directives[i].Key() == key {
				return sec.Directives[i]
			}
		}
	}
	return nil
}

// All returns every directive named name in the section, in order (its defaults'
// are not included: bind, server, acl and the rules are a proxy's own).
func (s *Section) All(name string) []*Directive {
	var out []*Directive
	for _, d := range s.Directives {
		if d.Name == name && d.Prefix == "" {
			out = append(out, d)
		}
	}
	return out
}

// Option reports whether "option name" is in effect for the section (set in it or
// its defaults, and not undone by "no option name"), and the directive that says so.
func (s *Section) Option(name string) (bool, *Directive) {
	d := s.Lookup("option " + name)
	return d != nil && d.Prefix == "", d
}

// predefinedACLs are the ACLs haproxy defines itself (configuration manual 7.4).
var predefinedACLs = map[string]bool{
	"FALSE": true, "HTTP": true, "HTTP_1.0": true, "HTTP_1.1": true, "HTTP_2.0": true, "HTTP_3.0": true,
	"HTTP_CONTENT": true, "HTTP_URL_ABS": true, "HTTP_URL_SLASH": true, "HTTP_URL_STAR": true,
	"LOCALHOST": true, "METH_CONNECT": true, "METH_DELETE": true, "METH_GET": true, "METH_HEAD": true,
	"METH_OPTIONS": true, "METH_POST": true, "METH_PUT": true, "METH_TRACE": true, "RDP_COOKIE": true,
	"REQ_CONTENT": true, "TRUE": true, "WAIT_END": true,
}

// Check reports, joined, what haproxy itself would refuse once the files are read:
// a bind or server line it cannot read, a backend a frontend names (use_backend, default_backend) that is not defined, an
// ACL a rule names that the proxy does not define, two servers of a backend with
// one name.
func (c *Config) Check() error {
	var errs []error
	for _, s := range c.Proxies() {
		target := func(d *Directive, name string) {
			if strings.Contains(name, "%[") {
				return // a name made at run time (log-format): not known here
			}
			if c.Proxy(KindBackend, name) == nil {
				errs = append(errs, &Error{Pos: d.Pos, Msg: fmt.Sprintf("%s %s names backend %q, which is not defined", s.Kind, s.Name, name)})
			}
		}
		if s.Kind != KindBackend {
			if _, err := s.Binds(); err != nil {
				errs = append(errs, err)
			}
			if name, d := s.DefaultBackend(); name != "" {
				target(d, name)
			}
			rules, err := s.UseBackends()
			if err != nil {
				errs = append(errs, err)
			}
			acls, err := s.ACLs()
			if err != nil {
				errs = append(errs, err)
			}
			defined := map[string]bool{}
			for _, a := range acls {
				defined[a.Name] = true
			}
			for _, r := range rules {
				target(r.Directive, r.Backend)
				for _, term := range r.Condition.terms() {
					name := strings.TrimPrefix(term, "!")
					if !strings.HasPrefix(name, "{") && !defined[name] && !predefinedACLs[name] {
						errs = append(errs, &Error{Pos: r.Pos, Msg: fmt.Sprintf("use_backend %s: ACL %q is not defined in %s %s", r.Backend, name, s.Kind, s.Name)})
					}
				}
			}
		}
		if s.Kind != KindFrontend {
			servers, err := s.Servers()
			if err != nil {
				errs = append(errs, err)
			}
			seen := map[string]Pos{}
			for _, sv := range servers {
				if p, dup := seen[sv.Name]; dup {
					errs = append(errs, &Error{Pos: sv.Pos, Msg: fmt.Sprintf("%s %s: server %q is already defined at %s", s.Kind, s.Name, sv.Name, p)})
				}
				seen[sv.Name] = sv.Pos
			}
		}
	}
	return errors.Join(errs...)
}

// terms are every ACL reference of a condition (nil for none).
func (c *Condition) terms() []string {
	if c == nil {
		return nil
	}
	var out []string
	for _, t := range c.Or {
		out = append(out, t...)
	}
	return out
}
