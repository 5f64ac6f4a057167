// Command inventory serves hikkoshi.inventory.v1.InventoryService: the registry of
// workloads to migrate, kept in etcd.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"google.golang.org/grpc"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	lbaasv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/lbaas/v1"
	netbridgev1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/netbridge/v1"
	"github.com/hikkoshi/hikkoshi/platform/cloud"
	"github.com/hikkoshi/hikkoshi/platform/locks"
	"github.com/hikkoshi/hikkoshi/platform/service"
	"github.com/hikkoshi/hikkoshi/services/inventory/internal/console"
	"github.com/hikkoshi/hikkoshi/services/inventory/internal/discovery"
	"github.com/hikkoshi/hikkoshi/services/inventory/internal/registry"
	"github.com/hikkoshi/hikkoshi/services/inventory/internal/runner"
)

// DefaultPort is the inventory's gRPC port on 127.0.0.1.
const DefaultPort = 7401

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "inventory:", err)
		os.Exit(1)
	}
}

// config is the inventory's configuration: the flags, then what validate makes of
// them.
type config struct {
	service.Config
	cloudsYAML, sources, destinations string
	srcs, dsts                        []string // made by validate
	consoleListen                     string
	consoleAllowRemote                bool
}

func (c *config) register(fs *flag.FlagSet) {
	fs.StringVar(&c.cloudsYAML, "clouds-yaml", os.Getenv("OS_CLIENT_CONFIG_FILE"), "clouds.yaml path (default $OS_CLIENT_CONFIG_FILE, else the usual places)")
	fs.StringVar(&c.sources, "source-clouds", "", "comma-separated clouds.yaml entries of the source clouds CreateSync may sync (empty: no syncs)")
	fs.StringVar(&c.destinations, "destination-clouds", "", "comma-separated clouds.yaml entries of the destination clouds GetPreflight checks against")
	fs.StringVar(&c.consoleListen, "console-listen", "", "HTTP address of the read-only web console of the migration (empty: off; it has no login: loopback only, unless --console-allow-remote)")
	fs.BoolVar(&c.consoleAllowRemote, "console-allow-remote", false, "let --console-listen take an address other than loopback (put an authenticating proxy in front of it)")
}

// validate makes the parsed forms (every value the inventory's flags take runs).
func (c *config) validate() error {
	c.srcs, c.dsts = service.SplitList(c.sources), service.SplitList(c.destinations)
	if c.consoleListen != "" {
		host, _, err := net.SplitHostPort(c.consoleListen)
		if err != nil {
			return fmt.Errorf("--console-listen %q: want host:port", c.consoleListen)
		}
		if ip := net.ParseIP(host); !c.consoleAllowRemote && (ip == nil || !ip.IsLoopback()) && host != "localhost" {
			return fmt.Errorf("--console-listen %q: the console has no login, so it listens on loopback only (127.0.0.1:PORT); --console-allow-remote lets it take %s behind your own authenticating proxy", c.consoleListen, host)
		}
	}
	return nil
}

func run(ctx context.Context, args []string) error {
	cfg := &config{Config: service.NewConfig("inventory", DefaultPort)}
	if err := cfg.Parse(args, cfg.register, cfg.validate); err != nil {
		return err
	}
	cloudsYAML, srcs, dsts := cfg.cloudsYAML, cfg.srcs, cfg.dsts
	return service.Run(ctx, cfg.Config, func(rt *service.Runtime) error {
		store, err := registry.NewStore(rt.Etcd)
		if err != nil {
			return err
		}
		eng := &runner.Engine{Etcd: rt.Etcd, Store: runner.NewStore(rt.Etcd), Workloads: store, Session: rt.Session,
			Instance: cfg.Instance, Log: rt.Logger.With("component", "runner")}
		runner.Register(rt, eng)
		if cfg.consoleListen != "" {
			if err := startConsole(rt, cfg.consoleListen); err != nil {
				return err
			}
		}
		if len(srcs)+len(dsts) == 0 {
			return registry.RegisterStore(rt, store, nil)
		}
		syncer := discovery.New(discovery.Options{
			Store: store, Etcd: rt.Etcd, Locks: locks.New(rt.Session), Open: discovery.CloudsYAMLOpener(cloudsYAML),
			Sources: srcs, Destinations: dsts, Instance: cfg.Instance, Logger: rt.Logger, Stopping: rt.Stopping(),
		})
		rt.OnShutdown(syncer.Wait)
		rt.Logger.Info("clouds configured", "source_clouds", srcs, "destination_clouds", dsts)
		if err := startRunner(rt, eng, cloudsYAML, dsts, syncer); err != nil {
			return err
		}
		return registry.RegisterStore(rt, store, syncer)
	})
}

// startRunner gives the wave runner its clients (the other services found in the
// registry, Nova of the configured clouds, the pre-flight) and starts its engine,
// which drives runs while this process leads the runner election.
func startRunner(rt *service.Runtime, eng *runner.Engine, cloudsYAML string, dsts []string, syncer *discovery.Syncer) error {
	conns := map[string]*grpc.ClientConn{}
	for _, svc := range []string{"converter", "lbaas", "netbridge"} {
		conn, err := rt.DialService(svc)
		if err != nil {
			return fmt.Errorf("runner: %s client: %w", svc, err)
		}
		conns[svc] = conn
	}
	eng.Deps = runner.Deps{
		Converter: converterv1.NewConverterServiceClient(conns["converter"]),
		LB:        lbaasv1.NewLoadBalancerServiceClient(conns["lbaas"]),
		Netbridge: netbridgev1.NewNetbridgeServiceClient(conns["netbridge"]),
		Compute: cloud.Memo(func(ctx context.Context, name string) (*gophercloud.ServiceClient, error) {
			c, err := cloud.Open(ctx, name, cloud.WithCloudsYAML(cloudsYAML), cloud.WithUserAgent("hikkoshi-inventory-runner"))
			if err != nil {
				return nil, err
			}
			return c.Compute()
		}),
		Preflight:    syncer.Preflight,
		Destinations: dsts,
	}
	rt.Go(eng.Run)
	rt.OnShutdown(func() { // after the engine has stopped
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return nil
}

// startConsole serves the web console on addr: the services through their
// generated clients (the inventory's own too, found in the registry like the
// others), the registry from etcd.
func startConsole(rt *service.Runtime, addr string) error {
	conns := map[string]*grpc.ClientConn{}
	for _, svc := range []string{"inventory", "converter", "lbaas", "netbridge"} {
		conn, err := rt.DialService(svc)
		if err != nil {
			return fmt.Errorf("console: %s client: %w", svc, err)
		}
		conns[svc] = conn
	}
	c := console.New(console.Sources{
		Inventory: inventoryv1.NewInventoryServiceClient(conns["inventory"]),
		Runs:      inventoryv1.NewWaveRunServiceClient(conns["inventory"]),
		Converter: converterv1.NewConverterServiceClient(conns["converter"]),
		Netbridge: netbridgev1.NewNetbridgeServiceClient(conns["netbridge"]),
		LBaaS:     lbaasv1.NewLoadBalancerServiceClient(conns["lbaas"]),
		Etcd:      rt.Etcd,
		Log:       rt.Logger.With("component", "console"),
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--console-listen: %w", err)
	}
	rt.Logger.Info("console listening", "url", "http://"+ln.Addr().String()+"/")
	rt.Go(c.Run)
	rt.Go(func(ctx context.Context) {
		// The event streams end with ctx (their requests' base context).
		srv := &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
		go func() { _ = srv.Serve(ln) }()
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = srv.Close()
	})
	rt.OnShutdown(func() {
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return nil
}
