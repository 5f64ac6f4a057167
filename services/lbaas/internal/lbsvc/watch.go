package lbsvc

import (
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
	"github.com/hikkoshi/hikkoshi/platform/apierr"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/platform/poll"
	"github.com/hikkoshi/hikkoshi/services/lbaas/octavia"
)

// Watch polling: fast after a change, slower while nothing moves.
const (
	watchFirst = 200 * time.Millisecond
	watchMax   = 2 * time.Second
)

// WatchLoadBalancer implements LoadBalancerService. Octavia has no change feed, so it
// polls the tree, faster while it changes, and sends it whenever a status or weight in
// it differs from the last one sent. A load balancer whose etcd lock is held (an
// UpdateLoadBalancer between two steps) is not settled.
func (s *Server) WatchLoadBalancer(req *lbaasv1.WatchLoadBalancerRequest, stream grpc.ServerStreamingServer[lbaasv1.WatchLoadBalancerResponse]) error {
	ctx := stream.Context()
	id, _ := parseName(req.GetName())
	waiting := req.GetWaitForChange() // until the tree differs from the first look
	first, last := "", ""
	backoff := poll.Backoff{Initial: watchFirst, Max: watchMax, Factor: 2}
	for attempt := 0; ; attempt++ {
		t, err := s.oc.Show(ctx, id)
		deleted := octavia.IsNotFound(err)
		if err != nil && (!deleted || first == "") {
			return toStatus("watch "+req.GetName(), err)
		}
		lb, settled := &lbaasv1.LoadBalancer{Name: req.GetName(), Id: id, Status: statusOf("DELETED", "OFFLINE")}, true
		if !deleted {
			lb = treeOf(t)
			ps := t.LoadBalancer.ProvisioningStatus
			settled = ps == "ERROR" || (ps == "ACTIVE" && len(t.Pending()) == 0)
			if settled && ps != "ERROR" {
				// Between two steps of an UpdateLoadBalancer (of any replica) Octavia is
				// ACTIVE, but the change is not over while the update holds the lock.
				busy, err := s.locked(ctx, keys.LBLock(id))
				if err != nil {
					return err
				}
				settled = !busy
			}
		}
		sig := signature(lb)
		if first == "" {
			// The first look, without the settled mark: waiting ends at a change of the
			// tree itself.
			first = sig
			waiting = waiting && settled
		} else if sig != first {
			waiting = false
		}
		if settled {
			sig += "settled"
		}
		if !waiting && sig != last {
			last, attempt = sig, 0
			msg := &lbaasv1.WatchLoadBalancerResponse{LoadBalancer: lb, Settled: settled, Deleted: deleted}
			if err := stream.Send(msg); err != nil {
				return err
			}
		}
		if settled && !waiting {
			return nil
		}
		select {
		case <-ctx.Done():
			return toStatus("watch "+req.GetName(), ctx.Err())
		case <-s.stopping:
			return apierr.New(codes.Unavailable, "SHUTTING_DOWN", "this lbaas instance is shutting down: watch again")
		case <-time.After(backoff.Pause(attempt)):
		}
	}
}

// signature is every status in the tree, to tell whether anything changed.
func signature(lb *lbaasv1.LoadBalancer) string {
	var b strings.Builder
	add := func(id string, st *lbaasv1.Status) {
		b.WriteString(id + "=" + st.GetProvisioningStatus() + "/" + st.GetOperatingStatus() + ";")
	}
	add(lb.GetId(), lb.GetStatus())
	for _, l := range lb.GetListeners() {
		add(l.GetId(), l.GetStatus())
		if p := l.GetPool(); p != nil {
			add(p.GetId(), p.GetStatus())
			for _, m := range p.GetMembers() {
				add(m.GetId(), m.GetStatus())
				b.WriteString("w" + strconv.Itoa(int(m.GetWeight())) + ";")
			}
			if hm := p.GetHealthMonitor(); hm != nil {
				add(hm.GetId(), hm.GetStatus())
			}
		}
	}
	return b.String()
}
