package registry

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
)

// watchStream is a server stream that records events and ends the call after a few.
type watchStream struct {
	grpc.ServerStream
	ctx    context.Context
	cancel context.CancelFunc
	n      int
}

func (s *watchStream) Context() context.Context { return s.ctx }

func (s *watchStream) Send(*inventoryv1.WatchWorkloadsResponse) error {
	s.n++
	if s.n >= 3 {
		s.cancel()
	}
	return nil
}

// expected are the codes a handler may answer a well-formed but arbitrary request
// with. UNKNOWN or INTERNAL would mean an unmapped error or a bug.
var expected = map[codes.Code]bool{
	codes.OK: true, codes.InvalidArgument: true, codes.NotFound: true, codes.AlreadyExists: true,
	codes.Aborted: true, codes.FailedPrecondition: true, codes.OutOfRange: true,
	codes.DeadlineExceeded: true, codes.Canceled: true,
}

// FuzzRequests feeds arbitrary bytes, decoded as each request message, through the
// validation and the handlers against a real etcd. No input may panic, and every
// error must carry an expected code and a message.
func FuzzRequests(f *testing.F) {
	store := newTestStore(f, WithProgressInterval(20*time.Millisecond))
	srv, err := NewServer(store, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		f.Fatal(err)
	}
	seed := func(kind uint8, m proto.Message) {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(kind, b)
	}
	seed(0, &inventoryv1.CreateWorkloadRequest{WorkloadId: "a", RequestId: "r1", Workload: testWorkload("web", 1)})
	seed(0, &inventoryv1.CreateWorkloadRequest{Workload: &inventoryv1.Workload{Source: &inventoryv1.Workload_Physical{
		Physical: &inventoryv1.PhysicalSource{Hostname: "h", Addresses: []string{"::1"}}}}})
	seed(1, &inventoryv1.GetWorkloadRequest{Name: "workloads/a"})
	seed(2, &inventoryv1.ListWorkloadsRequest{PageSize: 2, Role: "web", Labels: map[string]string{"a": "b"}})
	seed(3, &inventoryv1.UpdateWorkloadRequest{Workload: &inventoryv1.Workload{Name: "workloads/a", State: inventoryv1.WorkloadState_WORKLOAD_STATE_PLANNED, Wave: 2},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"state", "wave"}}})
	seed(4, &inventoryv1.DeleteWorkloadRequest{Name: "workloads/a", Etag: "9"})
	seed(5, &inventoryv1.WatchWorkloadsRequest{IncludeExisting: true})
	seed(5, &inventoryv1.WatchWorkloadsRequest{StartRevision: 1})
	seed(6, &inventoryv1.ListWavesRequest{})

	watch := func(ctx context.Context, req *inventoryv1.WatchWorkloadsRequest) error {
		wctx, wcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer wcancel()
		return srv.WatchWorkloads(req, &watchStream{ctx: wctx, cancel: wcancel})
	}
	noValidation := func(*inventoryv1.ListWavesRequest) error { return nil }
	cases := []func(ctx context.Context, data []byte) error{
		fuzzCase(ValidateCreateWorkload, unary(srv.CreateWorkload)),
		fuzzCase(ValidateGetWorkload, unary(srv.GetWorkload)),
		fuzzCase(ValidateListWorkloads, unary(srv.ListWorkloads)),
		fuzzCase(ValidateUpdateWorkload, unary(srv.UpdateWorkload)),
		fuzzCase(ValidateDeleteWorkload, unary(srv.DeleteWorkload)),
		fuzzCase(ValidateWatchWorkloads, watch),
		fuzzCase(noValidation, unary(srv.ListWaves)),
	}

	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err := cases[int(kind)%len(cases)](ctx, data)
		if err == nil {
			return
		}
		st, ok := status.FromError(err)
		if !ok {
			t.Fatalf("kind %d: error without a gRPC status: %v", int(kind)%len(cases), err)
		}
		if !expected[st.Code()] || st.Message() == "" {
			t.Fatalf("kind %d: unexpected %s: %q", int(kind)%len(cases), st.Code(), st.Message())
		}
	})
}

// fuzzCase decodes data as a request of type T (skipping what does not decode) and
// runs it through validation and, when valid, the handler, as the server would.
func fuzzCase[T proto.Message](validate func(T) error, call func(context.Context, T) error) func(context.Context, []byte) error {
	return func(ctx context.Context, data []byte) error {
		var zero T
		req := zero.ProtoReflect().New().Interface().(T)
		if proto.Unmarshal(data, req) != nil {
			return nil
		}
		if err := validate(req); err != nil {
			return err
		}
		return call(ctx, req)
	}
}

// unary drops a handler's response.
func unary[Req, Resp any](h func(context.Context, Req) (Resp, error)) func(context.Context, Req) error {
	return func(ctx context.Context, r Req) error {
		_, err := h(ctx, r)
		return err
	}
}
