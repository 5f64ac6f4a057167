// Package authz authorizes each gRPC call by the role of its caller's identity (the
// common name of its verified client certificate, package mtls) and writes an
// audit line for every call that changes something.
//
// Roles, each allowed what the one before it is:
//   - viewer: Get*, List*, Watch* and Plan* (a plan computes, it changes nothing),
//     and gRPC's own health and reflection;
//   - operator: every other method but the admin ones (create, update, cancel,
//     delete workloads, wave runs, conversions, load balancers);
//   - admin: decommissions, bridge apply/rollback/delete, address moves, load
//     balancer deletes;
//   - service: admin's methods, for the services' calls to each other.
//
// One more role stands apart: collector (hikkoshi-collect on a physical server)
// may only create, read and update workloads. A policy file names each identity's
// roles and may move a method to another role.
package authz

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"sigs.k8s.io/yaml"

	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/mtls"
)

// Role is what an identity may do.
type Role int

// The roles, weakest first.
const (
	None Role = iota
	Viewer
	Operator
	Admin
	Service
)

var roleNames = map[string]Role{"viewer": Viewer, "operator": Operator, "admin": Admin, "service": Service}

func (r Role) String() string {
	for n, v := range roleNames {
		if v == r {
			return n
		}
	}
	return "none"
}

// adminMethods are the methods that need the admin role by default.
var adminMethods = []string{
	"DecommissionSource", "DecommissionRun", "ApplyBridge", "RollbackBridge", "DeleteBridge",
	"MoveAddress", "MoveAddressBack", "DeleteLoadBalancer",
}

// collectorMethods are all the collector role may call.
var collectorMethods = []string{
	"/hikkoshi.inventory.v1.InventoryService/CreateWorkload",
	"/hikkoshi.inventory.v1.InventoryService/UpdateWorkload",
	"/hikkoshi.inventory.v1.InventoryService/GetWorkload",
}

// Policy maps identities to roles.
type Policy struct {
	// Identities are each identity's roles ("viewer", "operator", "admin",
	// "service", "collector").
	Identities map[string][]string `json:"identities"`
	// Methods move a method ("/hikkoshi.converter.v1.ConverterService/CancelJob")
	// to another role than its default.
	Methods map[string]string `json:"methods"`
}

// Load reads a policy file (YAML).
func Load(path string) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("authz: policy: %w", err)
	}
	p := &Policy{}
	if err := yaml.UnmarshalStrict(b, p); err != nil {
		return nil, fmt.Errorf("authz: policy %s: %w", path, err)
	}
	for id, roles := range p.Identities {
		for _, r := range roles {
			if _, ok := roleNames[r]; !ok && r != "collector" {
				return nil, fmt.Errorf("authz: policy %s: identity %q has role %q: use viewer, operator, admin, service or collector", path, id, r)
			}
		}
	}
	for m, r := range p.Methods {
		if _, ok := roleNames[r]; !ok || !strings.HasPrefix(m, "/") {
			return nil, fmt.Errorf("authz: policy %s: method %q → %q: give /package.Service/Method and viewer, operator, admin or service", path, m, r)
		}
	}
	return p, nil
}

// Required is the role a method needs.
func (p *Policy) Required(fullMethod string) Role {
	if r, ok := p.Methods[fullMethod]; ok {
		return roleNames[r]
	}
	return DefaultRequired(fullMethod)
}

// DefaultRequired is the role a method needs without a policy's override.
func DefaultRequired(fullMethod string) Role {
	if strings.HasPrefix(fullMethod, "/grpc.") {
		return Viewer
	}
	name := fullMethod[strings.LastIndex(fullMethod, "/")+1:]
	switch {
	case slices.Contains(adminMethods, name):
		return Admin
	case strings.HasPrefix(name, "Get"), strings.HasPrefix(name, "List"), strings.HasPrefix(name, "Watch"), strings.HasPrefix(name, "Plan"):
		return Viewer
	}
	return Operator
}

// allows reports whether identity may call fullMethod, and its strongest role.
func (p *Policy) allows(identity, fullMethod string) (bool, Role, Role) {
	need := p.Required(fullMethod)
	have := None
	for _, r := range p.Identities[identity] {
		if r == "collector" {
			if slices.Contains(collectorMethods, fullMethod) || strings.HasPrefix(fullMethod, "/grpc.") {
				return true, need, need
			}
			continue
		}
		have = max(have, roleNames[r])
	}
	return have >= need, need, have
}

// Authorizer checks calls against a policy (nil: every call is allowed, as on a
// plaintext listener in development) and audits the mutating ones.
type Authorizer struct {
	Policy *Policy
	Log    *slog.Logger
}

func (a *Authorizer) check(ctx context.Context, method string) (string, error) {
	id, ok := mtls.Identity(ctx)
	if !ok {
		id = "anonymous"
	}
	if a.Policy == nil {
		return id, nil
	}
	if !ok {
		return id, apierr.New(codes.Unauthenticated, "NO_CLIENT_CERTIFICATE", "%s: the call came without a verified client certificate", method)
	}
	if yes, need, have := a.Policy.allows(id, method); !yes {
		return id, apierr.New(codes.PermissionDenied, "ROLE_NEEDED", "%s needs the %s role; %q has %s", method, need, id, rolesOf(a.Policy, id, have))
	}
	return id, nil
}

func rolesOf(p *Policy, id string, have Role) string {
	if rs := p.Identities[id]; len(rs) > 0 {
		return "the roles " + strings.Join(rs, ", ")
	}
	if have == None {
		return "no role (it is not in the policy)"
	}
	return have.String()
}

func mutating(method string) bool { return DefaultRequired(method) > Viewer }

// audit writes the line of a mutating call: who, what, on which object, the
// outcome — never the request's other fields.
func (a *Authorizer) audit(id, method string, req any, err error) {
	if !mutating(method) || a.Log == nil {
		return
	}
	obj := ""
	if m, ok := req.(proto.Message); ok {
		obj = Object(m)
	}
	a.Log.Info("audit", "identity", id, "method", method, "object", obj, "code", status.Code(err).String())
}

// Object names what a request acts on: its name (or an ID it creates), else its
// first message field's name.
func Object(m proto.Message) string {
	r := m.ProtoReflect()
	fields := r.Descriptor().Fields()
	for _, n := range []protoreflect.Name{"name", "workload_id", "bridge_id", "bridge", "workload"} {
		if f := fields.ByName(n); f != nil && f.Kind() == protoreflect.StringKind && !f.IsList() {
			if s := r.Get(f).String(); s != "" {
				return clip(s)
			}
		}
	}
	for i := range fields.Len() {
		f := fields.Get(i)
		if f.Kind() != protoreflect.MessageKind || f.IsList() || f.IsMap() || !r.Has(f) {
			continue
		}
		sub := r.Get(f).Message()
		if nf := sub.Descriptor().Fields().ByName("name"); nf != nil && nf.Kind() == protoreflect.StringKind && !nf.IsList() {
			if s := sub.Get(nf).String(); s != "" {
				return clip(s)
			}
		}
	}
	return ""
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// Unary authorizes and audits unary calls.
func (a *Authorizer) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	id, err := a.check(ctx, info.FullMethod)
	if err != nil {
		a.audit(id, info.FullMethod, req, err)
		return nil, err
	}
	resp, err := h(ctx, req)
	a.audit(id, info.FullMethod, req, err)
	return resp, err
}

// Stream authorizes streaming calls (the services' streams are watches: nothing
// to audit).
func (a *Authorizer) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if _, err := a.check(ss.Context(), info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}
