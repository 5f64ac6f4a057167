// Package console plans nova-compute's [serial_console] port_range per node across
// both clouds, so that no two nodes hand out the same console port: a live
// migration between nodes whose ranges overlap fails when the port the instance
// holds is taken on the target.
package console

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
)

// Defaults of a plan.
const (
	DefaultFirstPort    = 10000
	DefaultPortsPerNode = 100
	maxPort             = 65535
)

type span struct{ lo, hi int }

func parse(s string) (span, error) {
	a, b, ok := strings.Cut(s, ":")
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || lo < 1 || hi > maxPort || hi < lo {
		return span{}, fmt.Errorf("%q is not a port range LOW:HIGH within 1–65535", s)
	}
	return span{lo, hi}, nil
}

// CheckRange says why s is not a port range LOW:HIGH within 1–65535 (nil if it is).
func CheckRange(s string) error {
	_, err := parse(s)
	return err
}

func (s span) String() string { return fmt.Sprintf("%d:%d", s.lo, s.hi) }

// Plan gives each node a range that no other node shares, changing as few nodes as
// it can: a node keeps its current range when that overlaps no range kept before it
// (the narrowest current ranges are looked at first, so Nova's default 10000:20000
// on many nodes is what gives way); every other node, in the order given, gets the
// next portsPerNode ports from firstPort on that touch no kept or given range. A
// plan applied and planned again therefore changes nothing. It also lists the pairs
// of nodes whose current ranges overlap. Bad input is INVALID_ARGUMENT naming the
// field.
func Plan(req *netbridgev1.PlanConsolePortsRequest) (*netbridgev1.PlanConsolePortsResponse, error) {
	first, per := int(req.GetFirstPort()), int(req.GetPortsPerNode())
	if first == 0 {
		first = DefaultFirstPort
	}
	if per == 0 {
		per = DefaultPortsPerNode
	}
	var v apierr.Violations
	if first < 1 || first > maxPort {
		v.Add("first_port", "%d: give a port within 1–65535", first)
	}
	if per < 1 {
		v.Add("ports_per_node", "%d: give at least 1", per)
	}
	if len(req.GetNodes()) == 0 {
		v.Add("nodes", "required: the compute nodes of both clouds (or clouds to read them from)")
	}
	seen := map[string]int{}
	current := make([]*span, len(req.GetNodes()))
	for i, n := range req.GetNodes() {
		key := n.GetCloud() + "/" + n.GetHost()
		if n.GetHost() == "" {
			v.Add(fmt.Sprintf("nodes[%d].host", i), "required: the node's host name as nova-compute reports it")
		} else if j, dup := seen[key]; dup {
			v.Add(fmt.Sprintf("nodes[%d].host", i), "%q of cloud %q is listed twice (also nodes[%d])", n.GetHost(), n.GetCloud(), j)
		}
		seen[key] = i
		if c := n.GetCurrentRange(); c != "" {
			s, err := parse(c)
			if err != nil {
				v.Add(fmt.Sprintf("nodes[%d].current_range", i), "%v", err)
				continue
			}
			current[i] = &s
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	// Kept: current ranges overlapping no range kept before, narrowest first.
	order := make([]int, 0, len(current))
	for i, c := range current {
		if c != nil {
			order = append(order, i)
		}
	}
	sort.SliceStable(order, func(a, b int) bool {
		return current[order[a]].hi-current[order[a]].lo < current[order[b]].hi-current[order[b]].lo
	})
	planned := make([]*span, len(current))
	var taken []span
	for _, i := range order {
		if c := *current[i]; !slices.ContainsFunc(taken, func(t span) bool { return c.lo <= t.hi && t.lo <= c.hi }) {
			planned[i] = current[i]
			taken = append(taken, *current[i])
		}
	}
	next := first
	for i := range planned {
		if planned[i] != nil {
			continue
		}
		s := span{next, next + per - 1}
		for moved := true; moved && s.hi <= maxPort; {
			moved = false
			for _, t := range taken { // past every range it would touch
				if s.lo <= t.hi && t.lo <= s.hi {
					s, moved = span{t.hi + 1, t.hi + per}, true
				}
			}
		}
		if s.hi > maxPort {
			return nil, apierr.InvalidArgument("ports_per_node", "%d ports for each of %d nodes from port %d, around the ranges kept, end past 65535: give fewer ports per node or a lower first_port", per, len(planned), first)
		}
		planned[i] = &s
		taken = append(taken, s)
		next = s.hi + 1
	}
	resp := &netbridgev1.PlanConsolePortsResponse{}
	for i, n := range req.GetNodes() {
		resp.Ranges = append(resp.Ranges, &netbridgev1.ConsoleRange{
			Cloud: n.GetCloud(), Host: n.GetHost(), PortRange: planned[i].String(), Changed: current[i] == nil || *current[i] != *planned[i],
		})
	}
	for i := range req.GetNodes() {
		for j := i + 1; j < len(req.GetNodes()); j++ {
			a, b := current[i], current[j]
			if a == nil || b == nil || a.hi < b.lo || b.hi < a.lo {
				continue
			}
			o := span{max(a.lo, b.lo), min(a.hi, b.hi)}
			ni, nj := req.GetNodes()[i], req.GetNodes()[j]
			resp.Overlaps = append(resp.Overlaps, &netbridgev1.ConsoleOverlap{
				First: ni.GetCloud() + "/" + ni.GetHost(), Second: nj.GetCloud() + "/" + nj.GetHost(), Ports: o.String(),
			})
		}
	}
	return resp, nil
}
