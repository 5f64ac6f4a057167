// Package cmd is the hikkoshi command line: one cobra tree over the generated gRPC
// clients of the inventory, converter, netbridge and lbaas services, and the
// Octavia client of hikkoshi-lb.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"sigs.k8s.io/yaml"

	"github.com/hikkoshi/hikkoshi/platform/cliout"
	"github.com/hikkoshi/hikkoshi/platform/mtls"
	"github.com/hikkoshi/hikkoshi/platform/service"
	"github.com/hikkoshi/hikkoshi/services/inventory/invcli"
	"github.com/hikkoshi/hikkoshi/services/lbaas/lbcli"
)

// services are the four services with their default ports on 127.0.0.1.
var services = []struct {
	name string
	port int
}{{"inventory", 7401}, {"converter", 7402}, {"netbridge", 7403}, {"lbaas", 7404}}

// serviceAnnotation marks the top command of each service's subtree with the
// service it talks to: the root dials only that one.
const serviceAnnotation = "hikkoshi.service"

// Config is the config file: the services' addresses, the etcd registry, mutual TLS.
//
//	inventory: inventory.migration.example:7401
//	etcd: http://10.0.0.5:2379          # the others are found in the registry
//	tls: {cert: me.pem, key: me-key.pem, ca: ca.pem}
type Config struct {
	Inventory string `json:"inventory,omitempty"`
	Converter string `json:"converter,omitempty"`
	Netbridge string `json:"netbridge,omitempty"`
	Lbaas     string `json:"lbaas,omitempty"`
	Etcd      string `json:"etcd,omitempty"`
	TLS       struct {
		Cert string `json:"cert,omitempty"`
		Key  string `json:"key,omitempty"`
		CA   string `json:"ca,omitempty"`
	} `json:"tls,omitzero"`
}

func (c Config) addr(svc string) string {
	switch svc {
	case "inventory":
		return c.Inventory
	case "converter":
		return c.Converter
	case "netbridge":
		return c.Netbridge
	case "lbaas":
		return c.Lbaas
	}
	return ""
}

type globals struct {
	output  string
	format  cliout.Format
	timeout time.Duration
	config  string
	etcd    string
	addrs   map[string]*string
	tls     mtls.Files

	cmd *cobra.Command
	cfg Config
	inv *invcli.Globals

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
	ec    *clientv3.Client
}

// NewRoot is the hikkoshi command.
func NewRoot() *cobra.Command {
	g := &globals{addrs: map[string]*string{}, conns: map[string]*grpc.ClientConn{}, inv: &invcli.Globals{}}
	root := &cobra.Command{
		Use:   "hikkoshi",
		Short: "Move a cloud's workloads into OpenStack: inventory, conversion jobs, network bridges, load balancers",
		Long: `hikkoshi is the one command line over Hikkoshi's four services.

Each service's address comes from its flag (--inventory, --converter, --netbridge,
--lbaas), else $HIKKOSHI_INVENTORY, $HIKKOSHI_CONVERTER, $HIKKOSHI_NETBRIDGE,
$HIKKOSHI_LBAAS, else the config file (--config, $HIKKOSHI_CONFIG, else
~/.config/hikkoshi/config.yaml when it exists), else the etcd service registry
(--etcd, $HIKKOSHI_ETCD or the config's etcd: every live instance, round robin),
else the service's default port on 127.0.0.1.

Tables by default; -o json or -o yaml prints the API's messages for scripts.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.setup(cmd)
		},
		PersistentPostRun: func(*cobra.Command, []string) { g.close() },
	}
	f := root.PersistentFlags()
	for _, s := range services {
		g.addrs[s.name] = f.String(s.name, "", fmt.Sprintf("the %s service's gRPC address (default $HIKKOSHI_%s, the config file, the etcd registry, else 127.0.0.1:%d)",
			s.name, strings.ToUpper(s.name), s.port))
	}
	f.StringVar(&g.etcd, "etcd", os.Getenv("HIKKOSHI_ETCD"), "etcd endpoints (comma-separated) whose service registry names the services' addresses (default $HIKKOSHI_ETCD)")
	f.StringVar(&g.config, "config", os.Getenv("HIKKOSHI_CONFIG"), "config file (default $HIKKOSHI_CONFIG, else ~/.config/hikkoshi/config.yaml if it exists)")
	f.StringVarP(&g.output, "output", "o", "table", "output: table, json or yaml")
	f.DurationVar(&g.timeout, "timeout", 5*time.Minute, "how long a command may take (a watch: until it ends)")
	g.tls = mtls.FromEnv()
	f.StringVar(&g.tls.Cert, "tls-cert", g.tls.Cert, "your client certificate (mutual TLS; default $HIKKOSHI_TLS_CERT; none: plaintext)")
	f.StringVar(&g.tls.Key, "tls-key", g.tls.Key, "its key (default $HIKKOSHI_TLS_KEY)")
	f.StringVar(&g.tls.CA, "tls-ca", g.tls.CA, "the CA bundle that issues the services' certificates (default $HIKKOSHI_TLS_CA)")

	root.AddGroup(&cobra.Group{ID: "inventory", Title: "Inventory (workloads, syncs, plans, waves):"},
		&cobra.Group{ID: "converter", Title: "Converter (conversion jobs):"},
		&cobra.Group{ID: "netbridge", Title: "Netbridge (bridges, moved addresses, console ports, router watchdog):"},
		&cobra.Group{ID: "lbaas", Title: "Load balancers:"})
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			if c.Annotations == nil {
				c.Annotations = map[string]string{}
			}
			if _, ok := c.Annotations[serviceAnnotation]; !ok {
				c.Annotations[serviceAnnotation] = group
			}
			root.AddCommand(c)
		}
	}
	add("inventory", invcli.Commands(g.inv)...)
	add("converter", newJob(g))
	add("netbridge", newBridge(g), newAddress(g), newConsolePorts(g), newWatchdog(g))
	lb := lbcli.NewRoot()
	lb.Use = "lb"
	lb.Short = "Octavia load balancers with PROXY-protocol pools, straight against the Octavia API (no Hikkoshi service): hikkoshi-lb"
	lb.Annotations = map[string]string{serviceAnnotation: ""}
	add("lbaas", newLoadBalancers(g), lb)
	return root
}

// setup reads the output format and the config file, and dials the service the
// command talks to (a lazy connection: nothing is sent before the first call).
func (g *globals) setup(cmd *cobra.Command) error {
	g.cmd = cmd
	f, err := cliout.Parse(g.output)
	if err != nil {
		return usagef("%v", err)
	}
	g.format = f
	g.inv.Output, g.inv.Timeout = f, g.timeout
	if err := g.readConfig(); err != nil {
		return err
	}
	svc := ""
	for c := cmd; c != nil; c = c.Parent() {
		if s, ok := c.Annotations[serviceAnnotation]; ok {
			svc = s
			break
		}
	}
	if svc == "inventory" {
		conn, err := g.conn(svc)
		if err != nil {
			return err
		}
		g.inv.SetConn(conn)
	}
	return nil
}

func (g *globals) readConfig() error {
	path, must := g.config, g.config != ""
	if path == "" {
		dir, err := os.UserConfigDir()
		if err != nil {
			return nil
		}
		path = filepath.Join(dir, "hikkoshi", "config.yaml")
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !must {
		return nil
	}
	if err != nil {
		return usagef("--config: %v", err)
	}
	if err := yaml.UnmarshalStrict(b, &g.cfg); err != nil {
		return usagef("--config %s: %v (keys: inventory, converter, netbridge, lbaas, etcd, tls: {cert, key, ca})", path, err)
	}
	if !g.tls.Set() {
		// Relative to the config file.
		rel := func(p string) string {
			if p == "" || filepath.IsAbs(p) {
				return p
			}
			return filepath.Join(filepath.Dir(path), p)
		}
		g.tls = mtls.Files{Cert: rel(g.cfg.TLS.Cert), Key: rel(g.cfg.TLS.Key), CA: rel(g.cfg.TLS.CA)}
	}
	if g.etcd == "" {
		g.etcd = g.cfg.Etcd
	}
	return nil
}

// conn is the connection to svc, made once.
func (g *globals) conn(svc string) (*grpc.ClientConn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c := g.conns[svc]; c != nil {
		return c, nil
	}
	creds, err := mtls.Client(g.tls)
	if err != nil {
		return nil, usagef("--tls-cert, --tls-key, --tls-ca: %v", err)
	}
	addr, from := g.address(svc)
	var conn *grpc.ClientConn
	if addr == "" && g.etcd != "" {
		if g.ec == nil {
			ec, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(g.etcd, ","), DialTimeout: 5 * time.Second})
			if err != nil {
				return nil, fmt.Errorf("--etcd %s: %w", g.etcd, err)
			}
			g.ec = ec
		}
		conn, err = service.DialService(g.ec, svc, grpc.WithTransportCredentials(creds))
	} else {
		if addr == "" {
			addr, from = defaultAddr(svc), "default"
		}
		conn, err = grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			err = usagef("the %s service's address %q (from %s): %v", svc, addr, from, err)
		}
	}
	if err != nil {
		return nil, err
	}
	g.conns[svc] = conn
	return conn, nil
}

// address is svc's address from its flag, its variable or the config file, and
// where it came from; "" leaves it to the registry or the default.
func (g *globals) address(svc string) (string, string) {
	if p := g.addrs[svc]; p != nil && *p != "" {
		return *p, "--" + svc
	}
	env := "HIKKOSHI_" + strings.ToUpper(svc)
	if a := os.Getenv(env); a != "" {
		return a, "$" + env
	}
	if a := g.cfg.addr(svc); a != "" {
		return a, "the config file"
	}
	return "", ""
}

func defaultAddr(svc string) string {
	for _, s := range services {
		if s.name == svc {
			return fmt.Sprintf("127.0.0.1:%d", s.port)
		}
	}
	return ""
}

func (g *globals) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.conns {
		_ = c.Close()
	}
	if g.ec != nil {
		_ = g.ec.Close()
	}
}

// ctx bounds a command by --timeout.
func (g *globals) ctx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), g.timeout)
}
