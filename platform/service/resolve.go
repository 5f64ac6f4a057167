package service

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"

	"github.com/hikkoshi/hikkoshi/platform/keys"
)

// RegistryScheme is the gRPC target scheme of services found in the registry:
// "hikkoshi-registry:///converter" resolves to the addresses of every live
// converter instance, and follows them as instances come and go.
const RegistryScheme = "hikkoshi-registry"

// DialService returns a client connection to a service found in the registry of
// etcd: it balances calls round-robin over the live instances and follows the
// registry (a killed instance leaves it with its lease, a restarted one joins).
func DialService(etcd *clientv3.Client, svc string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	if svc == "" || strings.Contains(svc, "/") {
		return nil, fmt.Errorf("service.DialService: bad service name %q", svc)
	}
	opts = append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithResolvers(&registryBuilder{etcd: etcd}),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
	}, opts...)
	return grpc.NewClient(RegistryScheme+":///"+svc, opts...)
}

// registryBuilder builds resolvers that watch one service's registrations.
type registryBuilder struct{ etcd *clientv3.Client }

func (b *registryBuilder) Scheme() string { return RegistryScheme }

func (b *registryBuilder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	svc := strings.TrimPrefix(target.Endpoint(), "/")
	ctx, cancel := context.WithCancel(context.Background())
	r := &registryResolver{etcd: b.etcd, prefix: keys.Service(svc), cc: cc, cancel: cancel, addrs: map[string]string{}, now: make(chan struct{}, 1)}
	r.wg.Add(1)
	go r.run(ctx)
	return r, nil
}

// registryResolver keeps a ClientConn's addresses equal to the registrations
// under prefix: a full read, then a watch from the revision after it.
type registryResolver struct {
	etcd   *clientv3.Client
	prefix string
	cc     resolver.ClientConn
	cancel context.CancelFunc
	wg     sync.WaitGroup
	now    chan struct{}
	addrs  map[string]string // key → address
}

func (r *registryResolver) run(ctx context.Context) {
	defer r.wg.Done()
	for ctx.Err() == nil {
		resp, err := r.etcd.Get(ctx, r.prefix, clientv3.WithPrefix())
		if err != nil {
			r.cc.ReportError(fmt.Errorf("registry %s: %w", r.prefix, err))
			r.sleep(ctx)
			continue
		}
		clear(r.addrs)
		for _, kv := range resp.Kvs {
			r.put(string(kv.Key), kv.Value)
		}
		r.update()
		wch := r.etcd.Watch(clientv3.WithRequireLeader(ctx), r.prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
		for wr := range wch {
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type == clientv3.EventTypeDelete {
					delete(r.addrs, string(ev.Kv.Key))
				} else {
					r.put(string(ev.Kv.Key), ev.Kv.Value)
				}
			}
			r.update()
		}
	}
}

// sleep waits a second, or less when grpc asks to resolve now.
func (r *registryResolver) sleep(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
	case <-r.now:
	}
}

func (r *registryResolver) put(key string, val []byte) {
	var reg Registration
	if json.Unmarshal(val, &reg) == nil && reg.Address != "" {
		r.addrs[key] = reg.Address
	}
}

func (r *registryResolver) update() {
	st := resolver.State{}
	for _, a := range r.addrs {
		st.Addresses = append(st.Addresses, resolver.Address{Addr: a})
	}
	if len(st.Addresses) == 0 {
		r.cc.ReportError(fmt.Errorf("no instance of %s is registered", strings.TrimSuffix(strings.TrimPrefix(r.prefix, keys.ServicesPrefix), "/")))
		return
	}
	_ = r.cc.UpdateState(st)
}

func (r *registryResolver) ResolveNow(resolver.ResolveNowOptions) {
	select {
	case r.now <- struct{}{}:
	default:
	}
}

func (r *registryResolver) Close() {
	r.cancel()
	r.wg.Wait()
}
