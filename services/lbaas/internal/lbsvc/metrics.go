package lbsvc

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the service's Prometheus metrics.
type Metrics struct {
	octaviaRequests *prometheus.CounterVec
	createSeconds   *prometheus.HistogramVec
	lockWait        prometheus.Histogram
	memberChanges   *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them on reg (unless nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		octaviaRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hikkoshi_lbaas_octavia_requests_total",
			Help: "HTTP requests this instance sent to the Octavia API, by method, route (IDs as {id}) and status code.",
		}, []string{"method", "route", "code"}),
		createSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hikkoshi_lbaas_create_seconds",
			Help:    "Time from CreateLoadBalancer's first call to Octavia until the whole tree was ACTIVE, by how it was built.",
			Buckets: prometheus.ExponentialBuckets(0.5, 2, 10),
		}, []string{"mode"}),
		lockWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hikkoshi_lbaas_lock_wait_seconds",
			Help:    "Time spent waiting for a per-load-balancer or per-request etcd lock (another replica held it).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		memberChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hikkoshi_lbaas_member_changes_total",
			Help: "Member changes of UpdateLoadBalancer, by result (added, weight set, removed, drained, unchanged).",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.octaviaRequests, m.createSeconds, m.lockWait, m.memberChanges)
	}
	return m
}

var uuidRE = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)

// route turns a request path into a label: IDs become {id}, so the label's values stay few.
func route(path string) string {
	path, _, _ = strings.Cut(path, "?")
	return uuidRE.ReplaceAllString(path, "{id}")
}

// ObserveOctavia is the cloud.Observe hook that counts each request.
func (m *Metrics) ObserveOctavia(method, path string, code int) {
	m.octaviaRequests.WithLabelValues(method, route(path), strconv.Itoa(code)).Inc()
}
