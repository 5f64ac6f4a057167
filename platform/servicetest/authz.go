package servicetest

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/hikkoshi/hikkoshi/platform/authz"
)

// Method is one RPC of a running service, as its reflection describes it.
type Method struct {
	FullName        string // "/hikkoshi.converter.v1.ConverterService/CreateJob"
	ServerStreaming bool
	ClientStreaming bool
}

// Methods lists every method of the services conn's server registers (gRPC's own
// excepted), through its server reflection: a method added to a service is listed
// without anyone listing it here.
func Methods(tb testing.TB, conn *grpc.ClientConn) []Method {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), 30*time.Second)
	defer cancel()
	st, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		tb.Fatalf("reflection: %v", err)
	}
	ask := func(req *reflectionpb.ServerReflectionRequest) *reflectionpb.ServerReflectionResponse {
		if err := st.Send(req); err != nil {
			tb.Fatalf("reflection: %v", err)
		}
		resp, err := st.Recv()
		if err != nil {
			tb.Fatalf("reflection: %v", err)
		}
		return resp
	}
	var out []Method
	list := ask(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
	for _, svc := range list.GetListServicesResponse().GetService() {
		if strings.HasPrefix(svc.GetName(), "grpc.") {
			continue
		}
		files := ask(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: svc.GetName()}})
		for _, raw := range files.GetFileDescriptorResponse().GetFileDescriptorProto() {
			fd := &descriptorpb.FileDescriptorProto{}
			if err := proto.Unmarshal(raw, fd); err != nil {
				tb.Fatal(err)
			}
			for _, sd := range fd.GetService() {
				if fd.GetPackage()+"."+sd.GetName() != svc.GetName() {
					continue
				}
				for _, m := range sd.GetMethod() {
					out = append(out, Method{FullName: "/" + svc.GetName() + "/" + m.GetName(), ServerStreaming: m.GetServerStreaming(), ClientStreaming: m.GetClientStreaming()})
				}
			}
		}
	}
	_ = st.CloseSend()
	if len(out) == 0 {
		tb.Fatal("reflection lists no method")
	}
	return out
}

// Call calls m on conn with an empty request and returns its status.
func Call(ctx context.Context, conn *grpc.ClientConn, m Method) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if !m.ServerStreaming && !m.ClientStreaming {
		return conn.Invoke(ctx, m.FullName, &emptypb.Empty{}, &emptypb.Empty{})
	}
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: m.ServerStreaming, ClientStreams: m.ClientStreaming}, m.FullName)
	if err != nil {
		return err
	}
	if err := s.SendMsg(&emptypb.Empty{}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	_ = s.CloseSend()
	return s.RecvMsg(&emptypb.Empty{})
}

// CheckAuthorization is the contract every service keeps on a mutual-TLS
// listener with an authorization policy, run against its real binary bin (with
// extra flags): a client without a certificate, or without TLS, is refused at the
// handshake; the viewer identity is PERMISSION_DENIED on every mutating method —
// all of them, from the server's reflection — and not on the reading ones; the
// operator passes the authorization of the mutating methods but the admin ones;
// the admin passes all; each refused or passed mutating call has an audit line.
func CheckAuthorization(t *testing.T, bin, svc string, extra ...string) {
	t.Helper()
	e := NewEnv(t)
	p := e.Start(t, bin, svc, extra...)
	ctx := t.Context()

	health := func(conn *grpc.ClientConn) error {
		_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	if err := health(e.DialAs(t, p.Addr, "")); status.Code(err) != codes.Unavailable {
		t.Fatalf("TLS without a client certificate: %v, want refused at the handshake (UNAVAILABLE)", err)
	}
	plain, err := grpc.NewClient(p.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = plain.Close() }()
	if err := health(plain); status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext: %v, want refused at the handshake (UNAVAILABLE)", err)
	}
	if err := health(e.DialAs(t, p.Addr, "viewer")); err != nil {
		t.Fatalf("the viewer's health check: %v", err)
	}

	viewer, operator, admin := e.DialAs(t, p.Addr, "viewer"), e.DialAs(t, p.Addr, "operator"), e.DialAs(t, p.Addr, "admin")
	methods := Methods(t, p.Conn)
	mutating := 0
	for _, m := range methods {
		need := authz.DefaultRequired(m.FullName)
		err := Call(ctx, viewer, m)
		switch {
		case need > authz.Viewer && status.Code(err) != codes.PermissionDenied:
			t.Errorf("viewer %s: %v, want PERMISSION_DENIED", m.FullName, err)
		case need > authz.Viewer && !strings.Contains(status.Convert(err).Message(), need.String()):
			t.Errorf("viewer %s: %q does not name the role it needs (%s)", m.FullName, status.Convert(err).Message(), need)
		case need == authz.Viewer && status.Code(err) == codes.PermissionDenied:
			t.Errorf("viewer %s (a reading method): %v", m.FullName, err)
		}
		if need == authz.Viewer {
			continue
		}
		mutating++
		err = Call(ctx, operator, m)
		if (need == authz.Admin) != (status.Code(err) == codes.PermissionDenied) {
			t.Errorf("operator %s (needs %s): %v", m.FullName, need, err)
		}
		if err := Call(ctx, admin, m); status.Code(err) == codes.PermissionDenied || status.Code(err) == codes.Unauthenticated {
			t.Errorf("admin %s: %v", m.FullName, err)
		}
	}
	if mutating == 0 {
		t.Fatalf("%s has no mutating method among %d", svc, len(methods))
	}
	// Every mutating call above has its audit line: who, which method, the outcome.
	deadline := time.Now().Add(5 * time.Second)
	for {
		logs, missing := p.Logs(), ""
		for _, m := range methods {
			if authz.DefaultRequired(m.FullName) == authz.Viewer {
				continue
			}
			for _, who := range []string{`"identity":"viewer"`, `"identity":"admin"`} {
				if !auditLine(logs, who, m.FullName) {
					missing = who + " " + m.FullName
				}
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit line of %s in the logs:\n%s", missing, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%s: %d methods, %d mutating: each refused to the viewer, audited", svc, len(methods), mutating)
}

func auditLine(logs, who, method string) bool {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, `"msg":"audit"`) && strings.Contains(l, who) && strings.Contains(l, `"method":"`+method+`"`) {
			return true
		}
	}
	return false
}
