// Command converter serves hikkoshi.converter.v1.ConverterService and runs
// conversion jobs as a worker: it claims queued jobs (and jobs whose worker died)
// under its etcd lease. Run as many as you like, on as many hosts.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/grpc"

	converterv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/converter/v1"
	inventoryv1 "github.com/hikkoshi/hikkoshi/gen/hikkoshi/inventory/v1"
	"github.com/hikkoshi/hikkoshi/platform/service"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/imagecopy"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/jobs"
	"github.com/hikkoshi/hikkoshi/services/converter/internal/p2v"
)

// DefaultPort is the converter's gRPC port on 127.0.0.1.
const DefaultPort = 7402

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "converter:", err)
		os.Exit(1)
	}
}

// config is the converter's configuration: the flags, then what validate makes of
// them.
type config struct {
	service.Config
	workers                                                                          int
	cloudsYAML, inventory, cloudJobs, p2vWork, cloudInitDebs, agentToken, probeProxy string
	copyMode                                                                         string
	chunk, bandwidth                                                                 int64
	poll                                                                             time.Duration
	clouds, diskRoots, diskDevices, agentNets                                        service.List

	// Made by validate.
	mode   imagecopy.Mode
	limits map[string]int
	nets   []netip.Prefix
	probe  *jobs.ProbeDialer
}

func (c *config) register(fs *flag.FlagSet) {
	fs.IntVar(&c.workers, "workers", 2, "jobs this process runs at once (0: API only)")
	fs.StringVar(&c.cloudsYAML, "clouds-yaml", os.Getenv("OS_CLIENT_CONFIG_FILE"), "clouds.yaml path (default $OS_CLIENT_CONFIG_FILE, else the usual places)")
	fs.Int64Var(&c.chunk, "chunk-bytes", imagecopy.DefaultChunkSize, "image copy chunk size: the most a broken copy reads again")
	fs.Int64Var(&c.bandwidth, "copy-bandwidth", 0, "cap on what one copy moves across the link between the clouds, bytes per second: a cold copy's source reads, a warm copy's sends (0: none)")
	fs.StringVar(&c.copyMode, "copy-mode", "tee", "how an image larger than a chunk is copied: tee (chunk images and the final image in one pass; a worker's death costs at most a chunk) or stream (one upload, no chunk images: for clouds in the same site, where a worker's death restarting the copy costs little)")
	fs.DurationVar(&c.poll, "poll", time.Second, "pause between status reads while waiting on a cloud")
	fs.StringVar(&c.cloudJobs, "cloud-jobs", "", "most jobs running at once against a cloud, across every converter on this etcd (old=2,new=4); give each converter the same")
	fs.StringVar(&c.p2vWork, "p2v-work-dir", jobs.DefaultP2VWork, "where P2V jobs build their disks (needs room for one disk per job; P2V needs root: loop devices, mounts, chroot)")
	fs.StringVar(&c.cloudInitDebs, "cloud-init-debs", "", "directory of .deb files P2V installs cloud-init from (an offline worker); empty: from the server's own package sources")
	fs.StringVar(&c.agentToken, "p2v-agent-token-file", "", "file holding the bearer token of the hikkoshi-p2v-agents (never logged or stored in a job)")
	fs.StringVar(&c.probeProxy, "probe-proxy", "", "SOCKS5 jump host the health probes go through (socks5://HOST:PORT) when the servers' addresses are not reachable from here; empty: straight")
	fs.StringVar(&c.inventory, "inventory", "", "inventory gRPC address: jobs' workloads follow them (converting, cut_over, failed); empty: not followed")
	fs.Var(&c.clouds, "clouds", "clouds.yaml entries a job may name (comma-separated or repeated); empty: every entry")
	fs.Var(&c.diskRoots, "p2v-disk-root", "directory P2V disk_path and more_disk_paths must lie under, links resolved (repeat for more); none: no disk path is taken")
	fs.Var(&c.diskDevices, "p2v-disk-device", "a block device a P2V job may name by path (repeat for more)")
	fs.Var(&c.agentNets, "p2v-agent-network", "network (CIDR) or address hikkoshi-p2v-agents may be on (repeat for more); none: no agent_url is taken")
}

// validate refuses what the converter cannot run with, naming the flag, and makes
// the parsed forms.
func (c *config) validate() error {
	if c.chunk < 1<<20 {
		return fmt.Errorf("--chunk-bytes %d: use at least 1 MiB", c.chunk)
	}
	switch c.copyMode {
	case "tee":
		c.mode = imagecopy.Tee
	case "stream":
		c.mode = imagecopy.Stream
	default:
		return fmt.Errorf("--copy-mode %q: give tee or stream", c.copyMode)
	}
	if c.workers < 0 {
		return fmt.Errorf("--workers %d: give 0 (API only) or more", c.workers)
	}
	var err error
	if c.limits, err = jobs.ParseCloudLimits(c.cloudJobs); err != nil {
		return err
	}
	if c.nets, err = jobs.ParseNetworks(c.agentNets); err != nil {
		return fmt.Errorf("--p2v-agent-network: %w", err)
	}
	for _, d := range c.diskRoots {
		if !filepath.IsAbs(d) {
			return fmt.Errorf("--p2v-disk-root %q: give an absolute directory", d)
		}
	}
	if c.probe, err = jobs.NewProbeDialer(c.probeProxy); err != nil {
		return fmt.Errorf("--probe-proxy: %w", err)
	}
	return nil
}

func run(ctx context.Context, args []string) error {
	cfg := &config{Config: service.NewConfig("converter", DefaultPort)}
	if err := cfg.Parse(args, cfg.register, cfg.validate); err != nil {
		return err
	}
	return service.Run(ctx, cfg.Config, func(rt *service.Runtime) error {
		store := jobs.NewStore(rt.Etcd)
		// Each process builds under its own directory: a restarted one sweeps what
		// its previous life left (a kill in mid-build), never another's builds.
		work := filepath.Join(cfg.p2vWork, cfg.Instance)
		if cfg.workers > 0 {
			if um, det, err := p2v.Sweep(ctx, work); err != nil {
				rt.Logger.Warn("p2v: sweep of the work directory", "dir", work, "err", err)
			} else if um+det > 0 {
				rt.Logger.Info("p2v: swept what a killed conversion left", "dir", work, "unmounted", um, "loop_devices", det)
			}
		}
		policy := jobs.Policy{Clouds: cfg.clouds, DiskRoots: cfg.diskRoots, DiskDevices: cfg.diskDevices, WorkDir: cfg.p2vWork, AgentNetworks: cfg.nets}
		exec := &jobs.Runner{CloudsYAML: cfg.cloudsYAML, ChunkSize: cfg.chunk, CopyMode: cfg.mode, Bandwidth: cfg.bandwidth, Poll: cfg.poll, Log: rt.Logger,
			P2VWork: work, CloudInitDebs: cfg.cloudInitDebs, AgentTokenFile: cfg.agentToken, AgentTLS: cfg.TLS, Probe: cfg.probe, Policy: policy,
			CutOvers: func(ctx context.Context, id string) (*converterv1.CutOver, error) {
				return jobs.CutOverRequest(ctx, rt.Etcd, id)
			}}
		var inv inventoryv1.InventoryServiceClient
		if cfg.inventory != "" {
			conn, err := grpc.NewClient(cfg.inventory, grpc.WithTransportCredentials(rt.ClientCredentials()))
			if err != nil {
				return fmt.Errorf("--inventory %s: %w", cfg.inventory, err)
			}
			inv = inventoryv1.NewInventoryServiceClient(conn)
			defer rt.OnShutdown(func() { _ = conn.Close() }) // after the workers have stopped
		}
		jobs.Register(rt, store, exec, inv, policy)
		if cfg.workers > 0 {
			w := &jobs.Worker{
				Store: store, Etcd: rt.Etcd, Instance: cfg.Instance, Session: rt.Session, Concurrency: cfg.workers, Log: rt.Logger,
				Exec: exec, Inventory: inv, CloudLimits: cfg.limits,
			}
			rt.Go(w.Run)
		}
		return nil
	})
}
