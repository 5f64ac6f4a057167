// Package console plans nova-compute's [serial_console] port_range per node across
// both clouds, so that no two nodes hand out the same console port: a live
// migration between nodes whose ranges overlap fails when the port the instance
// holds is taken on the target.
package console

import (
	"fmt"
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

func (s span) String() string { return fmt.Sprintf("%d:%d", s.lo, s.hi) }

// Plan gives each node a range of portsPerNode ports from firstPort on, in the
// order given, and lists the pairs of nodes whose current ranges overlap. Bad input
// is INVALID_ARGUMENT naming the field.
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
		v.Add("nodes", "required: the compute nodes of both clouds")
	}
	if end := first + per*len(req.GetNodes()) - 1; first >= 1 && per >= 1 && end > maxPort {
		v.Add("ports_per_node", "%d nodes × %d ports from %d end at %d, past 65535: give fewer ports per node or a lower first_port", len(req.GetNodes()), per, first, end)
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
	resp := &netbridgev1.PlanConsolePortsResponse{}
	for i, n := range req.GetNodes() {
		s := span{first + i*per, first + (i+1)*per - 1}
		resp.Ranges = append(resp.Ranges, &netbridgev1.ConsoleRange{
			Cloud: n.GetCloud(), Host: n.GetHost(), PortRange: s.String(), Changed: current[i] == nil || *current[i] != s,
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
