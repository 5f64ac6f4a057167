package service

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	httppprof "net/http/pprof"

	"github.com/hikkoshi/hikkoshi/platform/authz"
	"github.com/hikkoshi/hikkoshi/platform/etcdembed"
	"github.com/hikkoshi/hikkoshi/platform/keys"
	"github.com/hikkoshi/hikkoshi/platform/mtls"
)

// Runtime is what Run hands to a service's setup function.
type Runtime struct {
	// Config is the service's configuration.
	Config Config
	// Logger is the service's logger.
	Logger *slog.Logger
	// Etcd is the process's etcd client.
	Etcd *clientv3.Client
	// GRPC is the server to register handlers on.
	GRPC *grpc.Server
	// Metrics is the registry served on /metrics.
	Metrics *prometheus.Registry

	stopping    chan struct{}
	validators  validators
	clientCreds credentials.TransportCredentials
	reg         *registrar
	onShutdown  []func()
}

// OnShutdown registers f to run at shutdown, after Stopping is closed and in-flight
// calls have finished, while etcd and the process's lease are still there: for
// background work (a sync) to end and record how it ended.
func (rt *Runtime) OnShutdown(f func()) { rt.onShutdown = append(rt.onShutdown, f) }

// Go runs f in its own goroutine for the service's life (a worker, a watchdog, a
// runner): its context ends when shutdown begins, and shutdown waits for f to
// return before the functions given to OnShutdown after this call run.
func (rt *Runtime) Go(f func(ctx context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f(ctx) }()
	go func() {
		select {
		case <-rt.stopping:
		case <-done:
		}
		cancel()
	}()
	rt.OnShutdown(func() { cancel(); <-done })
}

// Stopping returns a channel closed when shutdown begins. Long-lived streams must end
// when it closes, or the graceful shutdown waits for them until its timeout.
func (rt *Runtime) Stopping() <-chan struct{} { return rt.stopping }

// Session returns the process's current etcd session, or nil while the instance is
// unregistered (its lease was lost). Keys the process owns belong under its lease;
// watch the session's Done channel and stop acting as owner when it closes.
func (rt *Runtime) Session() *concurrency.Session { return rt.reg.Session() }

// ClientCredentials are the transport credentials of this process's calls to the
// other services: its own certificate (mutual TLS), or none on a plaintext setup.
func (rt *Runtime) ClientCredentials() credentials.TransportCredentials { return rt.clientCreds }

// DialService is DialService with this process's client credentials.
func (rt *Runtime) DialService(svc string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	return DialService(rt.Etcd, svc, append([]grpc.DialOption{grpc.WithTransportCredentials(rt.clientCreds)}, opts...)...)
}

// Setup registers a service's handlers and validators on rt.
type Setup func(rt *Runtime) error

// Run runs a service until ctx is cancelled (SIGTERM), then shuts it down gracefully:
// health turns NOT_SERVING, the registration is deleted, long-lived streams are told
// to end, in-flight calls finish (up to ShutdownTimeout), and the lease is revoked.
func Run(ctx context.Context, cfg Config, setup Setup) (err error) {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("service.Run: configuration: %w", err)
	}
	log, err := NewLogger(os.Stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	log = log.With("service", cfg.Service, "instance", cfg.Instance)

	etcd, closeEtcd, err := openEtcd(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeEtcd()

	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("service.Run: listen %s: %w", cfg.Listen, err)
	}
	defer func() { _ = lis.Close() }()

	m := newMetrics()
	rt := &Runtime{Config: cfg, Logger: log, Etcd: etcd, Metrics: m.registry, stopping: make(chan struct{}), clientCreds: insecure.NewCredentials()}
	serverTLS, az, err := rt.security()
	if err != nil {
		return err
	}
	g := &gate{}
	rt.GRPC = newGRPCServer(rt, m, az, g, serverTLS)
	healthSrv := health.NewServer()
	healthSrv.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(rt.GRPC, healthSrv)
	reflection.Register(rt.GRPC)

	rt.reg, err = newRegistrar(etcd, Registration{
		Service:        cfg.Service,
		Instance:       cfg.Instance,
		Address:        lis.Addr().String(),
		MetricsAddress: cfg.MetricsListen,
		PID:            os.Getpid(),
		Started:        time.Now().UTC(),
	}, cfg.LeaseTTL, log, func(ok bool) { rt.setServing(ok, g, healthSrv, m.registered) })
	if err != nil {
		return err
	}

	if err := setup(rt); err != nil {
		return fmt.Errorf("service.Run: setup %s: %w", cfg.Service, err)
	}
	m.server.InitializeMetrics(rt.GRPC)

	if cfg.MetricsListen != "" {
		stop, err := serveMetrics(cfg.MetricsListen, m.registry, serverTLS, cfg.EnablePprof)
		if err != nil {
			return err
		}
		defer stop()
	}

	if err := rt.reg.register(ctx); err != nil {
		rt.reg.close()
		return fmt.Errorf("service.Run: register: %w", err)
	}
	keepCtx, stopKeep := context.WithCancel(ctx)
	defer stopKeep()
	go rt.reg.keep(keepCtx)

	serveErr := make(chan error, 1)
	go func() { serveErr <- rt.GRPC.Serve(lis) }()
	log.Info("serving", "grpc", lis.Addr().String(), "metrics", cfg.MetricsListen)

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err = <-serveErr:
		log.Error("gRPC server stopped", "err", err)
	}
	stopKeep()
	rt.shutdown(healthSrv)
	if errors.Is(err, grpc.ErrServerStopped) {
		err = nil
	}
	return err
}

// openEtcd starts the embedded etcd when configured, and connects to etcd; close
// undoes both.
func openEtcd(ctx context.Context, cfg Config, log *slog.Logger) (c *clientv3.Client, close func(), err error) {
	endpoints := cfg.EtcdEndpoints
	var embedded *etcdembed.Server
	if cfg.EtcdEmbedDir != "" {
		embedded, err = etcdembed.Start(ctx, cfg.EtcdEmbedDir,
			etcdembed.WithClientURL(cfg.EtcdEmbedClientURL), etcdembed.WithPeerURL(cfg.EtcdEmbedPeerURL),
			etcdembed.WithAuth(cfg.EtcdUsername, cfg.EtcdPassword))
		if err != nil {
			return nil, nil, fmt.Errorf("service.Run: embedded etcd in %s: %w", cfg.EtcdEmbedDir, err)
		}
		endpoints = embedded.Endpoints()
		log.Info("embedded etcd started", "dir", cfg.EtcdEmbedDir, "endpoints", endpoints)
	}
	c, err = dialEtcd(ctx, cfg, endpoints)
	if err != nil {
		if embedded != nil {
			embedded.Close()
		}
		return nil, nil, err
	}
	return c, func() {
		_ = c.Close()
		if embedded != nil {
			embedded.Close()
		}
	}, nil
}

// metrics are a service's Prometheus registry and the metrics every service has.
type metrics struct {
	registry   *prometheus.Registry
	server     *grpcprom.ServerMetrics
	registered prometheus.Gauge
	panics     prometheus.Counter
}

func newMetrics() metrics {
	m := metrics{registry: prometheus.NewRegistry(), server: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram()),
		registered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hikkoshi_service_registered",
			Help: "1 while this instance is registered in etcd and serving, else 0.",
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hikkoshi_grpc_panics_recovered_total",
			Help: "Panics in gRPC handlers turned into INTERNAL errors.",
		})}
	m.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.server, m.registered, m.panics)
	return m
}

// security reads the TLS files and the authorization policy (none without TLS: a
// plaintext loopback development service) and makes the authorizer, whose audit
// lines are written whatever --log-level says.
func (rt *Runtime) security() (*tls.Config, *authz.Authorizer, error) {
	cfg := rt.Config
	audit, err := NewLogger(os.Stderr, cfg.LogFormat, "info")
	if err != nil {
		return nil, nil, err
	}
	az := &authz.Authorizer{Log: audit.With("service", cfg.Service, "instance", cfg.Instance)}
	if !cfg.TLS.Set() {
		return nil, az, nil
	}
	serverTLS, err := mtls.ServerConfig(cfg.TLS)
	if err != nil {
		return nil, nil, fmt.Errorf("service.Run: %w", err)
	}
	if rt.clientCreds, err = mtls.ClientCredentials(cfg.TLS); err != nil {
		return nil, nil, fmt.Errorf("service.Run: %w", err)
	}
	if az.Policy, err = authz.Load(cfg.AuthzPolicy); err != nil {
		return nil, nil, fmt.Errorf("service.Run: %w", err)
	}
	return serverTLS, az, nil
}

// newGRPCServer makes the gRPC server with its limits, TLS and interceptors, in
// this order: metrics, logging (not of health checks), context status, panic
// recovery, authorization, the serving gate, the stream limit, validation.
func newGRPCServer(rt *Runtime, m metrics, az *authz.Authorizer, g *gate, serverTLS *tls.Config) *grpc.Server {
	notHealth := selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
		return c.Service != healthpb.Health_ServiceDesc.ServiceName
	})
	logOpts := []logging.Option{logging.WithLogOnEvents(logging.FinishCall), logging.WithLevels(codeToLevel)}
	recOpt := recoveryOption(rt.Logger, m.panics.Inc)
	streams := newStreamLimiter(rt.Config.MaxStreamsPerClient)
	opts := serverLimits(rt.Config)
	if serverTLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(serverTLS)))
	}
	return grpc.NewServer(append(opts,
		grpc.ChainUnaryInterceptor(
			m.server.UnaryServerInterceptor(),
			selector.UnaryServerInterceptor(logging.UnaryServerInterceptor(grpcLogger(rt.Logger), logOpts...), notHealth),
			contextStatusUnary,
			recovery.UnaryServerInterceptor(recOpt),
			az.Unary,
			g.unary,
			rt.validators.unary,
		),
		grpc.ChainStreamInterceptor(
			m.server.StreamServerInterceptor(),
			selector.StreamServerInterceptor(logging.StreamServerInterceptor(grpcLogger(rt.Logger), logOpts...), notHealth),
			contextStatusStream,
			recovery.StreamServerInterceptor(recOpt),
			az.Stream,
			g.stream,
			streams.stream,
			rt.validators.stream,
		))...,
	)
}

// setServing opens or closes the gate and turns every health status with it.
func (rt *Runtime) setServing(ok bool, g *gate, healthSrv *health.Server, registered prometheus.Gauge) {
	g.open.Store(ok)
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
		registered.Set(1)
	} else {
		registered.Set(0)
	}
	for name := range rt.GRPC.GetServiceInfo() {
		healthSrv.SetServingStatus(name, st)
	}
	healthSrv.SetServingStatus("", st)
}

// serveMetrics serves /metrics on addr (over mutual TLS when the service has it: a
// scraper presents a client certificate too) until stop.
func serveMetrics(addr string, registry *prometheus.Registry, serverTLS *tls.Config, pprof bool) (stop func(), err error) {
	mlis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("service.Run: listen %s (metrics): %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{Registry: registry}))
	if pprof {
		mux.HandleFunc("/debug/pprof/", httppprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", httppprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", httppprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", httppprof.Trace)
	}
	if serverTLS != nil {
		mlis = tls.NewListener(mlis, serverTLS)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(mlis) }()
	return func() { _ = srv.Close() }, nil
}

// shutdown is the graceful end: the registration withdrawn, watches told to
// resume elsewhere, health NOT_SERVING, in-flight calls given ShutdownTimeout, the
// service's own shutdown functions, the lease revoked.
func (rt *Runtime) shutdown(healthSrv *health.Server) {
	dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	rt.reg.deregister(dctx)
	cancel()
	close(rt.stopping)
	healthSrv.Shutdown()
	stopped := make(chan struct{})
	go func() { rt.GRPC.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(rt.Config.ShutdownTimeout):
		rt.Logger.Warn("in-flight calls did not finish in time; closing them", "timeout", rt.Config.ShutdownTimeout)
		rt.GRPC.Stop()
	}
	for _, f := range rt.onShutdown {
		f()
	}
	rt.reg.close()
	rt.Logger.Info("stopped")
}

// dialEtcd connects to etcd and checks that it answers, so that a wrong endpoint
// fails at start with a clear message instead of at the first request.
func dialEtcd(ctx context.Context, cfg Config, endpoints []string) (*clientv3.Client, error) {
	var tlsCfg *tls.Config
	if cfg.EtcdCertFile != "" || cfg.EtcdCAFile != "" {
		info := transport.TLSInfo{CertFile: cfg.EtcdCertFile, KeyFile: cfg.EtcdKeyFile, TrustedCAFile: cfg.EtcdCAFile}
		c, err := info.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("service.Run: etcd TLS: %w", err)
		}
		tlsCfg = c
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: cfg.EtcdDialTimeout,
		TLS:         tlsCfg,
		Username:    cfg.EtcdUsername,
		Password:    cfg.EtcdPassword,
		Context:     context.WithoutCancel(ctx),
	})
	if err != nil {
		return nil, fmt.Errorf("service.Run: etcd client for %v: %w", endpoints, err)
	}
	if cfg.EtcdUsername != "" {
		watchRenewTokens(c) // watches made after the first token expired still work
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.EtcdDialTimeout)
	defer cancel()
	if _, err := c.Get(pctx, keys.ServicesPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("service.Run: etcd at %v does not answer within %s: %w", endpoints, cfg.EtcdDialTimeout, err)
	}
	return c, nil
}
