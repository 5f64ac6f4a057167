package service

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/hikkoshi/hikkoshi/platform/apierr"
)

// infrastructure reports whether a method belongs to gRPC itself (health,
// reflection) rather than to the service.
func infrastructure(fullMethod string) bool { return strings.HasPrefix(fullMethod, "/grpc.") }

// gate refuses the service's own methods while the instance is not registered.
type gate struct{ open atomic.Bool }

func (g *gate) check(fullMethod string) error {
	if g.open.Load() || infrastructure(fullMethod) {
		return nil
	}
	return apierr.New(codes.Unavailable, "NOT_REGISTERED",
		"this instance is not registered in etcd (starting, or its lease was lost); retry shortly or use another instance")
}

func (g *gate) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := g.check(info.FullMethod); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (g *gate) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := g.check(info.FullMethod); err != nil {
		return err
	}
	return h(srv, ss)
}

// validators maps a request message type to the function that validates it.
type validators struct {
	mu sync.RWMutex
	m  map[protoreflect.FullName]func(proto.Message) error
}

// AddValidator makes rt validate every request of type T with f before the handler
// sees it. f returns nil or an INVALID_ARGUMENT error from package apierr.
func AddValidator[T proto.Message](rt *Runtime, f func(T) error) {
	var zero T
	name := zero.ProtoReflect().Descriptor().FullName()
	rt.validators.mu.Lock()
	defer rt.validators.mu.Unlock()
	if rt.validators.m == nil {
		rt.validators.m = map[protoreflect.FullName]func(proto.Message) error{}
	}
	rt.validators.m[name] = func(m proto.Message) error { return f(m.(T)) }
}

func (v *validators) validate(req any) error {
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	v.mu.RLock()
	f := v.m[m.ProtoReflect().Descriptor().FullName()]
	v.mu.RUnlock()
	if f == nil {
		return nil
	}
	return f(m)
}

func (v *validators) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := v.validate(req); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

// validatingStream validates every message a streaming handler receives.
type validatingStream struct {
	grpc.ServerStream
	v *validators
}

func (s *validatingStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.v.validate(m)
}

func (v *validators) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return h(srv, &validatingStream{ServerStream: ss, v: v})
}

// recoveryOption turns a panic into INTERNAL, logging the stack (never the request).
func recoveryOption(log *slog.Logger, panics func()) recovery.Option {
	return recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		panics()
		log.ErrorContext(ctx, "panic in handler", "panic", p, "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error: the service hit a bug and logged it; check the result before retrying")
	})
}

// contextStatus turns a handler's bare context error into its status: a client that
// cancels gets CANCELLED (gRPC would say UNKNOWN), a deadline DEADLINE_EXCEEDED.
func contextStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return err
}

func contextStatusUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	return resp, contextStatus(err)
}

func contextStatusStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return contextStatus(h(srv, ss))
}

// codeToLevel is the log level of a finished call: a client's own cancel is routine
// (debug); the rest as go-grpc-middleware's defaults.
func codeToLevel(c codes.Code) logging.Level {
	if c == codes.Canceled {
		return logging.LevelDebug
	}
	return logging.DefaultServerCodeToLevel(c)
}
