package bridge

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/idem"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/platform/store"
)

// RequestTTL is how long a CreateBridge's request_id is remembered.
const RequestTTL = 24 * time.Hour

// Store keeps bridges in etcd (platform/store); a bridge's etag is its key's
// ModRevision.
type Store struct {
	*store.Store[*netbridgev1.Bridge]
}

// NewStore returns a Store on c.
func NewStore(c *clientv3.Client) *Store {
	return &Store{store.New[*netbridgev1.Bridge](c, keys.BridgesPrefix, "bridges", "bridge")}
}

// ID returns the bridge ID of a name "bridges/{id}".
func ID(name string) (string, bool) { return store.NameID("bridges", name) }

// Create records a new bridge (id "" for a server-chosen one). With a requestID, a
// repeat of the same request returns the bridge the first made.
func (s *Store) Create(ctx context.Context, b *netbridgev1.Bridge, id, requestID, fingerprint string) (*netbridgev1.Bridge, error) {
	if id == "" {
		id = store.NewID("br", time.Now())
	}
	now := timestamppb.Now()
	b = proto.CloneOf(b)
	b.Name, b.State, b.CreateTime, b.UpdateTime = s.Name(id), netbridgev1.BridgeState_BRIDGE_STATE_NEW, now, now
	b.Error, b.Split, b.Resources = "", nil, nil
	req := idem.Request{Fingerprint: fingerprint, TTL: RequestTTL}
	if requestID != "" {
		req.Key = keys.BridgeRequest(requestID)
	}
	return s.Store.Create(ctx, id, b, req, requestID)
}

// Update applies change to the stored bridge and writes it if it did not change in
// between (compare-and-swap on its revision, retried).
func (s *Store) Update(ctx context.Context, id string, change func(*netbridgev1.Bridge)) (*netbridgev1.Bridge, error) {
	return s.Store.Update(ctx, id, func(b *netbridgev1.Bridge) (bool, error) {
		change(b)
		b.UpdateTime = timestamppb.Now()
		return true, nil
	})
}
