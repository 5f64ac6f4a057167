// Package planner proposes migration waves: roles that hold no state first, each
// after the roles it depends on, stateful roles last; pins override. It is a pure
// function of the workloads and the operator's rules.
package planner

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"sort"
	"strings"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
)

// Workload is a workload with its etag as the planner sees it.
type Workload = inventoryv1.Workload

var roleRE = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)

// moving says a workload's wave is no longer the plan's to change.
func moving(st inventoryv1.WorkloadState) bool {
	switch st {
	case inventoryv1.WorkloadState_WORKLOAD_STATE_CONVERTING, inventoryv1.WorkloadState_WORKLOAD_STATE_CUT_OVER,
		inventoryv1.WorkloadState_WORKLOAD_STATE_DONE:
		return true
	}
	return false
}

type compiled struct {
	re   *regexp.Regexp
	rule *inventoryv1.RoleRule
}

// Limits of a plan's rules: RE2 matches in linear time, but compiling a pattern
// costs time and memory with its size and nested repeats (192 KB of rules once took
// 16 s and 1.6 GB).
const (
	MaxRules        = 200
	MaxPatternBytes = 512
	MaxPatternInsts = 10000 // instructions of the compiled program
	MaxDependencies = 200
	MaxPins         = 10000
)

// compilePattern compiles a rule's name pattern within the limits.
func compilePattern(p string) (*regexp.Regexp, error) {
	if len(p) > MaxPatternBytes {
		return nil, fmt.Errorf("%d bytes: at most %d", len(p), MaxPatternBytes)
	}
	re, err := syntax.Parse(p, syntax.Perl)
	if err != nil {
		return nil, fmt.Errorf("not a regular expression (RE2): %v", err)
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return nil, fmt.Errorf("not a regular expression (RE2): %v", err)
	}
	if len(prog.Inst) > MaxPatternInsts {
		return nil, fmt.Errorf("too complex (%d instructions compiled, at most %d): use fewer or smaller repeats", len(prog.Inst), MaxPatternInsts)
	}
	return regexp.Compile(p)
}

// Check validates the operator's rules, dependencies and pins, naming each field.
func Check(p *inventoryv1.Plan) ([]compiled, error) {
	var v apierr.Violations
	switch {
	case len(p.GetRules()) > MaxRules:
		v.Add("plan.rules", "%d rules: at most %d", len(p.GetRules()), MaxRules)
	case len(p.GetDependencies()) > MaxDependencies:
		v.Add("plan.dependencies", "%d dependencies: at most %d", len(p.GetDependencies()), MaxDependencies)
	case len(p.GetPins()) > MaxPins:
		v.Add("plan.pins", "%d pins: at most %d", len(p.GetPins()), MaxPins)
	}
	if err := v.Err(); err != nil {
		return nil, err // nothing compiled
	}
	var rules []compiled
	for i, r := range p.GetRules() {
		f := fmt.Sprintf("plan.rules[%d]", i)
		c := compiled{rule: r}
		if r.GetNamePattern() != "" {
			re, err := compilePattern(r.GetNamePattern())
			if err != nil {
				v.Add(f+".name_pattern", "%v", err)
			}
			c.re = re
		}
		if (r.GetMetadataKey() == "") != (r.GetMetadataValue() == "") {
			v.Add(f+".metadata_value", "metadata_key and metadata_value go together")
		}
		if r.GetNamePattern() == "" && r.GetMetadataKey() == "" {
			v.Add(f, "give name_pattern, or metadata_key and metadata_value")
		}
		if !roleRE.MatchString(r.GetRole()) {
			v.Add(f+".role", "%q: a role is lower-case letters, digits and hyphens, starting with a letter", r.GetRole())
		}
		rules = append(rules, c)
	}
	for i, d := range p.GetDependencies() {
		if !roleRE.MatchString(d.GetRole()) {
			v.Add(fmt.Sprintf("plan.dependencies[%d].role", i), "%q is not a role", d.GetRole())
		}
		for j, o := range d.GetDependsOn() {
			if !roleRE.MatchString(o) || o == d.GetRole() {
				v.Add(fmt.Sprintf("plan.dependencies[%d].depends_on[%d]", i, j), "%q: another role", o)
			}
		}
	}
	for name, w := range p.GetPins() {
		if !strings.HasPrefix(name, "workloads/") {
			v.Add("plan.pins", "%q: pin workloads by name (workloads/{id})", name)
		}
		if w < 1 || w > 1000 {
			v.Add("plan.pins", "%s: wave %d: use 1 to 1000", name, w)
		}
	}
	return rules, v.Err()
}

func serverName(w *Workload) string { return w.GetFacts().GetInstance().GetName() }

// displayName is what a person calls the workload: its display name, else its
// server's or host's name, else its ID.
func displayName(w *Workload) string {
	switch {
	case w.GetDisplayName() != "":
		return w.GetDisplayName()
	case serverName(w) != "":
		return serverName(w)
	case w.GetFacts().GetPhysical().GetHostname() != "":
		return w.GetFacts().GetPhysical().GetHostname()
	}
	return strings.TrimPrefix(w.GetName(), "workloads/")
}

// role returns the workload's role and stateful flag: its own, else the first rule
// that matches, and the reason.
func role(w *Workload, rules []compiled) (string, bool, string) {
	if w.GetRole() != "" {
		return w.GetRole(), w.GetStateful(), ""
	}
	for i, c := range rules {
		r := c.rule
		if c.re != nil && !(c.re.MatchString(w.GetDisplayName()) || (serverName(w) != "" && c.re.MatchString(serverName(w)))) {
			continue
		}
		if r.GetMetadataKey() != "" && w.GetFacts().GetInstance().GetMetadata()[r.GetMetadataKey()] != r.GetMetadataValue() {
			continue
		}
		return r.GetRole(), r.GetStateful(), fmt.Sprintf("role from rule %d", i)
	}
	return "", false, ""
}

// Propose computes the plan's waves and assignments from the workloads. Vanished
// workloads are left out; workloads already converting, cut over or done keep their
// wave and do not shape the ordering.
func Propose(workloads []*Workload, p *inventoryv1.Plan) (*inventoryv1.Plan, error) {
	rules, err := Check(p)
	if err != nil {
		return nil, err
	}
	pr := &proposal{p: p, rules: rules, stateless: map[string]bool{}, stateful: map[string]bool{}, deps: map[string][]string{}, level: map[string]int{},
		out: &inventoryv1.Plan{Rules: p.GetRules(), Dependencies: p.GetDependencies(), Pins: p.GetPins(), State: inventoryv1.PlanState_PLAN_STATE_PROPOSED,
			IncludeErrorServers: p.GetIncludeErrorServers(), StartStoppedServers: p.GetStartStoppedServers()}}
	known := pr.classify(workloads)
	for name := range p.GetPins() {
		if !known[name] {
			return nil, apierr.InvalidArgument("plan.pins", "%s is not a workload of the registry", name)
		}
	}
	for _, d := range p.GetDependencies() {
		pr.deps[d.GetRole()] = append(pr.deps[d.GetRole()], d.GetDependsOn()...)
	}
	maxStateless := 0
	for r := range pr.stateless {
		l, err := pr.visit(r, false, nil)
		if err != nil {
			return nil, err
		}
		maxStateless = max(maxStateless, l)
	}
	for _, it := range pr.items {
		if err := pr.place(it, maxStateless); err != nil {
			return nil, err
		}
	}
	pr.group()
	return pr.out, nil
}

// proposal is one Propose's state.
type proposal struct {
	p                   *inventoryv1.Plan
	rules               []compiled
	out                 *inventoryv1.Plan
	items               []proposed
	stateless, stateful map[string]bool // the roles with workloads to order
	deps                map[string][]string
	level               map[string]int // by fmt.Sprint(stateful, role)
}

// proposed is a workload to place in a wave, and the rule that gave its role.
type proposed struct {
	a    *inventoryv1.Assignment
	rule string
}

// classify gives each workload its role: moving ones keep their wave, ERROR
// servers (unless included) and role-less ones are unassigned with the reason, the
// rest are to be placed. It returns every workload's name.
func (pr *proposal) classify(workloads []*Workload) map[string]bool {
	p, out := pr.p, pr.out
	known := map[string]bool{}
	for _, w := range workloads {
		known[w.GetName()] = true
		if w.GetVanished() {
			continue
		}
		r, stateful, why := role(w, pr.rules)
		status := w.GetFacts().GetInstance().GetStatus()
		a := &inventoryv1.Assignment{Workload: w.GetName(), Role: r, Stateful: stateful, Etag: w.GetEtag(),
			DisplayName: displayName(w), ServerStatus: status, Cold: status == "SHUTOFF" && !p.GetStartStoppedServers()}
		switch {
		case moving(w.GetState()):
			a.Wave, a.Reason = w.GetWave(), "already "+strings.ToLower(strings.TrimPrefix(w.GetState().String(), "WORKLOAD_STATE_"))+": wave kept"
			out.Assignments = append(out.Assignments, a)
			continue
		case status == "ERROR" && !p.GetIncludeErrorServers():
			a.Reason = "the server is in ERROR in its cloud: repair it, or make the plan with include_error_servers to move it as it is"
			out.Unassigned = append(out.Unassigned, a)
			continue
		case r == "":
			a.Reason = "no role: set one on the workload, or add a rule that matches it"
			out.Unassigned = append(out.Unassigned, a)
			continue
		}
		if stateful {
			pr.stateful[r] = true
		} else {
			pr.stateless[r] = true
		}
		pr.items = append(pr.items, proposed{a, why})
	}
	return known
}

// visit is a role's level: a stateless role moves one wave after the latest
// stateless role it depends on; stateful roles after every stateless one, ordered
// among themselves. A cycle is INVALID_ARGUMENT at plan.dependencies.
func (pr *proposal) visit(r string, stateful bool, path []string) (int, error) {
	key := fmt.Sprint(stateful, r)
	if l, ok := pr.level[key]; ok {
		return l, nil
	}
	for _, q := range path {
		if q == r {
			return 0, apierr.InvalidArgument("plan.dependencies", "roles depend on each other in a cycle: %s → %s", strings.Join(path, " → "), r)
		}
	}
	l := 1
	for _, d := range pr.deps[r] {
		if stateful && !pr.stateful[d] || !stateful && !pr.stateless[d] {
			continue // a stateless role does not wait for a stateful one, nor for a role no workload has
		}
		dl, err := pr.visit(d, stateful, append(path, r))
		if err != nil {
			return 0, err
		}
		l = max(l, dl+1)
	}
	pr.level[key] = l
	return l, nil
}

// place gives a workload its wave from its role's level (or its pin), and the
// reason, said for the operator.
func (pr *proposal) place(it proposed, maxStateless int) error {
	a := it.a
	l, err := pr.visit(a.GetRole(), a.GetStateful(), nil)
	if err != nil {
		return err
	}
	if a.GetStateful() {
		a.Wave = int32(maxStateless + l)
		a.Reason = fmt.Sprintf("stateful role %s: after every stateless role", a.GetRole())
	} else {
		a.Wave = int32(l)
		a.Reason = fmt.Sprintf("stateless role %s", a.GetRole())
		var after, notWaiting []string
		for _, d := range pr.deps[a.GetRole()] {
			switch {
			case pr.stateless[d]:
				after = append(after, d)
			case pr.stateful[d]:
				notWaiting = append(notWaiting, d)
			}
		}
		if len(after) > 0 {
			a.Reason += " after " + strings.Join(after, ", ")
		}
		if len(notWaiting) > 0 {
			a.Reason += "; does not wait for stateful " + strings.Join(notWaiting, ", ")
		}
	}
	if it.rule != "" {
		a.Reason += " (" + it.rule + ")"
	}
	if w, ok := pr.p.GetPins()[a.GetWorkload()]; ok {
		a.Wave, a.Reason = w, fmt.Sprintf("pinned to wave %d (ordering said %d)", w, a.GetWave())
	}
	switch {
	case a.GetCold():
		a.Reason += "; stopped (SHUTOFF): moves cold and stays stopped at the destination"
	case a.GetServerStatus() == "SHUTOFF":
		a.Reason += "; stopped (SHUTOFF): moves cold and is started at the destination (start_stopped_servers)"
	case a.GetServerStatus() == "ERROR":
		a.Reason += "; in ERROR: moved as it is (include_error_servers)"
	}
	pr.out.Assignments = append(pr.out.Assignments, a)
	return nil
}

// group sorts the assignments by wave and workload and sums them up per wave.
func (pr *proposal) group() {
	out := pr.out
	sort.Slice(out.Assignments, func(i, j int) bool {
		a, b := out.Assignments[i], out.Assignments[j]
		if a.GetWave() != b.GetWave() {
			return a.GetWave() < b.GetWave()
		}
		return a.GetWorkload() < b.GetWorkload()
	})
	byWave := map[int32]*inventoryv1.PlanWave{}
	for _, a := range out.Assignments {
		if a.GetWave() == 0 {
			continue
		}
		pw := byWave[a.GetWave()]
		if pw == nil {
			pw = &inventoryv1.PlanWave{Wave: a.GetWave(), Stateful: true}
			byWave[a.GetWave()] = pw
			out.Waves = append(out.Waves, pw)
		}
		pw.Workloads = append(pw.Workloads, a.GetWorkload())
		pw.DisplayNames = append(pw.DisplayNames, a.GetDisplayName())
		if !contains(pw.Roles, a.GetRole()) {
			pw.Roles = append(pw.Roles, a.GetRole())
		}
		pw.Stateful = pw.Stateful && a.GetStateful()
	}
	for _, pw := range out.Waves {
		sort.Strings(pw.Roles)
	}
	sort.Slice(out.Unassigned, func(i, j int) bool { return out.Unassigned[i].GetWorkload() < out.Unassigned[j].GetWorkload() })
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
