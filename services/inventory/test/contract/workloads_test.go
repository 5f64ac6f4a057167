package contract

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
)

const (
	discovered = inventoryv1.WorkloadState_WORKLOAD_STATE_DISCOVERED
	planned    = inventoryv1.WorkloadState_WORKLOAD_STATE_PLANNED
	converting = inventoryv1.WorkloadState_WORKLOAD_STATE_CONVERTING
	cutOver    = inventoryv1.WorkloadState_WORKLOAD_STATE_CUT_OVER
	done       = inventoryv1.WorkloadState_WORKLOAD_STATE_DONE
	failed     = inventoryv1.WorkloadState_WORKLOAD_STATE_FAILED
)

func mask(paths ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: paths} }

func TestReflectionAndHealth(t *testing.T) {
	p := newEnv(t).start(t)
	ctx := t.Context()

	stream, err := reflectionpb.NewServerReflectionClient(p.Conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"hikkoshi.inventory.v1.InventoryService", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}

	hc := healthpb.NewHealthClient(p.Conn)
	for _, svc := range []string{"", "hikkoshi.inventory.v1.InventoryService"} {
		h, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health(%q) = %v, %v; want SERVING", svc, h.GetStatus(), err)
		}
	}
}

func TestCreateGetDelete(t *testing.T) {
	p := newEnv(t).start(t)
	c, ctx := p.client, t.Context()

	created, err := c.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{
		WorkloadId: "web-1",
		Workload:   instanceWorkload("web", 0, map[string]string{"team": "shop"}),
	})
	if err != nil {
		t.Fatalf("CreateWorkload: %v", err)
	}
	w := created.GetWorkload()
	if w.GetName() != "workloads/web-1" || w.GetState() != discovered ||
		w.GetKind() != inventoryv1.WorkloadKind_WORKLOAD_KIND_INSTANCE || w.GetEtag() == "" ||
		w.GetCreateTime() == nil || w.GetInstance().GetServerId() != "srv-web" {
		t.Fatalf("created workload = %v", w)
	}

	got, err := c.GetWorkload(ctx, &inventoryv1.GetWorkloadRequest{Name: "workloads/web-1"})
	if err != nil {
		t.Fatalf("GetWorkload: %v", err)
	}
	if !proto.Equal(got.GetWorkload(), w) {
		t.Fatalf("GetWorkload = %v, want %v", got.GetWorkload(), w)
	}

	_, err = c.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{WorkloadId: "web-1", Workload: instanceWorkload("web", 0, nil)})
	wantCode(t, err, codes.AlreadyExists)

	// A server-chosen ID.
	phys, err := c.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{Workload: &inventoryv1.Workload{
		Source: &inventoryv1.Workload_Physical{Physical: &inventoryv1.PhysicalSource{
			Hostname: "db01.example.net", Addresses: []string{"10.0.0.5", "fd00::5"}, OsRelease: "CentOS 6.5",
		}},
		Role: "db", Stateful: true,
	}})
	if err != nil {
		t.Fatalf("CreateWorkload(physical): %v", err)
	}
	if phys.GetWorkload().GetKind() != inventoryv1.WorkloadKind_WORKLOAD_KIND_PHYSICAL || phys.GetWorkload().GetName() == "" {
		t.Fatalf("physical workload = %v", phys.GetWorkload())
	}

	// Delete with a stale etag, then for real, then again.
	_, err = c.DeleteWorkload(ctx, &inventoryv1.DeleteWorkloadRequest{Name: "workloads/web-1", Etag: "1"})
	wantCode(t, err, codes.Aborted)
	if _, err := c.DeleteWorkload(ctx, &inventoryv1.DeleteWorkloadRequest{Name: "workloads/web-1", Etag: w.GetEtag()}); err != nil {
		t.Fatalf("DeleteWorkload: %v", err)
	}
	_, err = c.GetWorkload(ctx, &inventoryv1.GetWorkloadRequest{Name: "workloads/web-1"})
	wantCode(t, err, codes.NotFound)
	_, err = c.DeleteWorkload(ctx, &inventoryv1.DeleteWorkloadRequest{Name: "workloads/web-1"})
	wantCode(t, err, codes.NotFound)
	if _, err := c.DeleteWorkload(ctx, &inventoryv1.DeleteWorkloadRequest{Name: phys.GetWorkload().GetName()}); err != nil {
		t.Fatalf("DeleteWorkload(no etag): %v", err)
	}
}

func TestCreateIdempotent(t *testing.T) {
	p := newEnv(t).start(t)
	c, ctx := p.client, t.Context()
	req := &inventoryv1.CreateWorkloadRequest{RequestId: "7f1c3a52-req", Workload: instanceWorkload("api", 1, nil)}

	first, err := c.CreateWorkload(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.CreateWorkload(ctx, req)
	if err != nil {
		t.Fatalf("repeat: %v", err)
	}
	if !proto.Equal(first.GetWorkload(), again.GetWorkload()) {
		t.Fatalf("repeat returned %v, want %v", again.GetWorkload(), first.GetWorkload())
	}
	list, err := c.ListWorkloads(ctx, &inventoryv1.ListWorkloadsRequest{})
	if err != nil || len(list.GetWorkloads()) != 1 {
		t.Fatalf("after two identical creates: %d workloads, %v; want 1", len(list.GetWorkloads()), err)
	}

	other := proto.CloneOf(req)
	other.Workload.Role = "db"
	_, err = c.CreateWorkload(ctx, other)
	wantCode(t, err, codes.InvalidArgument)
	if _, ok := apierr.FieldViolations(err)["request_id"]; !ok {
		t.Fatalf("reused request_id: violations %v, want request_id", apierr.FieldViolations(err))
	}
}

func TestInvalidArguments(t *testing.T) {
	p := newEnv(t).start(t)
	c, ctx := p.client, t.Context()
	valid := instanceWorkload("web", 0, nil)
	tests := []struct {
		name  string
		call  func() error
		field string
	}{
		{"bad workload_id", func() error {
			_, err := c.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{WorkloadId: "Web_1", Workload: valid})
			return err
		}, "workload_id"},
		{"no workload", func() error {
			_, err := c.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{})
			return err
		}, "workload"},
		{"no source", func() error {
			_, err := c.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{Workload: &inventoryv1.Workload{Role: "web"}})
			return err
		}, "workload.source"},
		{"no server id", func() error {
			w := proto.CloneOf(valid)
			w.GetInstance().ServerId = ""
			_, err := c.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{Workload: w})
			return err
		}, "workload.instance.server_id"},
		{"bad address", func() error {
			_, err := c.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{Workload: &inventoryv1.Workload{
				Source: &inventoryv1.Workload_Physical{Physical: &inventoryv1.PhysicalSource{Hostname: "h1", Addresses: []string{"10.0.0.300"}}},
			}})
			return err
		}, "workload.physical.addresses[0]"},
		{"kind disagrees", func() error {
			w := proto.CloneOf(valid)
			w.Kind = inventoryv1.WorkloadKind_WORKLOAD_KIND_PHYSICAL
			_, err := c.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{Workload: w})
			return err
		}, "workload.kind"},
		{"bad role", func() error {
			w := proto.CloneOf(valid)
			w.Role = "Web Server"
			_, err := c.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{Workload: w})
			return err
		}, "workload.role"},
		{"bad label", func() error {
			w := proto.CloneOf(valid)
			w.Labels = map[string]string{"Bad Key": "x"}
			_, err := c.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{Workload: w})
			return err
		}, `workload.labels["Bad Key"]`},
		{"created failed", func() error {
			w := proto.CloneOf(valid)
			w.State = failed
			_, err := c.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{Workload: w})
			return err
		}, "workload.state"},
		{"created planned without wave", func() error {
			w := proto.CloneOf(valid)
			w.State = planned
			_, err := c.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{Workload: w})
			return err
		}, "workload.wave"},
		{"negative wave", func() error {
			w := proto.CloneOf(valid)
			w.Wave = -1
			_, err := c.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{Workload: w})
			return err
		}, "workload.wave"},
		{"get bad name", func() error {
			_, err := c.GetWorkload(ctx, &inventoryv1.GetWorkloadRequest{Name: "servers/x"})
			return err
		}, "name"},
		{"get empty name", func() error {
			_, err := c.GetWorkload(ctx, &inventoryv1.GetWorkloadRequest{})
			return err
		}, "name"},
		{"list negative page size", func() error {
			_, err := c.ListWorkloads(ctx, &inventoryv1.ListWorkloadsRequest{PageSize: -1})
			return err
		}, "page_size"},
		{"list bad page token", func() error {
			_, err := c.ListWorkloads(ctx, &inventoryv1.ListWorkloadsRequest{PageToken: "garbage"})
			return err
		}, "page_token"},
		{"update without mask", func() error {
			_, err := c.UpdateWorkload(ctx, &inventoryv1.UpdateWorkloadRequest{Workload: &inventoryv1.Workload{Name: "workloads/web-1"}})
			return err
		}, "update_mask"},
		{"update source", func() error {
			_, err := c.UpdateWorkload(ctx, &inventoryv1.UpdateWorkloadRequest{
				Workload: &inventoryv1.Workload{Name: "workloads/web-1"}, UpdateMask: mask("role", "instance"),
			})
			return err
		}, "update_mask.paths[1]"},
		{"update unset state", func() error {
			_, err := c.UpdateWorkload(ctx, &inventoryv1.UpdateWorkloadRequest{
				Workload: &inventoryv1.Workload{Name: "workloads/web-1"}, UpdateMask: mask("state"),
			})
			return err
		}, "workload.state"},
		{"update bad etag", func() error {
			_, err := c.UpdateWorkload(ctx, &inventoryv1.UpdateWorkloadRequest{
				Workload: &inventoryv1.Workload{Name: "workloads/web-1", Etag: "W/abc"}, UpdateMask: mask("role"),
			})
			return err
		}, "workload.etag"},
		{"delete bad name", func() error {
			_, err := c.DeleteWorkload(ctx, &inventoryv1.DeleteWorkloadRequest{Name: "workloads/"})
			return err
		}, "name"},
		{"watch both", func() error {
			s, err := c.WatchWorkloads(ctx, &inventoryv1.WatchWorkloadsRequest{StartRevision: 5, IncludeExisting: true})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}, "include_existing"},
		{"watch negative", func() error {
			s, err := c.WatchWorkloads(ctx, &inventoryv1.WatchWorkloadsRequest{StartRevision: -3})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}, "start_revision"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			wantCode(t, err, codes.InvalidArgument)
			v := apierr.FieldViolations(err)
			if _, ok := v[tt.field]; !ok {
				t.Fatalf("field violations %v, want one for %s", v, tt.field)
			}
			if v[tt.field] == "" {
				t.Fatalf("violation of %s has no description", tt.field)
			}
		})
	}
}

func TestListFiltersAndPages(t *testing.T) {
	p := newEnv(t).start(t)
	c, ctx := p.client, t.Context()
	roles := []string{"web", "api", "db"}
	want := map[string][]string{} // filter name → IDs
	for i := range 30 {
		role := roles[i%3]
		wave := int32(i%2 + 1)
		labels := map[string]string{"env": "prod"}
		if i%5 == 0 {
			labels["team"] = "pay"
		}
		id := fmt.Sprintf("w-%02d", i)
		if _, err := c.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{WorkloadId: id, Workload: instanceWorkload(role, wave, labels)}); err != nil {
			t.Fatal(err)
		}
		want["all"] = append(want["all"], id)
		if role == "api" && wave == 2 {
			want["api-wave2"] = append(want["api-wave2"], id)
		}
		if labels["team"] == "pay" {
			want["team-pay"] = append(want["team-pay"], id)
		}
	}
	two := int32(2)
	zero := int32(0)
	filters := map[string]*inventoryv1.ListWorkloadsRequest{
		"all":       {},
		"api-wave2": {Role: "api", Wave: &two},
		"team-pay":  {Labels: map[string]string{"team": "pay"}},
		"wave0":     {Wave: &zero},
		"failed":    {State: failed},
	}
	for name, base := range filters {
		for _, size := range []int32{1, 4, 7, 0} {
			t.Run(fmt.Sprintf("%s/page%d", name, size), func(t *testing.T) {
				var got []string
				req := proto.CloneOf(base)
				req.PageSize = size
				for pages := 0; ; pages++ {
					if pages > 40 {
						t.Fatal("pagination does not end")
					}
					resp, err := c.ListWorkloads(ctx, req)
					if err != nil {
						t.Fatal(err)
					}
					if size > 0 && len(resp.GetWorkloads()) > int(size) {
						t.Fatalf("page of %d, page_size %d", len(resp.GetWorkloads()), size)
					}
					for _, w := range resp.GetWorkloads() {
						got = append(got, w.GetName()[len("workloads/"):])
					}
					if resp.GetNextPageToken() == "" {
						break
					}
					req.PageToken = resp.GetNextPageToken()
				}
				if !slices.Equal(got, want[name]) {
					t.Fatalf("listed %v, want %v", got, want[name])
				}
			})
		}
	}

	// A token is bound to its filters.
	first, err := c.ListWorkloads(ctx, &inventoryv1.ListWorkloadsRequest{PageSize: 2, Role: "web"})
	if err != nil || first.GetNextPageToken() == "" {
		t.Fatalf("first page: %v", err)
	}
	_, err = c.ListWorkloads(ctx, &inventoryv1.ListWorkloadsRequest{PageSize: 2, Role: "db", PageToken: first.GetNextPageToken()})
	wantCode(t, err, codes.InvalidArgument)
}

func TestUpdateAndStateMachine(t *testing.T) {
	p := newEnv(t).start(t)
	c, ctx := p.client, t.Context()
	mk := func(id string) *inventoryv1.Workload {
		t.Helper()
		r, err := c.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{WorkloadId: id, Workload: instanceWorkload("web", 0, nil)})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetWorkload()
	}
	set := func(w *inventoryv1.Workload, paths ...string) (*inventoryv1.Workload, error) {
		r, err := c.UpdateWorkload(ctx, &inventoryv1.UpdateWorkloadRequest{Workload: w, UpdateMask: mask(paths...)})
		return r.GetWorkload(), err
	}

	w := mk("walk")
	// Planning needs a wave.
	_, err := set(&inventoryv1.Workload{Name: w.GetName(), State: planned}, "state")
	wantCode(t, err, codes.FailedPrecondition)
	if apierr.Reason(err) != "WAVE_REQUIRED" {
		t.Fatalf("reason %q, want WAVE_REQUIRED", apierr.Reason(err))
	}
	w, err = set(&inventoryv1.Workload{Name: w.GetName(), State: planned, Wave: 1}, "state", "wave")
	if err != nil || w.GetState() != planned || w.GetWave() != 1 {
		t.Fatalf("plan: %v, %v", w, err)
	}
	// Skipping states is refused.
	_, err = set(&inventoryv1.Workload{Name: w.GetName(), State: done}, "state")
	wantCode(t, err, codes.FailedPrecondition)
	if apierr.Reason(err) != "INVALID_TRANSITION" {
		t.Fatalf("reason %q, want INVALID_TRANSITION", apierr.Reason(err))
	}
	for _, st := range []inventoryv1.WorkloadState{converting, cutOver, done} {
		w, err = set(&inventoryv1.Workload{Name: w.GetName(), State: st}, "state")
		if err != nil || w.GetState() != st {
			t.Fatalf("to %s: %v, %v", st, w.GetState(), err)
		}
	}
	// Done is final, but labels may still change.
	_, err = set(&inventoryv1.Workload{Name: w.GetName(), State: failed, StateReason: "x"}, "state", "state_reason")
	wantCode(t, err, codes.FailedPrecondition)
	_, err = set(&inventoryv1.Workload{Name: w.GetName(), Role: "api"}, "role")
	wantCode(t, err, codes.FailedPrecondition)
	if w, err = set(&inventoryv1.Workload{Name: w.GetName(), Labels: map[string]string{"moved": "yes"}}, "labels"); err != nil || w.GetLabels()["moved"] != "yes" {
		t.Fatalf("labels on done: %v, %v", w, err)
	}

	// Failing needs a reason; leaving failed clears it.
	f := mk("fails")
	_, err = set(&inventoryv1.Workload{Name: f.GetName(), State: failed}, "state")
	wantCode(t, err, codes.InvalidArgument)
	f, err = set(&inventoryv1.Workload{Name: f.GetName(), State: failed, StateReason: "snapshot timed out"}, "state", "state_reason")
	if err != nil || f.GetStateReason() != "snapshot timed out" || f.GetStateTime() == nil {
		t.Fatalf("fail: %v, %v", f, err)
	}
	f, err = set(&inventoryv1.Workload{Name: f.GetName(), State: planned, Wave: 2}, "state", "wave")
	if err != nil || f.GetStateReason() != "" {
		t.Fatalf("retry after failure: %v, %v", f, err)
	}
	// The wave is locked while converting.
	if f, err = set(&inventoryv1.Workload{Name: f.GetName(), State: converting}, "state"); err != nil {
		t.Fatal(err)
	}
	_, err = set(&inventoryv1.Workload{Name: f.GetName(), Wave: 3}, "wave")
	wantCode(t, err, codes.FailedPrecondition)
	// A converting workload cannot be deleted.
	_, err = c.DeleteWorkload(ctx, &inventoryv1.DeleteWorkloadRequest{Name: f.GetName()})
	wantCode(t, err, codes.FailedPrecondition)

	// A no-op update writes nothing and keeps the etag.
	n := mk("noop")
	same, err := set(&inventoryv1.Workload{Name: n.GetName(), Role: "web", Etag: n.GetEtag()}, "role")
	if err != nil || same.GetEtag() != n.GetEtag() {
		t.Fatalf("no-op update: etag %s → %s, %v", n.GetEtag(), same.GetEtag(), err)
	}
	// A stale etag is refused; no etag means last writer wins on fresh data.
	changed, err := set(&inventoryv1.Workload{Name: n.GetName(), Role: "api", Etag: n.GetEtag()}, "role")
	if err != nil || etagInt(t, changed.GetEtag()) <= etagInt(t, n.GetEtag()) {
		t.Fatalf("update: %v, %v", changed, err)
	}
	_, err = set(&inventoryv1.Workload{Name: n.GetName(), Role: "db", Etag: n.GetEtag()}, "role")
	wantCode(t, err, codes.Aborted)
	if _, err := set(&inventoryv1.Workload{Name: n.GetName(), Stateful: true}, "stateful"); err != nil {
		t.Fatal(err)
	}
	_, err = set(&inventoryv1.Workload{Name: "workloads/absent", Role: "db"}, "role")
	wantCode(t, err, codes.NotFound)
}

func TestConcurrentUpdatesOneWins(t *testing.T) {
	p := newEnv(t).start(t)
	c, ctx := p.client, t.Context()
	r, err := c.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{WorkloadId: "race", Workload: instanceWorkload("web", 1, nil)})
	if err != nil {
		t.Fatal(err)
	}
	w := r.GetWorkload()
	const rounds = 25
	for round := range rounds {
		var (
			wg      sync.WaitGroup
			codesMu sync.Mutex
			got     []codes.Code
			winner  *inventoryv1.Workload
		)
		start := make(chan struct{})
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				resp, err := c.UpdateWorkload(ctx, &inventoryv1.UpdateWorkloadRequest{
					Workload:   &inventoryv1.Workload{Name: w.GetName(), Etag: w.GetEtag(), Labels: map[string]string{"writer": fmt.Sprint(i), "round": fmt.Sprint(round)}},
					UpdateMask: mask("labels"),
				})
				codesMu.Lock()
				defer codesMu.Unlock()
				got = append(got, status.Code(err))
				if err == nil {
					winner = resp.GetWorkload()
				}
			}()
		}
		close(start)
		wg.Wait()
		slices.Sort(got)
		if !slices.Equal(got, []codes.Code{codes.OK, codes.Aborted}) {
			t.Fatalf("round %d: codes %v, want exactly one OK and one ABORTED", round, got)
		}
		now, err := c.GetWorkload(ctx, &inventoryv1.GetWorkloadRequest{Name: w.GetName()})
		if err != nil || !proto.Equal(now.GetWorkload(), winner) {
			t.Fatalf("round %d: stored %v, winner %v", round, now.GetWorkload(), winner)
		}
		w = winner
	}
}

func TestListWaves(t *testing.T) {
	p := newEnv(t).start(t)
	c, ctx := p.client, t.Context()
	specs := []struct {
		id       string
		role     string
		wave     int32
		stateful bool
		state    inventoryv1.WorkloadState
	}{
		{"web-1", "web", 1, false, planned},
		{"web-2", "web", 1, false, discovered},
		{"api-1", "api", 1, false, planned},
		{"db-1", "db", 2, true, planned},
		{"new-1", "", 0, false, discovered},
	}
	for _, s := range specs {
		w := instanceWorkload(s.role, s.wave, nil)
		w.Stateful, w.State = s.stateful, s.state
		if _, err := c.CreateWorkload(ctx, &inventoryv1.CreateWorkloadRequest{WorkloadId: s.id, Workload: w}); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := c.ListWaves(ctx, &inventoryv1.ListWavesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := &inventoryv1.ListWavesResponse{Waves: []*inventoryv1.WaveSummary{
		{Wave: 0, WorkloadCount: 1, StateCounts: []*inventoryv1.StateCount{{State: discovered, Count: 1}}},
		{Wave: 1, WorkloadCount: 3, StateCounts: []*inventoryv1.StateCount{{State: discovered, Count: 1}, {State: planned, Count: 2}}, Roles: []string{"api", "web"}},
		{Wave: 2, WorkloadCount: 1, StatefulCount: 1, StateCounts: []*inventoryv1.StateCount{{State: planned, Count: 1}}, Roles: []string{"db"}},
	}}
	if !proto.Equal(resp, want) {
		t.Fatalf("ListWaves = %v\nwant %v", resp, want)
	}
}

// updateRole changes a workload's role without an etag.
func updateRole(ctx context.Context, c inventoryv1.InventoryServiceClient, name, role string) (*inventoryv1.Workload, error) {
	r, err := c.UpdateWorkload(ctx, &inventoryv1.UpdateWorkloadRequest{
		Workload: &inventoryv1.Workload{Name: name, Role: role}, UpdateMask: mask("role"),
	})
	return r.GetWorkload(), err
}
