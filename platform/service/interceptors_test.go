package service

import (
	"context"
	"fmt"
	"testing"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hikkoshi/hikkoshi/platform/apierr"
)

// TestGateRefusesWhileUnregistered checks that an unregistered instance refuses its
// service's methods but still answers health checks and reflection.
func TestGateRefusesWhileUnregistered(t *testing.T) {
	g := &gate{}
	called := false
	h := func(context.Context, any) (any, error) { called = true; return "ok", nil }
	tests := []struct {
		method string
		open   bool
		want   codes.Code
	}{
		{"/hikkoshi.inventory.v1.InventoryService/GetWorkload", false, codes.Unavailable},
		{"/grpc.health.v1.Health/Check", false, codes.OK},
		{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", false, codes.OK},
		{"/hikkoshi.inventory.v1.InventoryService/GetWorkload", true, codes.OK},
	}
	for _, tt := range tests {
		called = false
		g.open.Store(tt.open)
		_, err := g.unary(t.Context(), nil, &grpc.UnaryServerInfo{FullMethod: tt.method}, h)
		if status.Code(err) != tt.want || called != (tt.want == codes.OK) {
			t.Errorf("%s (registered=%v): code %s, handler called %v; want %s", tt.method, tt.open, status.Code(err), called, tt.want)
		}
		if err != nil && apierr.Reason(err) != "NOT_REGISTERED" {
			t.Errorf("reason %q, want NOT_REGISTERED", apierr.Reason(err))
		}
	}
}

// TestContextStatus: a handler's bare context error reaches the client as its own
// code (a cancelled WatchJob was UNKNOWN, logged at ERROR), and is logged at debug.
func TestContextStatus(t *testing.T) {
	if got := status.Code(contextStatus(fmt.Errorf("watch: %w", context.Canceled))); got != codes.Canceled {
		t.Fatalf("cancel: %s", got)
	}
	if got := status.Code(contextStatus(context.DeadlineExceeded)); got != codes.DeadlineExceeded {
		t.Fatalf("deadline: %s", got)
	}
	if got := status.Code(contextStatus(status.Error(codes.NotFound, "x"))); got != codes.NotFound {
		t.Fatalf("a status: %s", got)
	}
	if codeToLevel(codes.Canceled) != logging.LevelDebug || codeToLevel(codes.Internal) != logging.LevelError {
		t.Fatal("levels")
	}
}
