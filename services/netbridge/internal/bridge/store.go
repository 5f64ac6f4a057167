package bridge

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/idem"
	"github.com/hikkoshi/hikkoshi/platform/keys"
)

// RequestTTL is how long a CreateBridge's request_id is remembered.
const RequestTTL = 24 * time.Hour

// Store keeps bridges in etcd; a bridge's etag is its key's ModRevision.
type Store struct{ c *clientv3.Client }

// NewStore returns a Store on c.
func NewStore(c *clientv3.Client) *Store { return &Store{c} }

// ID returns the bridge ID of a name "bridges/{id}".
func ID(name string) (string, bool) {
	id, ok := strings.CutPrefix(name, "bridges/")
	return id, ok && id != "" && !strings.Contains(id, "/")
}

func etcdErr(op string, err error) error { return apierr.Etcd(op, err) }

func decode(b []byte, rev int64) (*netbridgev1.Bridge, error) {
	br := &netbridgev1.Bridge{}
	if err := proto.Unmarshal(b, br); err != nil {
		return nil, apierr.New(codes.Internal, "CORRUPT_RECORD", "a bridge record is not a Bridge: %v", err)
	}
	br.Etag = strconv.FormatInt(rev, 10)
	return br, nil
}

func encode(b *netbridgev1.Bridge) string {
	b = proto.CloneOf(b)
	b.Etag = ""
	v, _ := proto.Marshal(b)
	return string(v)
}

// Create records a new bridge. With a requestID, a repeat of the same request
// returns the bridge the first made.
func (s *Store) Create(ctx context.Context, b *netbridgev1.Bridge, id, requestID, fingerprint string) (*netbridgev1.Bridge, error) {
	if id == "" {
		r := make([]byte, 3)
		_, _ = rand.Read(r)
		id = fmt.Sprintf("br-%s-%x", time.Now().UTC().Format("20060102t150405"), r)
	}
	now := timestamppb.Now()
	b = proto.CloneOf(b)
	b.Name, b.State, b.CreateTime, b.UpdateTime = "bridges/"+id, netbridgev1.BridgeState_BRIDGE_STATE_NEW, now, now
	b.Error, b.Split, b.Resources = "", nil, nil
	req := idem.Request{Fingerprint: fingerprint, TTL: RequestTTL}
	if requestID != "" {
		req.Key = keys.BridgeRequest(requestID)
	}
	r, err := idem.Create(ctx, s.c, keys.Bridge(id), encode(b), id, req)
	switch {
	case errors.Is(err, idem.ErrOtherRequest), errors.Is(err, idem.ErrCorruptRecord):
		return nil, apierr.InvalidArgument("request_id", "%q was already used for a different request: use a new request_id for a new request", requestID)
	case errors.Is(err, idem.ErrExists):
		return nil, apierr.New(codes.AlreadyExists, "BRIDGE_EXISTS", "bridge %q exists: choose another bridge_id", "bridges/"+id)
	case err != nil:
		return nil, etcdErr("CreateBridge", err)
	case r.Created:
		b.Etag = strconv.FormatInt(r.Revision, 10)
		return b, nil
	}
	br, _, err := s.Get(ctx, r.Existing)
	return br, err
}

// Get returns a bridge and its revision.
func (s *Store) Get(ctx context.Context, id string) (*netbridgev1.Bridge, int64, error) {
	resp, err := s.c.Get(ctx, keys.Bridge(id))
	if err != nil {
		return nil, 0, etcdErr("GetBridge", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, apierr.New(codes.NotFound, "BRIDGE_NOT_FOUND", "no bridge %q", "bridges/"+id)
	}
	b, err := decode(resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
	return b, resp.Kvs[0].ModRevision, err
}

// List returns every bridge by name.
func (s *Store) List(ctx context.Context) ([]*netbridgev1.Bridge, error) {
	resp, err := s.c.Get(ctx, keys.BridgesPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, etcdErr("ListBridges", err)
	}
	out := make([]*netbridgev1.Bridge, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		b, err := decode(kv.Value, kv.ModRevision)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// Update applies change to the stored bridge and writes it if it did not change in
// between (compare-and-swap on its revision, retried).
func (s *Store) Update(ctx context.Context, id string, change func(*netbridgev1.Bridge)) (*netbridgev1.Bridge, error) {
	for range 10 {
		b, rev, err := s.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		change(b)
		b.UpdateTime = timestamppb.Now()
		resp, err := s.c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(keys.Bridge(id)), "=", rev)).
			Then(clientv3.OpPut(keys.Bridge(id), encode(b))).Commit()
		if err != nil {
			return nil, etcdErr("update bridge", err)
		}
		if resp.Succeeded {
			b.Etag = strconv.FormatInt(resp.Header.Revision, 10)
			return b, nil
		}
	}
	return nil, apierr.New(codes.Aborted, "CONTENTION", "bridge %s kept changing: retry", id)
}

// Delete deletes a bridge's record if its etag is still rev.
func (s *Store) Delete(ctx context.Context, id string, rev int64) error {
	resp, err := s.c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(keys.Bridge(id)), "=", rev)).
		Then(clientv3.OpDelete(keys.Bridge(id))).Commit()
	if err != nil {
		return etcdErr("DeleteBridge", err)
	}
	if !resp.Succeeded {
		return apierr.New(codes.Aborted, "BRIDGE_CHANGED", "bridge %s changed meanwhile: get it again", id)
	}
	return nil
}
