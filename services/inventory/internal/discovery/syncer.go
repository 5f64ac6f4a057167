// Package discovery syncs the inventory with its source clouds: it lists servers,
// ports, networks, subnets, floating IPs and volumes through gophercloud and writes
// what changed into the workload registry, one sync per cloud at a time across
// replicas.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/cloud"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/platform/locks"
	"github.com/hikkoshi/hikkoshi/platform/store"
	"github.com/hikkoshi/hikkoshi/services/inventory/internal/registry"
)

// Timing of syncs.
const (
	// IncrementalWindow is how recent the last successful sync must be for an AUTO
	// sync to be incremental.
	IncrementalWindow = time.Hour
	// clockSkew is subtracted from changes-since, for the clouds' clocks.
	clockSkew = 5 * time.Second
	// progressEvery throttles a running sync's progress writes.
	progressEvery = 500 * time.Millisecond
	// writeConcurrency bounds a sync's workload writes in flight.
	writeConcurrency = 8
)

// Opener opens one cloud's API clients for a sync; count is called once per API
// call made through them.
type Opener func(ctx context.Context, cloudName string, count func()) (Clients, string, error)

// CloudsYAMLOpener opens clouds from a clouds.yaml file ("" for the usual places).
func CloudsYAMLOpener(cloudsYAML string) Opener {
	return func(ctx context.Context, name string, count func()) (Clients, string, error) {
		c, err := cloud.Open(ctx, name, cloud.WithCloudsYAML(cloudsYAML), cloud.WithUserAgent("hikkoshi-inventory"))
		if err != nil {
			return Clients{}, "", err
		}
		cloud.Observe(c.Provider, func(string, string, int) { count() })
		var cl Clients
		if cl.Compute, err = c.Compute(); err != nil {
			return cl, "", err
		}
		// 2.3 adds the extended attributes, root_device_name among them (admin
		// only); a Nova without microversions ignores the header.
		cl.Compute.Microversion = "2.3"
		if cl.Network, err = c.Network(); err != nil {
			return cl, "", err
		}
		if cl.Image, err = c.Image(); err != nil {
			return cl, "", err
		}
		if cl.BlockStorage, err = c.BlockStorage(); err != nil {
			var nf *gophercloud.ErrEndpointNotFound
			if !errors.As(err, &nf) {
				return cl, "", err
			}
			cl.BlockStorage = nil
		}
		return cl, c.Region(), nil
	}
}

// Syncer runs syncs and serves their API.
type Syncer struct {
	store   *registry.Store
	etcd    *clientv3.Client
	locks   *locks.Locker
	open    Opener
	sources []string
	// destinations are the clouds pre-flights check against.
	destinations []string
	instance     string
	log          *slog.Logger
	stopping     <-chan struct{}
	now          func() time.Time
	running      sync.WaitGroup
}

// Options configure a Syncer.
type Options struct {
	Store   *registry.Store
	Etcd    *clientv3.Client
	Locks   *locks.Locker
	Open    Opener
	Sources []string // clouds.yaml entries that may be synced
	// Destinations are clouds.yaml entries pre-flights may check against.
	Destinations []string
	Instance     string
	Logger       *slog.Logger
	Stopping     <-chan struct{}
}

// New returns a Syncer.
func New(o Options) *Syncer {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Syncer{
		store: o.Store, etcd: o.Etcd, locks: o.Locks, open: o.Open, sources: o.Sources, destinations: o.Destinations,
		instance: o.Instance, log: o.Logger, stopping: o.Stopping, now: time.Now,
	}
}

// Wait waits for running syncs to end (they end when stopping closes).
func (s *Syncer) Wait() { s.running.Wait() }

func newSyncID(now time.Time) string { return store.NewID("sync", now) }

// Start starts a sync of req's cloud and returns it RUNNING.
func (s *Syncer) Start(ctx context.Context, req *inventoryv1.Sync) (*inventoryv1.Sync, error) {
	name := req.GetCloud()
	if !slices.Contains(s.sources, name) {
		return nil, apierr.InvalidArgument("sync.cloud", "%q is not a source cloud of this inventory: use one of %v (--source-clouds)", name, s.sources)
	}
	unlock, err := s.locks.TryLock(ctx, keys.SyncLock(name))
	if errors.Is(err, locks.ErrLocked) {
		running := ""
		if list, lerr := s.List(ctx, name); lerr == nil {
			for _, x := range list {
				if x.GetState() == inventoryv1.SyncState_SYNC_STATE_RUNNING {
					running = x.GetName() + " (instance " + x.GetInstance() + ")"
					break
				}
			}
		}
		if running != "" {
			return nil, apierr.New(codes.FailedPrecondition, "SYNC_RUNNING",
				"a sync of cloud %q is running: %s; watch it with WatchSync, or try again when it ends", name, running)
		}
		// The last sync has recorded its end and is letting go of the lock.
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		unlock, err = s.locks.Lock(lctx, keys.SyncLock(name))
		cancel()
	}
	if err != nil {
		return nil, apierr.New(codes.Unavailable, "NO_LOCK", "cannot take the sync lock of cloud %q: %v", name, err)
	}
	now := s.now()
	sy := &inventoryv1.Sync{
		Name: "syncs/" + newSyncID(now), Cloud: name, Mode: req.GetMode(), State: inventoryv1.SyncState_SYNC_STATE_RUNNING,
		Phase: "starting", Counts: &inventoryv1.SyncCounts{}, Instance: s.instance, CreateTime: timestamppb.New(now),
	}
	if sy.Mode == inventoryv1.SyncMode_SYNC_MODE_UNSPECIFIED {
		sy.Mode = inventoryv1.SyncMode_SYNC_MODE_AUTO
	}
	if sy.Mode != inventoryv1.SyncMode_SYNC_MODE_FULL {
		last, err := s.lastSucceeded(ctx, name)
		if err != nil {
			unlock()
			return nil, err
		}
		switch {
		case last != nil && (sy.Mode == inventoryv1.SyncMode_SYNC_MODE_INCREMENTAL || now.Sub(last.GetEndTime().AsTime()) < IncrementalWindow):
			sy.Mode = inventoryv1.SyncMode_SYNC_MODE_INCREMENTAL
			sy.ChangesSince = timestamppb.New(last.GetCreateTime().AsTime().Add(-clockSkew))
		case sy.Mode == inventoryv1.SyncMode_SYNC_MODE_INCREMENTAL:
			sy.Mode = inventoryv1.SyncMode_SYNC_MODE_FULL
			sy.Notes = append(sy.Notes, "no successful sync of this cloud to start from: full")
		default:
			sy.Mode = inventoryv1.SyncMode_SYNC_MODE_FULL
		}
	}
	if err := s.put(ctx, sy); err != nil {
		unlock()
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.running.Add(1)
	go func() {
		defer s.running.Done()
		defer unlock()
		defer cancel()
		go func() {
			select {
			case <-s.stopping:
				cancel()
			case <-runCtx.Done():
			}
		}()
		s.run(runCtx, proto.CloneOf(sy))
	}()
	return sy, nil
}

// put writes a sync record.
func (s *Syncer) put(ctx context.Context, sy *inventoryv1.Sync) error {
	b, err := proto.Marshal(sy)
	if err != nil {
		return apierr.New(codes.Internal, "ENCODE", "%v", err)
	}
	if _, err := s.etcd.Put(ctx, keys.Sync(sy.GetName()[len("syncs/"):]), string(b)); err != nil {
		return apierr.New(codes.Unavailable, "ETCD_UNAVAILABLE", "write sync: %v", err)
	}
	return nil
}

// progress is a running sync's record, written at most every progressEvery.
type progress struct {
	s     *Syncer
	mu    sync.Mutex
	sy    *inventoryv1.Sync
	last  time.Time
	calls atomic.Int32
}

func (p *progress) update(ctx context.Context, force bool, f func(sy *inventoryv1.Sync)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p.sy)
	p.sy.Counts.ApiCalls = p.calls.Load()
	if force || time.Since(p.last) >= progressEvery {
		p.last = time.Now()
		if err := p.s.put(context.WithoutCancel(ctx), p.sy); err != nil {
			p.s.log.Warn("sync progress not written", "sync", p.sy.GetName(), "err", err)
		}
	}
}

func (s *Syncer) run(ctx context.Context, sy *inventoryv1.Sync) {
	p := &progress{s: s, sy: sy}
	err := s.sync(ctx, p)
	p.update(ctx, true, func(sy *inventoryv1.Sync) {
		sy.EndTime = timestamppb.New(s.now())
		sy.Phase = ""
		if err != nil {
			sy.State = inventoryv1.SyncState_SYNC_STATE_FAILED
			sy.Error = err.Error()
			if ctx.Err() != nil {
				sy.Error = "the inventory instance stopped during the sync: " + sy.Error
			}
			return
		}
		sy.State = inventoryv1.SyncState_SYNC_STATE_SUCCEEDED
	})
	c := sy.GetCounts()
	s.log.Info("sync ended", "sync", sy.GetName(), "cloud", sy.GetCloud(), "mode", sy.GetMode().String(), "state", sy.GetState().String(),
		"servers", c.GetServers(), "created", c.GetCreated(), "updated", c.GetUpdated(), "unchanged", c.GetUnchanged(),
		"vanished", c.GetVanished(), "etcd_writes", c.GetEtcdWrites(), "api_calls", c.GetApiCalls(), "err", sy.GetError())
}

func (s *Syncer) sync(ctx context.Context, p *progress) error {
	name := p.sy.GetCloud()
	p.update(ctx, true, func(sy *inventoryv1.Sync) { sy.Phase = "authenticating" })
	cl, region, err := s.open(ctx, name, func() { p.calls.Add(1) })
	if err != nil {
		return err
	}
	incremental := p.sy.GetMode() == inventoryv1.SyncMode_SYNC_MODE_INCREMENTAL
	var snap *Snapshot
	if incremental {
		p.update(ctx, true, func(sy *inventoryv1.Sync) {
			sy.Phase = "listing changes since " + sy.GetChangesSince().AsTime().Format(time.RFC3339)
		})
		snap, err = ListChanges(ctx, cl, p.sy.GetChangesSince().AsTime())
	} else {
		p.update(ctx, true, func(sy *inventoryv1.Sync) {
			sy.Phase = "listing servers, ports, networks, subnets, floating IPs, volumes"
		})
		snap, err = ListAll(ctx, cl)
	}
	if err != nil {
		return err
	}
	p.update(ctx, true, func(sy *inventoryv1.Sync) {
		c := sy.Counts
		c.Servers, c.Ports, c.Networks, c.Subnets = int32(len(snap.Servers)), int32(len(snap.Ports)), int32(len(snap.Networks)), int32(len(snap.Subnets))
		c.FloatingIps, c.Volumes = int32(len(snap.FloatingIPs)), int32(len(snap.Volumes))
		sy.AllProjects = snap.AllProjects
		sy.Notes = append(sy.Notes, snap.Notes...)
		sy.Phase = "writing networks"
	})
	ix := newIndex(snap)
	if err := s.writeNetworks(ctx, p, name, ix); err != nil {
		return err
	}
	p.update(ctx, true, func(sy *inventoryv1.Sync) { sy.Phase = "writing workloads" })
	return s.writeWorkloads(ctx, p, name, region, ix, cl.Compute)
}

// writeNetworks stores each network that changed and deletes those gone.
func (s *Syncer) writeNetworks(ctx context.Context, p *progress, name string, ix *index) error {
	prefix := keys.CloudNetworks(name)
	resp, err := s.etcd.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("read stored networks: %w", err)
	}
	stored := map[string]*inventoryv1.Network{}
	for _, kv := range resp.Kvs {
		n := &inventoryv1.Network{}
		if proto.Unmarshal(kv.Value, n) == nil {
			stored[n.GetId()] = n
		}
	}
	seen := map[string]bool{}
	for _, n := range ix.snap.Networks {
		seen[n.ID] = true
		next := ix.network(name, n)
		if proto.Equal(stored[n.ID], next) {
			continue
		}
		b, _ := proto.Marshal(next) // a valid message marshals
		if _, err := s.etcd.Put(ctx, keys.CloudNetwork(name, n.ID), string(b)); err != nil {
			return fmt.Errorf("write network %s: %w", n.ID, err)
		}
		p.update(ctx, false, func(sy *inventoryv1.Sync) { sy.Counts.EtcdWrites++ })
	}
	for id := range stored {
		if !seen[id] {
			if _, err := s.etcd.Delete(ctx, keys.CloudNetwork(name, id)); err != nil {
				return fmt.Errorf("delete network %s: %w", id, err)
			}
			p.update(ctx, false, func(sy *inventoryv1.Sync) { sy.Counts.EtcdWrites++ })
		}
	}
	return nil
}

// WorkloadID is the ID a sync gives the workload of a server it finds first.
func WorkloadID(serverID string) string { return "i-" + serverID }

// writeWorkloads creates, updates or marks vanished the cloud's workloads; a
// workload whose facts did not change is not written.
func (s *Syncer) writeWorkloads(ctx context.Context, p *progress, name, region string, ix *index, cc *gophercloud.ServiceClient) error {
	byServer := map[string]*inventoryv1.Workload{}
	if _, err := s.store.Scan(ctx, func(w *inventoryv1.Workload, _ int64) error {
		if src := w.GetInstance(); src != nil && src.GetCloud() == name {
			byServer[src.GetServerId()] = w
		}
		return nil
	}); err != nil {
		return fmt.Errorf("read the registry: %w", err)
	}
	guests := guestFacts(ctx, cc, ix.snap.Servers, byServer)
	syncName := p.sy.GetName()
	now := timestamppb.New(s.now())
	count := func(f func(c *inventoryv1.SyncCounts)) {
		p.update(ctx, false, func(sy *inventoryv1.Sync) { f(sy.Counts) })
	}
	sem := make(chan struct{}, writeConcurrency)
	var wg sync.WaitGroup
	var firstErr error
	var errMu sync.Mutex
	fail := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
	}
	do := func(f func() error) {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if ctx.Err() == nil {
				if err := f(); err != nil {
					fail(err)
				}
			}
		})
	}
	seen := map[string]bool{}
	for i := range ix.snap.Servers {
		srv := &ix.snap.Servers[i]
		seen[srv.ID] = true
		facts := ix.instanceFacts(srv)
		if g, ok := guests[srv.ID]; ok {
			facts.GuestCloudInit, facts.CloudInitVersion = g.cloudInit, g.version
		}
		cur := byServer[srv.ID]
		if cur != nil && !cur.GetVanished() && proto.Equal(cur.GetFacts().GetInstance(), facts) {
			count(func(c *inventoryv1.SyncCounts) { c.Unchanged++ })
			continue
		}
		newFacts := &inventoryv1.Facts{Kind: &inventoryv1.Facts_Instance{Instance: facts}, ChangeTime: now, Sync: syncName}
		do(func() error {
			if cur == nil {
				w := &inventoryv1.Workload{
					DisplayName: srv.Name,
					Source: &inventoryv1.Workload_Instance{Instance: &inventoryv1.InstanceSource{
						Cloud: name, Region: region, ProjectId: srv.TenantID, ServerId: srv.ID,
					}},
					Facts: newFacts,
				}
				_, err := s.store.Create(ctx, WorkloadID(srv.ID), w, "", "")
				if err == nil {
					count(func(c *inventoryv1.SyncCounts) { c.Created++; c.EtcdWrites++ })
					return nil
				}
				if apierr.Reason(err) != registry.ReasonExists {
					return fmt.Errorf("create the workload of server %s: %w", srv.ID, err)
				}
				cur = &inventoryv1.Workload{Name: "workloads/" + WorkloadID(srv.ID)}
			}
			return s.updateFacts(ctx, cur, newFacts, false, count)
		})
	}
	if !ix.snap.Complete && (ix.snap.AllPorts || ix.snap.AllFloatingIPs || ix.snap.AllVolumes) {
		// Ports, floating IPs or volumes changed on a server that did not change
		// otherwise: patch them into its stored facts.
		gone := map[string]bool{}
		for _, id := range ix.snap.Deleted {
			gone[id] = true
		}
		for id, w := range byServer {
			if seen[id] || gone[id] || w.GetVanished() || w.GetFacts().GetInstance() == nil {
				continue
			}
			f := proto.CloneOf(w.GetFacts().GetInstance())
			if ix.snap.AllPorts {
				f.Ports = ix.portFacts(id)
			} else {
				for _, p := range f.GetPorts() {
					p.FloatingIps = sortedCopy(ix.fipsByPort[p.GetId()])
				}
			}
			if ix.snap.AllVolumes {
				known := make([]string, 0, len(f.GetVolumes()))
				for _, v := range f.GetVolumes() {
					known = append(known, v.GetId())
				}
				f.Volumes = ix.volumeFacts(id, known, f.GetImageId(), f.GetRootDeviceName())
			}
			if proto.Equal(f, w.GetFacts().GetInstance()) {
				continue
			}
			newFacts := &inventoryv1.Facts{Kind: &inventoryv1.Facts_Instance{Instance: f}, ChangeTime: now, Sync: syncName}
			do(func() error { return s.updateFacts(ctx, w, newFacts, false, count) })
		}
	}
	vanish := ix.snap.Deleted
	if ix.snap.Complete {
		for id, w := range byServer {
			if !seen[id] && !w.GetVanished() {
				vanish = append(vanish, id)
			}
		}
	}
	for _, id := range vanish {
		cur := byServer[id]
		if cur == nil || cur.GetVanished() {
			continue
		}
		do(func() error { return s.updateFacts(ctx, cur, nil, true, count) })
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// updateFacts writes new facts (clearing vanished), or marks the workload vanished,
// leaving every operator field as it is.
func (s *Syncer) updateFacts(ctx context.Context, cur *inventoryv1.Workload, facts *inventoryv1.Facts, vanished bool, count func(func(*inventoryv1.SyncCounts))) error {
	id := cur.GetName()[len("workloads/"):]
	wrote := false
	_, err := s.store.Update(ctx, id, "", func(old, next *inventoryv1.Workload) error {
		if vanished {
			if !old.GetVanished() {
				next.Vanished, next.VanishTime = true, timestamppb.New(s.now())
			}
		} else if !proto.Equal(old.GetFacts().GetInstance(), facts.GetInstance()) || old.GetVanished() {
			next.Facts = facts
			next.Vanished, next.VanishTime = false, nil
		}
		wrote = !proto.Equal(old, next)
		return nil
	})
	if err != nil {
		return fmt.Errorf("update workload %s: %w", id, err)
	}
	count(func(c *inventoryv1.SyncCounts) {
		switch {
		case !wrote:
			c.Unchanged++
		case vanished:
			c.Vanished++
			c.EtcdWrites++
		default:
			c.Updated++
			c.EtcdWrites++
		}
	})
	return nil
}
