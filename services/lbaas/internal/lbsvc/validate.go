package lbsvc

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"

	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/services/lbaas/octavia"
)

// Page sizes of ListLoadBalancers.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// Octavia's IDs are UUIDs.
var idRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// parseName returns the Octavia ID of "loadBalancers/{id}".
func parseName(name string) (string, bool) {
	id, ok := strings.CutPrefix(name, namePrefix)
	return id, ok && idRE.MatchString(id)
}

func checkName(v *apierr.Violations, path, name string) {
	if _, ok := parseName(name); !ok {
		v.Add(path, "%q is not a load balancer name: use loadBalancers/{id} with Octavia's ID (a UUID)", name)
	}
}

// ValidateCreateLoadBalancer checks a create request without calling Octavia. Fields
// the spec gets wrong are INVALID_ARGUMENT; what Octavia's rules forbid (a UDP
// listener with a PROXY pool) is FAILED_PRECONDITION. The API version is checked
// when the request is served.
func ValidateCreateLoadBalancer(r *lbaasv1.CreateLoadBalancerRequest) error {
	var v apierr.Violations
	v.RequestID("request_id", r.GetRequestId())
	lb := r.GetLoadBalancer()
	if lb == nil {
		v.Add("load_balancer", "required: the load balancer to build")
		return v.Err()
	}
	if len(lb.GetListeners()) == 0 {
		v.Add("load_balancer.listeners", "give at least one listener: a load balancer without one serves nothing")
	}
	for i, l := range lb.GetListeners() {
		if l.GetPool() == nil {
			v.Add(fmt.Sprintf("load_balancer.listeners[%d].pool", i), "required: the pool the listener sends connections to")
		}
	}
	err := octavia.Validate(specOf(lb))
	var invalid *octavia.InvalidSpecError
	if errors.As(err, &invalid) || !v.Empty() {
		if invalid != nil {
			for _, x := range invalid.Violations {
				v.Add(fieldPath(x.Field), "%s", x.Description)
			}
		}
		return v.Err()
	}
	return toStatus("create load balancer", err)
}

// ValidateGetLoadBalancer checks a get request.
func ValidateGetLoadBalancer(r *lbaasv1.GetLoadBalancerRequest) error {
	var v apierr.Violations
	checkName(&v, "name", r.GetName())
	return v.Err()
}

// ValidateListLoadBalancers checks a list request.
func ValidateListLoadBalancers(r *lbaasv1.ListLoadBalancersRequest) error {
	var v apierr.Violations
	if r.GetPageSize() < 0 {
		v.Add("page_size", "%d: use 0 (the default, %d) or more", r.GetPageSize(), DefaultPageSize)
	}
	for i, t := range r.GetTags() {
		if t == "" || len(t) > 255 || strings.Contains(t, ",") {
			v.Add(fmt.Sprintf("tags[%d]", i), "a tag is 1 to 255 characters without ','")
		}
	}
	return v.Err()
}

// ValidateUpdateLoadBalancer checks an update request's shape; whether the pools and
// members exist is checked when it is served.
func ValidateUpdateLoadBalancer(r *lbaasv1.UpdateLoadBalancerRequest) error {
	var v apierr.Violations
	checkName(&v, "name", r.GetName())
	if len(r.GetMemberChanges()) == 0 {
		v.Add("member_changes", "give at least one change (add, remove, drain or set_weight)")
	}
	for i, c := range r.GetMemberChanges() {
		f := fmt.Sprintf("member_changes[%d]", i)
		switch ch := c.GetChange().(type) {
		case *lbaasv1.MemberChange_Add:
			for _, x := range octavia.MemberViolations(f+".add", memberSpecOf(ch.Add)) {
				v.Add(x.Field, "%s", x.Description)
			}
		case *lbaasv1.MemberChange_Remove:
			checkRef(&v, f+".remove", ch.Remove)
		case *lbaasv1.MemberChange_Drain:
			checkRef(&v, f+".drain", ch.Drain)
		case *lbaasv1.MemberChange_SetWeight:
			checkRef(&v, f+".set_weight.member", ch.SetWeight.GetMember())
			if w := ch.SetWeight.GetWeight(); w < 0 || w > 256 {
				v.Add(f+".set_weight.weight", "%d: use 0 (drained) to 256", w)
			}
		default:
			v.Add(f, "empty: set one of add, remove, drain, set_weight")
		}
	}
	return v.Err()
}

func checkRef(v *apierr.Violations, path string, r *lbaasv1.MemberRef) {
	switch {
	case r == nil:
		v.Add(path, "required: the member's id, or its address and port")
	case r.GetId() != "":
		if !idRE.MatchString(r.GetId()) {
			v.Add(path+".id", "%q is not a member ID (a UUID)", r.GetId())
		}
	default:
		if net.ParseIP(r.GetAddress()) == nil {
			v.Add(path+".address", "%q is not an IP address: give the member's id, or its address and port", r.GetAddress())
		}
		if r.GetPort() < 1 || r.GetPort() > 65535 {
			v.Add(path+".port", "%d is not a port: use 1 to 65535", r.GetPort())
		}
	}
}

// ValidateDeleteLoadBalancer checks a delete request.
func ValidateDeleteLoadBalancer(r *lbaasv1.DeleteLoadBalancerRequest) error {
	var v apierr.Violations
	checkName(&v, "name", r.GetName())
	return v.Err()
}

// ValidateWatchLoadBalancer checks a watch request.
func ValidateWatchLoadBalancer(r *lbaasv1.WatchLoadBalancerRequest) error {
	var v apierr.Violations
	checkName(&v, "name", r.GetName())
	return v.Err()
}
